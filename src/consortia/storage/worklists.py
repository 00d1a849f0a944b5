"""Worklists over captured data: forms of a study awaiting source-data verification, at
the sites where the principal may verify, and forms awaiting an investigator's signature, at
the sites where the principal may sign (:mod:`consortia.storage.capture` re-exports them).

Repositories run inside the caller's transaction and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import Action, site_scope
from consortia.auth.principal import Principal
from consortia.storage.tables import event_instance, form_instance, subject

__all__ = ["SignatureRepository", "VerificationRepository", "WorklistEntry"]


@dataclass(frozen=True, slots=True)
class WorklistEntry:
    """A form instance waiting for source-data verification."""

    site: str
    subject_id: str
    event: str
    instance: int
    form: str
    version: int
    updated_at: datetime
    updated_by: str


def _awaiting(
    connection: Connection,
    principal: Principal,
    action: Action,
    not_yet: sa.ColumnElement[bool],
    where: tuple[str, str | None, int, int],
) -> list[WorklistEntry]:
    """Complete forms of a study, not locked and not yet ``not_yet``, at the sites where
    ``principal`` may do ``action`` (and at ``site`` if given), by site and subject."""
    study, site, limit, offset = where
    scope = site_scope(principal, study, action)
    query = (
        sa.select(
            subject.c.site,
            subject.c.subject_id,
            event_instance.c.event,
            event_instance.c.instance,
            form_instance.c.form,
            form_instance.c.version,
            form_instance.c.updated_at,
            form_instance.c.updated_by,
        )
        .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
        .join(subject, subject.c.id == form_instance.c.subject_pk)
        .where(
            subject.c.study == study,
            form_instance.c.status == "complete",
            not_yet,
            form_instance.c.locked_at.is_(None),
        )
    )
    if not scope.every_site:
        query = query.where(subject.c.site.in_(sorted(scope.sites)))
    if site is not None:
        query = query.where(subject.c.site == site)
    query = (
        query.order_by(subject.c.site, subject.c.subject_id, form_instance.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [WorklistEntry(*row) for row in connection.execute(query)]


class VerificationRepository:
    """Forms of one study awaiting verification, at the sites where the principal may
    verify."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal

    def awaiting(
        self, study: str, site: str | None, *, limit: int, offset: int
    ) -> list[WorklistEntry]:
        """Complete (or signed) forms neither verified nor locked, by site and subject."""
        unverified = form_instance.c.verified_at.is_(None)
        where = (study, site, limit, offset)
        return _awaiting(self.connection, self.principal, Action.DATA_VERIFY, unverified, where)


class SignatureRepository:
    """Forms of one study an investigator may sign (complete or verified: neither signed nor
    locked), at the sites where the principal may sign."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal

    def awaiting(
        self, study: str, site: str | None, *, limit: int, offset: int
    ) -> list[WorklistEntry]:
        """Complete or verified forms neither signed nor locked, by site and subject."""
        unsigned = form_instance.c.signed_at.is_(None)
        where = (study, site, limit, offset)
        return _awaiting(self.connection, self.principal, Action.DATA_SIGN, unsigned, where)
