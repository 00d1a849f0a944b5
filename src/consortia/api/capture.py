"""Data capture routes: study definitions, subject status and schedule, forms, queries, history.

Every route parses, calls one service function and renders; access rules live in the
services and repositories (a subject at another site is 404, a missing role is 403).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from consortia.api.capture_schemas import (
    EVENT_PATTERN,
    FORM_PATTERN,
    DefinitionLoad,
    EventPublic,
    FormAction,
    FormPublic,
    FormSaveRequest,
    FormSign,
    FormsSign,
    FormUnlock,
    ItemChangePublic,
    QueryAssign,
    QueryCreate,
    QueryPublic,
    QueryStep,
    ScheduleAnchor,
    SignedFormPublic,
    StatusChange,
    StudyVersionPublic,
)
from consortia.api.deps import (
    SECURITY,
    CurrentPrincipal,
    EngineDep,
    LeanCallerDep,
    SettingsDep,
    in_thread,
    json_response,
)
from consortia.api.schemas import AuditEventPublic, SubjectPublic
from consortia.auth.principal import CODE_PATTERN, Principal
from consortia.services import (
    data_entry,
    form_states,
    history,
    queries,
    schedule,
    studies,
    subjects,
)
from consortia.services.common import MAX_LIMIT, MAX_OFFSET
from consortia.services.hub_studies import refuse_unsigned_study
from consortia.services.queries import QueryFilter

__all__ = ["router"]

router = APIRouter(prefix="/studies/{study}", tags=["data capture"])

StudyCode = Annotated[str, Path(pattern=CODE_PATTERN, description="the study's code")]
SubjectId = Annotated[str, Path(pattern=CODE_PATTERN, description="the subject's id")]
EventRef = Annotated[
    str,
    Path(
        pattern=EVENT_PATTERN,
        description="an event: NAME, or NAME.N for instance N of a repeating event",
    ),
]
FormName = Annotated[str, Path(pattern=FORM_PATTERN)]
ItemKey = Annotated[
    str,
    Path(
        pattern=r"^([A-Za-z][A-Za-z0-9_]{0,63}\[[1-9][0-9]{0,5}\]\.)?[A-Za-z][A-Za-z0-9_]{0,63}$",
        description="ITEM, or GROUP[N].ITEM for an item of a repeating group",
    ),
]
QueryId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # a 32-bit id column
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Filter = Annotated[str | None, Query(max_length=64)]

FORM = "/subjects/{subject_id}/events/{event}/forms/{form}"


# The busiest routes come first: FastAPI tries a router's routes in order.
@router.get(FORM, response_model=FormPublic, openapi_extra=SECURITY)
async def read_form(
    study: StudyCode, subject_id: SubjectId, event: EventRef, form: FormName, who: LeanCallerDep
) -> Response:
    """A form instance with its state and version (not started: version 0)."""

    def work(principal: Principal) -> Response:
        view = data_entry.read_form(who.engine, principal, study, subject_id, event, form)
        return json_response(FormPublic.of(view))

    return await in_thread(who, work)


@router.put(FORM, response_model=FormPublic, openapi_extra=SECURITY)
async def save_form(
    study: StudyCode,
    subject_id: SubjectId,
    event: EventRef,
    form: FormName,
    body: FormSaveRequest,
    who: LeanCallerDep,
) -> Response:
    """Save every value of a form: 422 lists hard problems, 409 a stale version."""
    save = data_entry.FormSave(
        version=body.version,
        values=body.values,
        complete=body.complete,
        reason=body.reason,
        visit_date=body.visit_date,
    )

    def work(principal: Principal) -> Response:
        view = data_entry.save_form(who.engine, principal, study, subject_id, event, form, save)
        return json_response(FormPublic.of(view))

    return await in_thread(who, work)


@router.put("/definition", response_model=StudyVersionPublic)
def load_definition(
    study: StudyCode,
    body: DefinitionLoad,
    principal: CurrentPrincipal,
    engine: EngineDep,
    settings: SettingsDep,
) -> StudyVersionPublic:
    """Load the study's YAML as its new version (unchanged text: no new version); refused
    at a member of a consortium, whose studies come signed by its hub."""
    refuse_unsigned_study(settings.node)
    record, changed = studies.load_definition(
        engine, principal, body.source, file=f"{study}.yaml", expected_study=study
    )
    return StudyVersionPublic.of(record, changed)


@router.get("/definition/versions", response_model=list[StudyVersionPublic])
def definition_versions(
    study: StudyCode, principal: CurrentPrincipal, engine: EngineDep
) -> list[StudyVersionPublic]:
    """Every version of the study's definition loaded on this node, oldest first."""
    return [StudyVersionPublic.of(r) for r in studies.list_versions(engine, principal, study)]


@router.post("/subjects/{subject_id}/status", response_model=SubjectPublic)
def change_status(
    study: StudyCode,
    subject_id: SubjectId,
    body: StatusChange,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> SubjectPublic:
    """Move a subject along screening -> eligible -> enrolled -> on study -> completed."""
    schedule.change_status(
        engine, principal, study, subject_id, body.status, body.on_date, body.reason
    )
    return SubjectPublic.of(subjects.get_subject(engine, principal, study, subject_id))


@router.put("/subjects/{subject_id}/schedule", response_model=list[EventPublic])
def reanchor(
    study: StudyCode,
    subject_id: SubjectId,
    body: ScheduleAnchor,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> list[EventPublic]:
    """Move day 0 of the subject's schedule; targets and windows follow."""
    schedule.reanchor_schedule(engine, principal, study, subject_id, body.anchor_date, body.reason)
    return [EventPublic.of(e) for e in schedule.list_events(engine, principal, study, subject_id)]


@router.get("/subjects/{subject_id}/events", response_model=list[EventPublic])
def list_events(
    study: StudyCode, subject_id: SubjectId, principal: CurrentPrincipal, engine: EngineDep
) -> list[EventPublic]:
    """The subject's events with target dates, windows and form states."""
    return [EventPublic.of(e) for e in schedule.list_events(engine, principal, study, subject_id)]


@router.get("/subjects/{subject_id}/history", response_model=list[AuditEventPublic])
def subject_history(
    study: StudyCode, subject_id: SubjectId, principal: CurrentPrincipal, engine: EngineDep
) -> list[AuditEventPublic]:
    """Every audit event about the subject, its events and forms."""
    events = history.subject_history(engine, principal, study, subject_id)
    return [AuditEventPublic.of(e) for e in events]


def _form_after(
    engine: EngineDep, principal: CurrentPrincipal, where: tuple[str, str, str, str]
) -> FormPublic:
    return FormPublic.of(data_entry.read_form(engine, principal, *where))


@router.post(FORM + "/verify", response_model=FormPublic)
def verify_form(
    study: StudyCode,
    subject_id: SubjectId,
    event: EventRef,
    form: FormName,
    body: FormAction,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> FormPublic:
    """Source-data verification of a complete form (monitor)."""
    where = (study, subject_id, event, form)
    form_states.verify_form(engine, principal, where, body.version)
    return _form_after(engine, principal, where)


@router.post(FORM + "/sign", response_model=FormPublic)
def sign_form(
    study: StudyCode,
    subject_id: SubjectId,
    event: EventRef,
    form: FormName,
    body: FormSign,
    principal: CurrentPrincipal,
    engine: EngineDep,
    settings: SettingsDep,
) -> FormPublic:
    """Sign a form (investigator): the password again, and the signature's meaning."""
    where = (study, subject_id, event, form)
    form_states.sign_form(
        engine,
        settings,
        principal,
        where,
        body.version,
        password=body.password,
        meaning=body.meaning,
    )
    return _form_after(engine, principal, where)


@router.post("/signatures", response_model=list[SignedFormPublic])
def sign_forms(
    study: StudyCode,
    body: FormsSign,
    principal: CurrentPrincipal,
    engine: EngineDep,
    settings: SettingsDep,
) -> list[SignedFormPublic]:
    """Sign several forms at once (investigator): the password once, one meaning, one
    signature and audit event per form; all or none (21 CFR Part 11 §11.200(a)(1)(i))."""
    records = form_states.sign_forms(
        engine,
        settings,
        principal,
        study,
        [(f.subject_id, f.event, f.form, f.version) for f in body.forms],
        password=body.password,
        meaning=body.meaning,
    )
    return [SignedFormPublic.of(f, r) for f, r in zip(body.forms, records, strict=True)]


@router.post(FORM + "/lock", response_model=FormPublic)
def lock_form(
    study: StudyCode,
    subject_id: SubjectId,
    event: EventRef,
    form: FormName,
    body: FormAction,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> FormPublic:
    """Lock a form (data manager)."""
    where = (study, subject_id, event, form)
    form_states.lock_form(engine, principal, where, body.version)
    return _form_after(engine, principal, where)


@router.post(FORM + "/unlock", response_model=FormPublic)
def unlock_form(
    study: StudyCode,
    subject_id: SubjectId,
    event: EventRef,
    form: FormName,
    body: FormUnlock,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> FormPublic:
    """Unlock a form with a reason (data manager)."""
    where = (study, subject_id, event, form)
    form_states.unlock_form(engine, principal, where, body.version, reason=body.reason)
    return _form_after(engine, principal, where)


@router.get(FORM + "/history", response_model=list[AuditEventPublic])
def form_history(
    study: StudyCode,
    subject_id: SubjectId,
    event: EventRef,
    form: FormName,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> list[AuditEventPublic]:
    """Every audit event about the form instance."""
    events = history.form_history(engine, principal, study, subject_id, event, form)
    return [AuditEventPublic.of(e) for e in events]


@router.get(FORM + "/items/{item}/history", response_model=list[ItemChangePublic])
def item_history(
    study: StudyCode,
    subject_id: SubjectId,
    event: EventRef,
    form: FormName,
    item: ItemKey,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> list[ItemChangePublic]:
    """Each change of one item: before, after, who, when, why."""
    changes = history.item_history(engine, principal, study, subject_id, event, form, item)
    return [ItemChangePublic.of(c) for c in changes]


@router.post(FORM + "/queries", response_model=QueryPublic, status_code=status.HTTP_201_CREATED)
def open_query(
    study: StudyCode,
    subject_id: SubjectId,
    event: EventRef,
    form: FormName,
    body: QueryCreate,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> QueryPublic:
    """Open a query on an item of a saved form (monitor, data manager)."""
    view = queries.open_query(
        engine, principal, study, subject_id, event, form, body.item, body.text, body.assignee
    )
    return QueryPublic.of(view)


@router.get("/queries", response_model=list[QueryPublic])
def list_queries(
    study: StudyCode,
    principal: CurrentPrincipal,
    engine: EngineDep,
    status: Annotated[str | None, Query(pattern="^(open|answered|closed)$")] = None,
    site: Filter = None,
    subject_id: Filter = None,
    form: Filter = None,
    item: Filter = None,
    origin: Annotated[str | None, Query(pattern="^(manual|auto)$")] = None,
    assignee: Annotated[
        str | None, Query(max_length=320, description="an email, or me: assigned to the caller")
    ] = None,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[QueryPublic]:
    """Queries at the caller's sites, oldest first, with their age in days."""
    where = QueryFilter(
        status=status,
        site=site,
        subject_id=subject_id,
        form=form,
        item=item,
        origin=origin,
        assigned_to=queries.assignee_filter(principal, assignee),
    )
    views = queries.list_queries(engine, principal, study, where, limit=limit, offset=offset)
    return [QueryPublic.of(v) for v in views]


@router.get("/queries/{query_id}", response_model=QueryPublic)
def get_query(
    study: StudyCode, query_id: QueryId, principal: CurrentPrincipal, engine: EngineDep
) -> QueryPublic:
    """One query with its thread."""
    return QueryPublic.of(queries.get_query(engine, principal, study, query_id))


@router.post("/queries/{query_id}/answer", response_model=QueryPublic)
def answer_query(
    study: StudyCode,
    query_id: QueryId,
    body: QueryStep,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> QueryPublic:
    """Answer an open query (coordinator, investigator)."""
    return QueryPublic.of(queries.answer_query(engine, principal, study, query_id, body.text))


@router.post("/queries/{query_id}/close", response_model=QueryPublic)
def close_query(
    study: StudyCode,
    query_id: QueryId,
    body: QueryStep,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> QueryPublic:
    """Close an open or answered query (data manager)."""
    return QueryPublic.of(queries.close_query(engine, principal, study, query_id, body.text))


@router.post("/queries/{query_id}/reopen", response_model=QueryPublic)
def reopen_query(
    study: StudyCode,
    query_id: QueryId,
    body: QueryStep,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> QueryPublic:
    """Re-open an answered or closed query (monitor, data manager)."""
    return QueryPublic.of(queries.reopen_query(engine, principal, study, query_id, body.text))


@router.post("/queries/{query_id}/assign", response_model=QueryPublic)
def assign_query(
    study: StudyCode,
    query_id: QueryId,
    body: QueryAssign,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> QueryPublic:
    """Assign a query that is not closed to someone who answers or manages queries at its
    site, or to nobody with ``null`` (monitor, data manager)."""
    view = queries.assign_query(engine, principal, study, query_id, body.assignee)
    return QueryPublic.of(view)
