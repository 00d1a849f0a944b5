"""The analysis requests queued for the data steward's manual approval (``approval_request``).

One row per requester and request, identified by their SHA-256 (``digest``; ``id`` is its
first 16 hex digits). The row keeps the request as the analysis specification the
requester sent (kind, table, variable names, options: never a row's value), who asked,
when, and the decision: who decided, when and why.

The repository runs inside the caller's transaction and never commits. A decision is a
conditional update (``WHERE status = 'pending'``): of two processes deciding the same
request at once, exactly one changes the row; the other sees no row changed and the
service refuses it (409), whatever the database (PostgreSQL re-checks the condition after
the first commit; SQLite serialises writers).

>>> from consortia.storage.db import make_engine
>>> from consortia.storage.migrations import upgrade
>>> engine = make_engine("sqlite://"); upgrade(engine)
>>> with engine.begin() as connection:
...     queue = ApprovalRepository(connection)
...     entry = queue.submit({"kind": "count", "table": "t"}, "lead", now=_now())
...     queue.decide(entry.id, ApprovalStatus.APPROVED, by="s@x.example", reason="", now=_now())
...     queue.decide(entry.id, ApprovalStatus.DENIED, by="s@x.example", reason="no", now=_now())
...     queue.get(entry.id).status.value
True
False
'approved'
>>> engine.dispose()
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from consortia.storage.tables import CODE_LENGTH, approval_request

__all__ = ["ApprovalRecord", "ApprovalRepository", "ApprovalStatus", "request_digest"]


class ApprovalStatus(StrEnum):
    """Where a queued request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_digest(request: Mapping[str, Any], requester: str) -> str:
    """The identity of a request for approval purposes (SHA-256 of requester and request).

    >>> request_digest({"kind": "count"}, "lead") == request_digest({"kind": "count"}, "lead")
    True
    """
    text = _canonical({"requester": requester, "request": dict(request)})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One request waiting for, or decided by, the data steward."""

    id: str
    digest: str
    requester: str
    kind: str
    request: dict[str, Any]
    submitted_at: datetime
    status: ApprovalStatus
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


class ApprovalRepository:
    """The approval queue of the node, in the caller's transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @staticmethod
    def _record(row: Any) -> ApprovalRecord:
        return ApprovalRecord(
            id=row.id,
            digest=row.digest,
            requester=row.requester,
            kind=row.kind,
            request=json.loads(row.request),
            submitted_at=row.created_at,
            status=ApprovalStatus(row.status),
            decided_by=row.decided_by,
            decided_at=row.decided_at,
            reason=row.reason,
        )

    def get(self, entry_id: str) -> ApprovalRecord | None:
        """The request with id ``entry_id``, if it was ever queued."""
        row = self.connection.execute(
            sa.select(approval_request).where(approval_request.c.id == entry_id)
        ).first()
        return None if row is None else self._record(row)

    def find(self, request: Mapping[str, Any], requester: str) -> ApprovalRecord | None:
        """The entry of this request from this requester, if it was ever queued."""
        return self.get(request_digest(request, requester)[:16])

    def list(self, status: ApprovalStatus | None = None) -> list[ApprovalRecord]:
        """The entries (only those with ``status``, if given), oldest first."""
        query = sa.select(approval_request).order_by(
            approval_request.c.created_at, approval_request.c.id
        )
        if status is not None:
            query = query.where(approval_request.c.status == status.value)
        return [self._record(row) for row in self.connection.execute(query)]

    def submit(
        self, request: Mapping[str, Any], requester: str, *, now: datetime
    ) -> ApprovalRecord:
        """Queue a request (or return its existing entry, whatever its status).

        Two processes queuing the same request at once insert one row: the loser's insert
        fails on the key, inside a savepoint, and it reads the winner's row.
        """
        digest = request_digest(request, requester)
        existing = self.get(digest[:16])
        if existing is not None:
            return existing
        kind = request.get("kind")
        values = {
            "id": digest[:16],
            "digest": digest,
            "requester": requester,
            "kind": kind[:CODE_LENGTH] if isinstance(kind, str) else "?",
            "request": _canonical(dict(request)),
            "created_at": now,
            "status": ApprovalStatus.PENDING.value,
        }
        try:
            with self.connection.begin_nested():
                self.connection.execute(approval_request.insert().values(**values))
        except IntegrityError:
            pass
        stored = self.get(digest[:16])
        assert stored is not None
        return stored

    def decide(
        self, entry_id: str, status: ApprovalStatus, *, by: str, reason: str, now: datetime
    ) -> bool:
        """Record a decision on a pending request; False (nothing changed) if it is not
        pending any more (or does not exist)."""
        result = self.connection.execute(
            approval_request.update()
            .where(
                approval_request.c.id == entry_id,
                approval_request.c.status == ApprovalStatus.PENDING.value,
            )
            .values(status=status.value, decided_by=by, decided_at=now, reason=reason or None)
        )
        return result.rowcount == 1
