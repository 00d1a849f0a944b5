"""Writing a form save that :mod:`consortia.services.data_entry` has worked out.

:func:`write_save` writes the form's new version, its values, the subject's derived values
and the audit events (a verification or signature the change clears, then ``form.save``)
in the caller's write transaction, and opens a query on each soft problem. On PostgreSQL
the statements that do not need each other's answers are sent together
(:func:`~consortia.storage.prepared.pipelined`): the form's versioned update, its values,
the derived values and the lock of the study's audit head in one round trip; the audit
events, the head's move and the count of open queries in the next; then the COMMIT. The
guarantees are the single statements' own: the version test is in the form's UPDATE (0
rows: a concurrent save won, and the save is refused before anything is committed), and
the study's audit head is locked before its events are hashed onto it.

The value helpers the writes and an import share (``split_identifiers``,
``subject_context``, ``derived_values``, ``query_target``) are here too;
:mod:`~consortia.services.data_entry` re-exports them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from consortia.auth.principal import Principal
from consortia.domain.validation import FormCheck
from consortia.exceptions import ConflictError, Problem
from consortia.services.common import form_audit_id, utc_now
from consortia.services.form_events import form_save_after, form_save_entry
from consortia.services.form_reads import FormView, form_view
from consortia.services.queries import open_query_row
from consortia.services.studies import Definition
from consortia.services.subject_values import derived_values, subject_context
from consortia.storage.audit import append_events_at, lock_head
from consortia.storage.capture import CaptureRepository, EventRecord, FormRecord, ValueRow
from consortia.storage.prepared import Pending, pipelined
from consortia.storage.queries import QueryRepository
from consortia.storage.repositories import SubjectRecord

__all__ = [
    "SavePlan",
    "derived_values",
    "query_target",
    "split_identifiers",
    "subject_context",
    "write_save",
]


def split_identifiers(
    definition: Definition, rows: Mapping[tuple[str, int], str]
) -> dict[str, dict[str, str]]:
    """Rows as ``{"values": {key: text}, "identifiers": {key: text}}`` for an audit event."""
    index = definition.index
    split: dict[str, dict[str, str]] = {"values": {}, "identifiers": {}}
    for (item, number), text in sorted(rows.items()):
        part = "identifiers" if item in index.identifiers else "values"
        split[part][index.key(item, number)] = text
    return {part: content for part, content in split.items() if content}


# --------------------------------------------------------------------------- values


_WARNING_PATH = re.compile(r"^forms\.(\w+)(?:\.(\w+)\[(\d+)\])?(?:\.(\w+))?$")


def query_target(problem: Problem) -> tuple[str, int]:
    """(item, group instance) a soft problem opens its query on; '' is the whole form."""
    match = _WARNING_PATH.fullmatch(problem.path)
    if match is None:
        return "", 0
    _, _group, number, item = match.groups()
    return item or "", int(number) if number else 0


@dataclass(frozen=True)
class SavePlan:
    """A save worked out in a snapshot: what to write if the subject has not changed since."""

    definition: Definition
    subject: SubjectRecord
    event: EventRecord
    ref: str
    form: str
    current: FormRecord | None
    rows: list[ValueRow]
    check: FormCheck
    new: dict[tuple[str, int], tuple[str, float | None]]
    old: dict[tuple[str, int], str]
    reason: str | None
    status: str
    visit_date: date | None
    visit_changed: bool
    derived_before: dict[str, str]
    forms_seen: tuple[tuple[int, int], ...]

    @property
    def changed(self) -> set[tuple[str, int]]:
        return {k for k, (text, _) in self.new.items() if k in self.old and self.old[k] != text}

    @property
    def removed(self) -> set[tuple[str, int]]:
        return set(self.old) - set(self.new)

    @property
    def added(self) -> set[tuple[str, int]]:
        return set(self.new) - set(self.old)

    @property
    def changes_anything(self) -> bool:
        status_changed = self.current is None or self.current.status != self.status
        return bool(
            self.changed or self.removed or self.added or status_changed or self.visit_changed
        )


def write_save(connection: Connection, principal: Principal, plan: SavePlan) -> FormView:
    """Write a planned save: on PostgreSQL in two round trips of statements sent together
    (the form's versioned update, its values, the derived values and the lock of the
    study's audit head; then the audit events, the head and the open queries' count) and
    the COMMIT, where each statement was a round trip of its own."""
    definition, subject, event, ref, form = (
        plan.definition,
        plan.subject,
        plan.event,
        plan.ref,
        plan.form,
    )
    study, subject_id = subject.study, subject.subject_id
    current, new, old, status = plan.current, plan.new, plan.old, plan.status
    changed, removed, added = plan.changed, plan.removed, plan.added
    capture = CaptureRepository(connection, principal)
    now = utc_now()
    stamp = {"status": status, "updated_at": now, "updated_by": principal.email}
    changes: dict[str, Any] = {}
    if current is None:  # its id is needed by the values: read back at once (RETURNING)
        record = capture.add_form(
            subject,
            event_pk=event.id,
            form=form,
            version=1,
            study_version=definition.version,
            **stamp,
        )
    else:
        changes = {
            "version": current.version + 1,
            "study_version": definition.version,
            "verified_at": None,
            "verified_by": None,
            "signed_at": None,
            "signed_by": None,
            "signed_name": None,
            "signature_meaning": None,
            **stamp,
        }
        record = replace(current, **changes)
    if plan.visit_changed:
        capture.update_event(event.id, visit_date=plan.visit_date)
    derived_after = derived_values(definition, _rows_after(plan))
    entries = _audit_entries(principal, plan, record.version, derived_after)
    updated: Pending | None = None
    try:
        with pipelined(connection):
            if current is not None:
                updated = capture.send_form_update(
                    current.id, expected_version=current.version, **changes
                )
            capture.write_values(
                record.id,
                upserts={key: new[key] for key in added | changed},
                existing=old,
                deletes=removed,
            )
            capture.update_derived(subject, plan.derived_before, derived_after)
            head = lock_head(connection, study)
    except IntegrityError:
        if updated is None or updated.rowcount != 0:
            raise
        # the form moved on and a concurrent save's values clashed with these
    if updated is not None and updated.rowcount != 1:
        raise ConflictError(
            f"form {form} at {ref} of subject {subject_id} changed while saving; reload it"
        )
    query_rows = QueryRepository(connection, principal)
    with pipelined(connection):
        append_events_at(connection, study, head, entries)
        counted = None if plan.check.warnings else query_rows.send_open_on_form(record.id)
    opened = _open_queries(connection, principal, plan, record.id, now)
    open_count = len(counted.rows() if counted else query_rows.open_on_form(record.id))
    return form_view(
        definition,
        principal,
        subject,
        ref,
        form,
        record,
        {key: text for key, (text, _) in new.items()},
        open_count,
        warnings=plan.check.warnings,
        queries_opened=tuple(opened),
    )


def _rows_after(plan: SavePlan) -> list[ValueRow]:
    """The subject's values after the save, in schedule order, without reading them again."""
    event, form = plan.event, plan.form
    rows = [r for r in plan.rows if not (r.event_pk == event.id and r.form == form)] + [
        ValueRow(event.event, event.instance, event.target_date, form, item, n, text, event.id)
        for (item, n), (text, _) in plan.new.items()
    ]
    rows.sort(key=ValueRow.schedule_key)
    return rows


def _audit_entries(
    principal: Principal,
    plan: SavePlan,
    version: int,
    derived_after: Mapping[str, tuple[str, float | None]],
) -> list[dict[str, Any]]:
    """The save's audit events, in chain order: a verification or signature it clears,
    then ``form.save`` with every changed value before and after."""
    definition, subject, current = plan.definition, plan.subject, plan.current
    study, subject_id = subject.study, subject.subject_id
    entity = form_audit_id(study, subject_id, plan.ref, plan.form)
    entries: list[dict[str, Any]] = []
    if current is not None:
        for what, by, at in (
            ("verification", current.verified_by, current.verified_at),
            ("signature", current.signed_by, current.signed_at),
        ):
            if at is not None:
                entries.append(
                    {
                        "action": f"form.{what}_cleared",
                        "entity_type": "form",
                        "entity_id": entity,
                        "site": subject.site,
                        "before": {"by": by, "at": at.isoformat()},
                        "reason": f"the form changed after its {what}",
                    }
                )
    derived_before = plan.derived_before
    derived_changes = {
        name: text for name, (text, _) in derived_after.items() if derived_before.get(name) != text
    } | {name: None for name in derived_before if name not in derived_after}
    changed, removed, added = plan.changed, plan.removed, plan.added
    before = split_identifiers(definition, {k: plan.old[k] for k in changed | removed})
    after = split_identifiers(definition, {k: plan.new[k][0] for k in changed | added})
    after_values = form_save_after(
        status=plan.status,
        version=version,
        values=after,
        removed=[definition.index.key(*k) for k in removed],
        derived=derived_changes,
        visit_date=plan.visit_date if plan.visit_changed else None,
    )
    entries.append(
        form_save_entry(
            study,
            subject_id,
            plan.ref,
            plan.form,
            site=subject.site,
            before={"status": current.status, "version": current.version, **before}
            if current
            else None,
            after=after_values,
            reason=plan.reason,
        )
    )
    return [{"actor": principal.email, **entry} for entry in entries]


def _open_queries(
    connection: Connection, principal: Principal, plan: SavePlan, form_pk: int, now: datetime
) -> list[int]:
    """Open a query for each soft problem whose item has none open yet."""
    query_rows = QueryRepository(connection, principal)
    entity = form_audit_id(plan.subject.study, plan.subject.subject_id, plan.ref, plan.form)
    opened: list[int] = []
    for warning in plan.check.warnings:
        item, number = query_target(warning)
        if query_rows.open_on_item(form_pk, item, number):
            continue
        opened.append(
            open_query_row(
                connection,
                principal,
                plan.subject,
                form_pk,
                (item, number, plan.definition.index.key(item, number) if item else ""),
                warning.message,
                entity=entity,
                origin="auto",
                now=now,
            )
        )
    return opened
