"""The node's federation audit in the node database's audit trail (chain ``federation``).

A node with a database (``database_url`` in its federation config) appends each federation
event — the request received, the decision with the rule that refused it, and exactly what
was released — to the same append-only, hash-chained ``audit_event`` table as every other
change on the node, on its own chain ``federation``, one transaction per event.
``consortia audit verify`` checks it with every other chain; nodes without a database keep
the JSON-lines file of :mod:`consortia.federation.audit`.

Each row: ``actor`` the peer that asked (``node:lead``; ``unverified:NAME`` for a message
whose signature did not verify), ``action`` ``federation.released``, ``federation.refused``
or ``federation.pending``, ``entity_type`` ``analysis_task`` with the task id, and
``after`` the whole event as canonical JSON (what the JSON-lines file records).

>>> from consortia.storage.db import make_engine
>>> from consortia.storage.migrations import upgrade
>>> engine = make_engine("sqlite://")
>>> upgrade(engine)
>>> sink = DatabaseAuditSink(engine)
>>> sink.append({"action": "federation.request", "task_id": "t1", "sender": "lead",
...              "decision": "refused", "rule": "min_cell_count", "released": None})
>>> sink.events[0]["rule"], sink.verify().ok
('min_cell_count', True)
>>> engine.dispose()
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Engine

from consortia.hashchain import canonical_json
from consortia.storage.audit import ChainReport, append_event, iter_events, verify_trail

__all__ = ["FEDERATION_CHAIN", "DatabaseAuditSink", "federation_actor"]

FEDERATION_CHAIN = "federation"


def federation_actor(event: dict[str, Any]) -> str:
    """Who a federation event is by: the verified sender, or who an unverified one claimed.

    >>> federation_actor({"sender": "lead", "verified": True})
    'node:lead'
    >>> federation_actor({"sender": None, "claimed_sender": "mallory", "verified": False})
    'unverified:mallory'
    """
    sender = event.get("sender")
    if isinstance(sender, str) and sender and event.get("verified", True):
        return f"node:{sender}"
    claimed = event.get("claimed_sender")
    return f"unverified:{claimed}" if isinstance(claimed, str) and claimed else "unverified"


class DatabaseAuditSink:
    """An :class:`~consortia.federation.audit.AuditSink` appending to the database trail.

    ``append`` commits before it returns (durable), so a node never releases an aggregate
    whose audit event was not stored: if the database refuses, the request fails.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        chain: str = FEDERATION_CHAIN,
        actor: str | None = None,
        withhold: str | None = None,
    ) -> None:
        self.engine = engine
        self.chain = chain
        self.actor = actor
        #: when set, a release's aggregates are stored as this note instead (the release of
        #: an analysis that shows arms: the trail's readers may be blind)
        self.withhold = withhold

    def append(self, event: dict[str, Any]) -> None:
        """Append one event in its own transaction."""
        with self.engine.begin() as connection:
            self.append_in(connection, event)

    def append_in(self, connection: Connection, event: dict[str, Any]) -> None:
        """Append one event inside the caller's transaction (a release and its ledger rows
        commit together, see :mod:`consortia.federation.disclosure`)."""
        # What is stored is what is hashed: plain JSON values only (a tuple becomes a list).
        payload: dict[str, Any] = json.loads(canonical_json(event))
        if self.withhold is not None and payload.get("released") is not None:
            payload["released"] = self.withhold
        decision = payload.get("decision")
        action = f"federation.{decision}" if isinstance(decision, str) and decision else None
        task = payload.get("task_id")
        append_event(
            connection,
            self.chain,
            actor=self.actor or federation_actor(payload),
            action=action or str(payload.get("action") or "federation.event"),
            entity_type="analysis_task",
            entity_id=str(task) if task else "unknown",
            after=payload,
        )

    @property
    def events(self) -> list[dict[str, Any]]:
        """The chain's events (the ``after`` payloads), oldest first."""
        with self.engine.connect() as connection:
            return [
                dict(audit.after)
                for audit in iter_events(connection, chain=self.chain)
                if isinstance(audit.after, dict)
            ]

    def verify(self) -> ChainReport:
        """Recompute the chain's hashes (``consortia audit verify --chain federation``)."""
        with self.engine.connect() as connection:
            return verify_trail(connection, chain=self.chain)
