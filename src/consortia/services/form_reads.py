"""Reading a form for the caller: a form instance as the caller may see it (identifiers
masked where they must be) and everything its page shows, read in one read-only unit of
work; a read that shows identifier values is itself audited (``identifier.read``).

Saving a form is :mod:`consortia.services.data_entry`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action, Resource, can, may_see_identifiers
from consortia.auth.principal import Principal
from consortia.domain.schedule import (
    event_ref,
    parse_event_ref,
)
from consortia.domain.validation import validate_form
from consortia.domain.values import nest
from consortia.exceptions import (
    NotFoundError,
    Problem,
)
from consortia.services.common import (
    find_subject,
    form_audit_id,
    require_in_study,
    visible_study,
)
from consortia.services.queries import QueryPerson, QueryView, assignees, form_queries
from consortia.services.randomisation import allocation_text
from consortia.services.studies import Definition, current_definition
from consortia.services.subject_values import subject_context
from consortia.services.unit_of_work import reading, writing
from consortia.storage.capture import (
    FormRecord,
)
from consortia.storage.queries import QueryRepository
from consortia.storage.randomisation import SubjectRandomisationRepository
from consortia.storage.repositories import SubjectRecord

__all__ = ["FormPage", "FormView", "form_view", "read_form", "read_form_page"]


@dataclass(frozen=True)
class FormView:
    """A form instance as the caller may see it (identifiers masked where they must be)."""

    study: str
    subject_id: str
    site: str
    event: str
    form: str
    state: str
    version: int
    values: Mapping[str, object]
    identifiers_masked: bool
    record: FormRecord | None
    open_queries: int = 0
    warnings: tuple[Problem, ...] = ()
    queries_opened: tuple[int, ...] = ()


def form_view(
    definition: Definition,
    principal: Principal,
    subject: SubjectRecord,
    ref: str,
    form: str,
    record: FormRecord | None,
    rows: Mapping[tuple[str, int], str],
    open_queries: int,
    **extra: object,
) -> FormView:
    visible = may_see_identifiers(principal, subject.study, subject.site)
    shown = {
        key: (text if visible or key[0] not in definition.index.identifiers else None)
        for key, text in rows.items()
    }
    masked = not visible and any(key[0] in definition.index.identifiers for key in rows)
    return FormView(
        study=subject.study,
        subject_id=subject.subject_id,
        site=subject.site,
        event=ref,
        form=form,
        state=record.state if record else "not_started",
        version=record.version if record else 0,
        values=nest(shown, definition.index.repeating_group_of),
        identifiers_masked=masked,
        record=record,
        open_queries=open_queries,
        **extra,  # type: ignore[arg-type]
    )


def _with_allocation(
    connection: Connection,
    principal: Principal,
    definition: Definition,
    subject: SubjectRecord,
    form: str,
    rows: Mapping[tuple[str, int], str],
) -> Mapping[tuple[str, int], str]:
    """The form's values with its items filled from the allocation derived from the
    subject's randomisation record, as the principal may see it (the arm or its code), and
    without any value stored in them (none is typed; one from before the item was declared
    so never shows)."""
    allocated = [n for n, f in definition.study.allocation_items().items() if f == form]
    if not allocated:
        return rows
    shown = {key: text for key, text in rows.items() if key[0] not in allocated}
    repository = SubjectRandomisationRepository(connection, principal)
    allocation = repository.get(subject.study, subject.subject_id)
    if allocation is not None:
        shown |= {(name, 0): allocation_text(principal, allocation) for name in allocated}
    return shown


def read_form(
    engine: Engine, principal: Principal, study: str, subject_id: str, ref: str, form: str
) -> FormView:
    """One form instance of a subject (not started: version 0, no values)."""
    return read_form_page(engine, principal, study, subject_id, ref, form, queries=False).view


@dataclass(frozen=True)
class FormPage:
    """Everything a form's page shows, read in one read-only unit of work."""

    view: FormView
    definition: Definition
    #: the event's visit date as recorded (None before the event has one)
    visit_date: date | None
    #: the queries on this form instance the reader may read, each with its thread
    queries: tuple[QueryView, ...]
    #: paths of the items the study's show_if hides for the stored values
    hidden: frozenset[str] = frozenset()
    #: whom the reader may assign the form's queries to (nobody if the reader may not)
    assignees: tuple[QueryPerson, ...] = ()


def read_form_page(
    engine: Engine,
    principal: Principal,
    study: str,
    subject_id: str,
    ref: str,
    form: str,
    *,
    queries: bool = True,
) -> FormPage:
    """A form instance with its study definition, visit date and (with ``queries``) the
    queries on it: one read-only unit of work, then, only if the page shows identifier
    values, one short write for their ``identifier.read`` event."""
    visible_study(principal, study)
    with reading(engine, principal) as work:
        connection = work.connection
        definition = current_definition(connection, study)
        subject = find_subject(connection, principal, study, subject_id)
        require_in_study(principal, Action.SUBJECT_READ, study, subject.site)
        name, instance = parse_event_ref(ref)
        event_def = definition.study.events.get(name)
        if event_def is None or form not in event_def.forms:
            raise NotFoundError(f"form {form} at event {ref} is not in study {study}")
        capture = work.capture()
        event = capture.event(subject, name, instance)
        record = None if event is None else capture.form(event.id, form)
        rows = {} if record is None else capture.values(record.id)
        shown = _with_allocation(connection, principal, definition, subject, form, rows)
        open_queries = 0
        if record is not None:
            open_queries = len(QueryRepository(connection, principal).open_on_form(record.id))
        view = form_view(
            definition,
            principal,
            subject,
            event_ref(name, instance),
            form,
            record,
            shown,
            open_queries,
        )
        hidden: frozenset[str] = frozenset()
        form_def = definition.study.forms[form]
        if any(item.show_if for group in form_def.groups.values() for item in group.items.values()):
            context = subject_context(
                definition,
                capture.subject_values(subject),
                exclude=(name, instance, form),
                prefer_event=(name, instance),
            )
            study_def = definition.study
            hidden = validate_form(
                study_def, form, view.values, complete=False, context=context
            ).hidden
        threads: tuple[QueryView, ...] = ()
        people: tuple[QueryPerson, ...] = ()
        if queries and can(principal, Action.QUERY_READ, Resource(study, subject.site)):
            threads = tuple(form_queries(connection, principal, study, subject_id, ref, form))
            people = tuple(assignees(connection, principal, study, subject.site))
    shown_identifiers = sorted(
        definition.index.key(item, n) for item, n in rows if item in definition.index.identifiers
    )
    if shown_identifiers and not view.identifiers_masked:
        with writing(engine, principal) as work:
            work.audit(
                "identifier.read",
                "form",
                form_audit_id(study, subject_id, view.event, form),
                chain=study,
                site=subject.site,
                after={"items": shown_identifiers},
            )
    visit_date = None if event is None else event.visit_date
    return FormPage(view, definition, visit_date, threads, hidden, people)
