"""The record-status dashboard's reads: a page of subjects and the state of each of their
forms, site-scoped like every study read.

Three statements whatever the page's size: the subjects of the page (filtered by site, subject
status and, optionally, a form state some form of theirs must be in), their forms with their
event, and the open queries per form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import Action, site_scope
from consortia.auth.principal import Principal
from consortia.storage.repositories.scope import in_scope
from consortia.storage.tables import data_query, event_instance, form_instance, subject

__all__ = ["FORM_STATES", "OPEN_QUERY_STATES", "FormCell", "GridFilter", "GridRow", "StatusGrid"]

#: the states a form shows, in the order of its life
FORM_STATES: Final = ("not_started", "in_progress", "complete", "verified", "signed", "locked")
#: the query statuses that still wait for someone
OPEN_QUERY_STATES: Final = ("open", "answered")

_STATE: sa.ColumnElement[str] = sa.case(
    (form_instance.c.locked_at.is_not(None), "locked"),
    (form_instance.c.signed_at.is_not(None), "signed"),
    (form_instance.c.verified_at.is_not(None), "verified"),
    else_=form_instance.c.status,
)


@dataclass(frozen=True, slots=True)
class FormCell:
    """One form instance of a subject, as the dashboard shows it."""

    event: str
    instance: int
    form: str
    state: str
    open_queries: int


@dataclass(frozen=True, slots=True)
class GridRow:
    """A subject and its form instances (those ever saved)."""

    subject_id: str
    site: str
    status: str
    forms: tuple[FormCell, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class GridFilter:
    """What the dashboard shows: ``None`` is "any"."""

    site: str | None = None
    status: str | None = None
    #: only subjects with at least one form in this state ("open_query": one with an open
    #: query); "not_started" is not a stored state and cannot be asked for
    form_state: str | None = None


class StatusGrid:
    """A page of the record-status dashboard for one principal."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal

    def _subjects(self, study: str, where: GridFilter) -> sa.Select[Any]:
        scope = site_scope(self.principal, study, Action.SUBJECT_READ)
        query = sa.select(subject.c.id, subject.c.subject_id, subject.c.site, subject.c.status)
        query = query.where(subject.c.study == study, in_scope(subject.c.site, scope))
        if where.site is not None:
            query = query.where(subject.c.site == where.site)
        if where.status is not None:
            query = query.where(subject.c.status == where.status)
        if where.form_state == "open_query":
            query = query.where(
                sa.exists().where(
                    data_query.c.subject_pk == subject.c.id,
                    data_query.c.status.in_(OPEN_QUERY_STATES),
                )
            )
        elif where.form_state is not None:
            query = query.where(
                sa.exists().where(
                    form_instance.c.subject_pk == subject.c.id, _STATE.in_([where.form_state])
                )
            )
        return query

    def page(self, study: str, where: GridFilter, *, limit: int, offset: int) -> list[GridRow]:
        """Subjects ``offset`` to ``offset + limit`` by subject id, with their forms."""
        query = self._subjects(study, where).order_by(subject.c.subject_id)
        subjects = self.connection.execute(query.limit(limit).offset(offset)).all()
        if not subjects:
            return []
        keys = [row.id for row in subjects]
        forms = self.connection.execute(
            sa.select(
                form_instance.c.id,
                form_instance.c.subject_pk,
                event_instance.c.event,
                event_instance.c.instance,
                form_instance.c.form,
                _STATE.label("state"),
            )
            .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
            .where(form_instance.c.subject_pk.in_(keys))
            .order_by(form_instance.c.subject_pk, event_instance.c.instance)
        ).all()
        open_queries: dict[int, int] = dict(
            self.connection.execute(
                sa.select(data_query.c.form_pk, sa.func.count())
                .where(
                    data_query.c.subject_pk.in_(keys),
                    data_query.c.status.in_(OPEN_QUERY_STATES),
                )
                .group_by(data_query.c.form_pk)
            ).all()
        )
        by_subject: dict[int, list[FormCell]] = {key: [] for key in keys}
        for row in forms:
            cell = FormCell(
                row.event, row.instance, row.form, row.state, int(open_queries.get(row.id, 0))
            )
            by_subject[row.subject_pk].append(cell)
        return [
            GridRow(row.subject_id, row.site, row.status, tuple(by_subject[row.id]))
            for row in subjects
        ]

    def count(self, study: str, where: GridFilter) -> int:
        """How many subjects the filter keeps."""
        counted = sa.select(sa.func.count()).select_from(self._subjects(study, where).subquery())
        return int(self.connection.execute(counted).scalar_one())
