"""The manual-approval queue: the data steward lists and decides queued analysis requests.

* ``GET /approvals?status=pending``: the queue (every entry without ``status``).
* ``POST /approvals/{id}/approve`` with an optional ``reason``.
* ``POST /approvals/{id}/deny`` with a ``reason`` (required: the lead is told it).

Node administrators only (``approval.decide``); 404 for an unknown id, 409 for a request
already decided. The queue is the node database's, shared with the federation node and
the shell (:mod:`consortia.services.approvals`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.services import approvals
from consortia.services.approvals import MAX_REASON_LENGTH, ApprovalEntry, ApprovalStatus

__all__ = ["ApprovalDecisionCreate", "ApprovalDenialCreate", "ApprovalPublic", "router"]

router = APIRouter(tags=["approvals"])

ApprovalId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


class ApprovalPublic(BaseModel):
    """One analysis request in the queue: who asked, what, and the decision if made."""

    model_config = ConfigDict(frozen=True)

    id: str
    digest: str = Field(description="SHA-256 of the requester and the request")
    requester: str
    kind: str
    request: dict[str, Any] = Field(
        description="the analysis specification (kind, table, variable names, options)"
    )
    submitted_at: datetime
    status: ApprovalStatus
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None

    @classmethod
    def of(cls, entry: ApprovalEntry) -> ApprovalPublic:
        return cls(
            id=entry.id,
            digest=entry.digest,
            requester=entry.requester,
            kind=entry.kind,
            request=entry.request,
            submitted_at=entry.submitted_at,
            status=entry.status,
            decided_by=entry.decided_by,
            decided_at=entry.decided_at,
            reason=entry.reason,
        )


class ApprovalDecisionCreate(BaseModel):
    """An approval, optionally with a reason."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=MAX_REASON_LENGTH)


class ApprovalDenialCreate(BaseModel):
    """A denial: the reason is required, and the requesting lead is told it."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=MAX_REASON_LENGTH)


@router.get("/approvals", response_model=list[ApprovalPublic])
def list_approvals(
    principal: CurrentPrincipal,
    engine: EngineDep,
    status: Annotated[ApprovalStatus | None, Query()] = None,
) -> list[ApprovalPublic]:
    """The requests queued for manual approval, oldest first (node administrators)."""
    entries = approvals.list_approvals(engine, principal, status)
    return [ApprovalPublic.of(entry) for entry in entries]


@router.post("/approvals/{approval_id}/approve", response_model=ApprovalPublic)
def approve(
    approval_id: ApprovalId,
    principal: CurrentPrincipal,
    engine: EngineDep,
    body: ApprovalDecisionCreate | None = None,
) -> ApprovalPublic:
    """Approve a pending request: the lead's next try goes ahead (audited)."""
    reason = body.reason if body is not None else ""
    entry = approvals.decide(engine, principal, approval_id, True, reason)
    return ApprovalPublic.of(entry)


@router.post("/approvals/{approval_id}/deny", response_model=ApprovalPublic)
def deny(
    approval_id: ApprovalId,
    body: ApprovalDenialCreate,
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> ApprovalPublic:
    """Deny a pending request with a reason; the lead is told it (audited)."""
    entry = approvals.decide(engine, principal, approval_id, False, body.reason)
    return ApprovalPublic.of(entry)
