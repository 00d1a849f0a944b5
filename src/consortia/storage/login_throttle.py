"""Counters of failed sign-ins per client address and per account name, in the database.

Several server processes serve one node, so the counters cannot live in a process's
memory: each is a row of ``login_throttle`` keyed by (kind, subject), counting failures
in a fixed window that starts at the first failure. Rows whose window is over are pruned
(:meth:`LoginThrottleRepository.prune`), and the table never holds more than
:data:`MAX_ROWS` rows (the oldest windows go first). The rules (limits, what resets a
counter, what is audited) are in :mod:`consortia.services.login_limits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from consortia.storage.tables import UTCDateTime, login_throttle

__all__ = ["MAX_ROWS", "LoginThrottleRepository", "ThrottleRecord"]

#: The most rows kept: beyond, the oldest windows are dropped (see docs/roles.md).
MAX_ROWS = 50_000
_T = login_throttle.c


@dataclass(frozen=True, slots=True)
class ThrottleRecord:
    """Failures counted for one address or account since ``window_start``."""

    kind: str
    subject: str
    window_start: datetime
    failures: int
    refused: int


def _record(row: Any) -> ThrottleRecord:
    return ThrottleRecord(row.kind, row.subject, row.window_start, row.failures, row.refused)


class LoginThrottleRepository:
    """The ``login_throttle`` rows, in the caller's transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get(self, keys: list[tuple[str, str]]) -> list[ThrottleRecord]:
        """The rows of ``keys`` ((kind, subject) pairs) that exist."""
        if not keys:
            return []
        wanted = sa.or_(*(sa.and_(_T.kind == kind, _T.subject == subj) for kind, subj in keys))
        rows = self.connection.execute(sa.select(login_throttle).where(wanted))
        return [_record(row) for row in rows]

    def count_failure(
        self, kind: str, subject: str, *, now: datetime, window: timedelta
    ) -> ThrottleRecord:
        """Add one failure to ``(kind, subject)`` (a new window if the last one is over)."""
        insert = (
            postgresql.insert(login_throttle)
            if self.connection.dialect.name == "postgresql"
            else sqlite.insert(login_throttle)
        )
        over = _T.window_start <= sa.literal(now - window, UTCDateTime())
        statement = insert.values(
            kind=kind, subject=subject, window_start=now, failures=1, refused=0
        ).on_conflict_do_update(
            index_elements=[_T.kind, _T.subject],
            set_={
                "failures": sa.case((over, 1), else_=_T.failures + 1),
                "window_start": sa.case(
                    (over, sa.literal(now, UTCDateTime())), else_=_T.window_start
                ),
                "refused": sa.case((over, 0), else_=_T.refused),
            },
        )
        self.connection.execute(statement)
        (record,) = self.get([(kind, subject)])
        return record

    def count_refusal(self, kind: str, subject: str) -> None:
        """Count one sign-in refused while ``(kind, subject)`` was over its limit."""
        self.connection.execute(
            login_throttle.update()
            .where(_T.kind == kind, _T.subject == subject)
            .values(refused=_T.refused + 1)
        )

    def remove(self, kind: str, subject: str) -> ThrottleRecord | None:
        """Forget ``(kind, subject)``; return the row it had."""
        found = self.get([(kind, subject)])
        self.connection.execute(
            login_throttle.delete().where(_T.kind == kind, _T.subject == subject)
        )
        return found[0] if found else None

    def prune(self, *, before: datetime, limit: int = 100) -> list[ThrottleRecord]:
        """Delete the rows whose window started before ``before`` (over), and the oldest
        beyond :data:`MAX_ROWS`; return (at most ``limit`` of) those that had refusals."""
        over = _T.window_start < before
        refused = self.connection.execute(
            sa.select(login_throttle)
            .where(over, _T.refused > 0)
            .order_by(_T.window_start)
            .limit(limit)
        )
        summaries = [_record(row) for row in refused]
        # rows with refusals beyond ``limit`` wait for the next prune, to be summarised
        self.connection.execute(login_throttle.delete().where(over, _T.refused == 0))
        for summary in summaries:
            self.connection.execute(
                login_throttle.delete().where(
                    _T.kind == summary.kind, _T.subject == summary.subject
                )
            )
        count = self.connection.execute(sa.select(sa.func.count()).select_from(login_throttle))
        excess = int(count.scalar_one()) - MAX_ROWS
        if excess > 0:
            oldest = (
                sa.select(_T.window_start)
                .order_by(_T.window_start)
                .offset(excess - 1)
                .limit(1)
                .scalar_subquery()
            )
            self.connection.execute(login_throttle.delete().where(_T.window_start <= oldest))
        return summaries
