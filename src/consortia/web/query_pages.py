"""The queries on a form, from its page: open one, answer, close, re-open or assign it."""

from __future__ import annotations

import functools
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from consortia.auth.principal import Principal
from consortia.exceptions import ConflictError, ValidationError
from consortia.services import data_entry, queries
from consortia.web.capture_common import (
    FORM_PATH,
    MAX_DATA_FORM_BYTES,
    refusal_of,
)
from consortia.web.form_pages import form_page
from consortia.web.pages import (
    PageError,
    PageRoute,
    node_engine,
    redirect,
    signed_in_post,
)

__all__ = [
    "create_query_router",
]


async def _done_on_form(
    request: Request,
    principal: Principal,
    cookie: str,
    where: tuple[str, str, str, str],
    run: Callable[[], object],
    back: str,
) -> Response:
    """Run a query action as the signed-in person and go ``back`` to the form; a refused
    action (a conflict, a bad value) shows the form again with its reasons."""
    try:
        await run_in_threadpool(run)
    except (ConflictError, ValidationError) as error:
        view = await run_in_threadpool(
            data_entry.read_form_page, node_engine(request), principal, *where
        )
        return await form_page(request, principal, cookie, where, view, **refusal_of(error))
    return redirect(request, back)


def create_query_router() -> APIRouter:
    """Opening a query on a form, and the steps on a query."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.post(FORM_PATH + "/queries", response_class=HTMLResponse)
    async def open_query(
        request: Request, study: str, subject_id: str, event: str, form: str
    ) -> Response:
        """Open a query on an item of the form (or the whole form), with its text."""
        posted = await signed_in_post(request, max_bytes=MAX_DATA_FORM_BYTES)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        run = functools.partial(
            queries.open_query,
            node_engine(request),
            principal,
            study,
            subject_id,
            event,
            form,
            fields.get("item", ""),
            fields.get("text", ""),
            fields.get("assignee") or None,
        )
        path = request.url.path.removesuffix("/queries")
        where = (study, subject_id, event, form)
        return await _done_on_form(request, principal, cookie, where, run, f"{path}?done=open")

    @router.post(FORM_PATH + "/queries/{query_id}/assign", response_class=HTMLResponse)
    async def assign_query(
        request: Request, study: str, subject_id: str, event: str, form: str, query_id: int
    ) -> Response:
        """Assign a query on the form to someone, or (no one chosen) to nobody."""
        posted = await signed_in_post(request, max_bytes=MAX_DATA_FORM_BYTES)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        run = functools.partial(  # a query of another form instance is not found
            queries.assign_query,
            node_engine(request),
            principal,
            study,
            query_id,
            fields.get("assignee") or None,
            on_form=(subject_id, event, form),
        )
        path = request.url.path.rsplit("/queries/", 1)[0]
        where = (study, subject_id, event, form)
        back = f"{path}?done=assign#query-{query_id}"
        return await _done_on_form(request, principal, cookie, where, run, back)

    @router.post(FORM_PATH + "/queries/{query_id}", response_class=HTMLResponse)
    async def query_step(
        request: Request, study: str, subject_id: str, event: str, form: str, query_id: int
    ) -> Response:
        """Answer, close or re-open a query on the form, with a message."""
        posted = await signed_in_post(request, max_bytes=MAX_DATA_FORM_BYTES)
        if posted is None:
            return redirect(request, "/login")
        fields, cookie, principal = posted
        step = fields.get("step", "")
        if step not in queries.STEPS:
            raise PageError(400)
        take = {
            "answer": queries.answer_query,
            "close": queries.close_query,
            "reopen": queries.reopen_query,
        }[step]
        run = functools.partial(  # a query of another form instance is not found
            take,
            node_engine(request),
            principal,
            study,
            query_id,
            fields.get("text", ""),
            on_form=(subject_id, event, form),
        )
        path = request.url.path.rsplit("/queries/", 1)[0]
        where = (study, subject_id, event, form)
        return await _done_on_form(request, principal, cookie, where, run, f"{path}?done={step}")

    return router
