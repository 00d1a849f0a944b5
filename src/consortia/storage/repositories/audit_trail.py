"""The audit trail as a principal may read it: site-scoped, identifiers masked."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import (
    Action,
    Resource,
    can,
    may_see_identifiers,
    sees_study,
    site_scope,
)
from consortia.auth.principal import Principal
from consortia.storage.audit import AuditEvent, audit_event, row_event
from consortia.storage.repositories.scope import IDENTIFIER_FIELDS, NODE_CHAIN, in_scope

__all__ = ["IDENTIFIERS_KEY", "AuditRepository", "mask_event"]


#: The key of an audit event's before/after under which identifier item values travel.
IDENTIFIERS_KEY = "identifiers"


def mask_event(event: AuditEvent, principal: Principal, study: str) -> AuditEvent:
    """``event`` with identifier values replaced by ``None`` unless the principal may see them.

    Identifier values are the :data:`IDENTIFIER_FIELDS` of the entity type, and every value
    under the :data:`IDENTIFIERS_KEY` of a before/after mapping (form saves put the values
    of identifier items there).
    """
    fields = IDENTIFIER_FIELDS.get(event.entity_type, frozenset())
    if event.site and may_see_identifiers(principal, study, event.site):
        return event

    def masked(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = {key: None if key in fields else item for key, item in value.items()}
        identifiers = out.get(IDENTIFIERS_KEY)
        if isinstance(identifiers, dict):
            out[IDENTIFIERS_KEY] = dict.fromkeys(identifiers)
        return out

    return AuditEvent(
        **{**event.payload(), "before": masked(event.before), "after": masked(event.after)},
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


class AuditRepository:
    """A study's audit chain, narrowed to the sites where the principal may read it."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal

    def study_events(self, study: str, *, after_seq: int = 0, limit: int = 100) -> list[AuditEvent]:
        """Events of ``study``'s chain after ``after_seq``, oldest first.

        Events without a site (study-wide changes) are shown only to principals who may
        read the trail at every site.
        """
        if not sees_study(self.principal, study):
            return []
        scope = site_scope(self.principal, study, Action.AUDIT_READ)
        site_ok = sa.true() if scope.every_site else in_scope(audit_event.c.site, scope)
        query = (
            sa.select(audit_event)
            .where(audit_event.c.chain == study, audit_event.c.seq > after_seq, site_ok)
            .order_by(audit_event.c.seq)
            .limit(limit)
        )
        return [
            mask_event(row_event(row), self.principal, study)
            for row in self.connection.execute(query)
        ]

    def node_events(self, *, after_seq: int = 0, limit: int = 100) -> list[AuditEvent]:
        """Events of the node chain (accounts, logins, grants, tokens), oldest first."""
        if not can(self.principal, Action.NODE_AUDIT_READ, Resource()):
            return []
        query = (
            sa.select(audit_event)
            .where(audit_event.c.chain == NODE_CHAIN, audit_event.c.seq > after_seq)
            .order_by(audit_event.c.seq)
            .limit(limit)
        )
        return [row_event(row) for row in self.connection.execute(query)]

    def history(
        self,
        study: str,
        entity_id: str,
        *,
        descendants: bool = False,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[AuditEvent]:
        """Events of ``study`` about one entity (and, with ``descendants``, the entities
        under it: ``study/subject/...``), oldest first, identifiers masked.

        The caller has already found the entity through a site-scoped repository.
        """
        match = audit_event.c.entity_id == entity_id
        if descendants:
            escaped = entity_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            match = sa.or_(match, audit_event.c.entity_id.like(f"{escaped}/%", escape="\\"))
        query = (
            sa.select(audit_event)
            .where(audit_event.c.chain == study, match)
            .order_by(audit_event.c.seq)
            .limit(limit)
            .offset(offset)
        )
        return [
            mask_event(row_event(row), self.principal, study)
            for row in self.connection.execute(query)
        ]
