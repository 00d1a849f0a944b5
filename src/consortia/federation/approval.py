"""Manual approval of analysis requests by the node's data steward.

With ``policy.manual_approval`` on, a node answers a request it has not seen before with
``"pending"`` and queues it here; the lead keeps asking until the steward approves or
denies it (or the lead's round timeout passes). An approval covers that exact request from
that requester, every round of it, and later identical requests.

The queue lives in memory or in a JSON file (shared with ``consortia`` CLI commands in
other processes; writes are atomic and serialised with a lock file; mode 0600).

>>> queue = ApprovalQueue()
>>> entry = queue.submit({"kind": "describe", "table": "t", "variable": "age"}, "lead")
>>> queue.approve(entry.id, by="steward").status
<ApprovalStatus.APPROVED: 'approved'>
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from consortia.exceptions import ConflictError, NotFoundError
from consortia.federation.protocol import canonical_json, sha256_hex
from consortia.federation.signing import utc_timestamp

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["ApprovalEntry", "ApprovalQueue", "ApprovalStatus", "request_digest"]


class ApprovalStatus(StrEnum):
    """Where a queued request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class ApprovalEntry(BaseModel):
    """One request waiting for, or decided by, the data steward."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    digest: str
    requester: str
    request: dict[str, Any]
    submitted_at: str
    status: ApprovalStatus = ApprovalStatus.PENDING
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None


def request_digest(request: Mapping[str, Any], requester: str) -> str:
    """The identity of a request for approval purposes (SHA-256 of requester and request)."""
    return sha256_hex(canonical_json({"requester": requester, "request": dict(request)}))


def _private(path: Path, flags: int) -> int:
    """A descriptor of ``path`` opened with ``flags``, created if need be; readable by its
    owner only (mode 0600: the queue holds who asked what)."""
    descriptor = os.open(path, flags | os.O_CREAT, 0o600)
    if os.name == "posix":
        os.fchmod(descriptor, 0o600)
    return descriptor


class ApprovalQueue:
    """The approval queue of one node: in memory (``path=None``) or in a JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, ApprovalEntry] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, ApprovalEntry]]:
        with self._lock:
            if self.path is None:
                yield self._entries
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self.path.with_name(self.path.name + ".lock")
            with os.fdopen(_private(lock_path, os.O_WRONLY | os.O_APPEND), "a") as lock_file:
                if fcntl is not None:
                    fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
                entries = self._read()
                before = dict(entries)
                yield entries
                if entries != before:
                    self._write(entries)

    def _read(self) -> dict[str, ApprovalEntry]:
        assert self.path is not None
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        return {
            entry["id"]: ApprovalEntry.model_validate(entry) for entry in data.get("entries", [])
        }

    def _write(self, entries: dict[str, ApprovalEntry]) -> None:
        assert self.path is not None
        text = json.dumps(
            {"entries": [entry.model_dump(mode="json") for entry in entries.values()]}, indent=2
        )
        temporary = self.path.with_name(self.path.name + ".tmp")
        with os.fdopen(_private(temporary, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as out:
            out.write(text + "\n")
        os.replace(temporary, self.path)

    def submit(self, request: Mapping[str, Any], requester: str) -> ApprovalEntry:
        """Queue a request (or return its existing entry, whatever its status)."""
        digest = request_digest(request, requester)
        entry_id = digest[:16]
        with self._locked() as entries:
            if entry_id not in entries:
                entries[entry_id] = ApprovalEntry(
                    id=entry_id,
                    digest=digest,
                    requester=requester,
                    request=dict(request),
                    submitted_at=utc_timestamp(),
                )
            return entries[entry_id]

    def find(self, request: Mapping[str, Any], requester: str) -> ApprovalEntry | None:
        """Return the entry of this request from this requester, if it was ever queued."""
        with self._locked() as entries:
            return entries.get(request_digest(request, requester)[:16])

    def list(self, status: ApprovalStatus | None = None) -> list[ApprovalEntry]:
        """Return the entries (optionally only those with ``status``), oldest first."""
        with self._locked() as entries:
            chosen = [e for e in entries.values() if status is None or e.status is status]
        return sorted(chosen, key=lambda entry: entry.submitted_at)

    def approve(self, entry_id: str, *, by: str, reason: str = "") -> ApprovalEntry:
        """Approve a pending request."""
        return self._decide(entry_id, ApprovalStatus.APPROVED, by, reason)

    def deny(self, entry_id: str, *, by: str, reason: str) -> ApprovalEntry:
        """Deny a pending request; the lead is told the reason."""
        return self._decide(entry_id, ApprovalStatus.DENIED, by, reason)

    def _decide(self, entry_id: str, status: ApprovalStatus, by: str, reason: str) -> ApprovalEntry:
        with self._locked() as entries:
            entry = entries.get(entry_id)
            if entry is None:
                raise NotFoundError(f"approval {entry_id!r} does not exist")
            if entry.status is not ApprovalStatus.PENDING:
                raise ConflictError(
                    f"approval {entry_id!r} was already {entry.status.value} by {entry.decided_by}"
                )
            decided = entry.model_copy(
                update={
                    "status": status,
                    "decided_by": by,
                    "decided_at": utc_timestamp(),
                    "reason": reason or None,
                }
            )
            entries[entry_id] = decided
            return decided
