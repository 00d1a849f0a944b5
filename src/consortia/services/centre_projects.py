"""The innovation centre's projects through their stage gates: idea → proof of concept →
prototype → clinical study → regulatory submission → clinical use / industrialisation.

A steering committee (named people, a quorum) records each gate decision: ``go`` moves the
project to the next gate, ``hold`` holds it where it is, ``stop`` ends it; each with the
day, the rationale, the documents reviewed and who was present. A project cannot skip a
gate, a decision without a quorum does not stand, and a stopped project takes no more
decisions (each refused with its reason, nothing changed). Projects link to studies,
partners, people, agreements and IP.

Each change is one unit of work with its audit event on the hub's ``hub`` chain and needs
``hub.manage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal
from consortia.domain import centre as rules
from consortia.exceptions import ConflictError, NotFoundError, Problem
from consortia.services.centre import ids_of, refuse, today
from consortia.services.common import normalise_email, require, utc_now
from consortia.services.hub import HUB_CHAIN
from consortia.services.unit_of_work import UnitOfWork, reading, writing
from consortia.storage.centre import CentreRepository
from consortia.storage.centre_people import PeopleRepository
from consortia.storage.centre_projects import (
    CommitteeRecord,
    GateDecisionRecord,
    PortfolioRepository,
    ProjectRecord,
)

__all__ = [
    "LINK_KINDS",
    "CommitteeRecord",
    "CommitteeView",
    "GateDecisionRecord",
    "ProjectRecord",
    "ProjectView",
    "add_committee",
    "add_project",
    "link_project",
    "list_committees",
    "list_projects",
    "record_gate",
]

LINK_KINDS = ("study", "partner", "person", "agreement", "ip")


@dataclass(frozen=True, slots=True)
class CommitteeView:
    """A steering committee with its members (by email)."""

    committee: CommitteeRecord
    members: list[str]


@dataclass(frozen=True, slots=True)
class ProjectView:
    """A project with its programme, committee, next gate, links and gate decisions."""

    project: ProjectRecord
    programme: str | None
    committee: str
    next_stage: str | None
    links: dict[str, list[str]]
    decisions: list[GateDecisionRecord]


def add_committee(
    engine: Engine,
    principal: Principal,
    *,
    code: str,
    name: str,
    quorum: int,
    members: Sequence[str],
) -> CommitteeView:
    """Record a steering committee: its members are people of the centre (by email)."""
    require(principal, Action.HUB_MANAGE, Resource())
    emails = sorted({normalise_email(m) for m in members})
    problems = [*rules.check_code_text(code, "code"), *rules.check_text(name, "name")]
    if not 1 <= quorum <= max(len(emails), 1):
        problems.append(
            Problem("quorum", f"{quorum}: a quorum is 1 to the number of members ({len(emails)})")
        )
    with writing(engine, principal, conflict=f"committee {code!r} exists already") as work:
        people = PeopleRepository(work.connection)
        member_ids = ids_of(
            emails, people.person, "members", "{} is not a person of the centre", problems
        )
        refuse(problems)
        portfolio = PortfolioRepository(work.connection)
        if portfolio.committee(code) is not None:
            raise ConflictError(f"committee {code!r} exists already")
        values = {
            "code": code,
            "name": name.strip(),
            "quorum": quorum,
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        committee_id = portfolio.add_committee(values, member_ids)
        work.audit(
            "centre.committee.add",
            "committee",
            code,
            chain=HUB_CHAIN,
            after={**values, "members": emails},
        )
        committee = portfolio.committee(code)
        assert committee is not None
        return CommitteeView(committee, portfolio.committee_members(committee_id))


def list_committees(engine: Engine, principal: Principal) -> list[CommitteeView]:
    """Every steering committee with its members."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        return [CommitteeView(c, portfolio.committee_members(c.id)) for c in portfolio.committees()]


def create_project(
    work: UnitOfWork,
    *,
    code: str,
    title: str,
    committee: str,
    programme: str | None,
) -> ProjectRecord:
    """Add a project at the first gate inside ``work`` (shared with an accepted idea)."""
    refuse([*rules.check_code_text(code, "code"), *rules.check_text(title, "title")])
    portfolio = PortfolioRepository(work.connection)
    found = portfolio.committee(committee)
    if found is None:
        raise NotFoundError(f"committee: {committee!r} is not a steering committee")
    programme_id = None
    if programme:
        record = CentreRepository(work.connection).programme(programme)
        if record is None:
            raise NotFoundError(f"programme: {programme!r} is not a programme")
        programme_id = record.id
    if portfolio.project(code) is not None:
        raise ConflictError(f"project {code!r} exists already")
    values = {
        "code": code,
        "title": title.strip(),
        "programme_id": programme_id,
        "committee_id": found.id,
        "stage": rules.STAGES[0],
        "status": "active",
        "created_by": work.principal.email,
        "created_at": utc_now(),
    }
    portfolio.add_project(values)
    work.audit(
        "centre.project.add",
        "project",
        code,
        chain=HUB_CHAIN,
        after={**values, "committee": committee, "programme": programme},
    )
    project = portfolio.project(code)
    assert project is not None
    return project


def add_project(
    engine: Engine,
    principal: Principal,
    *,
    code: str,
    title: str,
    committee: str,
    programme: str | None = None,
) -> ProjectView:
    """Start a project at the first gate (``idea``), under a steering committee."""
    require(principal, Action.HUB_MANAGE, Resource())
    with writing(engine, principal, conflict=f"project {code!r} exists already") as work:
        project = create_project(
            work, code=code, title=title, committee=committee, programme=programme
        )
        return _view(PortfolioRepository(work.connection), project)


def _view(portfolio: PortfolioRepository, project: ProjectRecord) -> ProjectView:
    committee = portfolio.committee_by_id(project.committee_id)
    assert committee is not None
    return ProjectView(
        project=project,
        programme=portfolio.programme_code(project.programme_id),
        committee=committee.code,
        next_stage=rules.next_stage(project.stage),
        links=portfolio.links(project.id),
        decisions=portfolio.decisions(project.id),
    )


def list_projects(engine: Engine, principal: Principal) -> list[ProjectView]:
    """Every project with its links and gate decisions."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        return [_view(portfolio, p) for p in portfolio.projects()]


def _project(portfolio: PortfolioRepository, code: str) -> ProjectRecord:
    project = portfolio.project(code)
    if project is None:
        raise NotFoundError(f"project {code!r} does not exist")
    return project


def _check_target(work: UnitOfWork, kind: str, target: str) -> str:
    """The target's stored form; NotFoundError for one the centre does not have."""
    if kind == "study":
        refuse(rules.check_code_text(target, "target"))
        return target
    if kind == "person":
        email = normalise_email(target)
        if PeopleRepository(work.connection).person(email) is None:
            raise NotFoundError(f"target: {email} is not a person of the centre")
        return email
    centre = CentreRepository(work.connection)
    found: object = None
    if kind == "partner":
        found = centre.partner(target)
    elif kind == "agreement":
        found = centre.agreement(target)
    elif kind == "ip" and target.isdigit():
        found = PortfolioRepository(work.connection).ip(int(target))
    if found is None:
        raise NotFoundError(f"target: {target!r} is not a {kind} of the centre")
    return target


def link_project(
    engine: Engine, principal: Principal, code: str, *, kind: str, target: str
) -> ProjectView:
    """Link a project to a study (code), partner (code), person (email), agreement (code)
    or IP record (id)."""
    require(principal, Action.HUB_MANAGE, Resource())
    refuse(rules.check_choice(kind, LINK_KINDS, "kind"))
    with writing(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        project = _project(portfolio, code)
        target = _check_target(work, kind, target.strip())
        if not portfolio.add_link(project.id, kind, target):
            raise ConflictError(f"project {code} is linked to {kind} {target} already")
        work.audit(
            "centre.project.link",
            "project",
            code,
            chain=HUB_CHAIN,
            after={"kind": kind, "target": target},
        )
        return _view(portfolio, project)


def record_gate(
    engine: Engine,
    principal: Principal,
    code: str,
    *,
    to_stage: str,
    decision: str,
    rationale: str,
    present: Sequence[str],
    documents: Sequence[str] = (),
    decided_on: date | None = None,
) -> ProjectView:
    """Record the steering committee's decision on project ``code``'s gate ``to_stage``.

    Refused (:class:`~consortia.exceptions.ValidationError`, nothing changed): a gate that
    is not the next one, a person present who is not on the committee, no quorum, a
    decision day in the future, a stopped project.
    """
    require(principal, Action.HUB_MANAGE, Resource())
    day = decided_on or today()
    emails = sorted({normalise_email(p) for p in present})
    problems = [
        *rules.check_choice(decision, rules.DECISIONS, "decision"),
        *rules.check_text(rationale, "rationale", limit=8000),
        *[p for d in documents for p in rules.check_text(d, "documents", limit=400)],
    ]
    if day > today():
        problems.append(Problem("decided_on", f"{day.isoformat()} is in the future"))
    with writing(engine, principal) as work:
        portfolio = PortfolioRepository(work.connection)
        project = _project(portfolio, code)
        if project.status == "stopped":
            refuse([Problem("decision", f"project {code} was stopped: it takes no more gates")])
        refusal = rules.gate_refusal(project.stage, to_stage)
        if refusal is not None:
            problems.append(Problem("to_stage", f"project {code} is at {project.stage}: {refusal}"))
        committee = portfolio.committee_by_id(project.committee_id)
        assert committee is not None
        members = portfolio.committee_members(committee.id)
        outsiders = [e for e in emails if e not in members]
        if outsiders:
            problems.append(
                Problem(
                    "present",
                    f"{', '.join(outsiders)}: not on steering committee {committee.code} "
                    f"(its members: {', '.join(members) or 'none'})",
                )
            )
        quorum = rules.quorum_refusal(
            present=len(emails) - len(outsiders), members=len(members), quorum=committee.quorum
        )
        if quorum is not None:
            problems.append(Problem("present", f"steering committee {committee.code}: {quorum}"))
        refuse(problems)
        stage = to_stage if decision == "go" else project.stage
        status = {"go": "active", "hold": "on_hold", "stop": "stopped"}[decision]
        moved = portfolio.move_project(
            project.id, stage=project.stage, to_stage=stage, status=status
        )
        if not moved:
            raise ConflictError(f"project {code} moved meanwhile: read it again")
        values = {
            "project_id": project.id,
            "from_stage": project.stage,
            "to_stage": to_stage,
            "decision": decision,
            "decided_on": day,
            "rationale": rationale.strip(),
            "documents": [d.strip() for d in documents if d.strip()],
            "present": emails,
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        decision_id = portfolio.add_decision(values)
        work.audit(
            "centre.project.gate",
            "project",
            code,
            chain=HUB_CHAIN,
            before={"stage": project.stage, "status": project.status},
            after={
                **{k: v for k, v in values.items() if k != "project_id"},
                "decision_id": decision_id,
                "committee": committee.code,
                "stage": stage,
                "status": status,
            },
        )
        return _view(portfolio, _project(portfolio, code))
