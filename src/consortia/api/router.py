"""The REST API, version 1: every route under ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from consortia.api import (
    accounts,
    analyses,
    approvals,
    capture,
    exports,
    randomisation,
    site_performance,
    subjects,
)
from consortia.api.deps import EngineDep
from consortia.services.health import node_health

__all__ = ["API_PREFIX", "api_routers"]

API_PREFIX = "/api/v1"

_node = APIRouter()


@_node.get("/health", tags=["node"])
def health(engine: EngineDep) -> JSONResponse:
    """Whether the node answers, its database answers at the code's schema revision, and
    every audit chain's head is its last event (no authentication; 503 when not)."""
    report = node_health(engine)
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)


def api_routers() -> tuple[APIRouter, ...]:
    """The API's routers, to include one by one under :data:`API_PREFIX`.

    Each is included in the app directly, not through one ``/api/v1`` router: FastAPI
    matches a request against every route of every router on the way down, so a nested
    router costs a second walk over the routes on each request. Data capture comes first,
    being where requests are most frequent; no two routes match the same request (a test
    checks), so the order changes nothing else.
    """
    return (
        capture.router,
        subjects.router,
        accounts.router,
        exports.router,
        analyses.router,
        approvals.router,
        randomisation.router,
        site_performance.router,
        _node,
    )
