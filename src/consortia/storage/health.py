"""What ``/api/v1/health`` reports of the database: its revision, and whether every chain's
head record agrees with the chain's last event (two index lookups per chain, so it is cheap
enough to poll; ``consortia audit verify`` checks every hash)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from consortia.hashchain import GENESIS
from consortia.storage.audit import audit_event, audit_head

__all__ = ["chain_count", "database_revision", "head_problems"]


def database_revision(connection: Connection) -> str | None:
    """The schema revision the database is at (``None``: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def head_problems(connection: Connection) -> list[str]:
    """Each chain whose head record is not its last event, said in one line."""
    last = audit_event.alias("last")
    beyond = audit_event.alias("beyond")
    query = (
        sa.select(
            audit_head.c.chain,
            audit_head.c.seq,
            audit_head.c.hash,
            last.c.hash.label("event_hash"),
            sa.select(beyond.c.seq)
            .where(beyond.c.chain == audit_head.c.chain, beyond.c.seq == audit_head.c.seq + 1)
            .scalar_subquery()
            .label("next_seq"),
        )
        .select_from(
            audit_head.outerjoin(
                last, sa.and_(last.c.chain == audit_head.c.chain, last.c.seq == audit_head.c.seq)
            )
        )
        .order_by(audit_head.c.chain)
    )
    problems = []
    for row in connection.execute(query):
        expected = GENESIS if row.seq == 0 else row.event_hash
        if row.next_seq is not None:
            problems.append(f"chain {row.chain!r}: events go on past its head {row.seq}")
        elif expected is None:
            problems.append(f"chain {row.chain!r}: its head event {row.seq} is missing")
        elif expected != row.hash:
            problems.append(f"chain {row.chain!r}: its head does not match event {row.seq}")
    return problems


def chain_count(connection: Connection) -> int:
    """How many audit chains the node has."""
    return int(connection.execute(sa.select(sa.func.count()).select_from(audit_head)).scalar_one())
