"""The node's federation audit trail behind one small interface, :class:`AuditSink`.

Every request a node receives is appended with the decision (and the rule that refused
it) and exactly what was released. For now the trail is an append-only JSON-lines file per
node with a SHA-256 hash chain, ``hash = sha256(prev_hash ‖ canonical_json(record))`` over
the record's ``{"event", "seq", "time"}``: the chaining of :mod:`consortia.hashchain`, which
the database audit trail uses too (a node with a database writes there instead, see
:mod:`consortia.federation.database_audit`).

>>> sink = MemoryAuditSink()
>>> sink.append({"action": "federation.request", "decision": "ok"})
>>> verify_records(sink.records)
1
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from consortia.exceptions import FederationError
from consortia.federation.signing import utc_timestamp
from consortia.hashchain import GENESIS, Link, LinkProblem, canonical_json, link_hash, verify_chain

__all__ = [
    "AuditChainError",
    "AuditSink",
    "JsonlAuditSink",
    "MemoryAuditSink",
    "chain_record",
    "read_audit_log",
    "verify_audit_log",
    "verify_records",
]


class AuditChainError(FederationError):
    """The audit file was altered: a record's hash or link does not match."""


class AuditSink(Protocol):
    """Where a node writes its audit events; ``append`` must be durable when it returns."""

    def append(self, event: dict[str, Any]) -> None:
        """Append one event (JSON values only)."""
        ...


def chain_record(prev_hash: str, seq: int, event: Mapping[str, Any]) -> dict[str, Any]:
    """Return the stored record of ``event``: sequence, time, link and hash."""
    return _chain(prev_hash, seq, event)[0]


def _chain(prev_hash: str, seq: int, event: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The record of ``event`` and its canonical JSON line, serialising the event once.

    Keys sort as ``event`` < ``hash`` < ``prev_hash`` < ``seq`` < ``time``, so both the hashed
    body ``{"event","seq","time"}`` and the stored line are spliced around the event's bytes
    (a released aggregate can be large): the bytes are those of :func:`canonical_json`.
    """
    stamp = utc_timestamp()
    event_json = canonical_json(dict(event))
    tail = b',"seq":' + canonical_json(seq) + b',"time":' + canonical_json(stamp) + b"}"
    digest = link_hash(prev_hash, b'{"event":' + event_json + tail)
    line = (
        b'{"event":'
        + event_json
        + b',"hash":'
        + canonical_json(digest)
        + b',"prev_hash":'
        + canonical_json(prev_hash)
        + tail
    )
    record = {"seq": seq, "time": stamp, "event": dict(event), "prev_hash": prev_hash}
    record["hash"] = digest
    return record, line


def _links(records: Iterable[Mapping[str, Any]]) -> Iterator[Link]:
    for record in records:
        body = {"seq": record.get("seq"), "time": record.get("time"), "event": record.get("event")}
        seq, prev, digest = record.get("seq"), record.get("prev_hash"), record.get("hash")
        yield Link(
            seq if isinstance(seq, int) else -1,
            prev if isinstance(prev, str) else "",
            digest if isinstance(digest, str) else "",
            canonical_json(body),
        )


def verify_records(records: Iterable[Mapping[str, Any]]) -> int:
    """Recompute the chain; return the number of records or raise :class:`AuditChainError`."""
    records = list(records)
    check = verify_chain(_links(records))
    if check.ok:
        return check.length
    number = check.length + 1
    if check.kind is LinkProblem.SEQUENCE:
        found = records[check.length].get("seq")
        raise AuditChainError(f"audit record {number}: sequence number {found}")
    if check.kind is LinkProblem.LINK:
        raise AuditChainError(f"audit record {number}: does not link to record {number - 1}")
    raise AuditChainError(f"audit record {number}: content does not match its hash")


class MemoryAuditSink:
    """A hash-chained audit trail kept in memory (local analyses and tests)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def events(self) -> list[dict[str, Any]]:
        """The appended events, oldest first."""
        return [record["event"] for record in self.records]

    def append(self, event: dict[str, Any]) -> None:
        """Append one event to the in-memory chain."""
        with self._lock:
            prev = self.records[-1]["hash"] if self.records else GENESIS
            self.records.append(chain_record(prev, len(self.records) + 1, event))


class JsonlAuditSink:
    """An append-only JSON-lines audit file with a SHA-256 hash chain.

    The last hash is read once when the sink opens; every append is flushed and fsynced.
    The file is readable by its owner only (mode 0600): it records who asked what.
    One sink per file: two processes appending to one file would fork the chain.
    """

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self._fsync = fsync
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.exists():
            path.chmod(0o600)  # a file left readable by an older version is closed now
        records = read_audit_log(path) if path.exists() else []
        self._seq = len(records)
        self._prev = str(records[-1]["hash"]) if records else GENESIS

    def append(self, event: dict[str, Any]) -> None:
        """Append one event as one line, chained to the previous one."""
        with self._lock:
            record, line = _chain(self._prev, self._seq + 1, event)
            line += b"\n"
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "ab") as handle:
                handle.write(line)
                handle.flush()
                if self._fsync:
                    os.fsync(handle.fileno())
            self._seq += 1
            self._prev = record["hash"]

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events in the file, oldest first."""
        return [record["event"] for record in read_audit_log(self.path)]


def read_audit_log(path: Path) -> list[dict[str, Any]]:
    """Read the records of an audit file (raise :class:`AuditChainError` on a broken line)."""
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AuditChainError(f"{path}:{number}: not a JSON record ({exc.msg})") from None
            if not isinstance(record, dict):
                raise AuditChainError(f"{path}:{number}: not a JSON object")
            records.append(record)
    return records


def verify_audit_log(path: Path) -> int:
    """Verify an audit file's hash chain; return its number of records."""
    try:
        return verify_records(read_audit_log(path))
    except AuditChainError as exc:
        raise AuditChainError(f"{path}: {exc}") from None
