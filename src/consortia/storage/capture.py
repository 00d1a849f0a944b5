"""Repositories of captured data: study versions, events, forms, item values, queries.

Site isolation happens one step earlier: a service first finds the subject through
:class:`~consortia.storage.repositories.SubjectRepository`, which only sees subjects at the
principal's sites, and then reads or changes that subject's rows here by its primary key.
Query listings that are not bound to one subject join the subject table and filter by the
principal's :func:`~consortia.auth.policy.site_scope` themselves.

Repositories run inside the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import Action, site_scope
from consortia.auth.principal import Principal
from consortia.storage.tables import (
    data_query,
    derived_value,
    event_instance,
    form_instance,
    item_value,
    query_message,
    study_version,
    subject,
    subject_status,
)

__all__ = [
    "CaptureRepository",
    "EventRecord",
    "FormRecord",
    "QueryFilter",
    "QueryMessageRecord",
    "QueryRecord",
    "QueryRepository",
    "StudyVersionRecord",
    "StudyVersionRepository",
    "ValueRow",
]


# --------------------------------------------------------------------------- studies


@dataclass(frozen=True, slots=True)
class StudyVersionRecord:
    """One loaded version of a study definition (the YAML kept verbatim)."""

    study: str
    version: int
    label: str
    source: str
    sha256: str
    loaded_at: datetime
    loaded_by: str


class StudyVersionRepository:
    """The study definitions loaded on this node; the highest version is the current one."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @staticmethod
    def _record(row: Any) -> StudyVersionRecord:
        return StudyVersionRecord(
            row.study, row.version, row.label, row.source, row.sha256, row.loaded_at, row.loaded_by
        )

    def current(self, study: str) -> StudyVersionRecord | None:
        query = (
            sa.select(study_version)
            .where(study_version.c.study == study)
            .order_by(study_version.c.version.desc())
            .limit(1)
        )
        row = self.connection.execute(query).first()
        return None if row is None else self._record(row)

    def current_key(self, study: str) -> tuple[int, str] | None:
        """(version, sha256) of the current definition, without its text."""
        query = (
            sa.select(study_version.c.version, study_version.c.sha256)
            .where(study_version.c.study == study)
            .order_by(study_version.c.version.desc())
            .limit(1)
        )
        row = self.connection.execute(query).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def source(self, study: str, version: int) -> str:
        query = sa.select(study_version.c.source).where(
            study_version.c.study == study, study_version.c.version == version
        )
        return str(self.connection.execute(query).scalar_one())

    def versions(self, study: str) -> list[StudyVersionRecord]:
        query = (
            sa.select(study_version)
            .where(study_version.c.study == study)
            .order_by(study_version.c.version)
        )
        return [self._record(row) for row in self.connection.execute(query)]

    def studies(self) -> list[str]:
        query = sa.select(study_version.c.study).distinct().order_by(study_version.c.study)
        return [row[0] for row in self.connection.execute(query)]

    def add(
        self, *, study: str, label: str, source: str, sha256: str, now: datetime, by: str
    ) -> int:
        latest = self.current(study)
        version = 1 if latest is None else latest.version + 1
        self.connection.execute(
            study_version.insert().values(
                study=study,
                version=version,
                label=label,
                source=source,
                sha256=sha256,
                loaded_at=now,
                loaded_by=by,
            )
        )
        return version


# --------------------------------------------------------------------------- events and forms


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event instance of a subject, with its target date, window and visit date."""

    id: int
    subject_pk: int
    event: str
    instance: int
    target_date: date | None
    window_start: date | None
    window_end: date | None
    visit_date: date | None


@dataclass(frozen=True, slots=True)
class FormRecord:
    """A form instance: status, version, verification, signature and lock."""

    id: int
    event_pk: int
    subject_pk: int
    form: str
    status: str
    version: int
    study_version: int
    updated_at: datetime
    updated_by: str
    verified_at: datetime | None
    verified_by: str | None
    signed_at: datetime | None
    signed_by: str | None
    signed_name: str | None
    signature_meaning: str | None
    locked_at: datetime | None
    locked_by: str | None

    @property
    def state(self) -> str:
        """The form's state: locked, signed, verified, complete or in_progress."""
        if self.locked_at is not None:
            return "locked"
        if self.signed_at is not None:
            return "signed"
        if self.verified_at is not None:
            return "verified"
        return self.status


@dataclass(frozen=True, slots=True)
class ValueRow:
    """One stored value of a subject, with the event and form it belongs to."""

    event: str
    instance: int
    target_date: date | None
    form: str
    item: str
    group_instance: int
    text: str
    event_pk: int = 0

    def schedule_key(self) -> tuple[bool, date, int, int]:
        """The order :meth:`CaptureRepository.subject_values` returns rows in."""
        return (
            self.target_date is None,
            self.target_date or date.min,
            self.event_pk,
            self.group_instance,
        )


def _event(row: Any) -> EventRecord:
    return EventRecord(
        row.id,
        row.subject_pk,
        row.event,
        row.instance,
        row.target_date,
        row.window_start,
        row.window_end,
        row.visit_date,
    )


def _form(row: Any) -> FormRecord:
    return FormRecord(**{column.name: getattr(row, column.name) for column in form_instance.c})


class CaptureRepository:
    """Events, forms, values and derived values of subjects the caller has already found."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # events
    def events(self, subject_pk: int) -> list[EventRecord]:
        query = (
            sa.select(event_instance)
            .where(event_instance.c.subject_pk == subject_pk)
            .order_by(event_instance.c.id)
        )
        return [_event(row) for row in self.connection.execute(query)]

    def event(self, subject_pk: int, name: str, instance: int) -> EventRecord | None:
        query = sa.select(event_instance).where(
            event_instance.c.subject_pk == subject_pk,
            event_instance.c.event == name,
            event_instance.c.instance == instance,
        )
        row = self.connection.execute(query).first()
        return None if row is None else _event(row)

    def last_instance(self, subject_pk: int, name: str) -> int:
        query = sa.select(sa.func.max(event_instance.c.instance)).where(
            event_instance.c.subject_pk == subject_pk, event_instance.c.event == name
        )
        return int(self.connection.execute(query).scalar() or 0)

    def add_events(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.connection.execute(event_instance.insert(), list(rows))

    def add_event(self, **values: Any) -> EventRecord:
        result = self.connection.execute(event_instance.insert().values(**values))
        assert result.inserted_primary_key is not None
        row = self.connection.execute(
            sa.select(event_instance).where(event_instance.c.id == result.inserted_primary_key[0])
        ).one()
        return _event(row)

    def update_event(self, event_pk: int, **values: Any) -> None:
        self.connection.execute(
            event_instance.update().where(event_instance.c.id == event_pk).values(**values)
        )

    # forms
    def form(self, event_pk: int, form: str) -> FormRecord | None:
        query = sa.select(form_instance).where(
            form_instance.c.event_pk == event_pk, form_instance.c.form == form
        )
        row = self.connection.execute(query).first()
        return None if row is None else _form(row)

    def form_by_pk(self, form_pk: int) -> FormRecord:
        query = sa.select(form_instance).where(form_instance.c.id == form_pk)
        return _form(self.connection.execute(query).one())

    def forms(self, subject_pk: int) -> list[FormRecord]:
        query = (
            sa.select(form_instance)
            .where(form_instance.c.subject_pk == subject_pk)
            .order_by(form_instance.c.id)
        )
        return [_form(row) for row in self.connection.execute(query)]

    def add_form(self, **values: Any) -> FormRecord:
        result = self.connection.execute(form_instance.insert().values(**values))
        assert result.inserted_primary_key is not None
        return self.form_by_pk(int(result.inserted_primary_key[0]))

    def update_form(self, form_pk: int, *, expected_version: int, **values: Any) -> bool:
        """Change a form if it is still at ``expected_version``; False if it moved on.

        The version test is in the UPDATE itself, so two concurrent saves of one version
        cannot both succeed on either database.
        """
        result = self.connection.execute(
            form_instance.update()
            .where(form_instance.c.id == form_pk, form_instance.c.version == expected_version)
            .values(**values)
        )
        return result.rowcount == 1

    # values
    def values(self, form_pk: int) -> dict[tuple[str, int], str]:
        query = sa.select(
            item_value.c.item, item_value.c.group_instance, item_value.c.value_text
        ).where(item_value.c.form_pk == form_pk)
        return {(row[0], row[1]): row[2] for row in self.connection.execute(query)}

    def subject_values(self, subject_pk: int) -> list[ValueRow]:
        """Every stored value of the subject, in schedule order (target date, then id)."""
        query = (
            sa.select(
                event_instance.c.event,
                event_instance.c.instance,
                event_instance.c.target_date,
                form_instance.c.form,
                item_value.c.item,
                item_value.c.group_instance,
                item_value.c.value_text,
                event_instance.c.id,
            )
            .join(form_instance, form_instance.c.id == item_value.c.form_pk)
            .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
            .where(form_instance.c.subject_pk == subject_pk)
            .order_by(
                event_instance.c.target_date.is_(None),
                event_instance.c.target_date,
                event_instance.c.id,
                item_value.c.group_instance,
            )
        )
        return [ValueRow(*row) for row in self.connection.execute(query)]

    def write_values(
        self,
        form_pk: int,
        *,
        upserts: Mapping[tuple[str, int], tuple[str, float | None]],
        existing: Iterable[tuple[str, int]],
        deletes: Iterable[tuple[str, int]],
    ) -> None:
        """Insert new values, update changed ones, delete removed ones."""
        known = set(existing)
        inserts = [
            {
                "form_pk": form_pk,
                "item": k[0],
                "group_instance": k[1],
                "value_text": t,
                "value_num": n,
            }
            for k, (t, n) in upserts.items()
            if k not in known
        ]
        if inserts:
            self.connection.execute(item_value.insert(), inserts)
        for (item, number), (text, num) in upserts.items():
            if (item, number) in known:
                self.connection.execute(
                    item_value.update()
                    .where(
                        item_value.c.form_pk == form_pk,
                        item_value.c.item == item,
                        item_value.c.group_instance == number,
                    )
                    .values(value_text=text, value_num=num)
                )
        for item, number in deletes:
            self.connection.execute(
                item_value.delete().where(
                    item_value.c.form_pk == form_pk,
                    item_value.c.item == item,
                    item_value.c.group_instance == number,
                )
            )

    # derived values
    def derived(self, subject_pk: int) -> dict[str, str]:
        query = sa.select(derived_value.c.name, derived_value.c.value_text).where(
            derived_value.c.subject_pk == subject_pk
        )
        return {row[0]: row[1] for row in self.connection.execute(query)}

    def replace_derived(
        self, subject_pk: int, values: Mapping[str, tuple[str, float | None]]
    ) -> None:
        self.connection.execute(
            derived_value.delete().where(derived_value.c.subject_pk == subject_pk)
        )
        if values:
            self.connection.execute(
                derived_value.insert(),
                [
                    {"subject_pk": subject_pk, "name": n, "value_text": t, "value_num": v}
                    for n, (t, v) in values.items()
                ],
            )

    # subject status
    def add_status(self, subject_pk: int, **values: Any) -> None:
        self.connection.execute(subject_status.insert().values(subject_pk=subject_pk, **values))
        self.connection.execute(
            subject.update().where(subject.c.id == subject_pk).values(status=values["status"])
        )

    def status_history(self, subject_pk: int) -> list[dict[str, Any]]:
        query = (
            sa.select(
                subject_status.c.status,
                subject_status.c.on_date,
                subject_status.c.reason,
                subject_status.c.recorded_at,
                subject_status.c.recorded_by,
            )
            .where(subject_status.c.subject_pk == subject_pk)
            .order_by(subject_status.c.id)
        )
        return [dict(row._mapping) for row in self.connection.execute(query)]

    def subject_row(self, subject_pk: int) -> Any:
        return self.connection.execute(sa.select(subject).where(subject.c.id == subject_pk)).one()

    def set_anchor(self, subject_pk: int, anchor: date | None) -> None:
        self.connection.execute(
            subject.update().where(subject.c.id == subject_pk).values(anchor_date=anchor)
        )


# --------------------------------------------------------------------------- queries


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
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(data_query.c.opened_at, data_query.c.id).limit(limit).offset(offset)
        return [self._record(row) for row in self.connection.execute(query)]

    def get(self, study: str, query_id: int) -> QueryRecord | None:
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
        query = sa.select(data_query.c.id).where(
            data_query.c.form_pk == form_pk,
            data_query.c.item == item,
            data_query.c.group_instance == group_instance,
            data_query.c.status != "closed",
        )
        return [row[0] for row in self.connection.execute(query)]

    def open_on_form(self, form_pk: int) -> list[int]:
        """Ids of the form's queries not yet closed."""
        query = sa.select(data_query.c.id).where(
            data_query.c.form_pk == form_pk, data_query.c.status != "closed"
        )
        return [row[0] for row in self.connection.execute(query)]

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
