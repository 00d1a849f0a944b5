"""The innovation centre's portfolio API at the hub: steering committees, projects through
their stage gates, doctors' ideas and IP.

* ``GET|POST /centre/committees``;
* ``GET|POST /centre/projects``, ``POST /centre/projects/{code}/gates`` (a committee's
  decision: 422 with the reason for a skipped gate or a missing quorum),
  ``POST /centre/projects/{code}/links``;
* ``GET|POST /centre/ideas`` (anyone signed in at the hub may submit one),
  ``POST /centre/ideas/{id}/triage|accept|decline``;
* ``GET|POST /centre/ip``, ``GET /centre/ip/portfolio``.

Everything but submitting an idea needs ``hub.manage``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.services import centre_ideas, centre_projects

__all__ = [
    "CommitteeCreate",
    "GateDecisionCreate",
    "IdeaCreate",
    "IpCreate",
    "ProjectCreate",
    "ProjectPublic",
    "router",
]

router = APIRouter(tags=["centre"])

Code = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
IdeaId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Short = Annotated[str, Field(max_length=400)]
Long = Annotated[str, Field(max_length=8000)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CommitteeCreate(_Model):
    """A steering committee: its members (people of the centre, by email) and quorum."""

    code: Short
    name: Short
    quorum: int = Field(ge=1, le=1000)
    members: list[Short] = Field(max_length=100)


class ProjectCreate(_Model):
    """A project, starting at the first gate (idea)."""

    code: Short
    title: Short
    committee: Short
    programme: Short | None = None


class GateDecisionCreate(_Model):
    """The committee's decision on the project's next gate."""

    to_stage: Short = Field(
        description="proof_of_concept, prototype, clinical_study, regulatory_submission "
        "or clinical_use; only the next one"
    )
    decision: Short = Field(description="go, hold or stop")
    rationale: Long
    present: list[Short] = Field(max_length=100, description="committee members present")
    documents: list[Short] = Field(default_factory=list, max_length=100)
    decided_on: date | None = None


class LinkCreate(_Model):
    kind: Short = Field(description="study, partner, person, agreement or ip")
    target: Short


class ProjectPublic(BaseModel):
    """A project with its gate, links and decisions."""

    model_config = ConfigDict(frozen=True)
    code: str
    title: str
    programme: str | None
    committee: str
    stage: str
    status: str
    next_stage: str | None
    links: dict[str, list[str]]
    decisions: list[dict[str, Any]]

    @classmethod
    def of(cls, view: centre_projects.ProjectView) -> ProjectPublic:
        return cls(
            code=view.project.code,
            title=view.project.title,
            programme=view.programme,
            committee=view.committee,
            stage=view.project.stage,
            status=view.project.status,
            next_stage=view.next_stage,
            links=view.links,
            decisions=[asdict(d) for d in view.decisions],
        )


class IdeaCreate(_Model):
    """A clinician's idea."""

    title: Short
    problem: Long
    solution: Long
    patients: Long
    needs: Long


class IdeaTriage(_Model):
    programme: Short | None = None
    partners: list[Short] = Field(default_factory=list, max_length=50)


class IdeaAccept(_Model):
    project: Short
    committee: Short


class IdeaDecline(_Model):
    reason: Long


class IpCreate(_Model):
    """An invention disclosure or a patent filing."""

    kind: Short = Field(description="disclosure or patent")
    title: Short
    inventors: list[Short] = Field(max_length=50)
    status: Short
    application_number: Short | None = None
    jurisdiction: Short | None = None
    filed_on: date | None = None
    granted_on: date | None = None
    family: Short | None = None
    project: Short | None = None


def _idea(view: centre_ideas.IdeaView) -> dict[str, Any]:
    return {
        **asdict(view.idea),
        "programme": view.programme,
        "partners": view.partners,
        "project": view.project,
    }


def _ip(view: centre_ideas.IpView) -> dict[str, Any]:
    return {**asdict(view.ip), "project": view.project}


@router.get("/centre/committees")
def list_committees(principal: CurrentPrincipal, engine: EngineDep) -> list[dict[str, Any]]:
    """The steering committees with their members."""
    return [
        {**asdict(v.committee), "members": v.members}
        for v in centre_projects.list_committees(engine, principal)
    ]


@router.post("/centre/committees", status_code=201)
def add_committee(body: CommitteeCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Record a steering committee."""
    view = centre_projects.add_committee(engine, principal, **body.model_dump())
    return {**asdict(view.committee), "members": view.members}


@router.get("/centre/projects", response_model=list[ProjectPublic])
def list_projects(principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Every project with its gate, links and decisions."""
    return [ProjectPublic.of(v) for v in centre_projects.list_projects(engine, principal)]


@router.post("/centre/projects", response_model=ProjectPublic, status_code=201)
def add_project(body: ProjectCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Start a project at the first gate."""
    return ProjectPublic.of(centre_projects.add_project(engine, principal, **body.model_dump()))


@router.post("/centre/projects/{code}/gates", response_model=ProjectPublic, status_code=201)
def record_gate(
    code: Code, body: GateDecisionCreate, principal: CurrentPrincipal, engine: EngineDep
) -> Any:
    """Record the steering committee's decision on the project's next gate."""
    return ProjectPublic.of(
        centre_projects.record_gate(engine, principal, code, **body.model_dump())
    )


@router.post("/centre/projects/{code}/links", response_model=ProjectPublic, status_code=201)
def link_project(
    code: Code, body: LinkCreate, principal: CurrentPrincipal, engine: EngineDep
) -> Any:
    """Link the project to a study, partner, person, agreement or IP record."""
    return ProjectPublic.of(
        centre_projects.link_project(engine, principal, code, **body.model_dump())
    )


@router.get("/centre/ideas")
def list_ideas(principal: CurrentPrincipal, engine: EngineDep) -> list[dict[str, Any]]:
    """Every idea, newest first."""
    return [_idea(v) for v in centre_ideas.list_ideas(engine, principal)]


@router.post("/centre/ideas", status_code=201)
def submit_idea(body: IdeaCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Submit an idea (as the signed-in clinician)."""
    return _idea(centre_ideas.submit_idea(engine, principal, **body.model_dump()))


@router.post("/centre/ideas/{idea_id}/triage")
def triage_idea(
    idea_id: IdeaId, body: IdeaTriage, principal: CurrentPrincipal, engine: EngineDep
) -> Any:
    """Match an idea to partners and a programme."""
    return _idea(centre_ideas.triage_idea(engine, principal, idea_id, **body.model_dump()))


@router.post("/centre/ideas/{idea_id}/accept")
def accept_idea(
    idea_id: IdeaId, body: IdeaAccept, principal: CurrentPrincipal, engine: EngineDep
) -> Any:
    """Make a triaged idea a project at the first gate."""
    return _idea(centre_ideas.accept_idea(engine, principal, idea_id, **body.model_dump()))


@router.post("/centre/ideas/{idea_id}/decline")
def decline_idea(
    idea_id: IdeaId, body: IdeaDecline, principal: CurrentPrincipal, engine: EngineDep
) -> Any:
    """Decline an idea with its reason."""
    return _idea(centre_ideas.decline_idea(engine, principal, idea_id, reason=body.reason))


@router.get("/centre/ip")
def list_ip(principal: CurrentPrincipal, engine: EngineDep) -> list[dict[str, Any]]:
    """Every disclosure and patent filing."""
    return [_ip(v) for v in centre_ideas.list_ip(engine, principal)]


@router.get("/centre/ip/portfolio")
def ip_portfolio(principal: CurrentPrincipal, engine: EngineDep) -> dict[str, Any]:
    """The IP portfolio counted by status and by jurisdiction."""
    return asdict(centre_ideas.portfolio(engine, principal))


@router.post("/centre/ip", status_code=201)
def add_ip(body: IpCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Record a disclosure or a patent filing."""
    return _ip(centre_ideas.add_ip(engine, principal, **body.model_dump()))
