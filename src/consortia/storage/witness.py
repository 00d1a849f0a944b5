"""Witnessed chain heads: what the trail holds now, and peers' signed statements kept here.

A node signs its chain heads (per chain: the number of events and the hash of the last)
and hands the statement to its peers; each keeps what it received in ``audit_witness``,
append-only like ``audit_event`` (database triggers refuse UPDATE and DELETE), the
signed message stored verbatim so that the node it is about can check its own signature
on it later. :mod:`consortia.federation.witness` signs, sends, fetches and compares; this
module only reads the trail and stores statements.

The heads are read from the events themselves, not from ``audit_head``: someone who
deletes the end of a chain can roll ``audit_head`` back too, but cannot make the events
a peer witnessed reappear.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, event

from consortia.storage.audit import audit_event, metadata

__all__ = [
    "ChainHead",
    "audit_witness",
    "event_hash_at",
    "latest_statement",
    "store_statement",
    "trail_heads",
    "witness_trigger_statements",
]

audit_witness = sa.Table(
    "audit_witness",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    # the node whose chain heads the statement gives (the peer that signed it)
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("received_at", sa.String(32), nullable=False),
    # sha256 of the canonical JSON of the statement's chains: the same heads are kept once
    sa.Column("heads_sha256", sa.String(64), nullable=False),
    # the signed message as received (canonical JSON): {"body": ..., "envelope": ...}
    sa.Column("statement", sa.Text, nullable=False),
)
sa.Index("ix_audit_witness_node", audit_witness.c.node, audit_witness.c.id)

_SQLITE_TRIGGERS = [
    "CREATE TRIGGER audit_witness_no_update BEFORE UPDATE ON audit_witness "
    "BEGIN SELECT RAISE(ABORT, 'witnessed heads are append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_witness_no_delete BEFORE DELETE ON audit_witness "
    "BEGIN SELECT RAISE(ABORT, 'witnessed heads are append-only: DELETE refused'); END",
]
_POSTGRES_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION audit_witness_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'witnessed heads are append-only: % refused', TG_OP; END $$",
    "CREATE TRIGGER audit_witness_no_change BEFORE UPDATE OR DELETE ON audit_witness "
    "FOR EACH ROW EXECUTE FUNCTION audit_witness_refuse()",
    "CREATE TRIGGER audit_witness_no_truncate BEFORE TRUNCATE ON audit_witness "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_witness_refuse()",
]


def witness_trigger_statements(dialect: str) -> list[str]:
    """The DDL that makes audit_witness append-only on ``dialect`` (used by the migration)."""
    return {"sqlite": _SQLITE_TRIGGERS, "postgresql": _POSTGRES_TRIGGERS}.get(dialect, [])


@event.listens_for(audit_witness, "after_create")
def _create_triggers(_table: sa.Table, connection: Connection, **_: Any) -> None:
    for statement in witness_trigger_statements(connection.dialect.name):
        connection.execute(sa.text(statement))


@dataclass(frozen=True, slots=True)
class ChainHead:
    """One chain's head as the events give it: how many events, and the last one's hash."""

    chain: str
    length: int
    hash: str


def trail_heads(connection: Connection, *, exclude: Iterable[str] = ()) -> list[ChainHead]:
    """Every chain's last event (by seq), sorted by chain; ``exclude`` names chains left out.

    One indexed query: the last event of each chain is found through the
    ``(chain, seq)`` unique index.
    """
    last = (
        sa.select(audit_event.c.chain, sa.func.max(audit_event.c.seq).label("seq"))
        .group_by(audit_event.c.chain)
        .subquery()
    )
    query = (
        sa.select(audit_event.c.chain, audit_event.c.seq, audit_event.c.hash)
        .join(last, sa.and_(last.c.chain == audit_event.c.chain, last.c.seq == audit_event.c.seq))
        .order_by(audit_event.c.chain)
    )
    skipped = set(exclude)
    return [
        ChainHead(row.chain, int(row.seq), row.hash)
        for row in connection.execute(query)
        if row.chain not in skipped
    ]


def event_hash_at(connection: Connection, chain: str, seq: int) -> str | None:
    """The stored hash of event ``seq`` of ``chain``, or ``None`` if there is no such event."""
    query = sa.select(audit_event.c.hash).where(
        audit_event.c.chain == chain, audit_event.c.seq == seq
    )
    value = connection.execute(query).scalar_one_or_none()
    return None if value is None else str(value)


def latest_statement(connection: Connection, node: str) -> str | None:
    """The newest statement stored about ``node`` (its signed message as JSON text)."""
    query = (
        sa.select(audit_witness.c.statement)
        .where(audit_witness.c.node == node)
        .order_by(audit_witness.c.id.desc())
        .limit(1)
    )
    value = connection.execute(query).scalar_one_or_none()
    return None if value is None else str(value)


def store_statement(
    connection: Connection, *, node: str, received_at: str, heads_sha256: str, statement: str
) -> bool:
    """Keep a verified statement about ``node``; ``False`` (nothing stored) when the newest
    one already held gives the same heads, so a node repeating itself costs no row."""
    query = (
        sa.select(audit_witness.c.heads_sha256)
        .where(audit_witness.c.node == node)
        .order_by(audit_witness.c.id.desc())
        .limit(1)
    )
    if connection.execute(query).scalar_one_or_none() == heads_sha256:
        return False
    connection.execute(
        audit_witness.insert().values(
            node=node, received_at=received_at, heads_sha256=heads_sha256, statement=statement
        )
    )
    return True
