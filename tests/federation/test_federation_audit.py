"""The node's hash-chained audit file, and the data steward's approval queue."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from consortia.federation.audit import (
    AuditChainError,
    JsonlAuditSink,
    read_audit_log,
    verify_audit_log,
)
from consortia.federation.transport import InProcessTransport


def test_every_request_and_exactly_what_was_released_is_in_a_verifiable_chain(
    make_federation: Any, tmp_path: Path
) -> None:
    federation = make_federation()
    path = tmp_path / "audit" / "sgh.jsonl"
    federation.runners["sgh"].audit = JsonlAuditSink(path)
    request = {"kind": "describe", "table": "trial", "variable": "age"}
    result = asyncio.run(
        federation.coordinator.run_analysis(
            request, federation.handles, InProcessTransport(federation.runners)
        )
    ).to_dict()
    (record,) = read_audit_log(path)
    event = record["event"]
    assert event["sender"] == "lead"
    assert event["request"] == request
    assert event["decision"] == "released"
    assert event["n"] == result["nodes"][0]["n"]
    assert event["released"]["n"] == event["n"]
    assert "m2" in event["released"]
    assert verify_audit_log(path) == 1


def test_a_reopened_audit_file_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    JsonlAuditSink(path).append({"action": "a"})
    JsonlAuditSink(path).append({"action": "b"})
    assert verify_audit_log(path) == 2
    assert [r["seq"] for r in read_audit_log(path)] == [1, 2]


def test_an_altered_audit_record_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path, fsync=False)
    for index in range(3):
        sink.append({"action": "federation.request", "index": index})
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["event"]["index"] = 99
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditChainError, match="record 2: content does not match its hash"):
        verify_audit_log(path)


def test_a_deleted_audit_record_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path, fsync=False)
    for index in range(3):
        sink.append({"index": index})
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    with pytest.raises(AuditChainError, match="record 2"):
        verify_audit_log(path)
