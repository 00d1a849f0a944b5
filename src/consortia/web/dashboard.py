"""The record-status dashboard page: subjects × events, each form's state by colour and
icon, with a flag for an open query; filters by site, subject status and form state."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape
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
    "locked": "■",
}


@dataclass(frozen=True, slots=True)
class _Row:
    subject_id: str
    href: str
    site: str
    status: str
    #: one per event column: the forms' icons, each a link to its form (escaped markup)
    cells: tuple[Markup, ...]


def _rows(study: str, page: Dashboard, language: str, queries_word: str) -> list[_Row]:
    """The grid's rows, each cell's icons built once here: a page has ~1,500 of them, and
    string joins are many times faster than a template loop over them."""
    definition = page.definition.study
    columns = [(name, event.forms) for name, event in definition.events.items()]
    labels = {
        form: str(escape(text_of(form_def.label, language)))
        for form, form_def in definition.forms.items()
    }
    words = {state: str(escape(state_label(language, state))) for state in ICONS}
    forms_q = {form: quote(form, safe="") for _, forms in columns for form in forms}
    refs: dict[tuple[str, int], str] = {}
    study_q = quote(study, safe="")
    rows = []
    for grid_row in page.rows:
        base = f"/studies/{study_q}/subjects/{quote(grid_row.subject_id, safe='')}"
        saved: dict[tuple[str, int, str], tuple[str, int]] = {}
        instances: dict[str, set[int]] = {}
        for cell in grid_row.forms:
            saved[(cell.event, cell.instance, cell.form)] = (cell.state, cell.open_queries)
            instances.setdefault(cell.event, set()).add(cell.instance)
        cells = []
        for name, forms in columns:
            numbers = sorted(instances.get(name, (1,)))
            parts = []
            for instance in numbers:
                ref = refs.get((name, instance))
                if ref is None:
                    ref = refs[(name, instance)] = quote(event_ref(name, instance), safe="")
                for form in forms:
                    state, open_queries = saved.get((name, instance, form), ("not_started", 0))
                    label = labels.get(form) or str(escape(form))
                    if len(numbers) > 1:
                        label = f"{label} ({instance})"
                    flag = ""
                    said = f"{label}: {words[state]}"
                    if open_queries:
                        flag = '<span class="query-flag">&#9873;</span>'
                        said += f" · {open_queries} {queries_word}"
                    parts.append(
                        f'<a href="{base}/events/{ref}/forms/{forms_q[form]}" '
                        f'class="state state-{state}" aria-label="{said}">{ICONS[state]}{flag}</a>'
                    )
            cells.append(Markup("".join(parts)))
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
            rows=_rows(
                study, page, language, str(escape(translate(language, "dashboard.open_query")))
            ),
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
