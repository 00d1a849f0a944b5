"""The pure core (domain/, stats/) never imports the web, the database or templates."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "consortia"
FORBIDDEN = {"fastapi", "sqlalchemy", "jinja2", "starlette", "uvicorn", "alembic", "httpx"}
PURE_LAYERS = ["domain", "stats"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
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


@pytest.mark.parametrize("layer", PURE_LAYERS)
def test_pure_layers_import_no_outer_consortia_layer(layer: str) -> None:
    outer = {
        "consortia.storage",
        "consortia.services",
        "consortia.api",
        "consortia.web",
        "consortia.federation",
        "consortia.cli",
        "consortia.app",
        "consortia.auth",
    }
    for path in sorted((SRC / layer).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not any(node.module.startswith(o) for o in outer), (path, node.module)


def test_the_layer_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from sqlalchemy import select\nimport fastapi.routing\n")
    assert _imports(module) & FORBIDDEN == {"sqlalchemy", "fastapi"}
