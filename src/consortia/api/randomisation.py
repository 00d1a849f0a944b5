"""``/studies/{study}/randomisation``: randomise a subject through the hub, read allocations
(blind: the allocation code, the arm only for ``arm.read``), emergency unblinding."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.auth.principal import CODE_PATTERN
from consortia.services import randomisation
from consortia.services.randomisation import AllocationView, HubLink

__all__ = ["router"]

router = APIRouter(prefix="/studies/{study}", tags=["randomisation"])

StudyCode = Annotated[str, Path(pattern=CODE_PATTERN, description="the study's code")]
SubjectId = Annotated[str, Path(pattern=CODE_PATTERN, description="the subject's id")]


class AllocationPublic(BaseModel):
    """A subject's allocation; ``arm`` is null for a blinded caller (``code`` is shown)."""

    model_config = ConfigDict(frozen=True)

    study: str
    site: str
    subject_id: str
    number: int
    code: str
    arm: str | None
    blinded: bool
    randomised_at: datetime
    randomised_by: str
    unblinded_at: datetime | None
    unblinded_by: str | None

    @classmethod
    def of(cls, view: AllocationView) -> AllocationPublic:
        return cls(
            study=view.study,
            site=view.site,
            subject_id=view.subject_id,
            number=view.number,
            code=view.code,
            arm=view.arm,
            blinded=view.blinded,
            randomised_at=view.randomised_at,
            randomised_by=view.randomised_by,
            unblinded_at=view.unblinded_at,
            unblinded_by=view.unblinded_by,
        )


class UnblindRequest(BaseModel):
    """Why this subject must be unblinded now (kept in the audit trail)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


def hub_link_of(request: Request) -> HubLink | None:
    """The node's link to its hub, from the app's state."""
    state = request.app.state
    return randomisation.hub_link(
        getattr(state, "node", None),
        getattr(state, "hub_name", None),
        getattr(state, "hub_transport", None),
    )


@router.get("/randomisation", response_model=list[AllocationPublic])
def list_allocations(
    study: StudyCode, principal: CurrentPrincipal, engine: EngineDep
) -> list[AllocationPublic]:
    """The study's allocations at the sites where the caller may read subjects."""
    return [
        AllocationPublic.of(view)
        for view in randomisation.list_allocations(engine, principal, study)
    ]


@router.get("/subjects/{subject_id}/randomisation", response_model=AllocationPublic)
def get_allocation(
    study: StudyCode, subject_id: SubjectId, principal: CurrentPrincipal, engine: EngineDep
) -> AllocationPublic:
    """The subject's allocation (404 until randomised)."""
    return AllocationPublic.of(randomisation.get_allocation(engine, principal, study, subject_id))


@router.post("/subjects/{subject_id}/randomisation", response_model=AllocationPublic)
def randomise(
    study: StudyCode,
    subject_id: SubjectId,
    principal: CurrentPrincipal,
    engine: EngineDep,
    request: Request,
) -> AllocationPublic:
    """Randomise the subject through the hub once its gates hold (409 if randomised; 503
    with nothing recorded when the hub cannot be reached)."""
    view = randomisation.randomise_subject(
        engine, principal, study, subject_id, hub_link_of(request)
    )
    return AllocationPublic.of(view)


@router.post("/subjects/{subject_id}/unblind", response_model=AllocationPublic)
def unblind(
    study: StudyCode,
    subject_id: SubjectId,
    body: UnblindRequest,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> AllocationPublic:
    """Emergency unblinding of this subject, stating the reason (audited)."""
    view = randomisation.unblind_subject(engine, principal, study, subject_id, body.reason)
    return AllocationPublic.of(view)
