"""What every ``/api/`` request passes before a route sees it (pure ASGI middleware).

1. Every response, errors included, carries ``Cache-Control: no-store`` (a shared cache
   or the browser's disk must not keep a subject's data) and ``X-Content-Type-Options:
   nosniff``.
2. A request with a body and no credentials at all (no ``Authorization`` header, no
   session cookie) is refused with 401 before a byte of its body is read, unless its
   route needs none (signing in).
3. A request with credentials and a large or unannounced body (``Content-Length`` over
   :data:`EARLY_AUTH_BYTES`, or chunked) has them checked before its body is read; the
   principal found is kept for the route, which does not look it up again. A small body
   is read first and the credentials checked with the route's work, in one trip to a
   worker thread, as the busiest routes (saving a form) rely on.
4. Bodies are read under ``max_request_bytes`` (413) and JSON nested at most
   ``max_json_depth`` levels (400), counted as they stream (:mod:`consortia.asgi`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import compile_path

from consortia.api.deps import NO_CREDENTIALS, PRINCIPAL_STATE, Caller, caller, lean_caller
from consortia.asgi import ASGIApp, Message, Receive, Scope, Send, limited, send_problem
from consortia.auth.sessions import SESSION_COOKIE
from consortia.exceptions import AuthenticationError, ConsortiaError, PermissionDeniedError

__all__ = ["EARLY_AUTH_BYTES", "ApiGuard", "PublicRoute", "public_routes"]

#: A body announced larger than this (or not announced: chunked) waits for the
#: credentials to be checked before it is read.
EARLY_AUTH_BYTES: Final = 64 * 1024
_SECURITY_HEADERS: Final = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
)
_REPLACED: Final = frozenset(name for name, _ in _SECURITY_HEADERS)


def _needs_credentials(dependant: Dependant) -> bool:
    if dependant.call in (caller, lean_caller):
        return True
    return any(_needs_credentials(sub) for sub in dependant.dependencies)


@dataclass(frozen=True, slots=True)
class PublicRoute:
    """A route that takes requests without credentials: its methods and full path."""

    methods: frozenset[str]
    path: re.Pattern[str]

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and self.path.fullmatch(path) is not None


def public_routes(routers: Iterable[APIRouter], prefix: str) -> list[PublicRoute]:
    """The routes of ``routers`` (included under ``prefix``) that need no credentials."""
    return [
        PublicRoute(frozenset(route.methods or ()), compile_path(prefix + route.path)[0])
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and not _needs_credentials(route.dependant)
    ]


def _with_security_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (name, value)
                for name, value in message.get("headers", ())
                if bytes(name).lower() not in _REPLACED
            ]
            message["headers"] = [*headers, *_SECURITY_HEADERS]
        await send(message)

    return sending


class ApiGuard:
    """The middleware; see the module docstring. ``app`` is the FastAPI app it guards."""

    def __init__(
        self, inner: ASGIApp, *, app: FastAPI, prefix: str, public: Sequence[PublicRoute]
    ) -> None:
        self.inner = inner
        self.app = app
        self.prefix = prefix
        self.public = tuple(public)

    def _is_public(self, scope: Scope) -> bool:
        method, path = str(scope.get("method")), str(scope.get("path"))
        return any(route.matches(method, path) for route in self.public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.inner(scope, receive, send)
            return
        send = _with_security_headers(send)
        settings = self.app.state.settings
        if _has_body(scope):
            request = Request(scope)
            header = request.headers.get("authorization")
            cookie = request.cookies.get(SESSION_COOKIE)
            if not self._is_public(scope):
                if header is None and not cookie:
                    await _refuse(send, AuthenticationError(NO_CREDENTIALS))
                    return
                if _large_or_unannounced(scope):
                    who = Caller.of(request, self.app.state.engine, settings, header, cookie)
                    try:
                        principal = await run_in_threadpool(who.principal)
                    except (AuthenticationError, PermissionDeniedError) as error:
                        await _refuse(send, error)
                        return
                    scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        await limited(
            self.inner,
            scope,
            receive,
            send,
            settings.max_request_bytes,
            settings.max_json_depth,
        )


def _has_body(scope: Scope) -> bool:
    headers = dict(scope.get("headers", ()))
    length = headers.get(b"content-length")
    return b"transfer-encoding" in headers or (length is not None and length.strip() != b"0")


def _large_or_unannounced(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = bytes(value).strip()
            return not text.isdigit() or int(text) > EARLY_AUTH_BYTES
    return True


async def _refuse(send: Send, error: ConsortiaError) -> None:
    if isinstance(error, AuthenticationError):
        headers = [(b"www-authenticate", b'Bearer realm="consortia"'), (b"connection", b"close")]
        await send_problem(send, 401, str(error), headers)
        return
    await send_problem(send, 403, str(error), [(b"connection", b"close")])
