"""Worker processes die with their parent: by the kernel's parent-death signal on Linux, and
by watching the parent's process id everywhere (the fallback, tested on its own here)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import consortia

SOURCE = str(Path(consortia.__file__).resolve().parent.parent)

# The parent forks a child that calls die_with_parent, waits until the child is ready,
# prints its id and is then killed by the test. The child would sleep for an hour.
FAMILY = """
import os, sys, time
import consortia.children as children
if sys.argv[1] == "watch-only":
    children._kernel_kills_orphan = lambda: False
parent = os.getpid()
ready_read, ready_write = os.pipe()
child = os.fork()
if child == 0:
    children.die_with_parent(parent)
    os.write(ready_write, b"x")
    time.sleep(3600)
    os._exit(0)
os.read(ready_read, 1)
print(child, flush=True)
time.sleep(3600)
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie waits for whoever adopted it: it has exited
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize(
    "mechanism",
    [
        pytest.param(
            "kernel",
            marks=pytest.mark.skipif(
                not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's"
            ),
        ),
        "watch-only",
    ],
)
def test_a_child_dies_when_its_parent_is_killed(mechanism: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen(
        [sys.executable, "-c", FAMILY, mechanism],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while not _gone(child):
            assert time.monotonic() < deadline, f"the child outlived its parent ({mechanism})"
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        parent.wait(timeout=30)
        if parent.stdout is not None:
            parent.stdout.close()
