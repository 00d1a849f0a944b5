"""Every package imports only the layers below it, as the table in docs/architecture.md says.

Entry points (``cli``, ``commands``, ``demo``, ``api``, ``web``) call ``services``; services
use ``federation`` and ``storage``; everything rests on the pure core (``domain``, ``stats``),
which imports neither FastAPI, SQLAlchemy nor Jinja2. ``app`` is the composition root that
wires the node together, so it alone may import every layer. ``api`` and ``web`` are
siblings: they share the HTTP edge (``entry``: the principal, CSRF, cookies, sign-in, error
statuses) and never import each other.

The check reads every import (module level, inside functions, under ``TYPE_CHECKING``,
absolute and relative) with :mod:`ast`, so a crossing cannot hide in a lazy import.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from source_trees import parse_source

SRC = Path(__file__).resolve().parent.parent / "src" / "consortia"
FORBIDDEN = {"fastapi", "sqlalchemy", "jinja2", "starlette", "uvicorn", "alembic", "httpx"}
PURE_LAYERS = ["domain", "stats"]

#: The root package (``__version__`` and the public library API), imported by name.
ROOT = "consortia"
_CORE = {"exceptions", "hashchain", "lazy_names"}
_BASE = _CORE | {"config", "tomllines"}
#: What an entry point may use besides the services: the pure layers and the shared parts.
_ENTRY = _BASE | {"services", "auth", "domain", "stats", "standards", ROOT}

#: package (or top-level module) -> the consortia packages it may import. Anything else is a
#: crossing. A package may always import its own modules.
ALLOWED: dict[str, set[str]] = {
    # the pure core
    "exceptions": set(),
    "hashchain": set(),  # hash chains: canonical JSON, link hashes, checking a sequence
    "lazy_names": set(),  # a package's public names imported on first use
    "tomllines": set(),
    "domain": _CORE,
    "stats": _CORE,
    "auth": _CORE,
    "config": _CORE | {"tomllines"},
    "standards": _CORE | {"domain", ROOT},
    # infrastructure
    "asgi": set(),
    "children": set(),
    "storage": _BASE | {"auth", "domain", "stats", "standards"},
    "federation": _BASE | {"auth", "domain", "stats", "standards", "storage", "asgi"},
    # use cases
    "services": _BASE
    | {"auth", "domain", "stats", "standards", "storage", "federation", "children", ROOT},
    # the HTTP edge shared by the API and the pages
    "entry": _BASE | {"auth", "services"},
    # entry points
    "api": _ENTRY | {"entry", "asgi"},
    "web": _ENTRY | {"entry"},
    "commands": _ENTRY | {"app"},  # `consortia serve` builds the app
    "demo": _ENTRY,
    "cli": _ENTRY | {"commands", "demo"},
    "__main__": {"cli", ROOT},  # `--version` reads consortia.__version__ before the cli
    # the composition root
    "app": _BASE
    | {"api", "web", "entry", "services", "federation", "storage", "auth", "asgi", "children"}
    | {ROOT},
    ROOT: set(),  # __init__.py: the public API is filled in lazily, by name
}


def _parse(path: Path) -> ast.Module:
    """The syntax tree of a module, parsed once per text and name: the planted-crossing tests
    check copies of the tree that differ from it in one file (the trees are only read)."""
    return parse_source(path.read_text(encoding="utf-8"), path.name)


def _layer_of(path: Path, root: Path) -> str:
    relative = path.relative_to(root)
    if len(relative.parts) == 1:
        return ROOT if relative.stem == "__init__" else relative.stem
    return relative.parts[0]


def _module_of(path: Path, root: Path) -> list[str]:
    relative = path.relative_to(root).with_suffix("")
    parts = [ROOT, *relative.parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    tree = _parse(path)
    package = _module_of(path, root)
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module == ROOT:  # `from consortia import storage` imports the package
                found.extend((node.lineno, f"{ROOT}.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
    return found


def _target_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    if len(parts) == 1:
        return ROOT
    return parts[1] if parts[1] in ALLOWED else ROOT  # a name from the public API


def crossings(root: Path) -> list[str]:
    """Every import in ``root`` (a copy of src/consortia) the table does not allow."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        layer = _layer_of(path, root)
        if layer not in ALLOWED:
            found.append(f"{path.relative_to(root)}: package {layer!r} is not in the table")
            continue
        for line, module in _imported_modules(path, root):
            target = _target_layer(module)
            if target is None or target == layer or target in ALLOWED[layer]:
                continue
            found.append(f"{path.relative_to(root)}:{line}: {layer} may not import {module}")
    return found


def test_every_package_imports_only_what_the_layer_table_allows() -> None:
    assert crossings(SRC) == []


def test_every_package_is_in_the_layer_table() -> None:
    packages = {_layer_of(path, SRC) for path in SRC.rglob("*.py")}
    assert packages <= set(ALLOWED), sorted(packages - set(ALLOWED))


def test_api_and_web_are_siblings_that_reach_data_only_through_services() -> None:
    for entry_point in ("api", "web", "cli", "commands", "demo"):
        assert not ALLOWED[entry_point] & {"storage", "federation"}, entry_point
    assert "api" not in ALLOWED["web"]
    assert "web" not in ALLOWED["api"]


@pytest.mark.parametrize(
    ("planted", "source", "expected"),
    [
        ("web/planted.py", "from consortia.api.errors import status_for\n", "web may not import"),
        ("web/planted.py", "def page():\n    from ..storage import db\n", "consortia.storage"),
        ("api/planted.py", "import consortia.storage.repositories\n", "api may not import"),
        ("cli.py", "from consortia.storage.audit import verify_chain\n", "cli may not import"),
        ("demo.py", "from consortia.federation import local\n", "demo may not import"),
        ("storage/planted.py", "from consortia.services import common\n", "storage may not"),
        ("domain/planted.py", "from consortia import storage\n", "domain may not import"),
        ("services/planted.py", "from consortia.web import pages\n", "services may not"),
    ],
)
def test_the_layer_check_catches_a_planted_crossing(
    tmp_path: Path, planted: str, source: str, expected: str
) -> None:
    copy = tmp_path / "consortia"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    target = copy / planted
    target.write_text(
        (target.read_text(encoding="utf-8") if target.exists() else "") + source, "utf-8"
    )
    found = crossings(copy)
    assert len(found) == 1, found
    assert expected in found[0], found


def _imports(path: Path) -> set[str]:
    tree = _parse(path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", PURE_LAYERS)
def test_pure_layers_import_neither_web_nor_database_nor_templates(layer: str) -> None:
    files = sorted((SRC / layer).rglob("*.py"))
    assert files, f"no modules found in {layer}/"
    offenders = {
        str(path.relative_to(SRC)): sorted(_imports(path) & FORBIDDEN)
        for path in files
        if _imports(path) & FORBIDDEN
    }
    assert offenders == {}


def test_the_layer_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from sqlalchemy import select\nimport fastapi.routing\n")
    assert _imports(module) & FORBIDDEN == {"sqlalchemy", "fastapi"}


_STATEMENTS = {"select", "insert", "update", "delete", "text", "join", "outerjoin"}


def sql_outside_storage(root: Path) -> list[str]:
    """Every place outside storage/ that builds SQL or names the tables: SQL lives only in
    the repositories (and the migrations) of storage/."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if _layer_of(path, root) == "storage":
            continue
        tree = _parse(path)
        aliases = {"sqlalchemy"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                aliases |= {a.asname or a.name for a in node.names if a.name == "sqlalchemy"}
        for node in ast.walk(tree):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and node.module == "sqlalchemy":
                found += [f"{where}: {a.name}" for a in node.names if a.name in _STATEMENTS]
            elif isinstance(node, ast.ImportFrom) and node.module == "consortia.storage.tables":
                found.append(f"{where}: the tables")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr in _STATEMENTS
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                found.append(f"{where}: {node.value.id}.{node.attr}")
    return found


def test_sql_lives_only_in_storage() -> None:
    assert sql_outside_storage(SRC) == []


def test_the_sql_check_catches_a_statement_outside_storage(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "planted.py").write_text(
        "import sqlalchemy as sa\nfrom consortia.storage.tables import subject\n"
        "def ids(c):\n    return c.execute(sa.select(subject.c.id))\n"
    )
    assert sql_outside_storage(tmp_path) == [
        "services/planted.py:2: the tables",
        "services/planted.py:4: sa.select",
    ]
