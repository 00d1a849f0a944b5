"""Data-entry pages: a study's subjects, a subject's events and forms, and a form to fill in.

The pages call the services the API calls (``list_subjects``, ``list_events``,
``read_form``, ``save_form``), so every rule of data entry is the API's: site scope,
validation (a hard problem saves nothing), queries opened on soft problems, the reason for
change, the form's version (someone else's save in between: nothing is saved, 409), locked
forms, and the audit trail. What the page adds is the HTML: one input per item, typed by the
item (a list of codes for a choice, yes/no for a boolean, a date picker for a date), the
messages next to the items they concern, and post/redirect/get after a save, so a reload
never saves twice.

A repeating group shows a row per instance and one empty row to add the next. A form holding
identifiers the reader may not see is shown without them and cannot be saved here: saving
every value of the form would otherwise remove the hidden ones. File items are shown, not
edited (the API takes them).

Below the form, the reader's review steps: source-data verification (monitor), signature
with the password typed again and a stated meaning (investigator), lock and unlock with a
reason (data manager), each through :mod:`consortia.services.form_states`. The form's
queries with their threads, and the reader's steps on each: answer, close, re-open, with a
message; monitors and data managers open new ones (:mod:`consortia.services.queries`).
The subjects page enrols a subject (:func:`~consortia.services.subjects.enrol_subject`)
and a subject's page changes its status
(:func:`~consortia.services.schedule.change_status`). A form's save also records the
event's visit date. Moving a subject's schedule is done through the API for now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal
from consortia.auth.sessions import csrf_token
from consortia.domain.parsing import MULTICHOICE_SEPARATOR
from consortia.domain.schedule import TRANSITIONS, SubjectStatus, event_ref, parse_event_ref
from consortia.domain.study import ItemType
from consortia.exceptions import AuthenticationError, ConflictError, ValidationError
from consortia.services import data_entry, form_states, queries, schedule, studies, subjects
from consortia.services.common import MAX_OFFSET
from consortia.services.data_entry import FormSave, FormView
from consortia.services.queries import QueryFilter
from consortia.services.subjects import SubjectInput
from consortia.web.form_fields import REPEATED, flat_texts, groups, posted_values, text_of
from consortia.web.i18n import translate
from consortia.web.pages import (
    PageError,
    PageRoute,
    node_engine,
    node_settings,
    page_language,
    redirect,
    render_page,
    session_principal,
    signed_in_post,
)

__all__ = ["FORM_PATH", "create_capture_router"]

FORM_PATH = "/studies/{study}/subjects/{subject_id}/events/{event}/forms/{form}"
SUBJECTS_SHOWN = 200  # subjects per page of the list
MAX_DATA_FORM_BYTES = 256 * 1024
MAX_DATA_FORM_FIELDS = 2_000
MAX_REASON_LENGTH = 2_000  # as the API takes it
STEPS = tuple(form_states.STEPS)  # verify, sign, lock, unlock
ENROL_FIELDS = ("subject_id", "site", "initials", "screening_date")


@dataclass(frozen=True, slots=True)
class _EventRow:
    ref: str
    label: str
    target_date: str
    window: str
    visit_date: str
    window_status: str
    forms: tuple[tuple[str, str, str], ...]  # (form, label, state label)


@dataclass(frozen=True, slots=True)
class _QueryRow:
    """A query on the form as the page shows it, with the steps the reader may take."""

    id: int
    item: str  # the item's key in the form, "" for the whole form
    status: str
    age_days: int
    origin: str
    thread: tuple[tuple[str, str, str, str], ...]  # (action, by, at, text), the opening first
    steps: tuple[str, ...]


@dataclass
class _Outcome:
    """What the form page says above the form: saved, refused (with messages), conflict."""

    saved: int | None = None
    refused: bool = False
    conflict: str = ""
    general: list[str] = field(default_factory=list)  # messages not about one item
    by_item: dict[str, str] = field(default_factory=dict)
    reason_error: str = ""
    done: str = ""  # the state step just taken: verify, sign, lock, unlock
    step_error: str = ""  # why a state step (or a query step) was refused


def _state(language: str, state: str) -> str:
    try:
        return translate(language, f"state.{state}")
    except KeyError:
        return state


def _steps(principal: Principal, study: str, site: str, state: str) -> tuple[str, ...]:
    """The state steps the reader may take on a form in ``state``, in the page's order."""
    return tuple(
        step
        for step, (action, states) in form_states.STEPS.items()
        if state in states and can(principal, action, Resource(study, site))
    )


def _query_rows(
    engine: Engine,
    principal: Principal,
    where: tuple[str, str, str, str],
    site: str,
    key: Callable[[str, int], str],
) -> list[_QueryRow]:
    """Every query on this form instance the reader may read, oldest first (in a thread)."""
    study, subject_id, event, form = where
    if not can(principal, Action.QUERY_READ, Resource(study, site)):
        return []
    name, instance = parse_event_ref(event)
    found = queries.list_queries(
        engine, principal, study, QueryFilter(subject_id=subject_id, form=form), limit=500
    )
    rows = []
    for view in found:
        record = view.record
        if (record.event, record.event_instance) != (name, instance):
            continue
        if not record.messages:  # a listing carries no thread: read the query whole
            record = queries.get_query(engine, principal, study, record.id).record
        thread = [("open", record.opened_by, record.opened_at, record.text)]
        thread += [(m.action, m.by, m.at, m.text) for m in record.messages if m.action != "open"]
        rows.append(
            _QueryRow(
                id=record.id,
                item=key(record.item, record.group_instance) if record.item else "",
                status=record.status,
                age_days=view.age_days,
                origin=record.origin,
                thread=tuple(
                    (action, by, at.strftime("%Y-%m-%d %H:%M"), text)
                    for action, by, at, text in thread
                ),
                steps=tuple(
                    step
                    for step, (action, statuses, _) in queries.STEPS.items()
                    if record.status in statuses and can(principal, action, Resource(study, site))
                ),
            )
        )
    return rows


def _as_entered(fields: Mapping[str, str]) -> dict[str, object]:
    """Posted fields as the inputs show them again, ticked codes joined per item."""
    echo: dict[str, object] = {key: text for key, text in fields.items() if "::" not in key}
    for key, text in fields.items():
        name, _, code = key.partition("::")
        if code and text:
            before = str(echo.get(name, ""))
            echo[name] = f"{before}{MULTICHOICE_SEPARATOR}{code}" if before else code
    return echo


def _refused(error: ConflictError | ValidationError) -> tuple[int, str]:
    """The HTTP status and the message of a refused step: 409 a conflict, 422 bad input."""
    if isinstance(error, ConflictError):
        return 409, str(error)
    return 422, "; ".join(problem.message for problem in error.problems)


def _refusal(error: ConflictError | ValidationError) -> dict[str, Any]:
    """The form page's status and outcome for a refused review or query step."""
    status, message = _refused(error)
    return {"status": status, "outcome": _Outcome(step_error=message)}


def _outcome_of(error: ValidationError, form: str) -> _Outcome:
    outcome = _Outcome(refused=True)
    prefix = f"forms.{form}."
    for problem in error.problems:
        if problem.path == "reason":
            outcome.reason_error = problem.message
        elif problem.path.startswith(prefix):
            name = problem.path[len(prefix) :]
            outcome.by_item[name] = (
                f"{outcome.by_item[name]} {problem.message}"
                if name in outcome.by_item
                else problem.message
            )
        else:
            outcome.general.append(problem.message)
    return outcome


def create_capture_router() -> APIRouter:
    """The data-entry pages, at the root of the node's site (not in the OpenAPI document)."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    async def subjects_page(
        request: Request,
        principal: Principal,
        cookie: str,
        study: str,
        start: int = 0,
        *,
        status: int = 200,
        error: str = "",
        entered: Mapping[str, str] | None = None,
        field_errors: Mapping[str, str] | None = None,
    ) -> Response:
        engine = node_engine(request)
        start = max(0, start)
        if start > MAX_OFFSET:  # no list is that long, and no database takes such a number
            message = translate(page_language(request), "subjects.bad_start")
            return render_page(
                request, "error.html", 422, message=message.format(start=start, last=MAX_OFFSET)
            )
        records = await run_in_threadpool(
            subjects.list_subjects, engine, principal, study, limit=SUBJECTS_SHOWN, offset=start
        )
        definition = await run_in_threadpool(studies.read_definition, engine, principal, study)
        language = page_language(request)
        enrol_sites = [
            (code, f"{code} · {site.name}")
            for code, site in definition.study.sites.items()
            if can(principal, Action.SUBJECT_CREATE, Resource(study, code))
        ]
        secret = node_settings(request).secret_key.get_secret_value()
        return render_page(
            request,
            "subjects.html",
            status,
            page_path=f"/studies/{study}/subjects",
            study=study,
            subjects=[(r.subject_id, r.site, _state(language, r.status)) for r in records],
            next_start=start + SUBJECTS_SHOWN if len(records) == SUBJECTS_SHOWN else None,
            enrol_sites=enrol_sites,
            may_read_queries=any(
                can(principal, Action.QUERY_READ, Resource(study, code))
                for code in definition.study.sites
            ),
            may_verify=any(
                can(principal, Action.DATA_VERIFY, Resource(study, code))
                for code in definition.study.sites
            ),
            error=error,
            entered=entered or {},
            field_errors=field_errors or {},
            csrf_token=csrf_token(secret, cookie),
        )

    @router.get("/studies/{study}/subjects", response_class=HTMLResponse)
    async def subject_list(request: Request, study: str, start: int = 0) -> Response:
        """The study's subjects at the reader's sites, and enrolment where the reader may."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, cookie = signed_in
        return await subjects_page(request, principal, cookie, study, start)

    @router.post("/studies/{study}/subjects", response_class=HTMLResponse)
    async def enrol(request: Request, study: str) -> Response:
        """Enrol a subject in screening (subject id, site, initials, screening date)."""
        posted = await signed_in_post(request)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        entered = {name: fields.get(name, "").strip() for name in ENROL_FIELDS}
        try:
            screening = date.fromisoformat(entered["screening_date"])
        except ValueError:
            message = translate(page_language(request), "subjects.bad_date")
            return await subjects_page(
                request,
                principal,
                cookie,
                study,
                status=422,
                entered=entered,
                field_errors={"screening_date": message},
            )
        subject = SubjectInput(
            subject_id=entered["subject_id"],
            site=entered["site"],
            initials=entered["initials"] or None,
            screening_date=screening,
        )
        try:
            await run_in_threadpool(
                subjects.enrol_subject, node_engine(request), principal, study, subject
            )
        except (ConflictError, ValidationError) as error:
            status, message = _refused(error)
            beside: dict[str, str] = {}  # a problem with a field of the form goes beside it
            if isinstance(error, ValidationError):
                for problem in error.problems:
                    if problem.path in ENROL_FIELDS:
                        beside[problem.path] = " ".join(
                            filter(None, (beside.get(problem.path), problem.message))
                        )
                message = "; ".join(p.message for p in error.problems if p.path not in ENROL_FIELDS)
            return await subjects_page(
                request,
                principal,
                cookie,
                study,
                status=status,
                error=message,
                entered=entered,
                field_errors=beside,
            )
        return redirect(request, f"/studies/{quote(study)}/subjects/{quote(subject.subject_id)}")

    async def subject_view(
        request: Request,
        principal: Principal,
        cookie: str,
        study: str,
        subject_id: str,
        *,
        status: int = 200,
        error: str = "",
    ) -> Response:
        engine = node_engine(request)
        record = await run_in_threadpool(subjects.get_subject, engine, principal, study, subject_id)
        events = await run_in_threadpool(schedule.list_events, engine, principal, study, subject_id)
        definition = await run_in_threadpool(studies.read_definition, engine, principal, study)
        language = page_language(request)
        rows = []
        for event in events:
            event_def = definition.study.events.get(event.event)
            if event_def is None:  # an event a later version of the study dropped
                continue
            window = (
                f"{event.window_start.isoformat()} – {event.window_end.isoformat()}"
                if event.window_start and event.window_end
                else ""
            )
            rows.append(
                _EventRow(
                    ref=event.ref,
                    label=text_of(event_def.label, language),
                    target_date=event.target_date.isoformat() if event.target_date else "",
                    window=window,
                    visit_date=event.visit_date.isoformat() if event.visit_date else "",
                    window_status=_state(language, event.window_status)
                    if event.window_status
                    else "",
                    forms=tuple(
                        (
                            name,
                            text_of(definition.study.forms[name].label, language),
                            _state(language, event.forms.get(name, "not_started")),
                        )
                        for name in event_def.forms
                        if name in definition.study.forms
                    ),
                )
            )
        last: dict[str, int] = {}
        for event in events:
            last[event.event] = max(last.get(event.event, 0), event.instance)
        # events that happen when they happen (adverse events) or again: the next instance
        more = [
            _EventRow(
                ref=event_ref(name, last.get(name, 0) + 1),
                label=text_of(event_def.label, language),
                target_date="",
                window="",
                visit_date="",
                window_status="",
                forms=tuple(
                    (form, text_of(definition.study.forms[form].label, language), "")
                    for form in event_def.forms
                    if form in definition.study.forms
                ),
            )
            for name, event_def in definition.study.events.items()
            if event_def.unscheduled or (event_def.repeating and name in last)
        ]
        return render_page(
            request,
            "subject.html",
            status,
            page_path=f"/studies/{study}/subjects/{subject_id}",
            study=study,
            subject=record,
            subject_status=_state(language, record.status),
            events=rows,
            more=more,
            next_statuses=[
                (next_status.value, _state(language, next_status.value))
                for next_status in sorted(TRANSITIONS[SubjectStatus(record.status)])
            ]
            if can(principal, Action.SUBJECT_CREATE, Resource(study, record.site))
            else [],
            error=error,
            csrf_token=csrf_token(node_settings(request).secret_key.get_secret_value(), cookie),
        )

    @router.get("/studies/{study}/subjects/{subject_id}", response_class=HTMLResponse)
    async def subject_page(request: Request, study: str, subject_id: str) -> Response:
        """A subject's events with their forms and states, and its status."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, cookie = signed_in
        return await subject_view(request, principal, cookie, study, subject_id)

    @router.post("/studies/{study}/subjects/{subject_id}/status", response_class=HTMLResponse)
    async def change_status(request: Request, study: str, subject_id: str) -> Response:
        """Move the subject to its next status on a date (a reason where one is needed)."""
        posted = await signed_in_post(request)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        try:
            on_date = date.fromisoformat(fields.get("on_date", "").strip())
        except ValueError:
            message = translate(page_language(request), "subjects.bad_date")
            return await subject_view(
                request, principal, cookie, study, subject_id, status=422, error=message
            )
        try:
            await run_in_threadpool(
                schedule.change_status,
                node_engine(request),
                principal,
                study,
                subject_id,
                fields.get("status", ""),
                on_date,
                fields.get("reason", "").strip() or None,
            )
        except (ConflictError, ValidationError) as error:
            status, message = _refused(error)
            return await subject_view(
                request, principal, cookie, study, subject_id, status=status, error=message
            )
        return redirect(request, request.url.path.removesuffix("/status"))

    async def form_page(
        request: Request,
        principal: Principal,
        cookie: str,
        where: tuple[str, str, str, str],
        view: FormView,
        *,
        status: int = 200,
        outcome: _Outcome | None = None,
        posted: Mapping[str, object] | None = None,
        complete: bool | None = None,
        reason: str = "",
        visit_date: str | None = None,
    ) -> Response:
        study, subject_id, event, form = where
        engine = node_engine(request)
        definition = await run_in_threadpool(studies.read_definition, engine, principal, study)
        form_def = definition.study.forms.get(form)
        if form_def is None:
            raise PageError(404)
        language = page_language(request)
        outcome = outcome or _Outcome()
        values = posted if posted is not None else flat_texts(view.values)
        editable = (
            not view.identifiers_masked
            and view.state != "locked"
            and can(principal, Action.DATA_ENTER, Resource(study, view.site))
        )
        secret = node_settings(request).secret_key.get_secret_value()
        if visit_date is None:  # the event's visit date as recorded
            events = await run_in_threadpool(
                schedule.list_events, engine, principal, study, subject_id
            )
            ref = event_ref(*parse_event_ref(event))
            recorded = next((e.visit_date for e in events if e.ref == ref), None)
            visit_date = recorded.isoformat() if recorded else ""
        query_rows = await run_in_threadpool(
            _query_rows, engine, principal, where, view.site, definition.index.key
        )
        targets: list[tuple[str, str]] = []  # (item key, label) a new query can be put on
        if view.record is not None and can(
            principal, Action.QUERY_OPEN, Resource(study, view.site)
        ):
            targets = [("", translate(language, "queries.whole_form"))]
            stored = flat_texts(view.values)
            for group_name, group in form_def.groups.items():
                for name, item in group.items.items():
                    label = text_of(item.label, language)
                    if not group.repeating:
                        targets.append((name, f"{label} ({name})"))
                        continue
                    targets += [
                        (key, f"{label} ({key})")
                        for key in stored
                        if (match := REPEATED.fullmatch(key)) is not None
                        and (match[1], match[3]) == (group_name, name)
                    ]
        return render_page(
            request,
            "form.html",
            status,
            page_path=request.url.path,
            study=study,
            subject_id=subject_id,
            event=event,
            form=form,
            form_label=text_of(form_def.label, language),
            view=view,
            state=_state(language, view.state),
            groups=groups(definition.study, form_def, language, values, outcome.by_item),
            outcome=outcome,
            editable=editable,
            complete=view.state not in ("not_started", "in_progress")
            if complete is None
            else complete,
            reason=reason,
            visit_date=visit_date,
            csrf_token=csrf_token(secret, cookie),
            steps=_steps(principal, study, view.site, view.state),
            meanings=tuple(form_states.SIGNATURE_MEANINGS.items()),
            record=view.record,
            queries=query_rows,
            query_marks={
                row.item: row.id for row in reversed(query_rows) if row.status != "closed"
            },
            query_targets=targets,
        )

    @router.get(FORM_PATH, response_class=HTMLResponse)
    async def read_form(
        request: Request,
        study: str,
        subject_id: str,
        event: str,
        form: str,
        saved: int = 0,
        done: str = "",
    ) -> Response:
        """The form with its values, review steps and queries."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, cookie = signed_in
        view = await run_in_threadpool(
            data_entry.read_form, node_engine(request), principal, study, subject_id, event, form
        )
        outcome = _Outcome(
            saved=saved if saved and saved == view.version else None,
            done=done if done in STEPS or done in queries.STEPS or done == "open" else "",
        )
        where = (study, subject_id, event, form)
        return await form_page(request, principal, cookie, where, view, outcome=outcome)

    @router.post(FORM_PATH, response_class=HTMLResponse)
    async def save_form(
        request: Request, study: str, subject_id: str, event: str, form: str
    ) -> Response:
        posted = await signed_in_post(
            request, max_bytes=MAX_DATA_FORM_BYTES, max_fields=MAX_DATA_FORM_FIELDS
        )
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        engine = node_engine(request)
        where = (study, subject_id, event, form)
        version = fields.get("version", "")
        if not version.isdigit():
            raise PageError(400)
        definition = await run_in_threadpool(studies.read_definition, engine, principal, study)
        form_def = definition.study.forms.get(form)
        if form_def is None:
            raise PageError(404)
        current = await run_in_threadpool(
            data_entry.read_form, engine, principal, study, subject_id, event, form
        )
        if current.identifiers_masked:  # the hidden values would be removed
            raise PageError(403)
        # file items are shown, not edited: they keep what is stored
        files = {
            name
            for group in form_def.groups.values()
            for name, item in group.items.items()
            if item.type is ItemType.FILE
        }
        kept = {
            key: str(text)
            for key, text in flat_texts(current.values).items()
            if text is not None and key.rsplit(".", 1)[-1] in files
        }
        values = posted_values(form_def, {**fields, **kept})
        complete = fields.get("complete") == "1"
        reason = fields.get("reason", "")
        if len(reason) > MAX_REASON_LENGTH:  # the textarea's maxlength keeps browsers under it
            outcome = _Outcome(
                refused=True, reason_error=translate(page_language(request), "form.reason_too_long")
            )
            return await form_page(
                request, principal, cookie, where, current, status=422, outcome=outcome
            )
        echo = _as_entered(fields)
        visit_text = fields.get("visit_date", "").strip()
        try:
            visit = date.fromisoformat(visit_text) if visit_text else None
        except ValueError:
            outcome = _Outcome(
                refused=True, general=[translate(page_language(request), "subjects.bad_date")]
            )
            return await form_page(
                request,
                principal,
                cookie,
                where,
                current,
                status=422,
                outcome=outcome,
                posted=echo,
                complete=complete,
                reason=reason,
                visit_date=visit_text,
            )
        save = FormSave(
            version=int(version),
            values=values,
            complete=complete,
            reason=reason or None,
            visit_date=visit,
        )
        try:
            view = await run_in_threadpool(
                data_entry.save_form, engine, principal, study, subject_id, event, form, save
            )
        except ValidationError as error:
            return await form_page(
                request,
                principal,
                cookie,
                where,
                current,
                status=422,
                outcome=_outcome_of(error, form),
                posted=echo,
                complete=complete,
                reason=reason,
                visit_date=visit_text,
            )
        except ConflictError as error:
            now = await run_in_threadpool(
                data_entry.read_form, engine, principal, study, subject_id, event, form
            )
            return await form_page(
                request,
                principal,
                cookie,
                where,
                now,
                status=409,
                outcome=_Outcome(conflict=str(error)),
            )
        # post/redirect/get: a reload shows the saved form and does not save again
        return redirect(request, f"{request.url.path}?saved={view.version}")

    @router.post(FORM_PATH + "/state", response_class=HTMLResponse)
    async def change_state(
        request: Request, study: str, subject_id: str, event: str, form: str
    ) -> Response:
        """Verify, sign (the password again), lock or unlock (a reason) the form."""
        posted = await signed_in_post(request)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        step, version = fields.get("step", ""), fields.get("version", "")
        if step not in STEPS or not version.isdigit():
            raise PageError(400)
        engine = node_engine(request)
        where = (study, subject_id, event, form)
        language = page_language(request)
        try:
            if step == "verify":
                await run_in_threadpool(
                    form_states.verify_form, engine, principal, where, int(version)
                )
            elif step == "sign":
                await run_in_threadpool(
                    lambda: form_states.sign_form(
                        engine,
                        node_settings(request),
                        principal,
                        where,
                        int(version),
                        password=fields.get("password", ""),
                        meaning=fields.get("meaning", ""),
                    )
                )
            elif step == "lock":
                await run_in_threadpool(
                    form_states.lock_form, engine, principal, where, int(version)
                )
            else:
                await run_in_threadpool(
                    lambda: form_states.unlock_form(
                        engine, principal, where, int(version), reason=fields.get("reason", "")
                    )
                )
        except (ConflictError, ValidationError, AuthenticationError) as error:
            refusal = (
                _refusal(error)
                if not isinstance(error, AuthenticationError)
                # a mistyped password: the signature is refused, the session goes on
                else {
                    "status": 401,
                    "outcome": _Outcome(step_error=translate(language, "form.password_refused")),
                }
            )
            now = await run_in_threadpool(
                data_entry.read_form, engine, principal, study, subject_id, event, form
            )
            return await form_page(request, principal, cookie, where, now, **refusal)
        path = request.url.path.removesuffix("/state")
        return redirect(request, f"{path}?done={step}")

    @router.post(FORM_PATH + "/queries", response_class=HTMLResponse)
    async def open_query(
        request: Request, study: str, subject_id: str, event: str, form: str
    ) -> Response:
        """Open a query on an item of the form (or the whole form), with its text."""
        posted = await signed_in_post(request, max_bytes=MAX_DATA_FORM_BYTES)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        engine = node_engine(request)
        where = (study, subject_id, event, form)
        try:
            await run_in_threadpool(
                queries.open_query,
                engine,
                principal,
                study,
                subject_id,
                event,
                form,
                fields.get("item", ""),
                fields.get("text", ""),
            )
        except (ConflictError, ValidationError) as error:
            view = await run_in_threadpool(
                data_entry.read_form, engine, principal, study, subject_id, event, form
            )
            return await form_page(request, principal, cookie, where, view, **_refusal(error))
        path = request.url.path.removesuffix("/queries")
        return redirect(request, f"{path}?done=open")

    @router.post(FORM_PATH + "/queries/{query_id}", response_class=HTMLResponse)
    async def query_step(
        request: Request, study: str, subject_id: str, event: str, form: str, query_id: int
    ) -> Response:
        """Answer, close or re-open a query on the form, with a message."""
        posted = await signed_in_post(request, max_bytes=MAX_DATA_FORM_BYTES)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        step = fields.get("step", "")
        if step not in queries.STEPS:
            raise PageError(400)
        engine = node_engine(request)
        where = (study, subject_id, event, form)
        view = await run_in_threadpool(
            data_entry.read_form, engine, principal, study, subject_id, event, form
        )
        on_form = await run_in_threadpool(
            _query_rows, engine, principal, where, view.site, lambda item, n: item
        )
        if query_id not in {row.id for row in on_form}:  # a query of another form
            raise PageError(404)
        take = {
            "answer": queries.answer_query,
            "close": queries.close_query,
            "reopen": queries.reopen_query,
        }[step]
        try:
            await run_in_threadpool(
                take, engine, principal, study, query_id, fields.get("text", "")
            )
        except (ConflictError, ValidationError) as error:
            return await form_page(request, principal, cookie, where, view, **_refusal(error))
        path = request.url.path.rsplit("/queries/", 1)[0]
        return redirect(request, f"{path}?done={step}")

    return router
