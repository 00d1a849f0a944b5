"""The REST API, version 1: every route under ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from consortia.api import accounts, analyses, approvals, capture, exports, subjects

__all__ = ["API_PREFIX", "create_api_router"]

API_PREFIX = "/api/v1"


def create_api_router() -> APIRouter:
    """All API routes, to include under :data:`API_PREFIX`."""
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(accounts.router)
    router.include_router(subjects.router)
    router.include_router(capture.router)
    router.include_router(exports.router)
    router.include_router(analyses.router)
    router.include_router(approvals.router)

    @router.get("/health", tags=["node"])
    def health() -> dict[str, str]:
        """Whether the node answers (no authentication)."""
        return {"status": "ok"}

    return router
