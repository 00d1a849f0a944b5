"""The reads an EDC analysis table is built from: one study's subjects (optionally of some
sites and statuses), their derived values, their non-repeating item values, the values
of a repeating group's instances and their allocations.

Rows come from a server-side cursor, in no particular order unless stated, so a table of
millions of values is built in one pass (:mod:`consortia.federation.edc_tables`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.storage.audit import audit_head
from consortia.storage.randomisation import subject_randomisation
from consortia.storage.tables import (
    derived_value,
    event_instance,
    form_instance,
    item_value,
    subject,
)

__all__ = ["STREAM_BATCH", "EdcReads"]

#: Rows fetched from the cursor at a time.
STREAM_BATCH = 10_000


class EdcReads:
    """The subjects of ``study`` (at ``sites``, with ``statuses``; ``None``: any)."""

    def __init__(
        self,
        connection: Connection,
        study: str,
        *,
        sites: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
    ) -> None:
        self.connection = connection
        self.study = study
        conditions = [subject.c.study == study]
        if sites is not None:
            conditions.append(subject.c.site.in_(sites))
        if statuses is not None:
            conditions.append(subject.c.status.in_(statuses))
        self._conditions = conditions

    def _stream(self, query: sa.Select[Any]) -> Iterator[Any]:
        options = self.connection.execution_options(stream_results=True, yield_per=STREAM_BATCH)
        result = options.execute(query)
        try:
            yield from result
        finally:
            result.close()

    def subjects(self) -> list[Any]:
        """``id, site, status`` of each subject, by site then id."""
        query = (
            sa.select(subject.c.id, subject.c.site, subject.c.status)
            .where(*self._conditions)
            .order_by(subject.c.site, subject.c.id)
        )
        return list(self.connection.execute(query).all())

    def derived(self, names: Sequence[str]) -> Iterator[Any]:
        """``subject_pk, name, value_text, value_num`` of the derived variables ``names``."""
        query = (
            sa.select(
                derived_value.c.subject_pk,
                derived_value.c.name,
                derived_value.c.value_text,
                derived_value.c.value_num,
            )
            .select_from(derived_value.join(subject, derived_value.c.subject_pk == subject.c.id))
            .where(*self._conditions, derived_value.c.name.in_(sorted(names)))
        )
        return self._stream(query)

    def item_values(self, items: Sequence[str], events: Sequence[str]) -> Iterator[Any]:
        """``subject_pk, event, instance, item, value_text, value_num`` of every
        non-repeating value of ``items`` at ``events``."""
        query = (
            sa.select(
                form_instance.c.subject_pk,
                event_instance.c.event,
                event_instance.c.instance,
                item_value.c.item,
                item_value.c.value_text,
                item_value.c.value_num,
            )
            .select_from(
                item_value.join(form_instance, item_value.c.form_pk == form_instance.c.id)
                .join(event_instance, form_instance.c.event_pk == event_instance.c.id)
                .join(subject, form_instance.c.subject_pk == subject.c.id)
            )
            .where(
                *self._conditions,
                item_value.c.group_instance == 0,
                item_value.c.item.in_(items),
                event_instance.c.event.in_(events),
            )
        )
        return self._stream(query)

    def group_values(self, items: Sequence[str]) -> Iterator[Any]:
        """``subject_pk, form_pk, event, instance, group_instance, item, value_text,
        value_num`` of every value of ``items`` (items of a repeating group) at any event."""
        query = (
            sa.select(
                form_instance.c.subject_pk,
                form_instance.c.id.label("form_pk"),
                event_instance.c.event,
                event_instance.c.instance,
                item_value.c.group_instance,
                item_value.c.item,
                item_value.c.value_text,
                item_value.c.value_num,
            )
            .select_from(
                item_value.join(form_instance, item_value.c.form_pk == form_instance.c.id)
                .join(event_instance, form_instance.c.event_pk == event_instance.c.id)
                .join(subject, form_instance.c.subject_pk == subject.c.id)
            )
            .where(
                *self._conditions,
                item_value.c.group_instance > 0,
                item_value.c.item.in_(sorted(items)),
            )
        )
        return self._stream(query)

    def allocations(self) -> Iterator[Any]:
        """``subject_pk, code, arm`` of each subject's allocation (the arm is for the caller
        to keep or drop: see :func:`consortia.federation.edc_tables.read_edc_table`)."""
        allocation = subject_randomisation
        query = (
            sa.select(allocation.c.subject_pk, allocation.c.code, allocation.c.arm)
            .select_from(allocation.join(subject, allocation.c.subject_pk == subject.c.id))
            .where(*self._conditions)
        )
        return self._stream(query)

    def data_marker(self) -> int:
        """The head sequence number of the study's audit chain: it moves on every change."""
        query = sa.select(audit_head.c.seq).where(audit_head.c.chain == self.study)
        return int(self.connection.execute(query).scalar() or 0)
