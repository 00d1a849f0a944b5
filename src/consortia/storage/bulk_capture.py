"""A bulk import's writes: subjects, their status, events, forms, values and derived values
of one study, inserted in batches with ids reserved up front (:mod:`consortia.storage.bulk`).

The import service decides what to write and checks it; this is where the rows meet the
tables. It runs in the caller's write transaction and never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.principal import Principal
from consortia.domain.file_check import ValueToWrite
from consortia.storage import bulk
from consortia.storage.tables import (
    derived_value,
    event_instance,
    form_instance,
    subject,
    subject_status,
)

__all__ = ["BulkCapture"]

_SUBJECT_COLUMNS = ("id", "study", "site", "subject_id", "initials", "created_at", "created_by",
                    "status", "anchor_date")  # fmt: skip
_STATUS_COLUMNS = ("subject_pk", "status", "on_date", "reason", "recorded_at", "recorded_by")
_EVENT_COLUMNS = ("id", "subject_pk", "event", "instance", "target_date", "window_start",
                  "window_end", "visit_date", "created_at")  # fmt: skip
_FORM_COLUMNS = ("id", "event_pk", "subject_pk", "form", "status", "version", "study_version",
                 "updated_at", "updated_by")  # fmt: skip
_DERIVED_COLUMNS = ("subject_pk", "name", "value_text", "value_num")


class BulkCapture:
    """Batched inserts of one import, by one principal, into one study.

    Rows are tuples in the order of the ``*_COLUMNS`` each method names; times are bound
    once with :meth:`time` (the databases store them differently).
    """

    def __init__(self, connection: Connection, principal: Principal, study: str) -> None:
        self.connection = connection
        self.principal = principal
        self.study = study

    def subject_ids(self) -> set[str]:
        """Every subject id of the study, at any site (an import must not take one)."""
        query = sa.select(subject.c.subject_id).where(subject.c.study == self.study)
        return set(self.connection.execute(query).scalars().all())

    def reserve_subject_ids(self, count: int) -> list[int]:
        return bulk.reserve_ids(self.connection, subject, count)

    def reserve_event_ids(self, count: int) -> list[int]:
        return bulk.reserve_ids(self.connection, event_instance, count)

    def reserve_form_ids(self, count: int) -> list[int]:
        return bulk.reserve_ids(self.connection, form_instance, count)

    def time(self, moment: datetime) -> Any:
        """``moment`` as the database stores a time of these tables."""
        return bulk.bound(self.connection, subject.c.created_at, moment)

    def number(self, value: float | None) -> Any:
        """A derived value's number as the database stores it."""
        return bulk.bound(self.connection, derived_value.c.value_num, value)

    def add_subjects(self, rows: list[tuple[Any, ...]]) -> None:
        """``id, study, site, subject_id, initials, created_at, created_by, status,
        anchor_date``."""
        bulk.insert_rows(self.connection, subject, _SUBJECT_COLUMNS, rows)

    def add_statuses(self, rows: list[tuple[Any, ...]]) -> None:
        """``subject_pk, status, on_date, reason, recorded_at, recorded_by``."""
        bulk.insert_rows(self.connection, subject_status, _STATUS_COLUMNS, rows)

    def add_events(self, rows: list[tuple[Any, ...]]) -> None:
        """``id, subject_pk, event, instance, target_date, window_start, window_end,
        visit_date, created_at``."""
        bulk.insert_rows(self.connection, event_instance, _EVENT_COLUMNS, rows)

    def add_forms(self, rows: list[tuple[Any, ...]]) -> None:
        """``id, event_pk, subject_pk, form, status, version, study_version, updated_at,
        updated_by``."""
        bulk.insert_rows(self.connection, form_instance, _FORM_COLUMNS, rows)

    def add_values(self, rows: list[ValueToWrite], form_ids: list[int]) -> None:
        bulk.insert_values(self.connection, rows, form_ids)

    def replace_derived(self, subject_pks: list[int], rows: list[tuple[Any, ...]]) -> None:
        """The derived values of ``subject_pks`` become ``rows`` (``subject_pk, name,
        value_text, value_num``)."""
        if subject_pks:
            self.connection.execute(
                derived_value.delete().where(derived_value.c.subject_pk.in_(sorted(subject_pks)))
            )
        bulk.insert_rows(self.connection, derived_value, _DERIVED_COLUMNS, rows)
