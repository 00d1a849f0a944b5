"""The subjects of a study (list, enrolment) and a subject's page (its events and forms,
its status), each through the services the API calls."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal
from consortia.auth.sessions import csrf_token
from consortia.domain.schedule import TRANSITIONS, SubjectStatus, event_ref
from consortia.exceptions import ConflictError, ValidationError
from consortia.services import schedule, studies, subjects
from consortia.services.common import MAX_OFFSET
from consortia.services.subjects import SubjectInput
from consortia.web.capture_common import (
    ENROL_FIELDS,
    MAX_REASON_LENGTH,
    SUBJECTS_SHOWN,
    EventRow,
    refused_status,
    state_label,
)
from consortia.web.form_fields import text_of
from consortia.web.i18n import translate
from consortia.web.pages import (
    PageRoute,
    node_engine,
    node_settings,
    page_language,
    redirect,
    render_page,
    session_principal,
    signed_in_post,
)

__all__ = [
    "create_subject_router",
]


def create_subject_router() -> APIRouter:
    """A study's subjects and a subject's page."""
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
            subjects=[(r.subject_id, r.site, state_label(language, r.status)) for r in records],
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
            status, message = refused_status(error)
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
        schedule_error: str = "",
        moved: Mapping[str, str] | None = None,
        schedule_moved: bool = False,
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
                EventRow(
                    ref=event.ref,
                    label=text_of(event_def.label, language),
                    target_date=event.target_date.isoformat() if event.target_date else "",
                    window=window,
                    visit_date=event.visit_date.isoformat() if event.visit_date else "",
                    window_status=state_label(language, event.window_status)
                    if event.window_status
                    else "",
                    forms=tuple(
                        (
                            name,
                            text_of(definition.study.forms[name].label, language),
                            state_label(language, event.forms.get(name, "not_started")),
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
            EventRow(
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
            subject_status=state_label(language, record.status),
            events=rows,
            more=more,
            next_statuses=[
                (next_status.value, state_label(language, next_status.value))
                for next_status in sorted(TRANSITIONS[SubjectStatus(record.status)])
            ]
            if can(principal, Action.SUBJECT_CREATE, Resource(study, record.site))
            else [],
            error=error,
            may_move=can(principal, Action.DATA_ENTER, Resource(study, record.site)),
            anchor=(moved or {}).get(
                "anchor_date", record.anchor_date.isoformat() if record.anchor_date else ""
            ),
            move_reason=(moved or {}).get("reason", ""),
            max_reason=MAX_REASON_LENGTH,
            schedule_error=schedule_error,
            schedule_moved=schedule_moved,
            csrf_token=csrf_token(node_settings(request).secret_key.get_secret_value(), cookie),
        )

    @router.get("/studies/{study}/subjects/{subject_id}", response_class=HTMLResponse)
    async def subject_page(
        request: Request, study: str, subject_id: str, moved: int = 0
    ) -> Response:
        """A subject's events with their forms and states, and its status."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, cookie = signed_in
        return await subject_view(
            request, principal, cookie, study, subject_id, schedule_moved=moved == 1
        )

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
            status, message = refused_status(error)
            return await subject_view(
                request, principal, cookie, study, subject_id, status=status, error=message
            )
        return redirect(request, request.url.path.removesuffix("/status"))

    @router.post("/studies/{study}/subjects/{subject_id}/schedule", response_class=HTMLResponse)
    async def move_schedule(request: Request, study: str, subject_id: str) -> Response:
        """Move day 0 of the subject's schedule with a reason (the API's ``PUT .../schedule``):
        every scheduled event's target date and window follow; audited with the reason."""
        posted = await signed_in_post(request)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        language = page_language(request)
        entered = {key: fields.get(key, "") for key in ("anchor_date", "reason")}
        reason = entered["reason"].strip()

        async def refused(status: int, message: str) -> Response:
            return await subject_view(
                request,
                principal,
                cookie,
                study,
                subject_id,
                status=status,
                schedule_error=message,
                moved=entered,
            )

        try:
            anchor = date.fromisoformat(entered["anchor_date"].strip())
        except ValueError:
            return await refused(422, translate(language, "schedule.bad_date"))
        if not reason:
            return await refused(422, translate(language, "schedule.reason_needed"))
        if len(reason) > MAX_REASON_LENGTH:
            return await refused(422, translate(language, "schedule.reason_too_long"))
        try:
            await run_in_threadpool(
                schedule.reanchor_schedule,
                node_engine(request),
                principal,
                study,
                subject_id,
                anchor,
                reason,
            )
        except (ConflictError, ValidationError) as error:
            return await refused(*refused_status(error))
        path = request.url.path.removesuffix("/schedule")
        return redirect(request, f"{path}?moved=1")

    return router
