"""Review pages: a study's queries, a monitor's SDV worklist, and history from the audit trail.

* ``/studies/{study}/queries``: the queries at the reader's sites, filtered by status, form,
  site, age (opened at least N days ago) and assignee (the reader: ``me``, or a person who
  answers or manages queries there), each linked to its place on the form and showing its
  assignee; a data manager closes one here in one step, with a message
  (:func:`~consortia.services.queries.close_query`).
* ``/studies/{study}/sdv``: forms complete but not verified, by site
  (:func:`~consortia.services.form_states.sdv_worklist`), each linked to the form, where the
  monitor verifies it.
* ``.../forms/{form}/items/{item}/history``: each change of one item, who, when, before →
  after and the reason (:func:`~consortia.services.history.item_history`); an identifier's
  values are withheld from readers who may not see identifiers.
* ``.../forms/{form}/history`` and ``/studies/{study}/subjects/{id}/history``: the audit
  events about a form instance or a subject (masked by the audit repository).

Every read is a service the API calls: site scope and masking are the repositories', so a
subject or query of another site is not found (404) here as there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from consortia.auth.policy import Action, Resource, can
from consortia.auth.sessions import csrf_token
from consortia.domain.schedule import event_ref
from consortia.exceptions import ConflictError, ValidationError
from consortia.services import form_states, history, queries, studies
from consortia.services.common import MAX_OFFSET, check_page, utc_now
from consortia.services.history import AuditEvent
from consortia.services.queries import QueryFilter
from consortia.web.capture import FORM_PATH
from consortia.web.form_fields import event_text, text_of
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

__all__ = ["create_review_router"]

SHOWN = 100  # rows per page of a list
STATUSES = ("open", "answered", "closed")
MAX_AGE_DAYS = 36_500


@dataclass(frozen=True, slots=True)
class _ListedQuery:
    id: int
    site: str
    subject_id: str
    form_path: str
    where: str  # event · form · item
    status: str
    age_days: int
    opened_by: str
    text: str
    may_close: bool
    assignee: str


@dataclass(frozen=True, slots=True)
class _AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    entity: str
    before: str
    after: str
    reason: str


def _form_path(study: str, subject_id: str, ref: str, form: str) -> str:
    return FORM_PATH.format(
        study=quote(study, safe=""),
        subject_id=quote(subject_id, safe=""),
        event=quote(ref, safe=""),
        form=quote(form, safe=""),
    )


def _start(text: str) -> int:
    """A list's ``start`` parameter: a whole number within the bounds of any listing."""
    if not text:
        return 0
    if not text.isdigit() or int(text) > MAX_OFFSET:
        raise PageError(422, "review.bad_start")
    start = int(text)
    check_page(SHOWN, start)
    return start


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _audit_rows(events: list[AuditEvent]) -> list[_AuditRow]:
    return [
        _AuditRow(
            seq=event.seq,
            at=event.at,
            actor=event.actor,
            action=event.action,
            entity=event.entity_id,
            before=_json(event.before),
            after=_json(event.after),
            reason=event.reason or "",
        )
        for event in events
    ]


def create_review_router() -> APIRouter:
    """The review pages, at the root of the node's site (not in the OpenAPI document)."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get("/studies/{study}/queries", response_class=HTMLResponse)
    async def query_list(
        request: Request,
        study: str,
        status: str = "",
        form: str = "",
        site: str = "",
        age: str = "",
        assignee: str = "",
        start: str = "",
    ) -> Response:
        """The study's queries at the reader's sites, filtered; close one (data manager)."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, cookie = signed_in
        engine = node_engine(request)
        first = _start(start)
        if status and status not in STATUSES:
            raise PageError(422, "review.bad_filter")
        if age and (not age.isdigit() or int(age) > MAX_AGE_DAYS):
            raise PageError(422, "review.bad_filter")
        try:
            assigned_to = queries.assignee_filter(principal, assignee or None)
        except ValidationError:
            raise PageError(422, "review.bad_filter") from None
        definition = await run_in_threadpool(studies.read_definition, engine, principal, study)
        where = QueryFilter(
            status=status or None,
            form=form or None,
            site=site or None,
            opened_before=utc_now() - timedelta(days=int(age)) if age else None,
            assigned_to=assigned_to,
        )
        found = await run_in_threadpool(
            lambda: queries.list_queries(engine, principal, study, where, limit=SHOWN, offset=first)
        )
        language = page_language(request)
        labels = {
            name: text_of(form_def.label, language)
            for name, form_def in definition.study.forms.items()
        }
        rows = []
        for view in found:
            record = view.record
            ref = event_ref(record.event, record.event_instance)
            item = definition.index.key(record.item, record.group_instance) if record.item else ""
            rows.append(
                _ListedQuery(
                    id=record.id,
                    site=record.site,
                    subject_id=record.subject_id,
                    form_path=_form_path(study, record.subject_id, ref, record.form),
                    where=" · ".join(
                        filter(None, (ref, labels.get(record.form, record.form), item))
                    ),
                    status=record.status,
                    age_days=view.age_days,
                    opened_by=record.opened_by,
                    text=record.text,
                    may_close=record.status in queries.STEPS["close"][1]
                    and can(principal, Action.QUERY_CLOSE, Resource(study, record.site)),
                    assignee=record.assigned_to or "",
                )
            )
        sites = [
            code
            for code in definition.study.sites
            if can(principal, Action.QUERY_READ, Resource(study, code))
        ]
        people = await run_in_threadpool(queries.people_in_list, engine, principal, study)
        filters = {
            "status": status,
            "form": form,
            "site": site,
            "age": age,
            "assignee": assignee.strip().lower(),
        }
        kept = {name: value for name, value in filters.items() if value}
        return render_page(
            request,
            "queries.html",
            page_path=request.url.path,
            study=study,
            rows=rows,
            filters=filters,
            statuses=STATUSES,
            forms=sorted(labels.items()),
            sites=sites,
            people=people,
            here=request.url.path + ("?" + urlencode({**kept, "start": first}) if kept else ""),
            next_page=urlencode({**kept, "start": first + SHOWN}) if len(rows) == SHOWN else "",
            csrf_token=csrf_token(node_settings(request).secret_key.get_secret_value(), cookie),
            closed=request.query_params.get("closed", ""),
            error="",
        )

    @router.post("/studies/{study}/queries/{query_id}/close", response_class=HTMLResponse)
    async def close_from_list(request: Request, study: str, query_id: int) -> Response:
        """Close a query with a message, from the list (data manager); back to the list."""
        posted = await signed_in_post(request)
        if posted is None:
            return redirect(request, "/login")
        fields, _, principal = posted
        try:
            await run_in_threadpool(
                queries.close_query,
                node_engine(request),
                principal,
                study,
                query_id,
                fields.get("text", ""),
            )
        except ConflictError as error:  # closed meanwhile
            return render_page(request, "error.html", 409, message=str(error))
        except ValidationError as error:  # no message: the input's `required` prevents it
            message = "; ".join(problem.message for problem in error.problems)
            return render_page(request, "error.html", 422, message=message)
        back = fields.get("back", "")
        if not back.startswith(f"/studies/{study}/queries") or "//" in back:
            back = f"/studies/{study}/queries"
        joiner = "&" if "?" in back else "?"
        return redirect(request, f"{back}{joiner}closed={query_id}")

    @router.get("/studies/{study}/sdv", response_class=HTMLResponse)
    async def sdv_list(request: Request, study: str, site: str = "", start: str = "") -> Response:
        """Forms complete but not verified at the monitor's sites, by site."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, _ = signed_in
        engine = node_engine(request)
        first = _start(start)
        definition = await run_in_threadpool(studies.read_definition, engine, principal, study)
        entries = await run_in_threadpool(
            lambda: form_states.sdv_worklist(
                engine, principal, study, site=site or None, limit=SHOWN, offset=first
            )
        )
        language = page_language(request)
        rows = [
            (
                entry.site,
                entry.subject_id,
                event_text(definition.study.events, entry.event, entry.instance, language),
                text_of(definition.study.forms[entry.form].label, language)
                if entry.form in definition.study.forms
                else entry.form,
                entry.updated_at.strftime("%Y-%m-%d %H:%M"),
                entry.updated_by,
                _form_path(
                    study, entry.subject_id, event_ref(entry.event, entry.instance), entry.form
                ),
            )
            for entry in entries
        ]
        sites = [
            code
            for code in definition.study.sites
            if can(principal, Action.DATA_VERIFY, Resource(study, code))
        ]
        kept = {"site": site} if site else {}
        return render_page(
            request,
            "sdv.html",
            page_path=request.url.path,
            study=study,
            rows=rows,
            sites=sites,
            site=site,
            next_page=urlencode({**kept, "start": first + SHOWN}) if len(rows) == SHOWN else "",
        )

    @router.get(FORM_PATH + "/items/{item_key}/history", response_class=HTMLResponse)
    async def item_history(
        request: Request, study: str, subject_id: str, event: str, form: str, item_key: str
    ) -> Response:
        """Each change of one item: who, when, before → after, and why."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, _ = signed_in
        changes = await run_in_threadpool(
            history.item_history,
            node_engine(request),
            principal,
            study,
            subject_id,
            event,
            form,
            item_key,
        )
        form_path = request.url.path.rsplit("/items/", 1)[0]
        return render_page(
            request,
            "item_history.html",
            page_path=request.url.path,
            study=study,
            subject_id=subject_id,
            event=event,
            form=form,
            item=item_key,
            form_path=form_path,
            changes=changes,
        )

    @router.get(FORM_PATH + "/history", response_class=HTMLResponse)
    async def form_audit(
        request: Request,
        study: str,
        subject_id: str,
        event: str,
        form: str,
        start: str = "",
    ) -> Response:
        """The audit events about one form instance, oldest first."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, _ = signed_in
        first = _start(start)
        events = await run_in_threadpool(
            lambda: history.form_history(
                node_engine(request),
                principal,
                study,
                subject_id,
                event,
                form,
                limit=SHOWN + 1,  # one more: is there a next page?
                offset=first,
            )
        )
        return _audit_page(
            request,
            study,
            f"{subject_id} · {event} · {form}",
            request.url.path.removesuffix("/history"),
            events,
            first,
        )

    @router.get("/studies/{study}/subjects/{subject_id}/history", response_class=HTMLResponse)
    async def subject_audit(
        request: Request, study: str, subject_id: str, start: str = ""
    ) -> Response:
        """The audit events about a subject, its events and forms, oldest first."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, _ = signed_in
        first = _start(start)
        events = await run_in_threadpool(
            lambda: history.subject_history(
                node_engine(request),
                principal,
                study,
                subject_id,
                limit=SHOWN + 1,  # one more: is there a next page?
                offset=first,
            )
        )
        return _audit_page(
            request, study, subject_id, request.url.path.removesuffix("/history"), events, first
        )

    return router


def _audit_page(
    request: Request, study: str, title: str, back: str, events: list[AuditEvent], first: int
) -> Response:
    return render_page(
        request,
        "audit.html",
        page_path=request.url.path,
        study=study,
        title=title,
        back=back,
        rows=_audit_rows(events[:SHOWN]),
        next_page=urlencode({"start": first + SHOWN}) if len(events) > SHOWN else "",
        none=translate(page_language(request), "review.no_events") if not events else "",
    )
