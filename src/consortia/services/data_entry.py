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

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action, may_see_identifiers
from consortia.auth.principal import Principal
from consortia.domain.schedule import event_ref, parse_event_ref
from consortia.domain.study import ItemType
from consortia.domain.validation import validate_form
from consortia.domain.values import flatten, nest, storage_number, storage_text
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.services.common import find_subject, require_in_study, utc_now, visible_study
from consortia.services.form_reads import (
    FormPage,
    FormView,
    form_view,
    read_form,
    read_form_page,
)
from consortia.services.form_writes import (
    SavePlan,
    derived_values,
    query_target,
    split_identifiers,
    subject_context,
    write_save,
)
from consortia.services.studies import Definition, current_definition, definition_at
from consortia.services.unit_of_work import reading, writing
from consortia.storage.capture import CaptureRepository, EventRecord
from consortia.storage.form_save import FormSaveRepository, SaveState
from consortia.storage.queries import QueryRepository
from consortia.storage.repositories import SubjectRecord

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


# --------------------------------------------------------------------------- forms


def _collected_at(definition: Definition, name: str, form: str) -> None:
    """Refuse an event the study does not have, or one that does not collect ``form``."""
    event_def = definition.study.events.get(name)
    if event_def is None:
        raise NotFoundError(f"event {name} is not in study {definition.code}")
    if form not in event_def.forms:
        raise NotFoundError(f"form {form} is not collected at event {name}")


def _new_event(
    capture: CaptureRepository, definition: Definition, subject: SubjectRecord, ref: str
) -> EventRecord:
    """Create the event instance ``ref`` names (it does not exist yet), if it may be."""
    name, instance = parse_event_ref(ref)
    event_def = definition.study.events[name]
    if instance > 1:
        if not (event_def.repeating or event_def.unscheduled):
            raise NotFoundError(f"event {name} does not repeat: only {name} exists")
        last = capture.last_instance(subject, name)
        if instance != last + 1:
            raise NotFoundError(
                f"event {ref} not found: the next instance of {name} is {name}.{last + 1}"
            )
    return capture.add_event(subject, event=name, instance=instance, created_at=utc_now())


def _read_state(
    connection: Connection, principal: Principal, where: tuple[str, str, str, str]
) -> tuple[Definition, SubjectRecord, SaveState]:
    """The study, the subject and everything else a save is worked out from, read together;
    what is missing or not the caller's is refused as each lookup on its own says it."""
    study, subject_id, ref, form = where
    try:
        name, instance = parse_event_ref(ref)
    except NotFoundError:
        name, instance = "", 0  # no event: the study and the subject are checked first
    state = FormSaveRepository(connection, principal).state(study, subject_id, name, instance, form)
    if state is None or state.study_key is None or state.subject is None:
        current_definition(connection, study)  # not found: no definition of the study
        find_subject(connection, principal, study, subject_id)  # not found: not the caller's
        raise NotFoundError(f"subject {subject_id} not found in study {study}")  # meanwhile
    require_in_study(principal, Action.DATA_ENTER, study, state.subject.site)
    parse_event_ref(ref)  # not found: a malformed reference
    return definition_at(connection, study, state.study_key), state.subject, state


def _plan_save(
    connection: Connection,
    principal: Principal,
    where: tuple[str, str, str, str],
    save: FormSave,
    today: date | None,
    *,
    in_snapshot: bool,
) -> SavePlan | None:
    """Check a save and work out its writes; ``None`` if it must be planned under the write
    lock (in a snapshot, when the event does not exist yet and has to be created)."""
    _, subject_id, ref, form = where
    definition, subject, state = _read_state(connection, principal, where)
    study = definition.code
    event, current = state.event, state.form
    if event is None:
        if in_snapshot:
            return None  # the event has to be created: a write
        _collected_at(definition, parse_event_ref(ref)[0], form)
        event = _new_event(CaptureRepository(connection, principal), definition, subject, ref)
    else:
        _collected_at(definition, event.event, form)
    ref = event_ref(event.event, event.instance)
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
    rows = state.rows
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
    plan = SavePlan(
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
        derived_before=state.derived,
        forms_seen=state.forms_seen,
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


def _unchanged_since(connection: Connection, principal: Principal, plan: SavePlan) -> bool:
    """Whether the subject's data, the study version and the subject are as planned."""
    now = FormSaveRepository(connection, principal).check(
        plan.subject.study, plan.subject.subject_id
    )
    return (
        now.study_key is not None
        and now.study_key[0] == plan.definition.version
        and now.subject == plan.subject
        and now.forms_seen == plan.forms_seen
    )


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
    with reading(engine, principal, statements=True) as snapshot:
        plan = _plan_save(snapshot.connection, principal, where, save, today, in_snapshot=True)
        if plan is not None and not plan.changes_anything:
            return _unchanged_view(snapshot.connection, principal, plan)
    with writing(engine, principal) as work:
        if plan is None or not _unchanged_since(work.connection, principal, plan):
            plan = _plan_save(work.connection, principal, where, save, today, in_snapshot=False)
            assert plan is not None
            if not plan.changes_anything:
                return _unchanged_view(work.connection, principal, plan)
        return write_save(work.connection, principal, plan)


def _unchanged_view(connection: Connection, principal: Principal, plan: SavePlan) -> FormView:
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
