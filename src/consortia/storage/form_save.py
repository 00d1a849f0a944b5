"""A form save's reads, in as few statements and round trips as the databases allow.

Working a save out needs the study's current version, the subject, the event and the form
(its version, lock, verification), every value of the subject (the form's own and the
context its checks see), the version of each of the subject's forms and its derived
values. :meth:`FormSaveRepository.state` reads them in three statements sent together
(:func:`~consortia.storage.prepared.pipelined`: one round trip on PostgreSQL), where they
took eight, one after another. Confirming under the write lock that nothing changed since
(:meth:`FormSaveRepository.check`) is one statement, where it took three.

Site isolation is :class:`~consortia.storage.repositories.SubjectRepository`'s: the subject's
row is handed to it, and a subject at a site the caller may not see is not there for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.principal import Principal
from consortia.storage.capture import EventRecord, FormRecord, ValueRow
from consortia.storage.prepared import Prepared, pipelined
from consortia.storage.repositories import SubjectRecord, SubjectRepository
from consortia.storage.tables import (
    derived_value,
    event_instance,
    form_instance,
    item_value,
    study_version,
    subject,
)

__all__ = ["FormSaveRepository", "SaveState", "SubjectCheck"]

_SUBJECT_PK = (
    sa.select(subject.c.id)
    .where(
        subject.c.study == sa.bindparam("study"),
        subject.c.subject_id == sa.bindparam("subject_id"),
    )
    .scalar_subquery()
)
# the study's current version beside the subject: the newest loaded
_loaded = study_version.alias("loaded")
_newest = sa.select(sa.func.max(_loaded.c.version)).where(_loaded.c.study == subject.c.study)
_WITH_VERSION = subject.outerjoin(
    study_version,
    sa.and_(
        study_version.c.study == subject.c.study,
        study_version.c.version == _newest.scalar_subquery(),
    ),
)
_KEY = (study_version.c.version.label("sv_version"), study_version.c.sha256.label("sv_sha256"))
_BY_SUBJECT_ID = (
    subject.c.study == sa.bindparam("study"),
    subject.c.subject_id == sa.bindparam("subject_id"),
)
_STATE = Prepared(
    sa.select(
        *subject.c,
        *_KEY,
        *(column.label(f"e_{column.name}") for column in event_instance.c),
        *(column.label(f"f_{column.name}") for column in form_instance.c),
    )
    .select_from(
        _WITH_VERSION.outerjoin(
            event_instance,
            sa.and_(
                event_instance.c.subject_pk == subject.c.id,
                event_instance.c.event == sa.bindparam("event"),
                event_instance.c.instance == sa.bindparam("instance"),
            ),
        ).outerjoin(
            form_instance,
            sa.and_(
                form_instance.c.event_pk == event_instance.c.id,
                form_instance.c.form == sa.bindparam("form"),
            ),
        )
    )
    .where(*_BY_SUBJECT_ID)
)
# every form of the subject (a form without values too: its version counts) with its values
_FORMS_AND_VALUES = Prepared(
    sa.select(
        form_instance.c.id.label("form_pk"),
        form_instance.c.version,
        event_instance.c.event,
        event_instance.c.instance,
        event_instance.c.target_date,
        form_instance.c.form,
        item_value.c.item,
        item_value.c.group_instance,
        item_value.c.value_text,
        event_instance.c.id.label("event_pk"),
    )
    .select_from(
        form_instance.join(event_instance, event_instance.c.id == form_instance.c.event_pk)
    )
    .outerjoin(item_value, item_value.c.form_pk == form_instance.c.id)
    .where(form_instance.c.subject_pk == _SUBJECT_PK)
    .order_by(  # as CaptureRepository.subject_values orders them
        event_instance.c.target_date.is_(None),
        event_instance.c.target_date,
        event_instance.c.id,
        item_value.c.group_instance,
    )
)
_DERIVED = Prepared(
    sa.select(derived_value.c.name, derived_value.c.value_text).where(
        derived_value.c.subject_pk == _SUBJECT_PK
    )
)
_CHECK = Prepared(
    sa.select(
        *subject.c,
        *_KEY,
        form_instance.c.id.label("form_pk"),
        form_instance.c.version.label("form_version"),
    )
    .select_from(_WITH_VERSION.outerjoin(form_instance, form_instance.c.subject_pk == subject.c.id))
    .where(*_BY_SUBJECT_ID)
    .order_by(form_instance.c.id)
)


@dataclass(frozen=True, slots=True)
class SaveState:
    """What a save is worked out from, read together."""

    study_key: tuple[int, str] | None  # (version, sha256) of the current definition
    subject: SubjectRecord | None  # None: at a site the caller may not see
    event: EventRecord | None
    form: FormRecord | None
    rows: list[ValueRow]  # every value of the subject, in schedule order
    forms_seen: tuple[tuple[int, int], ...]  # (id, version) of each of the subject's forms
    derived: dict[str, str]


@dataclass(frozen=True, slots=True)
class SubjectCheck:
    """The study's current version, the subject and its forms' versions, read at once."""

    study_key: tuple[int, str] | None
    subject: SubjectRecord | None
    forms_seen: tuple[tuple[int, int], ...]


def _key(row: Any) -> tuple[int, str] | None:
    return None if row.sv_version is None else (int(row.sv_version), str(row.sv_sha256))


class FormSaveRepository:
    """The reads of a form save, for a principal (see the module docstring)."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.subjects = SubjectRepository(connection, principal)

    def state(
        self, study: str, subject_id: str, event: str, instance: int, form: str
    ) -> SaveState | None:
        """Everything a save of ``form`` at ``event``/``instance`` is worked out from;
        ``None`` when the study has no subject ``subject_id``."""
        who = {"study": study, "subject_id": subject_id}
        with pipelined(self.connection):
            state = _STATE.send(
                self.connection, {**who, "event": event, "instance": instance, "form": form}
            )
            values = _FORMS_AND_VALUES.send(self.connection, who)
            derived = _DERIVED.send(self.connection, who)
        row = state.first()
        if row is None:
            return None
        rows: list[ValueRow] = []
        forms: set[tuple[int, int]] = set()
        for found in values.rows():
            forms.add((int(found.form_pk), int(found.version)))
            if found.item is not None:
                rows.append(ValueRow(*found[2:]))
        return SaveState(
            study_key=_key(row),
            subject=self.subjects.visible(row),
            event=None
            if row.e_id is None
            else EventRecord(*(getattr(row, f"e_{name}") for name in EventRecord.__slots__)),
            form=None
            if row.f_id is None
            else FormRecord(*(getattr(row, f"f_{name}") for name in FormRecord.__slots__)),
            rows=rows,
            forms_seen=tuple(sorted(forms)),
            derived=dict(derived.rows()),
        )

    def check(self, study: str, subject_id: str) -> SubjectCheck:
        """The study's current version, the subject and its forms' versions, in one read."""
        rows = _CHECK.all(self.connection, {"study": study, "subject_id": subject_id})
        if not rows:
            return SubjectCheck(None, None, ())
        forms = tuple(
            (int(row.form_pk), int(row.form_version)) for row in rows if row.form_pk is not None
        )
        return SubjectCheck(_key(rows[0]), self.subjects.visible(rows[0]), forms)
