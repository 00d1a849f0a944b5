"""The record-status dashboard page: subjects × events, each form's state by colour and
icon, with a flag for an open query; filters by site, subject status and form state."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from consortia.auth.policy import Action, Resource, can
from consortia.domain.schedule import event_ref
from consortia.domain.study import SubjectStatus
from consortia.exceptions import ValidationError
from consortia.services.common import MAX_OFFSET
from consortia.services.dashboard import FILTER_STATES, Dashboard, GridFilter, read_dashboard
from consortia.web.capture_common import state_label
from consortia.web.form_fields import text_of
from consortia.web.i18n import translate
from consortia.web.pages import (
    PageError,
    PageRoute,
    node_engine,
    page_language,
    redirect,
    render_page,
    session_principal,
)

__all__ = ["create_dashboard_router"]

#: the icon of each state; the colour comes from the stylesheet, the words from the legend
ICONS = {
    "not_started": "○",
    "in_progress": "◐",
    "complete": "●",
    "verified": "✓",
    "signed": "✍",
    "locked": "🔒",
}


@dataclass(frozen=True, slots=True)
class _Icon:
    state: str
    icon: str
    label: str  # "Eligibility: complete, 1 open query" (what a screen reader says)
    href: str
    open_queries: int


@dataclass(frozen=True, slots=True)
class _Row:
    subject_id: str
    href: str
    site: str
    status: str
    cells: tuple[tuple[_Icon, ...], ...]  # one per event column


def _rows(study: str, page: Dashboard, language: str) -> list[_Row]:
    definition = page.definition.study
    columns = list(definition.events.items())
    rows = []
    for grid_row in page.rows:
        base = f"/studies/{quote(study, safe='')}/subjects/{quote(grid_row.subject_id, safe='')}"
        by_event: dict[str, list[tuple[int, str, str, int]]] = {}
        for cell in grid_row.forms:
            by_event.setdefault(cell.event, []).append(
                (cell.instance, cell.form, cell.state, cell.open_queries)
            )
        cells = []
        for name, event in columns:
            saved = {
                (form, instance): (state, n) for instance, form, state, n in by_event.get(name, [])
            }
            instances = sorted({instance for _, instance in saved} or {1})
            icons = []
            for instance in instances:
                ref = event_ref(name, instance)
                for form in event.forms:
                    state, queries = saved.get((form, instance), ("not_started", 0))
                    form_def = definition.forms.get(form)
                    label = text_of(form_def.label, language) if form_def else form
                    if len(instances) > 1:
                        label = f"{label} ({instance})"
                    said = f"{label}: {state_label(language, state)}"
                    icons.append(
                        _Icon(
                            state,
                            ICONS[state],
                            said,
                            f"{base}/events/{quote(ref, safe='')}/forms/{quote(form, safe='')}",
                            queries,
                        )
                    )
            cells.append(tuple(icons))
        rows.append(_Row(grid_row.subject_id, base, grid_row.site, grid_row.status, tuple(cells)))
    return rows


def _choice(text: str) -> str | None:
    return text or None


def create_dashboard_router() -> APIRouter:
    """``/studies/{study}/dashboard``."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get("/studies/{study}/dashboard", response_class=HTMLResponse)
    async def dashboard(
        request: Request,
        study: str,
        site: str = "",
        status: str = "",
        state: str = "",
        start: str = "",
    ) -> Response:
        """A page of subjects × events, filtered."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, _ = signed_in
        if start and (not start.isdigit() or int(start) > MAX_OFFSET):
            raise PageError(422, "review.bad_start")
        first = int(start or 0)
        where = GridFilter(site=_choice(site), status=_choice(status), form_state=_choice(state))
        language = page_language(request)
        try:
            page = await run_in_threadpool(
                lambda: read_dashboard(node_engine(request), principal, study, where, offset=first)
            )
        except ValidationError as error:
            message = "; ".join(f"{problem.path}: {problem.message}" for problem in error.problems)
            return render_page(request, "error.html", 422, message=message)
        definition = page.definition.study
        kept = {
            key: value
            for key, value in (("site", site), ("status", status), ("state", state))
            if value
        }
        last = first + len(page.rows)
        return render_page(
            request,
            "dashboard.html",
            page_path=request.url.path,
            study=study,
            columns=[
                (name, text_of(event.label, language)) for name, event in definition.events.items()
            ],
            rows=_rows(study, page, language),
            sites=[
                code
                for code in definition.sites
                if can(principal, Action.SUBJECT_READ, Resource(study, code))
            ],
            statuses=[(s.value, state_label(language, s.value)) for s in SubjectStatus],
            states=[
                (
                    code,
                    state_label(language, code)
                    if code != "open_query"
                    else translate(language, "dashboard.open_query"),
                )
                for code in FILTER_STATES
            ],
            legend=[(code, icon, state_label(language, code)) for code, icon in ICONS.items()],
            chosen=where,
            shown=(first + 1 if page.rows else 0, last, page.total),
            previous_page=urlencode({**kept, "start": max(0, first - page.limit)}) if first else "",
            next_page=urlencode({**kept, "start": last}) if last < page.total else "",
        )

    return router
