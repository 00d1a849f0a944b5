"""Data clarification queries: open, answer, close, re-open; listed with filters and age.

A query sits on one item of one saved form instance (or on the whole form, item ``""``).
Monitors and data managers open queries, the system opens them for soft problems on save,
coordinators and investigators answer, data managers close, and whoever may open may
re-open. Every step is a message in the query's thread and an event in the audit trail.

Whoever may open a query may assign it, when opening it or later, to one person who may
answer or manage queries at the query's study and site (``query.assign``, before/after).

    open ──answer──► answered ──close──► closed
      ▲                 │                  │
      └────re-open──────┴──────────────────┘
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action, Resource, can, site_scope
from consortia.auth.principal import Principal
from consortia.domain.schedule import parse_event_ref
from consortia.exceptions import ConflictError, NotFoundError, Problem, ValidationError
from consortia.services.common import (
    MAX_LIMIT,
    audit,
    check_page,
    find_subject,
    form_audit_id,
    normalise_email,
    require_in_study,
    saved_form,
    utc_now,
    visible_study,
)
from consortia.services.studies import current_definition
from consortia.services.unit_of_work import reading, writing
from consortia.storage.queries import (
    QueryFilter,
    QueryPerson,
    QueryRecord,
    QueryRepository,
    query_people,
)
from consortia.storage.repositories import SubjectRecord

__all__ = [
    "STEPS",
    "QueryFilter",
    "QueryPerson",
    "QueryView",
    "answer_query",
    "assign_query",
    "assignee_filter",
    "assignees",
    "close_query",
    "form_queries",
    "get_query",
    "list_queries",
    "may_assign",
    "open_query",
    "open_query_row",
    "people_in_list",
    "reopen_query",
]

MAX_TEXT = 4000
#: Each step: the policy action it needs, the statuses it applies to, the status it leads to.
STEPS: Mapping[str, tuple[Action, frozenset[str], str]] = {
    # action name: (policy action, statuses it applies to, status it leads to)
    "answer": (Action.QUERY_ANSWER, frozenset({"open"}), "answered"),
    "close": (Action.QUERY_CLOSE, frozenset({"open", "answered"}), "closed"),
    "reopen": (Action.QUERY_OPEN, frozenset({"answered", "closed"}), "open"),
}


@dataclass(frozen=True)
class QueryView:
    """A query with its age in days (from opening to now, or to closing)."""

    record: QueryRecord
    age_days: int


def _text(text: str) -> str:
    cleaned = text.strip()
    if not cleaned:
        raise ValidationError([Problem("text", "write what needs clarifying (or the answer)")])
    if len(cleaned) > MAX_TEXT:
        raise ValidationError(
            [Problem("text", f"is {len(cleaned)} characters; at most {MAX_TEXT}")]
        )
    return cleaned


def open_query_row(
    connection: Connection,
    principal: Principal,
    subject: SubjectRecord,
    form_pk: int,
    target: tuple[str, int, str],
    text: str,
    *,
    entity: str,
    origin: str,
    now: datetime,
    assignee: str | None = None,
) -> int:
    """Open a query in the caller's transaction; ``target`` is (item, group instance, key);
    ``assignee`` has been checked by :func:`_eligible`."""
    item, number, key = target
    queries = QueryRepository(connection, principal)
    opened_by = "system" if origin == "auto" else principal.email
    query_pk = queries.add(
        form_pk=form_pk,
        subject_pk=subject.id,
        item=item,
        group_instance=number,
        status="open",
        origin=origin,
        text=text,
        opened_at=now,
        opened_by=opened_by,
        updated_at=now,
        assigned_to=assignee,
    )
    queries.add_message(query_pk, action="open", text=text, at=now, by=opened_by)
    audit(
        connection,
        principal,
        "query.open",
        "query",
        query_pk,
        chain=subject.study,
        site=subject.site,
        after={
            "form": entity,
            "item": key,
            "text": text,
            "origin": origin,
            "assignee": assignee,
        },
    )
    return query_pk


def _item_target(item_key: str) -> tuple[str, int]:
    """``ecog`` -> (ecog, 0); ``events[2].ae_grade`` -> (ae_grade, 2); ``""`` -> the form."""
    if "." not in item_key:
        return item_key, 0
    group_part, item = item_key.split(".", 1)
    if not group_part.endswith("]") or "[" not in group_part:
        raise ValidationError([Problem("item", f"{item_key!r}: use ITEM or GROUP[N].ITEM")])
    number = group_part[group_part.index("[") + 1 : -1]
    if not number.isdigit() or int(number) < 1:
        raise ValidationError([Problem("item", f"{item_key!r}: N counts instances from 1")])
    return item, int(number)


def open_query(
    engine: Engine,
    principal: Principal,
    study: str,
    subject_id: str,
    ref: str,
    form: str,
    item_key: str,
    text: str,
    assignee: str | None = None,
) -> QueryView:
    """Open a query on an item of a saved form (monitor, data manager), assigned to
    ``assignee`` (see :func:`assign_query`) or to nobody."""
    visible_study(principal, study)
    cleaned = _text(text)
    wanted = _assignee_email(assignee)
    with writing(engine, principal) as work:
        definition = current_definition(work.connection, study)
        subject = find_subject(work.connection, principal, study, subject_id)
        require_in_study(principal, Action.QUERY_OPEN, study, subject.site)
        canonical, record = saved_form(work.connection, principal, subject, ref, form)
        item, number = _item_target(item_key)
        if item:
            place = definition.index.items.get(item)
            if place is None or place.form != form or (number > 0) != place.repeating:
                raise ValidationError(
                    [Problem("item", f"{item_key!r} is not an item of form {form} as written")]
                )
        entity = form_audit_id(study, subject_id, canonical, form)
        if wanted is not None:
            _eligible(work.connection, study, subject.site, wanted)
        query_pk = open_query_row(
            work.connection,
            principal,
            subject,
            record.id,
            (item, number, item_key),
            cleaned,
            entity=entity,
            origin="manual",
            now=utc_now(),
            assignee=wanted,
        )
        view = _get(work.connection, principal, study, query_pk)
    return view


def _age(record: QueryRecord, now: datetime) -> int:
    end = record.updated_at if record.status == "closed" else now
    return max(0, (end - record.opened_at).days)


def _get(connection: Connection, principal: Principal, study: str, query_id: int) -> QueryView:
    record = QueryRepository(connection, principal).get(study, query_id)
    if record is None:
        raise NotFoundError(f"query {query_id} not found in study {study}")
    return QueryView(record, _age(record, utc_now()))


def get_query(engine: Engine, principal: Principal, study: str, query_id: int) -> QueryView:
    """One query with its thread."""
    visible_study(principal, study)
    require_in_study(principal, Action.QUERY_READ, study)
    with reading(engine, principal) as work:
        return _get(work.connection, principal, study, query_id)


def form_queries(
    connection: Connection,
    principal: Principal,
    study: str,
    subject_id: str,
    ref: str,
    form: str,
) -> list[QueryView]:
    """The queries on one form instance at the caller's sites, oldest first, each with its
    thread, in the caller's unit of work."""
    name, instance = parse_event_ref(ref)
    repository = QueryRepository(connection, principal)
    found = repository.find(
        study, QueryFilter(subject_id=subject_id, form=form), limit=MAX_LIMIT, offset=0
    )
    now = utc_now()
    views = []
    for record in found:
        if (record.event, record.event_instance) != (name, instance):
            continue
        if not record.messages:  # a listing carries no thread: read the query whole
            whole = repository.get(study, record.id)
            record = record if whole is None else whole
        views.append(QueryView(record, _age(record, now)))
    return views


def list_queries(
    engine: Engine,
    principal: Principal,
    study: str,
    where: QueryFilter,
    *,
    limit: int = 100,
    offset: int = 0,
) -> list[QueryView]:
    """Queries at the caller's sites, oldest first, narrowed by ``where``."""
    visible_study(principal, study)
    require_in_study(principal, Action.QUERY_READ, study)
    check_page(limit, offset)
    now = utc_now()
    with reading(engine, principal) as work:
        records = QueryRepository(work.connection, principal).find(
            study, where, limit=limit, offset=offset
        )
    return [QueryView(record, _age(record, now)) for record in records]


def _step(
    engine: Engine,
    principal: Principal,
    study: str,
    query_id: int,
    step: str,
    text: str,
    on_form: tuple[str, str, str] | None = None,
) -> QueryView:
    action, allowed, status = STEPS[step]
    visible_study(principal, study)
    # a role without the action anywhere in the study is refused before any lookup (403)
    require_in_study(principal, action, study)
    cleaned = _text(text)
    with writing(engine, principal) as work:
        queries = QueryRepository(work.connection, principal)
        record = queries.get(study, query_id)
        if record is None or (on_form is not None and not _on(record, on_form)):
            raise NotFoundError(f"query {query_id} not found in study {study}")
        require_in_study(principal, action, study, record.site)
        if record.status not in allowed:
            raise ConflictError(
                f"query {query_id} is {record.status}; it can be {step}ed only when "
                + " or ".join(sorted(allowed))
            )
        now = utc_now()
        queries.add_message(query_id, action=step, text=cleaned, at=now, by=principal.email)
        queries.set_status(query_id, status, now)
        work.audit(
            f"query.{step}",
            "query",
            query_id,
            chain=study,
            site=record.site,
            before={"status": record.status},
            after={"status": status, "text": cleaned},
        )
        return _get(work.connection, principal, study, query_id)


def _on(record: QueryRecord, on_form: tuple[str, str, str]) -> bool:
    """Whether the query is on the form instance ``(subject_id, event ref, form)``."""
    subject_id, ref, form = on_form
    name, instance = parse_event_ref(ref)
    return (record.subject_id, record.event, record.event_instance, record.form) == (
        subject_id,
        name,
        instance,
        form,
    )


def answer_query(
    engine: Engine,
    principal: Principal,
    study: str,
    query_id: int,
    text: str,
    *,
    on_form: tuple[str, str, str] | None = None,
) -> QueryView:
    """Answer an open query (coordinator, investigator); with ``on_form`` (subject, event,
    form), a query of another form instance is not found."""
    return _step(engine, principal, study, query_id, "answer", text, on_form)


def close_query(
    engine: Engine,
    principal: Principal,
    study: str,
    query_id: int,
    text: str,
    *,
    on_form: tuple[str, str, str] | None = None,
) -> QueryView:
    """Close a query (data manager); ``on_form`` as for :func:`answer_query`."""
    return _step(engine, principal, study, query_id, "close", text, on_form)


def reopen_query(
    engine: Engine,
    principal: Principal,
    study: str,
    query_id: int,
    text: str,
    *,
    on_form: tuple[str, str, str] | None = None,
) -> QueryView:
    """Re-open an answered or closed query (monitor, data manager); ``on_form`` as for
    :func:`answer_query`."""
    return _step(engine, principal, study, query_id, "reopen", text, on_form)


def _assignee_email(assignee: str | None) -> str | None:
    """``assignee`` trimmed and lower-cased; ``None`` or blank: nobody."""
    if assignee is None or not assignee.strip():
        return None
    try:
        return normalise_email(assignee)
    except ValidationError:
        raise ValidationError(
            [Problem("assignee", f"{assignee!r} is not an email address")]
        ) from None


def _eligible(connection: Connection, study: str, site: str, email: str) -> None:
    """Refuse ``email`` unless it may answer or manage queries at ``study``/``site``; the
    refusal is the same for an unknown account, so it tells nothing about who exists."""
    if not any(person.email == email for person in query_people(connection, study, [site])):
        raise ValidationError(
            [
                Problem(
                    "assignee",
                    f"{email} does not answer or manage queries at {study}/{site}; "
                    "choose someone with a coordinator, investigator, monitor or "
                    "data manager role there",
                )
            ]
        )


def assign_query(
    engine: Engine,
    principal: Principal,
    study: str,
    query_id: int,
    assignee: str | None,
    *,
    on_form: tuple[str, str, str] | None = None,
) -> QueryView:
    """Assign a query that is not closed to ``assignee`` (an email), or to nobody with
    ``None`` (monitor, data manager: whoever may open queries at its site).

    The assignee must hold a role that answers or manages queries at the query's study
    and site; anyone else is refused with a problem on ``assignee`` and nothing changes.
    Assigning to the present assignee changes nothing and records nothing. ``on_form`` as
    for :func:`answer_query`.
    """
    visible_study(principal, study)
    require_in_study(principal, Action.QUERY_OPEN, study)
    wanted = _assignee_email(assignee)
    with writing(engine, principal) as work:
        queries = QueryRepository(work.connection, principal)
        record = queries.get(study, query_id)
        if record is None or (on_form is not None and not _on(record, on_form)):
            raise NotFoundError(f"query {query_id} not found in study {study}")
        require_in_study(principal, Action.QUERY_OPEN, study, record.site)
        if record.status == "closed":
            raise ConflictError(f"query {query_id} is closed; re-open it to assign it")
        if wanted is not None:
            _eligible(work.connection, study, record.site, wanted)
        if wanted != record.assigned_to:
            queries.set_assignee(query_id, wanted, utc_now())
            work.audit(
                "query.assign",
                "query",
                query_id,
                chain=study,
                site=record.site,
                before={"assignee": record.assigned_to},
                after={"assignee": wanted},
            )
        return _get(work.connection, principal, study, query_id)


def may_assign(principal: Principal, study: str, record: QueryRecord) -> bool:
    """Whether :func:`assign_query` would let the principal assign this query now."""
    return record.status != "closed" and can(
        principal, Action.QUERY_OPEN, Resource(study, record.site)
    )


def assignees(
    connection: Connection, principal: Principal, study: str, site: str
) -> list[QueryPerson]:
    """Whom the principal may assign a query at ``study``/``site`` to, in the caller's unit
    of work; nobody if the principal may not assign queries there."""
    if not can(principal, Action.QUERY_OPEN, Resource(study, site)):
        return []
    return query_people(connection, study, [site])


def people_in_list(engine: Engine, principal: Principal, study: str) -> list[QueryPerson]:
    """Whom the study's query list may be narrowed to: the people who answer or manage
    queries at the sites where the principal reads queries."""
    visible_study(principal, study)
    require_in_study(principal, Action.QUERY_READ, study)
    scope = site_scope(principal, study, Action.QUERY_READ)
    with reading(engine, principal) as work:
        return query_people(work.connection, study, None if scope.every_site else scope.sites)


def assignee_filter(principal: Principal, assignee: str | None) -> str | None:
    """The email a listing's assignee filter means: ``me`` is the principal."""
    if assignee is not None and assignee.strip().lower() == "me":
        return principal.email
    return _assignee_email(assignee)
