"""The reads an export streams: a study's values, queries and audit events, site-scoped.

Each method returns rows from a server-side cursor (``yield_per``), so an export of any
size is read in constant memory; the service turns them into tables and files.
"""

from __future__ import annotations

from collections.abc import Generator
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import Action, site_scope
from consortia.auth.principal import Principal
from consortia.storage.audit import AuditEvent, audit_event, row_event
from consortia.storage.repositories.scope import in_scope
from consortia.storage.tables import data_query, event_instance, form_instance, item_value, subject

__all__ = ["BATCH", "ExportReads", "ValueOrder"]

#: Rows fetched from the cursor at a time.
BATCH = 5000


class ValueOrder(Enum):
    """The order an export reads values in."""

    #: one form's rows: subject, form instance, group instance (the wide tables)
    FORM_ROWS = "form_rows"
    #: every value: subject, form instance, group instance, then as saved (``csv-long``)
    LONG = "long"
    #: subject, event, event instance, form, form instance (ODM ClinicalData)
    CLINICAL = "clinical"


_ORDER = {
    ValueOrder.FORM_ROWS: (subject.c.subject_id, form_instance.c.id, item_value.c.group_instance),
    ValueOrder.LONG: (
        subject.c.subject_id,
        form_instance.c.id,
        item_value.c.group_instance,
        item_value.c.id,
    ),
    ValueOrder.CLINICAL: (
        subject.c.subject_id,
        event_instance.c.event,
        event_instance.c.instance,
        form_instance.c.form,
        form_instance.c.id,
    ),
}


class ExportReads:
    """Streaming reads of one study at the sites where the principal reads subjects."""

    def __init__(self, connection: Connection, principal: Principal, study: str) -> None:
        self.connection = connection
        self.principal = principal
        self.study = study
        self.scope = site_scope(principal, study, Action.SUBJECT_READ)

    def _where(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.where(subject.c.study == self.study, in_scope(subject.c.site, self.scope))

    def _stream(self, query: sa.Select[Any]) -> Generator[Any, None, None]:
        options = self.connection.execution_options(stream_results=True, yield_per=BATCH)
        result = options.execute(query)
        try:
            yield from result
        finally:
            result.close()

    def values(self, order: ValueOrder, *, form: str | None = None) -> Generator[Any, None, None]:
        """Every value (of ``form``, if given) with its subject, event and form instance:
        ``subject_id, site, event, instance, form_pk, form, status, version, verified_at,
        signed_at, locked_at, group_instance, item, value_text``."""
        query = self._where(
            sa.select(
                subject.c.subject_id,
                subject.c.site,
                event_instance.c.event,
                event_instance.c.instance,
                form_instance.c.id.label("form_pk"),
                form_instance.c.form,
                form_instance.c.status,
                form_instance.c.version,
                form_instance.c.verified_at,
                form_instance.c.signed_at,
                form_instance.c.locked_at,
                item_value.c.group_instance,
                item_value.c.item,
                item_value.c.value_text,
            )
            .select_from(item_value)
            .join(form_instance, form_instance.c.id == item_value.c.form_pk)
            .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
            .join(subject, subject.c.id == form_instance.c.subject_pk)
        )
        if form is not None:
            query = query.where(form_instance.c.form == form)
        return self._stream(query.order_by(*_ORDER[order]))

    def queries(self) -> Generator[Any, None, None]:
        """Every query, oldest first: ``id, subject_id, site, event, instance, form, item,
        group_instance, status, origin, opened_at, opened_by, updated_at, assigned_to``."""
        query = self._where(
            sa.select(
                data_query.c.id,
                subject.c.subject_id,
                subject.c.site,
                event_instance.c.event,
                event_instance.c.instance,
                form_instance.c.form,
                data_query.c.item,
                data_query.c.group_instance,
                data_query.c.status,
                data_query.c.origin,
                data_query.c.opened_at,
                data_query.c.opened_by,
                data_query.c.updated_at,
                data_query.c.assigned_to,
            )
            .join(subject, subject.c.id == data_query.c.subject_pk)
            .join(form_instance, form_instance.c.id == data_query.c.form_pk)
            .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
            .order_by(data_query.c.id)
        )
        return self._stream(query)

    def audit_events(self) -> Generator[AuditEvent, None, None]:
        """The study's audit events at the sites where the principal reads the trail, in
        order (unmasked: the caller masks what it must)."""
        query = (
            sa.select(audit_event)
            .where(audit_event.c.chain == self.study)
            .order_by(audit_event.c.seq)
        )
        scope = site_scope(self.principal, self.study, Action.AUDIT_READ)
        for row in self._stream(query):
            event = row_event(row)
            if scope.every_site or event.site in scope.sites:
                yield event
