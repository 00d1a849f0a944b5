"""Exported files hold subjects' data (identifiers too, with a reason): owner-only modes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.services import exports, imports, studies
from consortia.services.exports import ExportFormat, ExportRequest

STUDY = "CART-LBCL"
ADMIN = Principal(
    7,
    "dm@sg.example",
    "DM",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR, Role.AUDITOR)),
)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common 022: without care, files come out 0644 (readable by every local user)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("fmt", [ExportFormat.CSV, ExportFormat.ODM])
def test_an_export_with_identifiers_is_written_readable_by_its_owner_only(
    engine: sa.Engine, tmp_path: Path, usual_umask: None, fmt: ExportFormat
) -> None:
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    records = synthesize("cart-lbcl", subjects=3, site="SG01", seed=5).write_csv(tmp_path / "r.csv")
    imports.import_file(engine, ADMIN, STUDY, records)
    out = tmp_path / ("export" if fmt is ExportFormat.CSV else "export.xml")
    request = ExportRequest(fmt, include_identifiers=True, reason="ethics-approved re-contact")
    exports.export_study(engine, ADMIN, STUDY, request, out)
    written = sorted(out.iterdir()) if out.is_dir() else [out]
    assert written
    assert {path.name: _mode(path) for path in written} == {path.name: 0o600 for path in written}
    if out.is_dir():
        assert _mode(out) == 0o700
