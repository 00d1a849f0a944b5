"""Errors as RFC 9457 problem details (``application/problem+json``); never a stack trace.

========================  ======  ===============================================
error                     status  notes
========================  ======  ===============================================
AuthenticationError       401     with ``WWW-Authenticate: Bearer``
PermissionDeniedError     403     the role lacks the action (or no CSRF token)
NotFoundError             404     also for records the caller may not see
ConflictError             409
ValidationError           422     ``errors``: ``[{path, message}]``, one per problem
TooManyRequestsError      429     with ``Retry-After`` (seconds)
request validation        422     the same shape (paths like ``body.forms[2].version``);
                                  the rejected *values* are not echoed
ConfigurationError        500     the node is misconfigured
NodeUnavailableError      503     another node (the hub) cannot be reached
other ConsortiaError      400
anything else             500     logged on the server; the body says only "internal error"
========================  ======  ===============================================

Rejected input values are never copied into a response: an identifier typed into the
wrong field must not come back in an error page or a log of responses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from consortia.entry.errors import status_for
from consortia.exceptions import ConsortiaError, TooManyRequestsError, _ProblemsError

__all__ = ["PROBLEM_MEDIA_TYPE", "install_error_handlers", "problem_response", "status_for"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


def problem_response(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem details response: ``type``, ``title``, ``status``, ``detail`` [, ``errors``]."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=dict(headers or {})
    )


def _consortia_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ConsortiaError)
    status = status_for(error)
    headers = {"WWW-Authenticate": 'Bearer realm="consortia"'} if status == 401 else None
    if isinstance(error, TooManyRequestsError):
        headers = {"Retry-After": str(error.retry_after)}
    if status == 500:
        log.error("configuration error while serving a request: %s", error)
        return problem_response(status, "the node is misconfigured; see its log")
    if isinstance(error, _ProblemsError):
        errors = [{"path": p.path, "message": p.message} for p in error.problems]
        summary = "; ".join(
            f"{p.path}: {p.message}" if p.path else p.message for p in error.problems
        )
        return problem_response(status, summary, errors=errors, headers=headers)
    return problem_response(status, str(error), headers=headers)


def _field_path(location: Sequence[int | str]) -> str:
    """A request field's path as the project writes paths: ``body.forms[2].version`` (a
    list's entries counted from 0, as JSON counts them).

    >>> _field_path(("body", "forms", 2, "version"))
    'body.forms[2].version'
    """
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _request_validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {"path": _field_path(item.get("loc", ())), "message": item["msg"]}
        for item in error.errors()
    ]
    detail = "; ".join(f"{e['path']}: {e['message']}" for e in errors) or "invalid request"
    return problem_response(422, detail, errors=errors)


def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return problem_response(
        error.status_code, str(error.detail), headers=getattr(error, "headers", None)
    )


def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("internal error serving %s %s", request.method, request.url.path)
    return problem_response(500, "internal error; the node's log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a problem details response."""
    app.add_exception_handler(ConsortiaError, _consortia_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
