"""Repositories of captured data: study versions, events, forms, item values, queries.

A service first finds the subject through
:class:`~consortia.storage.repositories.SubjectRepository`, which only sees subjects at the
principal's sites, and hands the :class:`~consortia.storage.repositories.SubjectRecord` it
got to :class:`CaptureRepository`, which checks it against its own principal's sites before
it reads or changes that subject's rows (never a bare primary key that some earlier lookup
is trusted to have scoped). Query listings that are not bound to one subject join the
subject table and filter by the principal's :func:`~consortia.auth.policy.site_scope`
themselves.

Repositories run inside the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import site_scope
from consortia.auth.principal import Principal
from consortia.exceptions import NotFoundError
from consortia.storage.prepared import Pending, Prepared
from consortia.storage.repositories.subjects import SubjectRecord
from consortia.storage.tables import (
    derived_value,
    event_instance,
    form_instance,
    item_value,
    study_version,
    subject,
    subject_status,
)
from consortia.storage.worklists import (
    SignatureRepository,
    VerificationRepository,
    WorklistEntry,
)

__all__ = [
    "CaptureRepository",
    "EventRecord",
    "FormRecord",
    "SignatureRepository",
    "StudyVersionRecord",
    "StudyVersionRepository",
    "ValueRow",
    "VerificationRepository",
    "WorklistEntry",
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


# Statements run on every request are built once and run on the driver's cursor
# (storage/prepared.py; bench/RESULTS.md, section 3).
_CURRENT_KEY = Prepared(
    sa.select(study_version.c.version, study_version.c.sha256)
    .where(study_version.c.study == sa.bindparam("study"))
    .order_by(study_version.c.version.desc())
    .limit(1)
)


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
        row = _CURRENT_KEY.first(self.connection, {"study": study})
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


_EVENT = Prepared(
    sa.select(event_instance).where(
        event_instance.c.subject_pk == sa.bindparam("subject_pk"),
        event_instance.c.event == sa.bindparam("event"),
        event_instance.c.instance == sa.bindparam("instance"),
    )
)
_FORM = Prepared(
    sa.select(form_instance).where(
        form_instance.c.event_pk == sa.bindparam("event_pk"),
        form_instance.c.form == sa.bindparam("form"),
    )
)
_FORM_BY_PK = Prepared(
    sa.select(form_instance).where(form_instance.c.id == sa.bindparam("form_pk"))
)
_FORM_VERSIONS = Prepared(
    sa.select(form_instance.c.id, form_instance.c.version)
    .where(form_instance.c.subject_pk == sa.bindparam("subject_pk"))
    .order_by(form_instance.c.id)
)
_UPDATE_FORM = Prepared(
    form_instance.update().where(
        form_instance.c.id == sa.bindparam("where_pk"),
        form_instance.c.version == sa.bindparam("where_version"),
    )
)
_VALUES = Prepared(
    sa.select(item_value.c.item, item_value.c.group_instance, item_value.c.value_text).where(
        item_value.c.form_pk == sa.bindparam("form_pk")
    )
)
_SUBJECT_VALUES = Prepared(
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
    .where(form_instance.c.subject_pk == sa.bindparam("subject_pk"))
    .order_by(
        event_instance.c.target_date.is_(None),
        event_instance.c.target_date,
        event_instance.c.id,
        item_value.c.group_instance,
    )
)
_VALUE_KEY = (
    item_value.c.form_pk == sa.bindparam("where_form"),
    item_value.c.item == sa.bindparam("where_item"),
    item_value.c.group_instance == sa.bindparam("where_number"),
)
_INSERT_VALUE = Prepared(item_value.insert())
_UPDATE_VALUE = Prepared(item_value.update().where(*_VALUE_KEY))
_DELETE_VALUE = Prepared(item_value.delete().where(*_VALUE_KEY))
_DERIVED = Prepared(
    sa.select(derived_value.c.name, derived_value.c.value_text).where(
        derived_value.c.subject_pk == sa.bindparam("subject_pk")
    )
)
_DERIVED_KEY = (
    derived_value.c.subject_pk == sa.bindparam("where_subject"),
    derived_value.c.name == sa.bindparam("where_name"),
)
_INSERT_DERIVED = Prepared(derived_value.insert())
_UPDATE_DERIVED = Prepared(derived_value.update().where(*_DERIVED_KEY))
_DELETE_DERIVED = Prepared(derived_value.delete().where(*_DERIVED_KEY))


class CaptureRepository:
    """Events, forms, values and derived values of subjects, each named by its
    :class:`~consortia.storage.repositories.SubjectRecord`.

    Like every repository it is opened for a principal (no repository without one), and it
    checks each subject it is given against that principal's sites itself
    (:meth:`subject_pk`): a subject at a site the principal may not see is not found,
    whatever found it. Events and forms are then named by the records it returned.
    """

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal
        self._seen: set[tuple[str, str]] = set()

    def subject_pk(self, subject: SubjectRecord) -> int:
        """The primary key of ``subject``, if it is at a site the principal may see."""
        where = (subject.study, subject.site)
        if where not in self._seen:
            scope = site_scope(self.principal, subject.study)
            if not (scope.every_site or subject.site in scope.sites):
                raise NotFoundError(
                    f"subject {subject.subject_id} not found in study {subject.study}"
                )
            self._seen.add(where)
        return subject.id

    # events
    def events(self, subject: SubjectRecord) -> list[EventRecord]:
        query = (
            sa.select(event_instance)
            .where(event_instance.c.subject_pk == self.subject_pk(subject))
            .order_by(event_instance.c.id)
        )
        return [_event(row) for row in self.connection.execute(query)]

    def event(self, subject: SubjectRecord, name: str, instance: int) -> EventRecord | None:
        params = {"subject_pk": self.subject_pk(subject), "event": name, "instance": instance}
        row = _EVENT.first(self.connection, params)
        return None if row is None else _event(row)

    def last_instance(self, subject: SubjectRecord, name: str) -> int:
        query = sa.select(sa.func.max(event_instance.c.instance)).where(
            event_instance.c.subject_pk == self.subject_pk(subject),
            event_instance.c.event == name,
        )
        return int(self.connection.execute(query).scalar() or 0)

    def add_events(self, subject: SubjectRecord, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add events of ``subject`` (each row without ``subject_pk``)."""
        pk = self.subject_pk(subject)
        if rows:
            self.connection.execute(
                event_instance.insert(), [{**row, "subject_pk": pk} for row in rows]
            )

    def add_event(self, subject: SubjectRecord, **values: Any) -> EventRecord:
        values["subject_pk"] = self.subject_pk(subject)
        insert = event_instance.insert().values(**values).returning(*event_instance.c)
        return _event(self.connection.execute(insert).one())

    def update_event(self, event_pk: int, **values: Any) -> None:
        self.connection.execute(
            event_instance.update().where(event_instance.c.id == event_pk).values(**values)
        )

    # forms
    def form(self, event_pk: int, form: str) -> FormRecord | None:
        row = _FORM.first(self.connection, {"event_pk": event_pk, "form": form})
        return None if row is None else _form(row)

    def form_by_pk(self, form_pk: int) -> FormRecord:
        return _form(_FORM_BY_PK.one(self.connection, {"form_pk": form_pk}))

    def forms(self, subject: SubjectRecord) -> list[FormRecord]:
        query = (
            sa.select(form_instance)
            .where(form_instance.c.subject_pk == self.subject_pk(subject))
            .order_by(form_instance.c.id)
        )
        return [_form(row) for row in self.connection.execute(query)]

    def form_versions(self, subject: SubjectRecord) -> tuple[tuple[int, int], ...]:
        """(id, version) of each of the subject's forms: every change of a form's values or
        state bumps its version, and a new form adds a pair, so two equal answers mean the
        subject's data did not change in between."""
        rows = _FORM_VERSIONS.all(self.connection, {"subject_pk": self.subject_pk(subject)})
        return tuple((int(row.id), int(row.version)) for row in rows)

    def add_form(self, subject: SubjectRecord, **values: Any) -> FormRecord:
        values["subject_pk"] = self.subject_pk(subject)
        insert = form_instance.insert().values(**values).returning(*form_instance.c)
        return _form(self.connection.execute(insert).one())

    def update_form(self, form_pk: int, *, expected_version: int, **values: Any) -> bool:
        """Change a form if it is still at ``expected_version``; False if it moved on.

        The version test is in the UPDATE itself, so two concurrent saves of one version
        cannot both succeed on either database.
        """
        sent = self.send_form_update(form_pk, expected_version=expected_version, **values)
        return sent.rowcount == 1

    def send_form_update(self, form_pk: int, *, expected_version: int, **values: Any) -> Pending:
        """:meth:`update_form` sent; the rows it changed (1, or 0: the form moved on) are
        read from the answer later (``.rowcount``), after a pipelined block."""
        params = {"where_pk": form_pk, "where_version": expected_version, **values}
        return _UPDATE_FORM.send_run(self.connection, params)

    def saved_forms(
        self, subject: SubjectRecord, forms: Iterable[str]
    ) -> list[tuple[str, int, str, str, dict[str, str]]]:
        """(event, instance, form, status, values outside repeating groups) of each saved
        instance of ``forms``, read in one statement, so that the forms and their values are
        of one moment on either database."""
        query = (
            sa.select(
                form_instance.c.id,
                event_instance.c.event,
                event_instance.c.instance,
                form_instance.c.form,
                form_instance.c.status,
                item_value.c.item,
                item_value.c.value_text,
            )
            .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
            .outerjoin(
                item_value,
                sa.and_(
                    item_value.c.form_pk == form_instance.c.id, item_value.c.group_instance == 0
                ),
            )
            .where(
                form_instance.c.subject_pk == self.subject_pk(subject),
                form_instance.c.form.in_(sorted(set(forms))),
            )
            .order_by(form_instance.c.id)
        )
        found: dict[int, tuple[str, int, str, str, dict[str, str]]] = {}
        for row in self.connection.execute(query):
            saved = found.setdefault(row.id, (row.event, row.instance, row.form, row.status, {}))
            if row.item is not None:
                saved[4][row.item] = row.value_text
        return list(found.values())

    # values
    def values(self, form_pk: int) -> dict[tuple[str, int], str]:
        rows = _VALUES.all(self.connection, {"form_pk": form_pk})
        return {(row[0], row[1]): row[2] for row in rows}

    def subject_values(self, subject: SubjectRecord) -> list[ValueRow]:
        """Every stored value of the subject, in schedule order (target date, then id)."""
        rows = _SUBJECT_VALUES.all(self.connection, {"subject_pk": self.subject_pk(subject)})
        return [ValueRow(*row) for row in rows]

    def write_values(
        self,
        form_pk: int,
        *,
        upserts: Mapping[tuple[str, int], tuple[str, float | None]],
        existing: Iterable[tuple[str, int]],
        deletes: Iterable[tuple[str, int]],
    ) -> None:
        """Insert new values, update changed ones, delete removed ones (all sent at once)."""
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
            _INSERT_VALUE.send_run(self.connection, inserts)
        updates = [
            {
                "where_form": form_pk,
                "where_item": item,
                "where_number": number,
                "value_text": text,
                "value_num": num,
            }
            for (item, number), (text, num) in upserts.items()
            if (item, number) in known
        ]
        if updates:
            _UPDATE_VALUE.send_run(self.connection, updates)
        gone = [
            {"where_form": form_pk, "where_item": item, "where_number": number}
            for item, number in deletes
        ]
        if gone:
            _DELETE_VALUE.send_run(self.connection, gone)

    # derived values
    def derived(self, subject: SubjectRecord) -> dict[str, str]:
        rows = _DERIVED.all(self.connection, {"subject_pk": self.subject_pk(subject)})
        return {row[0]: row[1] for row in rows}

    def update_derived(
        self,
        subject: SubjectRecord,
        before: Mapping[str, str],
        after: Mapping[str, tuple[str, float | None]],
    ) -> None:
        """Write only what changed from ``before`` (as :meth:`derived` read it) to ``after``."""
        subject_pk = self.subject_pk(subject)
        key = {"where_subject": subject_pk}
        changed = [
            {**key, "where_name": name, "value_text": text, "value_num": number}
            for name, (text, number) in after.items()
            if name in before and before[name] != text
        ]
        added = [
            {"subject_pk": subject_pk, "name": name, "value_text": text, "value_num": number}
            for name, (text, number) in after.items()
            if name not in before
        ]
        gone = [{**key, "where_name": name} for name in before if name not in after]
        if changed:
            _UPDATE_DERIVED.send_run(self.connection, changed)
        if added:
            _INSERT_DERIVED.send_run(self.connection, added)
        if gone:
            _DELETE_DERIVED.send_run(self.connection, gone)

    # subject status
    def add_status(self, record: SubjectRecord, **values: Any) -> None:
        subject_pk = self.subject_pk(record)
        self.connection.execute(subject_status.insert().values(subject_pk=subject_pk, **values))
        self.connection.execute(
            subject.update().where(subject.c.id == subject_pk).values(status=values["status"])
        )

    def status_history(self, subject: SubjectRecord) -> list[dict[str, Any]]:
        query = (
            sa.select(
                subject_status.c.status,
                subject_status.c.on_date,
                subject_status.c.reason,
                subject_status.c.recorded_at,
                subject_status.c.recorded_by,
            )
            .where(subject_status.c.subject_pk == self.subject_pk(subject))
            .order_by(subject_status.c.id)
        )
        return [dict(row._mapping) for row in self.connection.execute(query)]

    def subject_row(self, record: SubjectRecord) -> Any:
        """The subject's row as it is now in this transaction (status, anchor date)."""
        query = sa.select(subject).where(subject.c.id == self.subject_pk(record))
        return self.connection.execute(query).one()

    def set_anchor(self, record: SubjectRecord, anchor: date | None) -> None:
        self.connection.execute(
            subject.update()
            .where(subject.c.id == self.subject_pk(record))
            .values(anchor_date=anchor)
        )
