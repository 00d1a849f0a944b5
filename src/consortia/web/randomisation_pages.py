"""Randomisation pages: a subject's allocation (randomise it through the hub, emergency
unblinding) and a study's allocations, through :mod:`consortia.services.randomisation`,
so the pages show what the API shows: the allocation code to blinded roles, the arm only to
those who may see it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal
from consortia.auth.sessions import csrf_token
from consortia.exceptions import (
    ConfigurationError,
    ConflictError,
    FederationError,
    NotFoundError,
    ValidationError,
)
from consortia.services import randomisation, subjects
from consortia.services.randomisation import AllocationView
from consortia.web.pages import (
    PageRoute,
    node_engine,
    node_settings,
    redirect,
    render_page,
    session_principal,
    signed_in_post,
)

__all__ = ["create_randomisation_router"]

_PATH = "/studies/{study}/subjects/{subject_id}/randomisation"


def _link(request: Request) -> randomisation.HubLink | None:
    state = request.app.state
    return randomisation.hub_link(
        getattr(state, "node", None),
        getattr(state, "hub_name", None),
        getattr(state, "hub_transport", None),
    )


def create_randomisation_router() -> APIRouter:
    """The randomisation pages (not in the OpenAPI document)."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    async def subject_view(
        request: Request,
        principal: Principal,
        cookie: str,
        study: str,
        subject_id: str,
        *,
        status: int = 200,
        error: str = "",
        allocation: AllocationView | None = None,
    ) -> Response:
        engine = node_engine(request)
        record = await run_in_threadpool(subjects.get_subject, engine, principal, study, subject_id)
        if allocation is None:
            try:
                allocation = await run_in_threadpool(
                    randomisation.get_allocation, engine, principal, study, subject_id
                )
            except NotFoundError:
                allocation = None
        where = Resource(study, record.site)
        return render_page(
            request,
            "randomisation.html",
            status,
            page_path=f"/studies/{study}/subjects/{subject_id}/randomisation",
            study=study,
            subject=record,
            allocation=allocation,
            may_randomise=allocation is None and can(principal, Action.SUBJECT_RANDOMISE, where),
            may_unblind=allocation is not None
            and allocation.blinded
            and can(principal, Action.SUBJECT_UNBLIND, where),
            error=error,
            csrf_token=csrf_token(node_settings(request).secret_key.get_secret_value(), cookie),
        )

    @router.get(_PATH, response_class=HTMLResponse)
    async def subject_page(request: Request, study: str, subject_id: str) -> Response:
        """The subject's allocation, or the button that randomises it."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, cookie = signed_in
        return await subject_view(request, principal, cookie, study, subject_id)

    @router.post(_PATH, response_class=HTMLResponse)
    async def randomise(request: Request, study: str, subject_id: str) -> Response:
        """Randomise the subject through the hub (post/redirect/get)."""
        posted = await signed_in_post(request)
        if posted is None:
            return redirect(request, "/login")
        _, cookie, principal = posted
        try:
            await run_in_threadpool(
                randomisation.randomise_subject,
                node_engine(request),
                principal,
                study,
                subject_id,
                _link(request),
            )
        except (ConflictError, ValidationError, FederationError, ConfigurationError) as exc:
            status = 409 if isinstance(exc, ConflictError) else 422
            if isinstance(exc, FederationError | ConfigurationError):
                status = 503
            message = (
                "; ".join(f"{p.path}: {p.message}" for p in exc.problems)
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            return await subject_view(
                request, principal, cookie, study, subject_id, status=status, error=message
            )
        return redirect(request, request.url.path)

    @router.post(_PATH.removesuffix("/randomisation") + "/unblind", response_class=HTMLResponse)
    async def unblind(request: Request, study: str, subject_id: str) -> Response:
        """Emergency unblinding of the subject with a stated reason (audited)."""
        posted = await signed_in_post(request)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        try:
            view = await run_in_threadpool(
                randomisation.unblind_subject,
                node_engine(request),
                principal,
                study,
                subject_id,
                fields.get("reason", ""),
            )
        except ValidationError as exc:
            message = "; ".join(p.message for p in exc.problems)
            return await subject_view(
                request, principal, cookie, study, subject_id, status=422, error=message
            )
        return await subject_view(request, principal, cookie, study, subject_id, allocation=view)

    @router.get("/studies/{study}/randomisation", response_class=HTMLResponse)
    async def study_page(request: Request, study: str) -> Response:
        """The study's allocations at the sites the reader may see."""
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, _ = signed_in
        views = await run_in_threadpool(
            randomisation.list_allocations, node_engine(request), principal, study
        )
        return render_page(
            request,
            "allocations.html",
            page_path=f"/studies/{study}/randomisation",
            study=study,
            allocations=views,
        )

    return router
