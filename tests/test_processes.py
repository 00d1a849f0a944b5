"""The test helpers that start processes: they wait for readiness and always reap."""

from __future__ import annotations

import doctest
import gc
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import processes
from processes import read_line, reap, started, wait_until

IGNORES_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "Z"  # exited, not yet collected by its parent


def test_the_docstring_example_holds() -> None:
    assert doctest.testmod(processes).failed == 0


def test_a_child_that_ignores_sigterm_is_killed_and_its_pipes_closed() -> None:
    with started(
        [sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE, bufsize=0, stop_seconds=1
    ) as child:
        assert read_line(child, child.stdout, what="the child") == b"ready\n"
    assert child.returncode == -signal.SIGKILL
    assert child.stdout is not None
    assert child.stdout.closed


def test_a_failing_test_still_reaps_so_no_resource_warning_reaches_the_next() -> None:
    with (
        pytest.raises(AssertionError),
        started(
            [sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE, stop_seconds=1
        ) as child,
    ):
        raise AssertionError("the test fails while its child runs")
    assert child.returncode is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del child
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_group_is_ended_with_what_its_leader_started() -> None:
    spawner = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with started(
        [sys.executable, "-c", spawner], group=True, stdout=subprocess.PIPE, bufsize=0
    ) as leader:
        grandchild = int(read_line(leader, leader.stdout, what="the grandchild's pid"))
    wait_until(lambda: _gone(grandchild), what="the grandchild to end", seconds=30)


def test_waiting_fails_naming_what_it_waited_for() -> None:
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="waiting for the moon"):
        wait_until(lambda: False, what="the moon", seconds=0.2)
    assert time.monotonic() - start < 10
    with (
        started([sys.executable, "-c", "pass"]) as quick,
        pytest.raises(pytest.fail.Exception, match="exited with 0 before the answer"),
    ):
        wait_until(lambda: False, what="the answer", process=quick)
    silent = [sys.executable, "-c", "import time; time.sleep(600)"]
    with (
        started(silent, stdout=subprocess.PIPE, bufsize=0) as child,
        pytest.raises(pytest.fail.Exception, match=r"0\.2 s waiting for a line"),
    ):
        read_line(child, child.stdout, what="a line", seconds=0.2)
    assert reap(child) == child.returncode  # reaping twice is harmless
