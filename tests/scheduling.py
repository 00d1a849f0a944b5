"""The order in which the test files are handed to the test processes.

``make test`` runs pytest-xdist with ``-n 2 --dist loadfile --no-loadscope-reorder``: each
file goes whole to one process (its module fixtures are built once), in the order of the
collection, and a process is handed the next file when it runs low on tests. The run ends
when the last file handed out ends, so the long files must go first and the short ones
last, where they fill in whichever process is free (the longest-processing-time-first
rule). xdist's own reordering (by number of tests, largest first) did the opposite for
the files that start real processes: they hold one to five tests each, each test lasting
tens of seconds, so they went out last and one process ran them alone while the other
had finished.

:func:`longest_first` puts first the files with a test marked ``slow`` (in their order of
collection), then the others by number of tests, largest first (xdist's rule). A file
whose tests take more than a few seconds each is marked ``slow``.

>>> class Item:
...     def __init__(self, nodeid, slow=False):
...         self.nodeid, self.slow = nodeid, slow
...     def get_closest_marker(self, name):
...         return name if self.slow and name == "slow" else None
>>> items = [Item("a.py::x"), Item("a.py::y"), Item("b.py::x", slow=True), Item("c.py::x"),
...          Item("c.py::y"), Item("c.py::z")]
>>> [item.nodeid for item in longest_first(items)]
['b.py::x', 'c.py::x', 'c.py::y', 'c.py::z', 'a.py::x', 'a.py::y']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["longest_first"]


class _Item(Protocol):
    nodeid: str

    def get_closest_marker(self, name: str) -> Any: ...


ItemT = TypeVar("ItemT", bound=_Item)


def _file_of(item: _Item) -> str:
    return item.nodeid.split("::", 1)[0]


def longest_first(items: Sequence[ItemT]) -> list[ItemT]:
    """``items`` grouped by file: the files with a ``slow`` test first, then the others by
    number of tests (largest first); the tests of a file keep their order, and so do files
    that tie."""
    files: dict[str, list[ItemT]] = {}
    for item in items:
        files.setdefault(_file_of(item), []).append(item)
    slow = {
        name
        for name, tests in files.items()
        if any(test.get_closest_marker("slow") for test in tests)
    }

    def rank(name: str) -> tuple[int, int]:
        return (0, 0) if name in slow else (1, -len(files[name]))

    return [test for name in sorted(files, key=rank) for test in files[name]]
