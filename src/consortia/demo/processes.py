"""The demo's processes: each node's ``consortia serve`` and the ``consortia`` commands it
runs, with the caller's ``CONSORTIA_*`` variables left out (each node is configured by its
own consortia.toml alone); every process is stopped however the demo ends, and asked by
the kernel to die with the demo (Linux)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from consortia.config import Settings, load_settings
from consortia.exceptions import ConsortiaError

__all__ = [
    "DemoError",
    "DemoNode",
    "Processes",
    "run_consortia",
    "settings_of",
    "stopped_on_sigterm",
]

START_SECONDS = 300.0  # a node's first answer on a machine whose cores are all busy
STOP_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


class DemoError(ConsortiaError):
    """A step of the demo failed; the message says which and what the process said."""


@dataclass
class DemoNode:
    """One node of the demo: the hub or a hospital."""

    name: str
    institution: str
    country: str
    folder: Path
    port: int
    site: str = ""  # a hospital's site in both studies
    transport: str = "push"
    accept_studies: str = "manual"
    logins: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (email, pw)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.folder / "consortia.toml"


def _child_env() -> dict[str, str]:
    """The environment of the demo's processes: each node is configured by its own
    consortia.toml alone (no ``CONSORTIA_*`` variable of the caller's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIA_")}


@contextlib.contextmanager
def _own_settings_only() -> Iterator[None]:
    """Read a node's consortia.toml without the caller's ``CONSORTIA_*`` variables."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("CONSORTIA_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def settings_of(node: DemoNode) -> Settings:
    with _own_settings_only():
        return load_settings(node.config)


def _die_with_demo() -> None:  # pragma: no cover - runs in the child, before exec
    """Linux: the kernel ends the child if the demo dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def run_consortia(*args: str, what: str) -> str:
    """Run ``consortia ARGS`` as its own process; its output, or :class:`DemoError`."""
    done = subprocess.run(
        [sys.executable, "-m", "consortia", *args],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=START_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise DemoError(f"{what} failed (`consortia {args[0]}` exit {done.returncode}): {said}")
    return done.stdout + done.stderr


class Processes:
    """The demo's ``consortia serve`` processes: started, waited for until they answer,
    and always stopped (SIGTERM, wait, SIGKILL, wait) when the block ends."""

    def __init__(self) -> None:
        self.running: list[tuple[DemoNode, subprocess.Popen[bytes], IO[bytes]]] = []

    def serve(self, node: DemoNode) -> None:
        log = (node.folder / "serve.log").open("ab")
        command = [sys.executable, "-m", "consortia", "serve", "--config", str(node.config)]
        try:
            process = subprocess.Popen(
                [*command, "--port", str(node.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_child_env(),
                preexec_fn=_die_with_demo if sys.platform.startswith("linux") else None,
            )
        except BaseException:
            log.close()
            raise
        self.running.append((node, process, log))
        self._wait_ready(node, process)

    def _wait_ready(self, node: DemoNode, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                raise DemoError(
                    f"{node.name}: `consortia serve` exited with {process.returncode}; "
                    f"see {node.folder / 'serve.log'}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(node.url + "/api/v1/health", timeout=10.0).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise DemoError(f"{node.name} did not answer at {node.url} in {START_SECONDS:g} s")
            time.sleep(0.1)

    def exited(self) -> list[str]:
        """The nodes whose process has ended."""
        return [node.name for node, process, _ in self.running if process.poll() is not None]

    def stop(self) -> None:
        for _, process, _ in self.running:
            if process.poll() is None:
                process.terminate()
        for _, process, log in self.running:
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_SECONDS)
            finally:
                log.close()
        self.running.clear()


@contextlib.contextmanager
def stopped_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the demo like Ctrl-C does, so its processes are stopped either way."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
