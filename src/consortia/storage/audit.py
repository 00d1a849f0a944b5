"""The audit trail: append-only, hash-chained, verifiable (21 CFR Part 11 §11.10(e)).

Each event stores who did what to which record, when (UTC), the values before and after
and the reason, and ``hash = sha256(prev_hash ‖ canonical_json(event))`` (the chaining of
:mod:`consortia.hashchain`). Events form one
chain per *chain key* (a study, or ``node`` for node-level events), so appends to
different studies never wait for each other; within a chain the head row is locked for
the length of the writing transaction (the write already holds a lock on SQLite).

Database triggers refuse every UPDATE and DELETE of an audit row, on SQLite and on
PostgreSQL; :func:`verify_trail` recomputes every hash and reports the first broken link.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, event

from consortia.hashchain import GENESIS, Link, canonical_json, link_hash, verify_chain
from consortia.storage.prepared import Pending, Prepared

metadata = sa.MetaData()

audit_event = sa.Table(
    "audit_event",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("chain", sa.String(128), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(320), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("entity_type", sa.String(64), nullable=False),
    sa.Column("entity_id", sa.String(256), nullable=False),
    sa.Column("site", sa.String(64), nullable=True),
    sa.Column("before", sa.Text, nullable=True),
    sa.Column("after", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("chain", "seq", name="uq_audit_event_chain_seq"),
)
sa.Index("ix_audit_event_entity", audit_event.c.entity_type, audit_event.c.entity_id)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("chain", sa.String(128), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

_SQLITE_TRIGGERS = [
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END",
]
_POSTGRES_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION audit_event_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP; END $$",
    "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_refuse()",
    "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse()",
]


def trigger_statements(dialect: str) -> list[str]:
    """The DDL that makes audit_event append-only on ``dialect`` (used by migrations too)."""
    return {"sqlite": _SQLITE_TRIGGERS, "postgresql": _POSTGRES_TRIGGERS}.get(dialect, [])


@event.listens_for(audit_event, "after_create")
def _create_triggers(_table: sa.Table, connection: Connection, **_: Any) -> None:
    for statement in trigger_statements(connection.dialect.name):
        connection.execute(sa.text(statement))


_ENCODE_STRING: Callable[[str], str] = json.encoder.encode_basestring


def stored_json(value: Any) -> str:
    """The text an event's ``before``/``after`` is stored as: its lenient canonical JSON (a
    value that is not JSON, a ``date``, as its text): an event is never refused for it."""
    return canonical_json(value, lenient=True).decode("utf-8")


def _json_field(value: Any) -> str:
    """``value`` as :func:`canonical_json` writes it inside an object (fast for scalars)."""
    if type(value) is str:
        return _ENCODE_STRING(value)
    if value is None:
        return "null"
    if type(value) is int:
        return int.__repr__(value)
    return stored_json(value)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the audit trail."""

    chain: str
    seq: int
    at: str
    actor: str
    action: str
    entity_type: str
    entity_id: str
    site: str | None
    before: Any
    after: Any
    reason: str | None
    prev_hash: str
    hash: str

    def payload(self) -> dict[str, Any]:
        """What the hash covers: everything but the hashes themselves."""
        return {
            "chain": self.chain,
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "site": self.site,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
        }


def event_hash(prev_hash: str, payload: Mapping[str, Any]) -> str:
    """``sha256(prev_hash ‖ canonical_json(payload))`` as hex."""
    return link_hash(prev_hash, canonical_json(dict(payload), lenient=True))


def _stored_body(fields: Mapping[str, Any]) -> bytes:
    """What the hash of an audit_event row covers, as stored (``before`` and ``after`` as
    their canonical JSON text, or ``None``): what :func:`append_events` writes and
    :func:`verify_trail` checks. It is the canonical JSON of the decoded payload (tests
    compare :func:`event_hash` with the stored hashes)."""
    before, after = fields["before"], fields["after"]
    text = _payload_json(
        fields, "null" if before is None else before, "null" if after is None else after
    )
    return text.encode("utf-8")


def _payload_json(fields: Mapping[str, Any], before: str, after: str) -> str:
    """``canonical_json`` of an event's payload, given ``before`` and ``after`` already as
    canonical JSON: each value is encoded once, not once to store and once to hash. The
    keys are written in sorted order, each value as :func:`canonical_json` writes it, so
    the text is the same."""
    f = _json_field
    return (
        f'{{"action":{f(fields["action"])},"actor":{f(fields["actor"])},"after":{after},'
        f'"at":{f(fields["at"])},"before":{before},"chain":{f(fields["chain"])},'
        f'"entity_id":{f(fields["entity_id"])},"entity_type":{f(fields["entity_type"])},'
        f'"reason":{f(fields["reason"])},"seq":{f(fields["seq"])},"site":{f(fields["site"])}}}'
    )


def audit_timestamp() -> str:
    """The current time as an unambiguous UTC ISO 8601 string (microseconds, 'Z')."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_HEAD_SELECT = sa.select(audit_head.c.seq, audit_head.c.hash).where(
    audit_head.c.chain == sa.bindparam("chain")
)
_HEAD = Prepared(_HEAD_SELECT)
_HEAD_FOR_UPDATE = Prepared(_HEAD_SELECT.with_for_update())
_MOVE_HEAD = Prepared(audit_head.update().where(audit_head.c.chain == sa.bindparam("where_chain")))
_INSERT_EVENT = Prepared(audit_event.insert())


def _lock_head(connection: Connection, chain: str) -> tuple[int, str]:
    query = _HEAD_FOR_UPDATE if connection.dialect.name == "postgresql" else _HEAD
    row = query.first(connection, {"chain": chain})
    if row is not None:
        return int(row.seq), str(row.hash)
    if connection.dialect.name == "postgresql":
        connection.execute(
            sa.text(
                "INSERT INTO audit_head (chain, seq, hash) VALUES (:chain, 0, :hash) "
                "ON CONFLICT (chain) DO NOTHING"
            ),
            {"chain": chain, "hash": GENESIS},
        )
        row = query.one(connection, {"chain": chain})
        return int(row.seq), str(row.hash)
    connection.execute(audit_head.insert().values(chain=chain, seq=0, hash=GENESIS))
    return 0, GENESIS


def lock_head(connection: Connection, chain: str) -> Pending:
    """Send the read of ``chain``'s head, locked for the rest of the transaction on
    PostgreSQL (SQLite's write transaction holds the database's lock already); hand it to
    :func:`append_events_at`. In a :func:`~consortia.storage.prepared.pipelined` block it
    travels with the statements sent beside it."""
    query = _HEAD_FOR_UPDATE if connection.dialect.name == "postgresql" else _HEAD
    return query.send(connection, {"chain": chain})


def append_events(connection: Connection, chain: str, entries: Sequence[Mapping[str, Any]]) -> int:
    """Append events to ``chain`` inside the caller's transaction; return the last seq.

    Each entry has ``actor, action, entity_type, entity_id`` and optionally ``site,
    before, after, reason, at``; ``after_json``, the text :func:`stored_json` made of
    ``after``, may stand for ``after`` (a bulk import encodes in its worker processes). The
    caller's transaction commits them together with the change they describe, or neither.
    """
    if not entries:
        return _lock_head(connection, chain)[0]
    return append_events_at(connection, chain, lock_head(connection, chain), entries)


def append_events_at(
    connection: Connection, chain: str, head: Pending, entries: Sequence[Mapping[str, Any]]
) -> int:
    """:func:`append_events` after :func:`lock_head` sent ``head``'s read and lock: the
    events are inserted in one statement and the head moved in another, both sent (in a
    pipelined block, without waiting for their answers)."""
    row = head.first()
    seq, prev = _lock_head(connection, chain) if row is None else (int(row.seq), str(row.hash))
    now = audit_timestamp()  # one time for the events of one call (they commit together)
    rows = []
    for entry in entries:
        seq += 1
        before, after = entry.get("before"), entry.get("after")
        row = {
            "chain": chain,
            "seq": seq,
            "at": entry.get("at") or now,
            "actor": entry["actor"],
            "action": entry["action"],
            "entity_type": entry["entity_type"],
            "entity_id": str(entry["entity_id"]),
            "site": entry.get("site"),
            "before": None if before is None else stored_json(before),
            "after": entry.get("after_json") if after is None else stored_json(after),
            "reason": entry.get("reason"),
            "prev_hash": prev,
        }
        prev = row["hash"] = link_hash(prev, _stored_body(row))
        rows.append(row)
    _INSERT_EVENT.send_run(connection, rows)
    _MOVE_HEAD.send_run(connection, {"where_chain": chain, "seq": seq, "hash": prev})
    return seq


def append_event(connection: Connection, chain: str, **entry: Any) -> int:
    """Append one event (see :func:`append_events`)."""
    return append_events(connection, chain, [entry])


def row_event(row: Any) -> AuditEvent:
    """An audit_event row as an :class:`AuditEvent` (before/after decoded from JSON)."""
    return AuditEvent(
        chain=row.chain,
        seq=int(row.seq),
        at=row.at,
        actor=row.actor,
        action=row.action,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        site=row.site,
        before=None if row.before is None else json.loads(row.before),
        after=None if row.after is None else json.loads(row.after),
        reason=row.reason,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def iter_events(
    connection: Connection,
    *,
    chain: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    batch: int = 5000,
) -> Generator[AuditEvent, None, None]:
    """Stream events in chain order without holding them all in memory."""
    query = sa.select(audit_event).order_by(audit_event.c.chain, audit_event.c.seq)
    if chain is not None:
        query = query.where(audit_event.c.chain == chain)
    if entity_type is not None:
        query = query.where(audit_event.c.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(audit_event.c.entity_id == entity_id)
    result = connection.execution_options(stream_results=True, yield_per=batch).execute(query)
    try:
        for row in result:
            yield row_event(row)
    finally:
        result.close()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of :func:`verify_trail`: how many events checked, and the first break."""

    events: int
    chains: int
    broken_chain: str | None = None
    broken_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.events} events in {self.chains} chains"
        return (
            f"audit trail BROKEN at chain {self.broken_chain!r} event {self.broken_seq}: "
            f"{self.problem} ({self.events} events checked before it)"
        )


def verify_trail(connection: Connection, *, chain: str | None = None) -> ChainReport:
    """Recompute every hash of the trail (or of one ``chain``) in order; stop at the first
    broken link, and check that each chain ends where its head record says.

    Each hash is recomputed over the event as stored: ``before`` and ``after`` are hashed
    as the text :func:`append_events` stored and hashed (canonical JSON), not decoded and
    encoded again, so a change to any stored byte breaks the link, not only a change of
    meaning (and a million events take seconds, not minutes)."""
    heads = {
        row.chain: (int(row.seq), row.hash) for row in connection.execute(sa.select(audit_head))
    }
    query = sa.select(audit_event).order_by(audit_event.c.chain, audit_event.c.seq)
    if chain is not None:
        query = query.where(audit_event.c.chain == chain)
    result = connection.execution_options(stream_results=True, yield_per=5000).execute(query)
    with closing(result):
        return _verify_events(result, heads)


def _links(rows: Iterable[Any]) -> Iterator[Link]:
    for row in rows:
        yield Link(row.seq, row.prev_hash, row.hash, _stored_body(row._mapping))


def _verify_events(events: Iterable[Any], heads: Mapping[str, tuple[int, str]]) -> ChainReport:
    checked = 0
    chains = 0
    for name, rows in itertools.groupby(events, key=lambda row: row.chain):
        chains += 1
        check = verify_chain(_links(rows))
        checked += check.length
        if not check.ok:
            return ChainReport(checked, chains, name, check.broken_seq, check.problem)
        broken = _check_head(heads, name, check.length, check.head, checked, chains)
        if broken:
            return broken
    return ChainReport(checked, chains)


def _check_head(
    heads: Mapping[str, tuple[int, str]],
    chain: str,
    last_seq: int,
    last_hash: str,
    checked: int,
    chains: int,
) -> ChainReport | None:
    head = heads.get(chain)
    if head is None:
        return ChainReport(checked, chains, chain, last_seq, "the chain has no head record")
    if head != (last_seq, last_hash):
        return ChainReport(
            checked,
            chains,
            chain,
            head[0],
            f"the head says event {head[0]} but the trail ends at {last_seq} "
            "(events at the end were removed)",
        )
    return None
