"""Child processes that die with their parent.

A forked worker (an import's checkers) inherits its parent's open files, and may outlive
a parent killed with ``kill -9`` as an orphan that nobody waits for. :func:`die_with_parent`,
run first thing in the child, makes sure it does not linger:

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` asks the kernel to kill it the moment the
  parent goes (strictly: the parent's thread that forked it, so fork from a thread that
  lives as long as the work does);
* everywhere, a daemon thread watches the parent's process id and ends the child within
  :data:`WATCH_INTERVAL` seconds of the parent's death (an orphan is adopted by another
  process, so its parent id changes).

Either way a parent that died before the child got here is caught by the first check.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from typing import Final

__all__ = ["WATCH_INTERVAL", "die_with_parent"]

WATCH_INTERVAL: Final = 0.5
_PR_SET_PDEATHSIG: Final = 1


def _kernel_kills_orphan() -> bool:
    """Linux: have the kernel send SIGKILL to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    stop = threading.Event()
    while not stop.wait(WATCH_INTERVAL):
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int) -> None:
    """Make this (child) process end when process ``parent`` does; see the module doc."""
    _kernel_kills_orphan()
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()
