"""``POST /studies/{study}/analyses``: a statistician's analysis of this node's data.

The body is an analysis request (DESIGN.md's JSON: ``kind``, ``table`` and the kind's
fields); the answer is the result with aggregates only, under the node's disclosure policy.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi import Request as HttpRequest

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.auth.principal import CODE_PATTERN
from consortia.services import analyses

__all__ = ["router"]

router = APIRouter(prefix="/studies/{study}", tags=["analyses"])
StudyCode = Annotated[str, Path(pattern=CODE_PATTERN, description="the study's code")]
Request = Annotated[
    dict[str, Any],
    Body(examples=[{"kind": "describe", "table": "edc", "variable": "age"}]),
]


@router.post("/analyses")
def run_analysis(
    study: StudyCode,
    body: Request,
    principal: CurrentPrincipal,
    engine: EngineDep,
    request: HttpRequest,
) -> dict[str, Any]:
    """Run an analysis on the study's data at the caller's sites; aggregates only."""
    config = getattr(request.app.state, "analysis_config", None)
    return analyses.run_analysis(engine, principal, study, body, config=config).to_dict()
