"""The innovation centre's pages at the hub: partners and agreements (``/centre``),
programmes, committees and projects through their gates (``/centre/projects``), ideas and
IP (``/centre/ideas``), people and training (``/centre/people``).

Each page lists what the centre holds and carries the forms of its actions; a form posts
to the same services as the API (:mod:`consortia.services.centre` and its siblings), and a
refusal (a skipped gate, no quorum, an unknown partner …) is shown on the page with the
service's reason, nothing changed. Served only by a hub; its administrators only
(``hub.manage``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from consortia.auth.principal import Principal
from consortia.auth.sessions import csrf_token
from consortia.domain import centre as rules
from consortia.entry.sessions import node_settings
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.services import centre, centre_ideas, centre_people, centre_projects
from consortia.web.pages import (
    PageError,
    PageRoute,
    node_engine,
    redirect,
    render_page,
    session_principal,
    signed_in_post,
)

__all__ = ["create_centre_pages_router"]

Form = Mapping[str, str]
Action = Callable[[Engine, Principal, Form], object]
MAX_FIELDS = 30

CHOICES = {
    "partner_kinds": rules.PARTNER_KINDS,
    "agreement_kinds": rules.AGREEMENT_KINDS,
    "agreement_statuses": rules.AGREEMENT_STATUSES,
    "stages": rules.STAGES,
    "decisions": rules.DECISIONS,
    "ip_kinds": rules.IP_KINDS,
    "ip_statuses": rules.IP_STATUSES,
    "training_kinds": rules.TRAINING_KINDS,
    "link_kinds": centre_projects.LINK_KINDS,
}


# ---------------------------------------------------------------- reading the form
def _text(form: Form, name: str) -> str:
    return form.get(name, "").strip()


def _optional(form: Form, name: str) -> str | None:
    return _text(form, name) or None


def _list(form: Form, name: str) -> list[str]:
    return [part.strip() for part in form.get(name, "").split(",") if part.strip()]


def _day(form: Form, name: str) -> date | None:
    value = _text(form, name)
    if not value:
        return None
    try:
        return rules.parse_day(value, name)
    except ValueError as error:
        raise ValidationError([Problem(name, str(error).split(": ", 1)[1])]) from None


def _required_day(form: Form, name: str) -> date:
    day = _day(form, name)
    if day is None:
        raise ValidationError([Problem(name, "required: write YYYY-MM-DD")])
    return day


def _number(form: Form, name: str) -> int:
    value = _text(form, name)
    if not value.isdigit() or len(value) > 9:
        raise ValidationError([Problem(name, f"{value!r} is not a whole number")])
    return int(value)


# ---------------------------------------------------------------- what each page shows
def _overview(engine: Engine, principal: Principal) -> dict[str, Any]:
    return {
        "partners": centre.list_partners(engine, principal),
        "agreements": centre.list_agreements(engine, principal),
        "expiring": centre.expiring_agreements(engine, principal),
        "programmes": centre.list_programmes(engine, principal),
    }


def _projects(engine: Engine, principal: Principal) -> dict[str, Any]:
    return {
        "committees": centre_projects.list_committees(engine, principal),
        "projects": centre_projects.list_projects(engine, principal),
    }


def _ideas(engine: Engine, principal: Principal) -> dict[str, Any]:
    return {
        "ideas": centre_ideas.list_ideas(engine, principal),
        "ips": centre_ideas.list_ip(engine, principal),
        "portfolio": centre_ideas.portfolio(engine, principal),
    }


def _people(engine: Engine, principal: Principal) -> dict[str, Any]:
    return {
        "people": centre_people.list_people(engine, principal),
        "placements": centre_people.list_placements(engine, principal),
        "expiring": centre_people.expiring_training(engine, principal),
        "rules": centre_people.list_study_training(engine, principal),
    }


PAGES: dict[str, tuple[str, Callable[[Engine, Principal], dict[str, Any]]]] = {
    "": ("centre.html", _overview),
    "projects": ("centre_projects.html", _projects),
    "ideas": ("centre_ideas.html", _ideas),
    "people": ("centre_people.html", _people),
}


async def _page(
    request: Request,
    section: str,
    principal: Principal,
    cookie: str,
    *,
    status: int = 200,
    refusals: list[str] | None = None,
) -> Response:
    template, read = PAGES[section]
    try:
        data = await run_in_threadpool(read, node_engine(request), principal)
    except PermissionDeniedError:
        raise PageError(403) from None
    path = "/centre" + (f"/{section}" if section else "")
    return render_page(
        request,
        template,
        status,
        page_path=path,
        section=section,
        choices=CHOICES,
        refusals=refusals or [],
        csrf_token=csrf_token(node_settings(request).secret_key.get_secret_value(), cookie),
        **data,
    )


async def _show(request: Request, section: str) -> Response:
    signed_in = await session_principal(request)
    if signed_in is None:
        return redirect(request, "/login")
    principal, cookie = signed_in
    return await _page(request, section, principal, cookie)


async def _act(request: Request, section: str, action: Action) -> Response:
    """Run a posted action; back to the page, or the page again with the refusal."""
    posted = await signed_in_post(request, max_fields=MAX_FIELDS)
    if posted is None:
        return redirect(request, "/login")
    form, cookie, principal = posted
    try:
        await run_in_threadpool(action, node_engine(request), principal, form)
    except PermissionDeniedError:
        raise PageError(403) from None
    except ValidationError as error:
        refusals = [f"{p.path}: {p.message}" if p.path else p.message for p in error.problems]
        return await _page(request, section, principal, cookie, status=422, refusals=refusals)
    except (ConflictError, NotFoundError) as error:
        status = 409 if isinstance(error, ConflictError) else 404
        refusals = [str(error)]
        return await _page(request, section, principal, cookie, status=status, refusals=refusals)
    return redirect(request, "/centre" + (f"/{section}" if section else ""))


# ---------------------------------------------------------------- the actions
def _add_partner(engine: Engine, principal: Principal, form: Form) -> object:
    return centre.add_partner(
        engine,
        principal,
        code=_text(form, "code"),
        name=_text(form, "name"),
        kind=_text(form, "kind"),
        country=_text(form, "country"),
        member=_optional(form, "member"),
    )


def _add_programme(engine: Engine, principal: Principal, form: Form) -> object:
    return centre.add_programme(
        engine,
        principal,
        code=_text(form, "code"),
        name=_text(form, "name"),
        description=_text(form, "description"),
        studies=_list(form, "studies"),
    )


def _add_agreement(engine: Engine, principal: Principal, form: Form) -> object:
    return centre.add_agreement(
        engine,
        principal,
        code=_text(form, "code"),
        title=_text(form, "title"),
        kind=_text(form, "kind"),
        status=_text(form, "status") or "active",
        starts_on=_required_day(form, "starts_on"),
        ends_on=_day(form, "ends_on"),
        parties=_list(form, "parties"),
        studies=_list(form, "studies"),
        programmes=_list(form, "programmes"),
    )


def _change_agreement(engine: Engine, principal: Principal, form: Form) -> object:
    return centre.set_agreement_status(
        engine,
        principal,
        _text(form, "agreement"),
        status=_optional(form, "status"),
        ends_on=_day(form, "ends_on"),
    )


def _add_committee(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_projects.add_committee(
        engine,
        principal,
        code=_text(form, "code"),
        name=_text(form, "name"),
        quorum=_number(form, "quorum"),
        members=_list(form, "members"),
    )


def _add_project(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_projects.add_project(
        engine,
        principal,
        code=_text(form, "code"),
        title=_text(form, "title"),
        committee=_text(form, "committee"),
        programme=_optional(form, "programme"),
    )


def _record_gate(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_projects.record_gate(
        engine,
        principal,
        _text(form, "project"),
        to_stage=_text(form, "to_stage"),
        decision=_text(form, "decision"),
        rationale=_text(form, "rationale"),
        present=_list(form, "present"),
        documents=_list(form, "documents"),
        decided_on=_day(form, "decided_on"),
    )


def _link_project(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_projects.link_project(
        engine,
        principal,
        _text(form, "project"),
        kind=_text(form, "kind"),
        target=_text(form, "target"),
    )


def _submit_idea(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_ideas.submit_idea(
        engine,
        principal,
        title=_text(form, "title"),
        problem=_text(form, "problem"),
        solution=_text(form, "solution"),
        patients=_text(form, "patients"),
        needs=_text(form, "needs"),
    )


def _triage_idea(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_ideas.triage_idea(
        engine,
        principal,
        _number(form, "idea"),
        programme=_optional(form, "programme"),
        partners=_list(form, "partners"),
    )


def _accept_idea(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_ideas.accept_idea(
        engine,
        principal,
        _number(form, "idea"),
        project=_text(form, "project"),
        committee=_text(form, "committee"),
    )


def _decline_idea(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_ideas.decline_idea(
        engine, principal, _number(form, "idea"), reason=_text(form, "reason")
    )


def _add_ip(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_ideas.add_ip(
        engine,
        principal,
        kind=_text(form, "kind"),
        title=_text(form, "title"),
        inventors=_list(form, "inventors"),
        status=_text(form, "status"),
        application_number=_optional(form, "application_number"),
        jurisdiction=_optional(form, "jurisdiction"),
        filed_on=_day(form, "filed_on"),
        granted_on=_day(form, "granted_on"),
        family=_optional(form, "family"),
        project=_optional(form, "project"),
    )


def _add_person(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_people.add_person(
        engine, principal, email=_text(form, "email"), name=_text(form, "name")
    )


def _affiliate(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_people.affiliate(
        engine,
        principal,
        email=_text(form, "email"),
        partner=_text(form, "partner"),
        title=_text(form, "title"),
    )


def _add_placement(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_people.add_placement(
        engine,
        principal,
        email=_text(form, "email"),
        from_partner=_text(form, "from_partner"),
        to_partner=_text(form, "to_partner"),
        starts_on=_required_day(form, "starts_on"),
        ends_on=_required_day(form, "ends_on"),
        purpose=_text(form, "purpose"),
    )


def _add_training(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_people.add_training(
        engine,
        principal,
        email=_text(form, "email"),
        kind=_text(form, "kind"),
        title=_text(form, "title"),
        completed_on=_required_day(form, "completed_on"),
        expires_on=_day(form, "expires_on"),
        study=_optional(form, "study"),
    )


def _set_rule(engine: Engine, principal: Principal, form: Form) -> object:
    return centre_people.set_study_training(
        engine,
        principal,
        study=_text(form, "study"),
        requires_gcp=form.get("requires_gcp") == "on",
        requires_protocol=form.get("requires_protocol") == "on",
    )


#: ``POST /centre/<section>/<action>``: the section's page shows the result.
ACTIONS: dict[tuple[str, str], Action] = {
    ("", "partners"): _add_partner,
    ("", "programmes"): _add_programme,
    ("", "agreements"): _add_agreement,
    ("", "agreement-change"): _change_agreement,
    ("projects", "committees"): _add_committee,
    ("projects", "projects"): _add_project,
    ("projects", "gates"): _record_gate,
    ("projects", "links"): _link_project,
    ("ideas", "ideas"): _submit_idea,
    ("ideas", "triage"): _triage_idea,
    ("ideas", "accept"): _accept_idea,
    ("ideas", "decline"): _decline_idea,
    ("ideas", "ip"): _add_ip,
    ("people", "people"): _add_person,
    ("people", "affiliations"): _affiliate,
    ("people", "placements"): _add_placement,
    ("people", "training"): _add_training,
    ("people", "rules"): _set_rule,
}


def create_centre_pages_router() -> APIRouter:
    """The centre's four pages and the form posts of their actions."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get("/centre", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        return await _show(request, "")

    @router.get("/centre/{section}", response_class=HTMLResponse)
    async def section_page(request: Request, section: str) -> Response:
        if section not in PAGES or not section:
            raise PageError(404)
        return await _show(request, section)

    @router.post("/centre/actions/{action}", response_class=HTMLResponse)
    async def overview_action(request: Request, action: str) -> Response:
        found = ACTIONS.get(("", action))
        if found is None:
            raise PageError(404)
        return await _act(request, "", found)

    @router.post("/centre/{section}/actions/{action}", response_class=HTMLResponse)
    async def section_action(request: Request, section: str, action: str) -> Response:
        found = ACTIONS.get((section, action))
        if found is None:
            raise PageError(404)
        return await _act(request, section, found)

    return router
