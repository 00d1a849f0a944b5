"""Data entry: a subject's events and forms, read and saved the way a regulator expects.

Saving a form (:func:`save_form`) is one transaction that

1. finds the subject through the site-scoped repository (another site's subject: 404) and
   checks that the caller may enter data there (403);
2. refuses a stale version (409: the form changed since the caller read it) and a locked
   form (409 until a data manager unlocks it with a reason);
3. validates the whole form with :func:`~consortia.domain.validation.validate_form` against
   the subject's other forms: hard problems refuse the save with every item path (422) and
   change nothing; soft problems save and open a query on the item;
4. asks for a reason when a value saved before is changed or removed;
5. writes the values, bumps the version, clears a verification or signature the change
   invalidates, recomputes the subject's derived variables and appends one ``form.save``
   audit event holding every changed value before and after, with the reason.

Identifier (PHI) values travel in the audit event under ``identifiers`` so they are masked
for readers without identifier access; reading a form that shows identifier values to the
caller is itself audited (``identifier.read``): reading is in
:mod:`consortia.services.form_reads`, whose names this module re-exports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action, may_see_identifiers
from consortia.auth.principal import Principal
from consortia.domain.schedule import (
    event_ref,
    parse_event_ref,
)
from consortia.domain.study import ItemType
from consortia.domain.validation import (
    FormCheck,
    validate_form,
)
from consortia.domain.values import flatten, nest, storage_number, storage_text
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.services.common import (
    audit,
    find_subject,
    form_audit_id,
    require_in_study,
    utc_now,
    visible_study,
)
from consortia.services.form_events import form_save_after, form_save_entry
from consortia.services.form_reads import (
    FormPage,
    FormView,
    form_view,
    read_form,
    read_form_page,
)
from consortia.services.queries import open_query_row
from consortia.services.studies import Definition, current_definition
from consortia.services.subject_values import derived_values, subject_context
from consortia.services.unit_of_work import reading, writing
from consortia.storage.audit import append_event
from consortia.storage.capture import (
    CaptureRepository,
    EventRecord,
    FormRecord,
    StudyVersionRepository,
    ValueRow,
)
from consortia.storage.queries import QueryRepository
from consortia.storage.repositories import SubjectRecord, SubjectRepository

__all__ = [
    "FormPage",
    "FormSave",
    "FormView",
    "derived_values",
    "query_target",
    "read_form",
    "read_form_page",
    "save_form",
    "split_identifiers",
    "subject_context",
]

REASON_NEEDED = (
    "changing or removing a saved value needs a reason for change "
    "(21 CFR Part 11 §11.10(e)); give it in 'reason'"
)


@dataclass(frozen=True, slots=True)
class FormSave:
    """What a save sends: every value of the form, the version read, and a reason if needed."""

    version: int
    values: Mapping[str, object]
    complete: bool = False
    reason: str | None = None
    visit_date: date | None = None
    #: file items are shown, not edited (the pages): they keep what is stored, whatever
    #: ``values`` holds for them
    keep_files: bool = False


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


# --------------------------------------------------------------------------- forms


def _event_for_write(
    capture: CaptureRepository,
    definition: Definition,
    subject: SubjectRecord,
    ref: str,
    form: str,
    now: datetime,
) -> EventRecord:
    name, instance = parse_event_ref(ref)
    event_def = definition.study.events.get(name)
    if event_def is None:
        raise NotFoundError(f"event {name} is not in study {definition.code}")
    if form not in event_def.forms:
        raise NotFoundError(f"form {form} is not collected at event {name}")
    event = capture.event(subject, name, instance)
    if event is not None:
        return event
    if instance > 1:
        if not (event_def.repeating or event_def.unscheduled):
            raise NotFoundError(f"event {name} does not repeat: only {name} exists")
        last = capture.last_instance(subject, name)
        if instance != last + 1:
            raise NotFoundError(
                f"event {ref} not found: the next instance of {name} is {name}.{last + 1}"
            )
    return capture.add_event(subject, event=name, instance=instance, created_at=now)


@dataclass(frozen=True)
class _SavePlan:
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


def _plan_save(
    connection: Connection,
    principal: Principal,
    where: tuple[str, str, str, str],
    save: FormSave,
    today: date | None,
    *,
    in_snapshot: bool,
) -> _SavePlan | None:
    """Check a save and work out its writes; ``None`` if it must be planned under the write
    lock (in a snapshot, when the event does not exist yet and has to be created)."""
    study, subject_id, ref, form = where
    definition = current_definition(connection, study)
    subject = find_subject(connection, principal, study, subject_id)
    require_in_study(principal, Action.DATA_ENTER, study, subject.site)
    capture = CaptureRepository(connection, principal)
    if in_snapshot and capture.event(subject, *parse_event_ref(ref)) is None:
        return None  # the event has to be created: a write
    event = _event_for_write(capture, definition, subject, ref, form, utc_now())
    ref = event_ref(event.event, event.instance)
    current = capture.form(event.id, form)
    current_version = current.version if current else 0
    if save.version != current_version:
        raise ConflictError(
            f"form {form} at {ref} of subject {subject_id} is at version {current_version}, "
            f"not {save.version}: someone saved it meanwhile; reload it and apply your changes"
        )
    if current is not None and current.locked_at is not None:
        raise ConflictError(
            f"form {form} at {ref} of subject {subject_id} is locked; a data manager must "
            "unlock it (with a reason) before it can change"
        )
    rows = capture.subject_values(subject)
    # the form's stored values are among the subject's: no second query
    old = {
        (row.item, row.group_instance): row.text
        for row in rows
        if current is not None and row.event_pk == event.id and row.form == form
    }
    identifiers = definition.index.identifiers
    if not may_see_identifiers(principal, study, subject.site) and any(
        item in identifiers for item, _ in old
    ):
        raise PermissionDeniedError(
            f"form {form} at {ref} of subject {subject_id} holds identifier values your roles "
            f"at site {subject.site} do not show; saving it would remove them"
        )
    values = _keeping_files(definition, form, save.values, old) if save.keep_files else save.values
    context = subject_context(
        definition,
        rows,
        exclude=(event.event, event.instance, form),
        prefer_event=(event.event, event.instance),
    )
    check = validate_form(
        definition.study, form, values, complete=save.complete, context=context, today=today
    )
    if check.errors:
        raise ValidationError(list(check.errors))
    new = {key: (storage_text(v), storage_number(v)) for key, v in flatten(check.values).items()}
    plan = _SavePlan(
        definition=definition,
        subject=subject,
        event=event,
        ref=ref,
        form=form,
        current=current,
        rows=rows,
        check=check,
        new=new,
        old=old,
        reason=(save.reason or "").strip() or None,
        status="complete" if save.complete else "in_progress",
        visit_date=save.visit_date,
        visit_changed=save.visit_date is not None and save.visit_date != event.visit_date,
        derived_before=capture.derived(subject),
        forms_seen=capture.form_versions(subject),
    )
    if (plan.changed or plan.removed) and plan.reason is None:
        raise ValidationError([Problem("reason", REASON_NEEDED)])
    return plan


def _keeping_files(
    definition: Definition,
    form: str,
    values: Mapping[str, object],
    old: Mapping[tuple[str, int], str],
) -> dict[str, object]:
    """``values`` with every file item as stored (in each repeat of its group)."""
    form_def = definition.study.forms.get(form)
    files = (
        set()
        if form_def is None
        else {
            name
            for group in form_def.groups.values()
            for name, item in group.items.items()
            if item.type is ItemType.FILE
        }
    )
    merged: dict[str, object] = {name: value for name, value in values.items() if name not in files}
    stored = nest(
        {key: text for key, text in old.items() if key[0] in files},
        definition.index.repeating_group_of,
    )
    for name, value in stored.items():
        if not isinstance(value, list):
            merged[name] = value
            continue
        posted = merged.get(name)
        repeats = [dict(r) for r in posted] if isinstance(posted, list) else []
        for number, instance in enumerate(value):
            while len(repeats) <= number:
                repeats.append({})
            repeats[number] = {
                **{k: v for k, v in repeats[number].items() if k not in files},
                **instance,
            }
        merged[name] = repeats
    return merged


def _unchanged_since(connection: Connection, principal: Principal, plan: _SavePlan) -> bool:
    """Whether the subject's data, the study version and the subject are as planned."""
    study = plan.subject.study
    key = StudyVersionRepository(connection).current_key(study)
    if key is None or key[0] != plan.definition.version:
        return False
    subject = SubjectRepository(connection, principal).get(study, plan.subject.subject_id)
    if subject != plan.subject:
        return False
    versions = CaptureRepository(connection, principal).form_versions(plan.subject)
    return versions == plan.forms_seen


def save_form(
    engine: Engine,
    principal: Principal,
    study: str,
    subject_id: str,
    ref: str,
    form: str,
    save: FormSave,
    *,
    today: date | None = None,
) -> FormView:
    """Validate and save one form instance; see the module docstring for every rule.

    The save is checked and worked out in a read-only snapshot, which waits for no writer;
    the write transaction then only confirms that none of the subject's forms, the subject
    and the study version changed since (else it works the save out again, under the lock)
    and writes. Writers on SQLite take turns, so the turn is kept short.
    """
    visible_study(principal, study)
    where = (study, subject_id, ref, form)
    # a save's checks before its write: a snapshot on SQLite; on PostgreSQL (each statement
    # sees its own anyway) no BEGIN and ROLLBACK round trips around them
    with reading(engine, principal, statements=True) as work:
        connection = work.connection
        plan = _plan_save(connection, principal, where, save, today, in_snapshot=True)
        if plan is not None and not plan.changes_anything:
            return _unchanged_view(connection, principal, plan)
    with writing(engine, principal) as work:
        if plan is None or not _unchanged_since(work.connection, principal, plan):
            plan = _plan_save(work.connection, principal, where, save, today, in_snapshot=False)
            assert plan is not None
            if not plan.changes_anything:
                return _unchanged_view(work.connection, principal, plan)
        return _write_save(work.connection, principal, plan)


def _unchanged_view(connection: Connection, principal: Principal, plan: _SavePlan) -> FormView:
    current = plan.current
    queries = QueryRepository(connection, principal).open_on_form(current.id) if current else []
    return form_view(
        plan.definition,
        principal,
        plan.subject,
        plan.ref,
        plan.form,
        current,
        plan.old,
        len(queries),
    )


def _write_save(connection: Connection, principal: Principal, plan: _SavePlan) -> FormView:
    definition, subject, event, ref, form = (
        plan.definition,
        plan.subject,
        plan.event,
        plan.ref,
        plan.form,
    )
    study, subject_id = subject.study, subject.subject_id
    current, new, old, status, reason = plan.current, plan.new, plan.old, plan.status, plan.reason
    changed, removed, added = plan.changed, plan.removed, plan.added
    check, rows = plan.check, plan.rows
    capture = CaptureRepository(connection, principal)
    now = utc_now()
    stamp = {"status": status, "updated_at": now, "updated_by": principal.email}
    cleared = {
        "verification": current is not None and current.verified_at is not None,
        "signature": current is not None and current.signed_at is not None,
    }
    if current is None:
        record = capture.add_form(
            subject,
            event_pk=event.id,
            form=form,
            version=1,
            study_version=definition.version,
            **stamp,
        )
    else:
        changes: dict[str, Any] = {
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
        if not capture.update_form(current.id, expected_version=current.version, **changes):
            raise ConflictError(
                f"form {form} at {ref} of subject {subject_id} changed while saving; reload it"
            )
        record = replace(current, **changes)
    capture.write_values(
        record.id,
        upserts={key: new[key] for key in added | changed},
        existing=old,
        deletes=removed,
    )
    if plan.visit_changed:
        capture.update_event(event.id, visit_date=plan.visit_date)
    entity = form_audit_id(study, subject_id, ref, form)
    for what, was in cleared.items():
        if was and current is not None:
            by, at = (
                (current.verified_by, current.verified_at)
                if what == "verification"
                else (current.signed_by, current.signed_at)
            )
            audit(
                connection,
                principal,
                f"form.{what}_cleared",
                "form",
                entity,
                chain=study,
                site=subject.site,
                before={"by": by, "at": None if at is None else at.isoformat()},
                reason=f"the form changed after its {what}",
            )
    derived_before = plan.derived_before
    # the subject's values after this save, in schedule order, without reading them again
    after_rows = [r for r in rows if not (r.event_pk == event.id and r.form == form)] + [
        ValueRow(event.event, event.instance, event.target_date, form, item, n, text, event.id)
        for (item, n), (text, _) in new.items()
    ]
    after_rows.sort(key=ValueRow.schedule_key)
    derived_after = derived_values(definition, after_rows)
    capture.update_derived(subject, derived_before, derived_after)
    derived_changes = {
        name: text for name, (text, _) in derived_after.items() if derived_before.get(name) != text
    } | {name: None for name in derived_before if name not in derived_after}
    before = split_identifiers(definition, {k: old[k] for k in changed | removed})
    after = split_identifiers(definition, {k: new[k][0] for k in changed | added})
    after_values = form_save_after(
        status=status,
        version=record.version,
        values=after,
        removed=[definition.index.key(*k) for k in removed],
        derived=derived_changes,
        visit_date=plan.visit_date if plan.visit_changed else None,
    )
    save_event = form_save_entry(
        study,
        subject_id,
        ref,
        form,
        site=subject.site,
        before={"status": current.status, "version": current.version, **before}
        if current
        else None,
        after=after_values,
        reason=reason,
    )
    append_event(connection, study, actor=principal.email, **save_event)
    query_rows = QueryRepository(connection, principal)
    opened: list[int] = []
    for warning in check.warnings:
        item, number = query_target(warning)
        if query_rows.open_on_item(record.id, item, number):
            continue
        opened.append(
            open_query_row(
                connection,
                principal,
                subject,
                record.id,
                (item, number, definition.index.key(item, number) if item else ""),
                warning.message,
                entity=entity,
                origin="auto",
                now=now,
            )
        )
    open_count = len(query_rows.open_on_form(record.id))
    return form_view(
        definition,
        principal,
        subject,
        ref,
        form,
        record,
        {key: text for key, (text, _) in new.items()},
        open_count,
        warnings=check.warnings,
        queries_opened=tuple(opened),
    )
