"""The hub's pages: the consortium (members, published studies, analyses) and each
analysis's result (the members that took part with their rows, refusals with their rules,
members that did not answer, the estimates). Served only by a hub; node administrators
(``hub.manage``) only, through the hub's services (:mod:`consortia.services.hub`,
``hub_studies``, ``hub_analyses``) like the API."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from consortia.exceptions import NotFoundError, PermissionDeniedError
from consortia.services import hub as hub_service
from consortia.services import hub_analyses, hub_studies
from consortia.web.pages import (
    PageError,
    PageRoute,
    node_engine,
    redirect,
    render_page,
    session_principal,
)

__all__ = ["create_hub_pages_router"]


def create_hub_pages_router(consortium: str = "") -> APIRouter:
    """``/hub`` and ``/hub/analyses/{id}``."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get("/hub", response_class=HTMLResponse)
    async def consortium_page(request: Request) -> Response:
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, _ = signed_in
        engine = node_engine(request)

        def read() -> tuple[list[object], list[object], list[object]]:
            return (
                list(hub_service.list_members(engine, principal)),
                list(hub_studies.list_studies(engine, principal)),
                list(hub_analyses.list_analyses(engine, principal)),
            )

        try:
            members, studies, analyses = await run_in_threadpool(read)
        except PermissionDeniedError:
            raise PageError(403) from None
        return render_page(
            request,
            "hub.html",
            page_path="/hub",
            consortium=consortium,
            members=members,
            studies=studies,
            analyses=analyses,
        )

    @router.get("/hub/analyses/{analysis_id}", response_class=HTMLResponse)
    async def analysis_page(request: Request, analysis_id: str) -> Response:
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, _ = signed_in
        try:
            analysis = await run_in_threadpool(
                hub_analyses.get_analysis, node_engine(request), principal, analysis_id[:32]
            )
        except PermissionDeniedError:
            raise PageError(403) from None
        except NotFoundError:
            raise PageError(404) from None
        result = analysis.result
        estimates = "" if result is None else json.dumps(result.get("estimates"), indent=2)
        return render_page(
            request,
            "hub_analysis.html",
            page_path=f"/hub/analyses/{analysis.id}",
            analysis=analysis,
            result=result,
            estimates=estimates,
        )

    return router
