"""The test files are handed to the test processes longest first (tests/scheduling.py)."""

from __future__ import annotations

import doctest
import shlex
from pathlib import Path

import pytest

import scheduling
from scheduling import longest_first

ROOT = Path(__file__).resolve().parent.parent


class _Item:
    def __init__(self, nodeid: str, *, slow: bool = False) -> None:
        self.nodeid = nodeid
        self.slow = slow

    def get_closest_marker(self, name: str) -> object:
        return True if name == "slow" and self.slow else None


def test_the_examples_of_the_module_hold() -> None:
    outcome = doctest.testmod(scheduling)
    assert outcome.failed == 0
    assert outcome.attempted > 0


def test_files_with_a_slow_test_go_first_then_the_others_largest_first() -> None:
    items = [
        _Item("tests/a/test_many.py::t1"),
        _Item("tests/a/test_many.py::t2"),
        _Item("tests/a/test_many.py::t3"),
        _Item("tests/b/test_processes.py::t1"),
        _Item("tests/b/test_processes.py::t2", slow=True),
        _Item("tests/c/test_one.py::t1"),
        _Item("tests/d/test_two.py::t1[sqlite]"),
        _Item("tests/d/test_two.py::t1[postgresql]"),
        _Item("tests/e/test_server.py::t1", slow=True),
    ]
    ordered = [item.nodeid for item in longest_first(items)]
    assert ordered == [
        "tests/b/test_processes.py::t1",  # a file goes whole, in its own order
        "tests/b/test_processes.py::t2",
        "tests/e/test_server.py::t1",
        "tests/a/test_many.py::t1",
        "tests/a/test_many.py::t2",
        "tests/a/test_many.py::t3",
        "tests/d/test_two.py::t1[sqlite]",
        "tests/d/test_two.py::t1[postgresql]",
        "tests/c/test_one.py::t1",
    ]


def test_this_run_holds_its_files_in_that_order(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    assert [item.nodeid for item in items] == [item.nodeid for item in longest_first(items)]


def test_make_test_hands_out_files_in_the_order_of_the_collection() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pytest_lines = [line for line in makefile.splitlines() if "/pytest " in line]
    assert len(pytest_lines) == 1, pytest_lines
    words = shlex.split(pytest_lines[0])
    assert {"--dist", "loadfile", "--no-loadscope-reorder"} <= set(words)
