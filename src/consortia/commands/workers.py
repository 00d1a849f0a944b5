"""Several server processes behind one listening socket; the supervisor deals connections.

uvicorn's own ``--workers`` hands one listening socket to every process, and whichever
process wakes first accepts every connection waiting: 50 clients that connect at once ended
up 34 on one process and 16 on the other. A socket per process (``SO_REUSEPORT``) lets the
kernel spread connections by a hash of the client's address and port, which is even only on
average: with 50 keep-alive clients on 3 processes, one run's clients had median latencies
from 108 to 186 ms, by the process they had landed on (bench/RESULTS.md section 3).

So the supervisor listens and accepts, and hands each connection (its file descriptor, over
a Unix socket) to the worker with the fewest open connections, as Node's cluster module
deals them round-robin. Each worker counts the connections it has closed in a shared
integer, so the supervisor knows what every worker has open without asking. A worker serves
the connections it is handed with uvicorn's own HTTP protocol on its event loop.

The supervisor also starts a new worker when one dies after it had started serving, and on
SIGINT or SIGTERM stops accepting, asks every worker to finish its requests and waits for
them. A worker that dies before it serves (a bad setting) stops the whole server with an
error rather than being restarted for ever. A worker whose supervisor was killed finishes
its requests and stops: its end of the Unix socket reads end-of-file (a ``SOCK_SEQPACKET``
pair, as a datagram pair would never tell).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as EventType
from types import FrameType
from typing import TYPE_CHECKING, Any

from consortia.exceptions import ConfigurationError

if TYPE_CHECKING:
    import uvicorn

__all__ = ["handing_available", "serve_workers"]

_STOP_WAIT = 30.0
_ACCEPT_POLL = 0.5  # seconds: how soon the accepting thread notices a stop
_HANDED_AT_ONCE = 64  # descriptors a worker takes from its channel per wake-up


def handing_available() -> bool:
    """Whether connections can be handed to workers here (Linux: descriptors passed over
    ``SOCK_SEQPACKET`` Unix sockets, which tell a worker when the supervisor is gone)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.settimeout(_ACCEPT_POLL)
    return sock


# ------------------------------------------------------------------------ in a worker


def _server_class() -> Callable[[uvicorn.Config, socket.socket, Synchronized[int]], uvicorn.Server]:
    import uvicorn

    class HandedServer(uvicorn.Server):
        """uvicorn serving the connections the supervisor hands over ``channel``."""

        def __init__(
            self, config: uvicorn.Config, channel: socket.socket, closed: Synchronized[int]
        ) -> None:
            super().__init__(config)
            self.channel = channel
            self.closed = closed
            self.adopting: set[asyncio.Task[None]] = set()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=[])  # no listening socket of its own
            if self.should_exit:
                return
            loop = asyncio.get_running_loop()
            self.channel.setblocking(False)
            loop.add_reader(self.channel.fileno(), self._receive, loop, self._protocols())

        def _protocols(self) -> Callable[[], asyncio.Protocol]:
            counter = self.closed
            base: Any = self.config.http_protocol_class

            class Counted(base):  # type: ignore[misc]
                def connection_lost(self, exc: Exception | None) -> None:
                    try:
                        super().connection_lost(exc)
                    finally:
                        counter.value += 1  # only this process writes it

            def create() -> asyncio.Protocol:
                protocol: asyncio.Protocol = Counted(
                    config=self.config,
                    server_state=self.server_state,
                    app_state=self.lifespan.state,
                )
                return protocol

            return create

        def _receive(
            self, loop: asyncio.AbstractEventLoop, protocols: Callable[[], asyncio.Protocol]
        ) -> None:
            try:
                data, fds, _, _ = socket.recv_fds(self.channel, 16, _HANDED_AT_ONCE)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the supervisor has gone: finish and stop
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                task = loop.create_task(self._adopt(loop, protocols, socket.socket(fileno=fd)))
                self.adopting.add(task)
                task.add_done_callback(self.adopting.discard)

        async def _adopt(
            self,
            loop: asyncio.AbstractEventLoop,
            protocols: Callable[[], asyncio.Protocol],
            sock: socket.socket,
        ) -> None:
            try:
                await loop.connect_accepted_socket(protocols, sock)
            except OSError:  # the client went away before it was served
                sock.close()
                self.closed.value += 1

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(self.channel.fileno())
            await super().shutdown(sockets=sockets)

    return HandedServer


def _worker(
    log_level: str, channel: socket.socket, closed: Synchronized[int], serving: EventType
) -> None:
    """One worker process: the node's app from ``served_app``, connections from ``channel``."""
    import uvicorn

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    config = uvicorn.Config("consortia.app:served_app", factory=True, log_level=log_level)
    server = _server_class()(config, channel, closed)

    def tell_supervisor() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            serving.set()

    threading.Thread(target=tell_supervisor, daemon=True).start()
    server.run()


# -------------------------------------------------------------------- in the supervisor


@dataclass
class _Worker:
    process: BaseProcess
    serving: EventType
    channel: socket.socket  # the supervisor's end
    closed: Synchronized[int]  # connections the worker has closed (it writes, we read)
    handed: int = 0  # connections handed to it (only the accepting thread writes)
    broken: bool = field(default=False)

    @property
    def open_connections(self) -> int:
        return self.handed - self.closed.value


def _hand(workers: list[_Worker], connection: socket.socket) -> bool:
    """Pass ``connection`` to the serving worker with the fewest open connections."""
    ready = [w for w in workers if not w.broken and w.serving.is_set()]
    for worker in sorted(ready or workers, key=lambda w: w.open_connections):
        try:
            socket.send_fds(worker.channel, [b"c"], [connection.fileno()])
        except BlockingIOError:  # its queue is full (the worker is stuck): try another
            continue
        except OSError:  # the worker died: the supervisor replaces it
            worker.broken = True
            continue
        worker.handed += 1
        return True
    return False


def serve_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """Run ``workers`` server processes behind ``host:port`` until SIGINT or SIGTERM."""
    listener = _listening_socket(host, port)
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def start() -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        serving = context.Event()
        closed: Synchronized[int] = context.Value("q", 0, lock=False)
        process = context.Process(
            target=_worker, args=(log_level, theirs, closed, serving), name="consortia-worker"
        )
        process.start()
        theirs.close()
        ours.setblocking(False)  # a stuck worker must not hold up the accepting thread
        return _Worker(process, serving, ours, closed)

    running = [start() for _ in range(workers)]

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # out of descriptors, a connection reset in the queue
                time.sleep(0.01)
                continue
            with connection:  # our copy is closed once handed: the worker holds its own
                _hand(running, connection)

    accepting = threading.Thread(target=accept, name="consortia-accept", daemon=True)
    accepting.start()
    failure: str | None = None
    try:
        while not stopping.wait(0.5):
            for n, worker in enumerate(running):
                if worker.process.is_alive():
                    continue
                if not worker.serving.is_set():
                    failure = (
                        "a server process stopped while starting "
                        f"(exit code {worker.process.exitcode})"
                    )
                    stopping.set()
                    break
                worker.channel.close()
                running[n] = start()  # it had served: replace it
    finally:
        stopping.set()
        accepting.join()
        listener.close()
        for worker in running:
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: uvicorn finishes the requests under way
        deadline = time.monotonic() + _STOP_WAIT
        for worker in running:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.channel.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failure is not None:
        raise ConfigurationError(f"{failure}; its error is above")
