"""CPU per test file: a pytest plugin that records each test's CPU, and a summary of it.

The suite's wall time on 2 cores is set by how much CPU its tests burn, not by their wall
times (which include waiting for the other process's CPU). Each test's CPU is this
process's user + system time (all its threads) and that of the children it reaped during
the test (servers, commands, Chromium); a database server's own CPU is not in it.

    rm -rf /tmp/cpuclock
    CPUCLOCK_DIR=/tmp/cpuclock PYTHONPATH=bench .venv/bin/pytest -q -p no:cacheprovider \\
        -p pytest_cpuclock -n 2 --dist loadfile --no-loadscope-reorder
    .venv/bin/python bench/pytest_cpuclock.py /tmp/cpuclock      # the 40 costliest files
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any, TextIO

import pytest

_out: TextIO | None = None


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    global _out
    if _out is None:
        folder = Path(os.environ.get("CPUCLOCK_DIR", "/tmp/cpuclock"))
        folder.mkdir(parents=True, exist_ok=True)
        _out = (folder / f"tests-{os.getpid()}.jsonl").open("a", encoding="utf-8")
    own, children = _cpu()
    started = time.perf_counter()
    yield
    own_after, children_after = _cpu()
    record = {
        "test": item.nodeid,
        "own": own_after - own,
        "children": children_after - children,
        "wall": time.perf_counter() - started,
    }
    _out.write(json.dumps(record) + "\n")
    _out.flush()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _out is not None:
        _out.close()


def summarise(folder: Path, top: int = 40) -> str:
    own: Counter[str] = Counter()
    children: Counter[str] = Counter()
    wall: Counter[str] = Counter()
    tests: Counter[str] = Counter()
    for path in sorted(folder.glob("tests-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record: dict[str, Any] = json.loads(line)
            file = str(record["test"]).split("::")[0]
            own[file] += record["own"]
            children[file] += record["children"]
            wall[file] += record["wall"]
            tests[file] += 1
    total = {file: own[file] + children[file] for file in own}
    lines = [
        f"CPU {sum(total.values()):.0f} s (own {sum(own.values()):.0f}, children "
        f"{sum(children.values()):.0f}); the tests' wall times add up to {sum(wall.values()):.0f} s",
        "",
        "| file | tests | CPU s | own | children | wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for file, cpu in sorted(total.items(), key=lambda pair: -pair[1])[:top]:
        lines.append(
            f"| {file} | {tests[file]} | {cpu:.1f} | {own[file]:.1f} | {children[file]:.1f} "
            f"| {wall[file]:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/cpuclock")))
