"""One concept per module: no module of src/consortia is over 600 lines, and a name
that once meant two things is defined once across src/."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from source_trees import syntax_tree

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "consortia"

MAX_LINES = 600
"""A module over ~600 lines usually holds two concepts (STYLE.md)."""

SIZED_PACKAGES = (
    *("api", "auth", "commands", "domain", "entry", "federation", "services", "standards"),
    *("stats", "storage", "web"),
    *("__init__.py", "__main__.py", "app.py", "asgi.py", "children.py", "cli.py", "config.py"),
    *("demo", "exceptions.py", "hashchain.py", "lazy_names.py", "tomllines.py"),
)
"""Every package and top-level module under src/consortia: each module is held to
MAX_LINES and says what it holds (a new package or module is added here; a test checks
that the list covers the whole tree)."""

SINGLE_MEANING_NAMES = ("FormRecord", "ValueRow", "utc_now")
"""Names that meant two things and now have one definition each across src/."""


def _modules(package: str) -> list[Path]:
    path = PACKAGE / package
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def test_the_checked_packages_and_modules_cover_the_whole_tree() -> None:
    entries = {
        path.name
        for path in PACKAGE.iterdir()
        if path.suffix == ".py" or (path / "__init__.py").is_file()
    }
    assert entries == set(SIZED_PACKAGES)


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("package", SIZED_PACKAGES)
def test_no_module_of_the_package_is_over_600_lines(package: str) -> None:
    modules = _modules(package)
    assert modules, f"src/consortia/{package} has no modules"
    too_long = {
        str(path.relative_to(SRC)): lines for path in modules if (lines := _lines(path)) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


@pytest.mark.parametrize("package", SIZED_PACKAGES)
def test_every_module_of_the_package_says_what_it_holds(package: str) -> None:
    silent = [
        str(path.relative_to(SRC))
        for path in _modules(package)
        if not ast.get_docstring(syntax_tree(path))
    ]
    assert not silent, f"modules without a docstring: {silent}"


def _definitions(tree: ast.Module) -> list[tuple[str, int]]:
    """Names a module defines at its top level or in a class: classes, functions, and
    assignments (type aliases included), each with its line."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((node.name, node.lineno))
        elif isinstance(node, ast.Assign):
            found.extend(
                (target.id, node.lineno) for target in node.targets if isinstance(target, ast.Name)
            )
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.append((node.target.id, node.lineno))
    return found


@functools.cache
def _definitions_in_src() -> dict[str, list[str]]:
    """Every name src/ defines, with the places (``module:line``), found in one walk."""
    places: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for found, line in _definitions(syntax_tree(path)):
            places.setdefault(found, []).append(f"{path.relative_to(SRC)}:{line}")
    return places


def _where_defined(name: str) -> list[str]:
    return _definitions_in_src().get(name, [])


@pytest.mark.parametrize("name", SINGLE_MEANING_NAMES)
def test_the_name_is_defined_once_in_src(name: str) -> None:
    places = _where_defined(name)
    assert len(places) == 1, f"{name} is defined {len(places)} times: {places}"


def test_the_definition_finder_sees_classes_functions_and_aliases() -> None:
    tree = ast.parse("class A: ...\ndef b(): ...\nC = int\nD: type = int\nx.y = 1\n")
    assert [name for name, _ in _definitions(tree)] == ["A", "b", "C", "D"]
