"""Several server processes, each accepting on its own ``SO_REUSEPORT`` socket (Linux).

uvicorn's own ``--workers`` hands one listening socket to every process, and whichever
process wakes first accepts every connection waiting: 50 clients that connect at once ended
up 34 on one process and 16 on the other, and the busier process's clients waited twice as
long (bench/RESULTS.md section 3). With a socket per process the kernel spreads new
connections over the processes by a hash of the client's address and port.

The parent process only supervises: it starts the workers, starts a new one when a worker
dies after it had started serving, and on SIGINT or SIGTERM asks every worker to finish
its requests and waits for them. A worker that dies before it serves (a bad setting, the
port taken) stops the whole server with an error rather than being restarted for ever.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from types import FrameType

from consortia.exceptions import ConfigurationError

__all__ = ["reuse_port_available", "serve_workers"]

_STOP_WAIT = 30.0


def reuse_port_available() -> bool:
    """Whether the kernel balances connections over ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _check_free(host: str, port: int) -> None:
    """Refuse a port that anything (another node included) already listens on."""
    # no SO_REUSEPORT here: binding fails even when the listener is a reuse-port group
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int, log_level: str, serving: EventType) -> None:
    """One worker process: its own socket, the node's app from ``served_app``."""
    import uvicorn

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    sock = _listening_socket(host, port)
    server = uvicorn.Server(
        uvicorn.Config("consortia.app:served_app", factory=True, log_level=log_level)
    )

    def tell_parent() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            serving.set()

    threading.Thread(target=tell_parent, daemon=True).start()
    server.run(sockets=[sock])


def serve_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """Run ``workers`` server processes on ``host:port`` until SIGINT or SIGTERM."""
    _check_free(host, port)
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def start() -> tuple[BaseProcess, EventType]:
        serving = context.Event()
        process = context.Process(
            target=_worker, args=(host, port, log_level, serving), name="consortia-worker"
        )
        process.start()
        return process, serving

    running = [start() for _ in range(workers)]
    failure: str | None = None
    try:
        while not stopping.wait(0.5):
            for n, (process, serving) in enumerate(running):
                if process.is_alive():
                    continue
                if not serving.is_set():
                    failure = (
                        f"a server process stopped while starting (exit code {process.exitcode})"
                    )
                    stopping.set()
                    break
                running[n] = start()  # it had served: replace it
    finally:
        for process, _ in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests under way
        deadline = time.monotonic() + _STOP_WAIT
        for process, _ in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failure is not None:
        raise ConfigurationError(f"{failure}; its error is above")
