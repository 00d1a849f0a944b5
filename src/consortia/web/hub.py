"""The hub's pages: the consortium (an overview, and its members, published studies and
analyses, each reached from the hub's navigation) and each analysis's result (the members
that took part with their rows, refusals with their rules, members that did not answer,
the estimates; a Kaplan–Meier result also as a table per group and a plot). Served only
by a hub; node administrators (``hub.manage``) only, through the hub's services
(:mod:`consortia.services.hub`, ``hub_studies``, ``hub_analyses``) like the API."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from consortia.exceptions import ConsortiaError, NotFoundError, PermissionDeniedError
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

    async def consortium_page(request: Request, section: str) -> Response:
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
            page_path="/hub" if section == "overview" else f"/hub/{section}",
            consortium=consortium,
            section=section,
            members=members,
            studies=studies,
            analyses=analyses,
        )

    @router.get("/hub", response_class=HTMLResponse)
    async def overview_page(request: Request) -> Response:
        return await consortium_page(request, "overview")

    @router.get("/hub/members", response_class=HTMLResponse)
    async def members_page(request: Request) -> Response:
        return await consortium_page(request, "members")

    @router.get("/hub/studies", response_class=HTMLResponse)
    async def studies_page(request: Request) -> Response:
        return await consortium_page(request, "studies")

    @router.get("/hub/analyses", response_class=HTMLResponse)
    async def analyses_page(request: Request) -> Response:
        return await consortium_page(request, "analyses")

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
        page = render_page(
            request,
            "hub_analysis.html",
            page_path=f"/hub/analyses/{analysis.id}",
            analysis=analysis,
            result=result,
            estimates=estimates,
            curves=_curves(result),
        )
        # the result's plot is an image of this hub: the one thing this page loads
        policy = page.headers.get("content-security-policy", "")
        if policy:
            page.headers["content-security-policy"] = policy.replace(
                "default-src 'none';", "default-src 'none'; img-src 'self';", 1
            )
        return page

    @router.get("/hub/analyses/{analysis_id}/plot.png")
    async def analysis_plot(request: Request, analysis_id: str) -> Response:
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
        image = await run_in_threadpool(_plot, analysis.result, analysis.plan or analysis.id)
        if image is None:
            raise PageError(404)
        return Response(image, media_type="image/png", headers={"Cache-Control": "no-store"})

    return router


def _kaplan_meier(result: dict[str, Any] | None) -> Any:
    """The Kaplan–Meier curves of a result, or None (another kind, or no result)."""
    if not result or result.get("kind") != "kaplan_meier":
        return None
    from consortia.stats.survival import KaplanMeierResult

    try:
        return KaplanMeierResult.from_dict(result.get("estimates") or {})
    except (ConsortiaError, KeyError, TypeError, ValueError):
        return None


def _curves(result: dict[str, Any] | None) -> list[dict[str, object]]:
    """One row per group of a Kaplan–Meier result: n, events, median with its CI."""
    km = _kaplan_meier(result)
    if km is None:
        return []

    def days(value: float) -> str:
        return "–" if value is None or not math.isfinite(value) else f"{value:g}"

    return [
        {
            "group": curve.group,
            "n": curve.n,
            "events": int(sum(curve.events)),
            "median": f"{days(curve.median)} "
            f"({days(curve.median_ci_lower)}–{days(curve.median_ci_upper)})",
        }
        for curve in km.curves
    ]


def _plot(result: dict[str, Any] | None, title: str) -> bytes | None:
    km = _kaplan_meier(result)
    if km is None:
        return None
    from consortia.stats.plots import kaplan_meier_plot

    return kaplan_meier_plot(km, title=title, time_label="Days")
