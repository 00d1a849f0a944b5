"""The unit of work is the only door to the database for the use cases and entry points.

Every module of ``services/`` and of the entry points (``entry/``, ``api/``, ``web/``,
``commands/``, ``cli.py``, ``demo.py``) reaches the database through
:mod:`consortia.services.unit_of_work` (``reading``/``writing``), which carries the
principal and appends the audit event in the transaction of the change. A direct
``engine.begin()``, ``engine.connect()`` or ``connection.begin()`` anywhere else opens a
transaction that no audit event is bound to, so this check reads every call with
:mod:`ast` and fails naming the file and the line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "consortia"

#: Where the check looks: the use cases and every entry point.
SCANNED = ["services", "entry", "api", "web", "commands", "cli.py", "demo"]

#: The calls that open a connection or a transaction.
OPENERS = frozenset({"begin", "begin_nested", "begin_twophase", "connect", "raw_connection"})

#: The door itself.
THE_DOOR = "services/unit_of_work.py"


def _modules(root: Path) -> list[Path]:
    found: list[Path] = []
    for name in SCANNED:
        path = root / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(path.rglob("*.py")))
    return found


def direct_transactions(root: Path) -> dict[str, list[str]]:
    """``{module: ["module:line: call", ...]}`` for every call that opens a connection or a
    transaction outside the unit of work."""
    found: dict[str, list[str]] = {}
    for path in _modules(root):
        relative = path.relative_to(root).as_posix()
        if relative == THE_DOOR:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        calls = sorted(
            (node.lineno, f"{ast.unparse(node.func.value)}.{node.func.attr}()")
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in OPENERS
        )
        if calls:
            found[relative] = [f"{relative}:{line}: {call}" for line, call in calls]
    return found


def test_services_and_entry_points_open_transactions_only_through_the_unit_of_work() -> None:
    crossings = [line for _, lines in sorted(direct_transactions(SRC).items()) for line in lines]
    assert crossings == [], (
        "open transactions through consortia.services.unit_of_work (reading/writing), "
        "not directly:\n" + "\n".join(crossings)
    )


@pytest.mark.parametrize(
    "source",
    [
        "def f(engine):\n    with engine.begin() as connection:\n        pass\n",
        "def f(engine):\n    with engine.connect() as connection:\n        pass\n",
        "def f(connection):\n    with connection.begin():\n        pass\n",
        "def f(self):\n    return self.engine.connect().execution_options(x=1)\n",
    ],
)
def test_the_check_catches_a_planted_direct_transaction(tmp_path: Path, source: str) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "planted.py").write_text(source, encoding="utf-8")
    (tmp_path / "services" / "unit_of_work.py").write_text(source, encoding="utf-8")
    found = direct_transactions(tmp_path)
    assert list(found) == ["services/planted.py"]  # the door itself may
    assert found["services/planted.py"][0].startswith("services/planted.py:")
