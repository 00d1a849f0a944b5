"""The site performance reads: the raw facts of one study's capture, per site, for the
sites where the principal may read site performance (``site_performance.read``).

Each method is one statement and returns plain records; the service
(:mod:`consortia.services.site_performance`) counts and takes medians. Nothing here
returns an identifier, a value or a query's text: only sites, keys, dates and item names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import Action, site_scope
from consortia.auth.principal import Principal
from consortia.storage.audit import audit_event
from consortia.storage.repositories.scope import in_scope
from consortia.storage.tables import (
    data_query,
    event_instance,
    form_instance,
    item_value,
    query_message,
    subject,
    subject_status,
)

__all__ = [
    "EventFact",
    "FormFact",
    "QueryFact",
    "SitePerformanceRepository",
    "StatusFact",
    "SubjectFact",
]


@dataclass(frozen=True, slots=True)
class SubjectFact:
    key: int
    site: str


@dataclass(frozen=True, slots=True)
class StatusFact:
    """One status a subject entered, on its date."""

    subject_key: int
    status: str
    on_date: date


@dataclass(frozen=True, slots=True)
class EventFact:
    """An event instance of a subject, with its window and visit date (if any)."""

    key: int
    site: str
    subject_id: str
    event: str
    instance: int
    window_start: date | None
    window_end: date | None
    visit_date: date | None


@dataclass(frozen=True, slots=True)
class FormFact:
    """A saved form instance: its event, how many values it holds in all, and which of the
    items asked about hold a value outside repeating groups."""

    key: int
    event_key: int
    form: str
    values: int
    items: frozenset[str]


@dataclass(frozen=True, slots=True)
class QueryFact:
    """A query: when it was opened and, if it is closed now, when it was last closed."""

    key: int
    site: str
    status: str
    opened_at: datetime
    closed_at: datetime | None


class SitePerformanceRepository:
    """The facts site performance is computed from, at the principal's sites."""

    def __init__(self, connection: Connection, principal: Principal, study: str) -> None:
        self.connection = connection
        self.study = study
        self.scope = site_scope(principal, study, Action.SITE_PERFORMANCE_READ)

    def _subjects(self) -> sa.ColumnElement[bool]:
        return sa.and_(subject.c.study == self.study, in_scope(subject.c.site, self.scope))

    def subjects(self) -> list[SubjectFact]:
        """Every subject of the study at the sites in scope (each was screened)."""
        rows = self.connection.execute(
            sa.select(subject.c.id, subject.c.site).where(self._subjects()).order_by(subject.c.id)
        )
        return [SubjectFact(row.id, row.site) for row in rows]

    def statuses(self, statuses: tuple[str, ...]) -> list[StatusFact]:
        """The status rows of the subjects in scope whose status is one of ``statuses``."""
        rows = self.connection.execute(
            sa.select(
                subject_status.c.subject_pk, subject_status.c.status, subject_status.c.on_date
            )
            .join(subject, subject.c.id == subject_status.c.subject_pk)
            .where(self._subjects(), subject_status.c.status.in_(statuses))
            .order_by(subject_status.c.id)
        )
        return [StatusFact(row.subject_pk, row.status, row.on_date) for row in rows]

    def events(self) -> list[EventFact]:
        """Every event instance of the subjects in scope."""
        rows = self.connection.execute(
            sa.select(
                event_instance.c.id,
                subject.c.site,
                subject.c.subject_id,
                event_instance.c.event,
                event_instance.c.instance,
                event_instance.c.window_start,
                event_instance.c.window_end,
                event_instance.c.visit_date,
            )
            .join(subject, subject.c.id == event_instance.c.subject_pk)
            .where(self._subjects())
            .order_by(event_instance.c.id)
        )
        return [
            EventFact(
                row.id,
                row.site,
                row.subject_id,
                row.event,
                row.instance,
                row.window_start,
                row.window_end,
                row.visit_date,
            )
            for row in rows
        ]

    def forms(self, items: frozenset[str]) -> list[FormFact]:
        """Every saved form instance of the subjects in scope: how many values it holds,
        and which of ``items`` hold a value outside repeating groups."""
        in_study = sa.and_(form_instance.c.subject_pk == subject.c.id, self._subjects())
        forms = self.connection.execute(
            sa.select(form_instance.c.id, form_instance.c.event_pk, form_instance.c.form)
            .join(subject, subject.c.id == form_instance.c.subject_pk)
            .where(self._subjects())
            .order_by(form_instance.c.id)
        ).all()
        counted = (
            sa.select(item_value.c.form_pk, sa.func.count().label("n"))
            .join(form_instance, form_instance.c.id == item_value.c.form_pk)
            .join(subject, in_study)
            .group_by(item_value.c.form_pk)
        )
        counts: dict[int, int] = {row.form_pk: row.n for row in self.connection.execute(counted)}
        present: dict[int, set[str]] = {}
        if items:
            held = (
                sa.select(item_value.c.form_pk, item_value.c.item)
                .join(form_instance, form_instance.c.id == item_value.c.form_pk)
                .join(subject, in_study)
                .where(item_value.c.group_instance == 0, item_value.c.item.in_(sorted(items)))
            )
            for row in self.connection.execute(held):
                present.setdefault(row.form_pk, set()).add(row.item)
        return [
            FormFact(
                row.id,
                row.event_pk,
                row.form,
                int(counts.get(row.id, 0)),
                frozenset(present.get(row.id, ())),
            )
            for row in forms
        ]

    def first_saves(self) -> dict[str, datetime]:
        """The time of the first ``form.save`` audit event of each form, by its audit id
        (``study/subject/event ref/form``), at the sites in scope."""
        query: sa.Select[Any] = (
            sa.select(audit_event.c.entity_id, sa.func.min(audit_event.c.at).label("first"))
            .where(
                audit_event.c.chain == self.study,
                audit_event.c.action == "form.save",
                audit_event.c.entity_type == "form",
                in_scope(audit_event.c.site, self.scope),
            )
            .group_by(audit_event.c.entity_id)
        )
        # the stored time is ISO 8601 UTC with a fixed width, so text order is time order
        return {
            row.entity_id: datetime.fromisoformat(row.first)
            for row in self.connection.execute(query)
        }

    def queries(self) -> list[QueryFact]:
        """Every query of the subjects in scope, with its last close if it is closed."""
        closed = (
            sa.select(query_message.c.query_pk, sa.func.max(query_message.c.at).label("at"))
            .where(query_message.c.action == "close")
            .group_by(query_message.c.query_pk)
            .subquery()
        )
        rows = self.connection.execute(
            sa.select(
                data_query.c.id,
                subject.c.site,
                data_query.c.status,
                data_query.c.opened_at,
                closed.c.at.label("closed_at"),
            )
            .join(subject, subject.c.id == data_query.c.subject_pk)
            .outerjoin(closed, closed.c.query_pk == data_query.c.id)
            .where(self._subjects())
            .order_by(data_query.c.id)
        )
        return [
            QueryFact(
                row.id,
                row.site,
                row.status,
                row.opened_at,
                row.closed_at if row.status == "closed" else None,
            )
            for row in rows
        ]
