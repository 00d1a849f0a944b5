"""The hub's REST API (``hub.manage``): ``GET /api/v1/hub/members``, ``/api/v1/hub/studies``,
``/api/v1/hub/analyses`` and ``/api/v1/hub/analyses/{id}``, served only by a hub.

The consortium's federation endpoints (joining, the pull queue, a member receiving a study
version) are :mod:`consortia.federation.hub_routes`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.services import hub as hub_service
from consortia.services import hub_analyses, hub_studies
from consortia.services.hub import MemberRecord
from consortia.services.hub_analyses import AnalysisRecord

__all__ = ["AnalysisPublic", "MemberPublic", "router"]

router = APIRouter(tags=["hub"])


class MemberPublic(BaseModel):
    """A member of the consortium as the hub knows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    institution: str
    country: str
    url: str
    transport: str
    fingerprint: str
    status: str
    software_version: str
    protocol_version: str
    joined_at: datetime
    last_seen_at: datetime | None
    removed_at: datetime | None

    @classmethod
    def of(cls, member: MemberRecord) -> MemberPublic:
        values = {name: getattr(member, name) for name in cls.model_fields}
        return cls(**values)


class AnalysisPublic(BaseModel):
    """An analysis the hub ran across its members, with its result."""

    model_config = ConfigDict(frozen=True)

    id: str
    study: str | None
    plan: str | None
    request: dict[str, Any]
    transport: dict[str, str]
    status: str
    result: dict[str, Any] | None
    error: str | None
    requested_by: str
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, record: AnalysisRecord) -> AnalysisPublic:
        return cls(**{name: getattr(record, name) for name in cls.model_fields})


AnalysisId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


@router.get("/hub/members", response_model=list[MemberPublic])
def list_members(principal: CurrentPrincipal, engine: EngineDep) -> list[MemberPublic]:
    """The consortium's members, removed ones included (hub administrators)."""
    return [MemberPublic.of(m) for m in hub_service.list_members(engine, principal)]


@router.get("/hub/studies")
def list_studies(principal: CurrentPrincipal, engine: EngineDep) -> list[dict[str, Any]]:
    """The published studies: newest version, the member hosting each site, deliveries."""
    return hub_studies.list_studies(engine, principal)


@router.get("/hub/analyses", response_model=list[AnalysisPublic])
def list_analyses(principal: CurrentPrincipal, engine: EngineDep) -> list[AnalysisPublic]:
    """The hub's analyses, newest first, with their results."""
    return [AnalysisPublic.of(a) for a in hub_analyses.list_analyses(engine, principal)]


@router.get("/hub/analyses/{analysis_id}", response_model=AnalysisPublic)
def get_analysis(
    analysis_id: AnalysisId, principal: CurrentPrincipal, engine: EngineDep
) -> AnalysisPublic:
    """One analysis: its request, the members asked, and its result or error."""
    return AnalysisPublic.of(hub_analyses.get_analysis(engine, principal, analysis_id))
