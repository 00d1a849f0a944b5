"""Data clarification queries: listed per study at the principal's sites, and per form.

Repositories run inside the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import ROLE_ACTIONS, Action, site_scope
from consortia.auth.principal import WILDCARD, Principal
from consortia.storage.prepared import Pending, Prepared
from consortia.storage.tables import (
    MAX_ID,
    app_user,
    data_query,
    event_instance,
    form_instance,
    query_message,
    role_grant,
    subject,
)

__all__ = [
    "ASSIGNEE_ACTIONS",
    "QueryFilter",
    "QueryMessageRecord",
    "QueryPerson",
    "QueryRecord",
    "QueryRepository",
    "query_people",
]

#: A query may be assigned to whoever may answer or manage queries at its study and site.
ASSIGNEE_ACTIONS = frozenset({Action.QUERY_ANSWER, Action.QUERY_OPEN, Action.QUERY_CLOSE})


@dataclass(frozen=True, slots=True)
class QueryMessageRecord:
    action: str
    text: str
    at: datetime
    by: str


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """A data clarification query on one item of one form instance."""

    id: int
    study: str
    site: str
    subject_id: str
    event: str
    event_instance: int
    form: str
    form_pk: int
    item: str
    group_instance: int
    status: str
    origin: str
    text: str
    opened_at: datetime
    opened_by: str
    updated_at: datetime
    #: the email of the person expected to act on the query; ``None``: nobody yet
    assigned_to: str | None = None
    messages: tuple[QueryMessageRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """What a query listing narrows to; ``None`` means any."""

    status: str | None = None
    site: str | None = None
    subject_id: str | None = None
    form: str | None = None
    item: str | None = None
    origin: str | None = None
    #: only queries assigned to this email
    assigned_to: str | None = None
    #: only queries opened at or before this time (a listing's "at least N days old")
    opened_before: datetime | None = None


_OPEN_ON_ITEM = Prepared(
    sa.select(data_query.c.id).where(
        data_query.c.form_pk == sa.bindparam("form_pk"),
        data_query.c.item == sa.bindparam("item"),
        data_query.c.group_instance == sa.bindparam("group_instance"),
        data_query.c.status != "closed",
    )
)
_OPEN_ON_FORM = Prepared(
    sa.select(data_query.c.id).where(
        data_query.c.form_pk == sa.bindparam("form_pk"), data_query.c.status != "closed"
    )
)


class QueryRepository:
    """Queries of one study at the sites where the principal may read queries."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal

    def _select(self, study: str) -> sa.Select[Any]:
        scope = site_scope(self.principal, study, Action.QUERY_READ)
        query = (
            sa.select(
                data_query,
                subject.c.study,
                subject.c.site,
                subject.c.subject_id,
                event_instance.c.event,
                event_instance.c.instance.label("event_instance"),
                form_instance.c.form,
            )
            .join(subject, subject.c.id == data_query.c.subject_pk)
            .join(form_instance, form_instance.c.id == data_query.c.form_pk)
            .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
            .where(subject.c.study == study)
        )
        if not scope.every_site:
            query = query.where(subject.c.site.in_(sorted(scope.sites)))
        return query

    @staticmethod
    def _record(row: Any, messages: Sequence[QueryMessageRecord] = ()) -> QueryRecord:
        return QueryRecord(
            id=row.id,
            study=row.study,
            site=row.site,
            subject_id=row.subject_id,
            event=row.event,
            event_instance=row.event_instance,
            form=row.form,
            form_pk=row.form_pk,
            item=row.item,
            group_instance=row.group_instance,
            status=row.status,
            origin=row.origin,
            text=row.text,
            opened_at=row.opened_at,
            opened_by=row.opened_by,
            updated_at=row.updated_at,
            assigned_to=row.assigned_to,
            messages=tuple(messages),
        )

    def find(
        self, study: str, where: QueryFilter, *, limit: int = 100, offset: int = 0
    ) -> list[QueryRecord]:
        query = self._select(study)
        for column, value in (
            (data_query.c.status, where.status),
            (subject.c.site, where.site),
            (subject.c.subject_id, where.subject_id),
            (form_instance.c.form, where.form),
            (data_query.c.item, where.item),
            (data_query.c.origin, where.origin),
            (data_query.c.assigned_to, where.assigned_to),
        ):
            if value is not None:
                query = query.where(column == value)
        if where.opened_before is not None:
            query = query.where(data_query.c.opened_at <= where.opened_before)
        query = query.order_by(data_query.c.opened_at, data_query.c.id).limit(limit).offset(offset)
        return [self._record(row) for row in self.connection.execute(query)]

    def get(self, study: str, query_id: int) -> QueryRecord | None:
        if not 1 <= query_id <= MAX_ID:  # no such row, and PostgreSQL refuses the number
            return None
        row = self.connection.execute(
            self._select(study).where(data_query.c.id == query_id)
        ).first()
        if row is None:
            return None
        messages = self.connection.execute(
            sa.select(
                query_message.c.action, query_message.c.text, query_message.c.at, query_message.c.by
            )
            .where(query_message.c.query_pk == query_id)
            .order_by(query_message.c.id)
        )
        return self._record(row, [QueryMessageRecord(*m) for m in messages])

    def open_on_item(self, form_pk: int, item: str, group_instance: int) -> list[int]:
        """Ids of queries not yet closed on this item."""
        params = {"form_pk": form_pk, "item": item, "group_instance": group_instance}
        return [row[0] for row in _OPEN_ON_ITEM.all(self.connection, params)]

    def open_on_form(self, form_pk: int) -> list[int]:
        """Ids of the form's queries not yet closed."""
        return [row[0] for row in self.send_open_on_form(form_pk).rows()]

    def send_open_on_form(self, form_pk: int) -> Pending:
        """:meth:`open_on_form` sent; its rows (``(id,)``) read after a pipelined block."""
        return _OPEN_ON_FORM.send(self.connection, {"form_pk": form_pk})

    def add(self, **values: Any) -> int:
        result = self.connection.execute(data_query.insert().values(**values))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def add_message(self, query_pk: int, *, action: str, text: str, at: datetime, by: str) -> None:
        self.connection.execute(
            query_message.insert().values(query_pk=query_pk, action=action, text=text, at=at, by=by)
        )

    def set_status(self, query_pk: int, status: str, at: datetime) -> None:
        self.connection.execute(
            data_query.update()
            .where(data_query.c.id == query_pk)
            .values(status=status, updated_at=at)
        )

    def set_assignee(self, query_pk: int, assigned_to: str | None, at: datetime) -> None:
        self.connection.execute(
            data_query.update()
            .where(data_query.c.id == query_pk)
            .values(assigned_to=assigned_to, updated_at=at)
        )


@dataclass(frozen=True, slots=True)
class QueryPerson:
    """Someone a query at one study and site may be assigned to."""

    email: str
    name: str


def query_people(
    connection: Connection, study: str, sites: Collection[str] | None
) -> list[QueryPerson]:
    """The active accounts holding, at ``study`` and one of ``sites`` (``None``: any site;
    directly or through ``*``), a role that may answer or manage queries
    (:data:`ASSIGNEE_ACTIONS`), by email."""
    roles = sorted(
        role.value for role, actions in ROLE_ACTIONS.items() if actions & ASSIGNEE_ACTIONS
    )
    query = (
        sa.select(app_user.c.email, app_user.c.name)
        .distinct()
        .join(role_grant, role_grant.c.user_id == app_user.c.id)
        .where(
            app_user.c.active.is_(True),
            role_grant.c.study.in_([study, WILDCARD]),
            role_grant.c.role.in_(roles),
        )
        .order_by(app_user.c.email)
    )
    if sites is not None:
        query = query.where(role_grant.c.site.in_([*sorted(sites), WILDCARD]))
    return [QueryPerson(row.email, row.name) for row in connection.execute(query)]
