"""Doctor-led ideas and the centre's IP.

An idea (the clinical problem, the proposed solution, the patients affected, what is
needed) is submitted by a clinician, triaged (matched to partners and a programme), then
becomes a project at the first gate or is declined with a reason. Invention disclosures
and patent filings (title, inventors, application number, jurisdiction, filing and grant
days, status, family) link to projects; the portfolio counts them by status and by
jurisdiction.

Anyone signed in at the hub may submit an idea; everything else needs ``hub.manage``.
Each change is one unit of work with its audit event on the hub's ``hub`` chain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal
from consortia.domain import centre as rules
from consortia.exceptions import ConflictError, NotFoundError, Problem
from consortia.services.centre import ids_of, refuse
from consortia.services.centre_projects import create_project
from consortia.services.common import require, utc_now
from consortia.services.hub import HUB_CHAIN
from consortia.services.unit_of_work import reading, writing
from consortia.storage.centre import CentreRepository
from consortia.storage.centre_projects import IdeaRecord, IpRecord, PortfolioRepository

__all__ = [
    "IdeaRecord",
    "IdeaView",
    "IpRecord",
    "IpView",
    "Portfolio",
    "accept_idea",
    "add_ip",
    "decline_idea",
    "list_ideas",
    "list_ip",
    "portfolio",
    "submit_idea",
    "triage_idea",
]

_JURISDICTION = re.compile(r"^[A-Z]{2,3}$")


@dataclass(frozen=True, slots=True)
class IdeaView:
    """An idea with its programme, matched partners and project (by code)."""

    idea: IdeaRecord
    programme: str | None
    partners: list[str]
    project: str | None


@dataclass(frozen=True, slots=True)
class IpView:
    """A disclosure or patent with its project's code."""

    ip: IpRecord
    project: str | None


@dataclass(frozen=True, slots=True)
class Portfolio:
    """The IP portfolio counted by status and by jurisdiction (``-``: none yet)."""

    total: int
    by_status: dict[str, int]
    by_jurisdiction: dict[str, int]


def submit_idea(
    engine: Engine,
    principal: Principal,
    *,
    title: str,
    problem: str,
    solution: str,
    patients: str,
    needs: str,
) -> IdeaView:
    """A clinician (the principal) submits an idea; it waits for triage."""
    refuse(
        [
            *rules.check_text(title, "title"),
            *rules.check_text(problem, "problem", limit=8000),
            *rules.check_text(solution, "solution", limit=8000),
            *rules.check_text(patients, "patients", limit=2000),
            *rules.check_text(needs, "needs", limit=4000),
        ]
    )
    with writing(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        values = {
            "title": title.strip(),
            "clinician": principal.email,
            "problem": problem.strip(),
            "solution": solution.strip(),
            "patients": patients.strip(),
            "needs": needs.strip(),
            "status": "submitted",
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        idea_id = portfolio.add_idea(values)
        work.audit("centre.idea.submit", "idea", idea_id, chain=HUB_CHAIN, after=values)
        return _idea_view(portfolio, idea_id)


def _idea_view(portfolio: PortfolioRepository, idea_id: int) -> IdeaView:
    idea = portfolio.idea(idea_id)
    if idea is None:
        raise NotFoundError(f"idea {idea_id} does not exist")
    return IdeaView(
        idea,
        portfolio.programme_code(idea.programme_id),
        portfolio.idea_partners(idea.id),
        portfolio.project_code(idea.project_id),
    )


def list_ideas(engine: Engine, principal: Principal) -> list[IdeaView]:
    """Every idea, newest first."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        return [_idea_view(portfolio, idea.id) for idea in portfolio.ideas()]


def _open_idea(portfolio: PortfolioRepository, idea_id: int, *allowed: str) -> IdeaRecord:
    idea = portfolio.idea(idea_id)
    if idea is None:
        raise NotFoundError(f"idea {idea_id} does not exist")
    if idea.status not in allowed:
        refuse(
            [
                Problem(
                    "status",
                    f"idea {idea_id} is {idea.status}: this needs an idea that is "
                    f"{' or '.join(allowed)}",
                )
            ]
        )
    return idea


def triage_idea(
    engine: Engine,
    principal: Principal,
    idea_id: int,
    *,
    programme: str | None,
    partners: Sequence[str],
) -> IdeaView:
    """Triage an idea: match it to partners (codes) and a programme."""
    require(principal, Action.HUB_MANAGE, Resource())
    with writing(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        centre = CentreRepository(work.connection)
        idea = _open_idea(portfolio, idea_id, "submitted", "triaged")
        problems: list[Problem] = []
        partner_ids = ids_of(
            partners, centre.partner, "partners", "{!r} is not a partner of the centre", problems
        )
        programme_id = None
        if programme:
            record = centre.programme(programme)
            if record is None:
                problems.append(Problem("programme", f"{programme!r} is not a programme"))
            else:
                programme_id = record.id
        refuse(problems)
        if not portfolio.set_idea(
            idea.id, idea.status, status="triaged", programme_id=programme_id
        ):
            raise ConflictError(f"idea {idea_id} changed meanwhile: read it again")
        portfolio.match_partners(idea.id, partner_ids)
        work.audit(
            "centre.idea.triage",
            "idea",
            idea.id,
            chain=HUB_CHAIN,
            before={"status": idea.status},
            after={"status": "triaged", "programme": programme, "partners": sorted(partners)},
        )
        return _idea_view(portfolio, idea.id)


def accept_idea(
    engine: Engine,
    principal: Principal,
    idea_id: int,
    *,
    project: str,
    committee: str,
) -> IdeaView:
    """A triaged idea becomes project ``project`` at the first gate, under ``committee``,
    in the idea's programme, linked to its matched partners."""
    require(principal, Action.HUB_MANAGE, Resource())
    with writing(engine, principal, conflict=f"project {project!r} exists already") as work:
        portfolio = PortfolioRepository(work.connection)
        idea = _open_idea(portfolio, idea_id, "triaged")
        created = create_project(
            work,
            code=project,
            title=idea.title,
            committee=committee,
            programme=portfolio.programme_code(idea.programme_id),
        )
        for partner in portfolio.idea_partners(idea.id):
            portfolio.add_link(created.id, "partner", partner)
        if not portfolio.set_idea(idea.id, "triaged", status="accepted", project_id=created.id):
            raise ConflictError(f"idea {idea_id} changed meanwhile: read it again")
        work.audit(
            "centre.idea.accept",
            "idea",
            idea.id,
            chain=HUB_CHAIN,
            before={"status": idea.status},
            after={"status": "accepted", "project": project},
        )
        return _idea_view(portfolio, idea.id)


def decline_idea(engine: Engine, principal: Principal, idea_id: int, *, reason: str) -> IdeaView:
    """Decline an idea, with the reason the clinician will read."""
    require(principal, Action.HUB_MANAGE, Resource())
    refuse(rules.check_text(reason, "reason", limit=4000))
    with writing(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        idea = _open_idea(portfolio, idea_id, "submitted", "triaged")
        if not portfolio.set_idea(idea.id, idea.status, status="declined", reason=reason.strip()):
            raise ConflictError(f"idea {idea_id} changed meanwhile: read it again")
        work.audit(
            "centre.idea.decline",
            "idea",
            idea.id,
            chain=HUB_CHAIN,
            before={"status": idea.status},
            after={"status": "declined"},
            reason=reason.strip(),
        )
        return _idea_view(portfolio, idea.id)


def add_ip(
    engine: Engine,
    principal: Principal,
    *,
    kind: str,
    title: str,
    inventors: Sequence[str],
    status: str,
    application_number: str | None = None,
    jurisdiction: str | None = None,
    filed_on: date | None = None,
    granted_on: date | None = None,
    family: str | None = None,
    project: str | None = None,
) -> IpView:
    """Record an invention disclosure or a patent filing (linked to ``project``)."""
    require(principal, Action.HUB_MANAGE, Resource())
    names = [i.strip() for i in inventors if i.strip()]
    problems = [
        *rules.check_choice(kind, rules.IP_KINDS, "kind"),
        *rules.check_text(title, "title"),
        *rules.check_choice(status, rules.IP_STATUSES, "status"),
        *rules.check_dates(filed_on, granted_on, "granted_on"),
        *[p for n in names for p in rules.check_text(n, "inventors", limit=200)],
        *rules.check_text(application_number or "", "application_number", limit=64, required=False),
        *rules.check_text(family or "", "family", limit=64, required=False),
    ]
    if not names:
        problems.append(Problem("inventors", "name at least one inventor"))
    if jurisdiction and not _JURISDICTION.fullmatch(jurisdiction):
        problems.append(
            Problem("jurisdiction", f"{jurisdiction!r}: a country code (SG, CN) or EP, WO")
        )
    if kind == "patent" and not (application_number and jurisdiction and filed_on):
        problems.append(
            Problem(
                "application_number",
                "a patent filing has an application number, a jurisdiction and a filing day",
            )
        )
    if status == "granted" and granted_on is None:
        problems.append(Problem("granted_on", "a granted patent has its grant day"))
    refuse(problems)
    with writing(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        project_id = None
        if project:
            found = portfolio.project(project)
            if found is None:
                raise NotFoundError(f"project: {project!r} does not exist")
            project_id = found.id
        values = {
            "kind": kind,
            "title": title.strip(),
            "inventors": names,
            "application_number": application_number or None,
            "jurisdiction": jurisdiction or None,
            "filed_on": filed_on,
            "granted_on": granted_on,
            "status": status,
            "family": family or None,
            "project_id": project_id,
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        ip_id = portfolio.add_ip(values)
        if project_id is not None:
            portfolio.add_link(project_id, "ip", str(ip_id))
        work.audit(
            "centre.ip.add", "ip", ip_id, chain=HUB_CHAIN, after={**values, "project": project}
        )
        record = portfolio.ip(ip_id)
    assert record is not None
    return IpView(record, project)


def list_ip(engine: Engine, principal: Principal) -> list[IpView]:
    """Every disclosure and patent, oldest first."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        return [IpView(r, portfolio.project_code(r.project_id)) for r in portfolio.ips()]


def portfolio(engine: Engine, principal: Principal) -> Portfolio:
    """The IP portfolio: counts by status and by jurisdiction."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        by_status, by_jurisdiction = PortfolioRepository(work.connection).ip_counts()
    return Portfolio(sum(by_status.values()), by_status, by_jurisdiction)
