"""The SQLite writer lock is held by the writing process only: never by a child it forked.

A child forked during a write transaction (an import's checking workers) gets a copy of the
lock file's descriptor, and ``flock`` belongs to the open file, not to a process: a child
that kept the copy, say one orphaned by ``kill -9`` of its parent, held every writer off.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import warnings
from pathlib import Path

import pytest

from consortia.storage.db import make_engine

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def test_a_child_forked_during_a_write_does_not_hold_the_lock_after_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine, other = make_engine(url), make_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    ready_read, ready_write = os.pipe()
    hold_read, hold_write = os.pipe()
    child = 0
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
            with warnings.catch_warnings():  # Python 3.12+ warns of fork with threads
                warnings.simplefilter("ignore", DeprecationWarning)
                child = os.fork()
            if child == 0:  # the child: says it is up, then lives on until told to stop
                try:
                    os.write(ready_write, b"x")
                    os.read(hold_read, 1)
                finally:
                    os._exit(0)
            assert os.read(ready_read, 1) == b"x"
        # the child lives on; the parent's transaction is over: another writer goes ahead
        wrote = threading.Event()

        def write() -> None:
            with other.begin() as connection:
                connection.exec_driver_sql("INSERT INTO t VALUES (2)")
            wrote.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        assert wrote.wait(timeout=30), "the forked child still holds the writer lock"
        writer.join()
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all() == [
                1,
                2,
            ]
    finally:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        for descriptor in (ready_read, ready_write, hold_read, hold_write):
            os.close(descriptor)
        engine.dispose()
        other.dispose()
