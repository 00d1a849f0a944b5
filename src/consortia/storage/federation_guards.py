"""State a node's federation endpoint shares between its processes: the nonces of accepted
messages, and per source the window of the last refusal summary logged.

Both are decided by the database in one statement that cannot succeed twice, so two
processes (or two hosts on one PostgreSQL) never both accept one nonce, nor both log a
summary for one source in one window.

>>> from datetime import UTC, datetime, timedelta
>>> from consortia.storage.db import make_engine
>>> from consortia.storage.migrations import upgrade
>>> engine = make_engine("sqlite://")
>>> upgrade(engine)
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> with engine.begin() as connection:
...     first = remember_nonce(connection, "lead", "ab" * 16, now + timedelta(minutes=5), now)
...     again = remember_nonce(connection, "lead", "ab" * 16, now + timedelta(minutes=5), now)
>>> first, again
(True, False)
>>> minute = timedelta(minutes=1)
>>> with engine.begin() as connection:
...     [admit_refusal(connection, "10.0.0.9", now + timedelta(seconds=s), minute)
...      for s in (0, 10, 20, 61)]
[0, None, None, 2]
>>> engine.dispose()
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.storage.tables import federation_nonce, federation_refusal

__all__ = ["admit_refusal", "remember_nonce"]

#: Rows of sources not heard from for this long are deleted (their unlogged count with them).
_FORGET_SOURCES_AFTER = timedelta(days=1)


def _insert_or_skip(connection: Connection, table: sa.Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for this connection's database."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def remember_nonce(
    connection: Connection, sender: str, nonce: str, expires_at: datetime, now: datetime
) -> bool:
    """Record an accepted message's nonce until ``expires_at``; False if it is recorded
    already (a replay). Nonces whose time has passed are deleted first."""
    connection.execute(sa.delete(federation_nonce).where(federation_nonce.c.expires_at < now))
    inserted = connection.execute(
        _insert_or_skip(connection, federation_nonce)
        .values(sender=sender, nonce=nonce, expires_at=expires_at)
        .returning(federation_nonce.c.nonce)
    )
    return inserted.first() is not None


def admit_refusal(
    connection: Connection, source: str, now: datetime, window: timedelta
) -> int | None:
    """Whether a refused request from ``source`` is logged now.

    The first refusal of a window is: the result is the number of refusals from ``source``
    left unlogged since the previous summary. Later ones in the window are only counted
    (``None``).
    """
    table = federation_refusal
    connection.execute(sa.delete(table).where(table.c.window_start < now - _FORGET_SOURCES_AFTER))
    opened = connection.execute(
        _insert_or_skip(connection, table)
        .values(source=source, window_start=now, unlogged=0)
        .returning(table.c.source)
    )
    if opened.first() is not None:
        return 0
    # the row stays locked until the transaction ends (PostgreSQL; a SQLite writer holds
    # the whole database), so the count read is the count replaced
    row = connection.execute(
        sa.select(table.c.window_start, table.c.unlogged)
        .where(table.c.source == source)
        .with_for_update()
    ).one()
    if row.window_start > now - window:
        connection.execute(
            sa.update(table).where(table.c.source == source).values(unlogged=table.c.unlogged + 1)
        )
        return None
    connection.execute(
        sa.update(table).where(table.c.source == source).values(window_start=now, unlogged=0)
    )
    return int(row.unlogged)
