"""The federation audit log and the approval queue say who asked what: owner-only modes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from consortia.federation.audit import JsonlAuditSink


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common 022: without care, files come out 0644 (readable by every local user)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_federation_audit_log_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "federation.jsonl"
    JsonlAuditSink(path, fsync=False).append({"action": "federation.request"})
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700


def test_an_audit_log_left_readable_is_closed_when_the_node_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "federation.jsonl"
    JsonlAuditSink(path, fsync=False).append({"action": "federation.request"})
    path.chmod(0o644)
    sink = JsonlAuditSink(path, fsync=False)
    assert _mode(path) == 0o600
    sink.append({"action": "federation.request"})
    assert len(sink.events) == 2
