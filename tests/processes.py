"""Test support: start processes and servers, wait until they are ready, always reap them.

On a loaded machine (a 2-core CI runner with both cores busy) a Python process that imports
the app takes seconds, not milliseconds, to start, and an answer from a server or a worker
can take as long. So nothing here sleeps for a fixed time hoping that is enough: every wait
polls its condition (a line on a pipe, an answer on a port, a file, a process's sockets)
until a generous deadline, and fails there saying what it waited for. And whatever a test
does, a process it started is ended — terminated, waited for, killed if it must be, waited
for again — and its pipes closed, so that no ``ResourceWarning`` for a child still running
is raised later, in whichever test happens to be running when it is collected.

>>> import sys
>>> with started([sys.executable, "-c", "print('ready', flush=True)"],
...              stdout=subprocess.PIPE) as child:
...     read_line(child, child.stdout, what="the child's greeting")
...     child.wait(STOP_SECONDS)
b'ready\\n'
0
>>> child.stdout.closed  # and it would have been ended had it not finished
True
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import httpx
import pytest

__all__ = [
    "READ_SECONDS",
    "START_SECONDS",
    "STOP_SECONDS",
    "read_line",
    "reap",
    "started",
    "stop_thread",
    "wait_for_http",
    "wait_until",
]

#: For a process (or a server thread) to start serving: an interpreter that imports the app
#: on a machine whose cores are all busy (seen: over two minutes for a niced test run beside
#: two busy loops). A deadline only costs time when something is already wrong.
START_SECONDS = 300.0
#: For one answer from a server, a worker or a child process that is already running.
READ_SECONDS = 120.0
#: For a process to stop once asked (then once more after it is killed).
STOP_SECONDS = 60.0
_POLL = 0.05


def wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    seconds: float = START_SECONDS,
    process: subprocess.Popen[Any] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` at the deadline, or as soon as
    ``process`` (if given) has exited."""
    deadline = time.monotonic() + seconds
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process exited with {process.returncode} before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(_POLL)


def wait_for_http(
    url: str,
    *,
    process: subprocess.Popen[Any] | None = None,
    seconds: float = START_SECONDS,
    headers: dict[str, str] | None = None,
) -> None:
    """Poll ``url`` until it answers 200 (a refused or unanswered connection is polled again)."""

    def answers() -> bool:
        try:
            return httpx.get(url, headers=headers, timeout=READ_SECONDS).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, what=f"{url} to answer 200", seconds=seconds, process=process)


def read_line(
    process: subprocess.Popen[Any],
    stream: IO[bytes] | None,
    *,
    what: str,
    seconds: float = START_SECONDS,
) -> bytes:
    """The next line of an unbuffered binary pipe of ``process`` (``bufsize=0``), waiting
    at most ``seconds``; fail naming ``what`` if it does not come."""
    assert stream is not None, "the stream must be a pipe"
    line = bytearray()
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out after {seconds:g} s waiting for {what}")
            if selector.select(min(left, 1.0)):
                byte = os.read(stream.fileno(), 1)
                if not byte:
                    pytest.fail(f"the process closed its output before {what}")
                line += byte
    return bytes(line)


def _signal(process: subprocess.Popen[Any], number: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(process.pid, number)
        else:
            process.send_signal(number)


def reap(
    process: subprocess.Popen[Any], *, group: bool = False, seconds: float = STOP_SECONDS
) -> int | None:
    """End ``process`` (and, with ``group``, every process of its session) and close its
    pipes: SIGTERM, wait, SIGKILL, wait. Returns its exit status (None if it never ended)."""
    try:
        if process.poll() is None:
            _signal(process, signal.SIGTERM, group)
            try:
                process.wait(seconds)
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL, group)
                process.wait(seconds)
        if group:  # what the leader left behind in its group
            _signal(process, signal.SIGKILL, group)
    finally:
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    return process.returncode


@contextlib.contextmanager
def started(
    args: Sequence[str], *, group: bool = False, stop_seconds: float = STOP_SECONDS, **popen: Any
) -> Iterator[subprocess.Popen[Any]]:
    """``subprocess.Popen(args, **popen)``, reaped (see :func:`reap`) when the block ends,
    however it ends. ``group`` starts it in a session of its own and ends the whole group."""
    process = subprocess.Popen(args, start_new_session=group, **popen)
    try:
        yield process
    finally:
        reap(process, group=group, seconds=stop_seconds)


def stop_thread(thread: threading.Thread, stop: Callable[[], None], *, what: str) -> None:
    """Ask a server thread to stop and wait for it (a generous while): fail if it will not."""
    stop()
    thread.join(STOP_SECONDS)
    assert not thread.is_alive(), f"{what} did not stop within {STOP_SECONDS:g} s"


@contextlib.contextmanager
def served_in_thread(app: Any, *, what: str = "uvicorn", lifespan: str = "on") -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port; its base URL once
    uvicorn serves. The socket is bound here and handed to uvicorn, so no other process can
    take the port in between; the server is stopped and joined however the block ends.
    ``lifespan="off"`` when the app's lifespan already runs or is not what a test is about."""
    import uvicorn  # a test that starts no server does not import it

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,  # type: ignore[arg-type]
        ws="none",
        log_config=None,  # leave logging to pytest
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name=f"{what}-{port}", daemon=True
    )
    thread.start()
    try:

        def serving() -> bool:
            if not thread.is_alive():
                pytest.fail(f"{what} stopped before it started serving")
            return bool(server.started)

        wait_until(serving, what=f"{what} to serve")
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            stop_thread(thread, lambda: setattr(server, "should_exit", True), what=what)
        finally:
            listener.close()
