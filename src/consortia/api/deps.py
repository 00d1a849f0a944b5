"""What routes receive: the node's engine and settings, and the authenticated principal.

Credentials, in order: ``Authorization: Bearer <API token>``, else the session cookie.
A cookie-authenticated request that changes state (any method but GET/HEAD/OPTIONS) must
carry the session's CSRF token in ``X-CSRF-Token``; a bearer token needs none (browsers
never send it on their own).

Most routes are plain functions that FastAPI runs in its thread pool, each with its
``CurrentPrincipal`` dependency, which costs a second trip through the pool. The busiest
routes (reading and saving a form) are ``async`` and make one trip for everything:
``await in_thread(caller, work)`` checks the credentials and runs ``work`` in one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from consortia.auth.principal import Principal
from consortia.auth.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE
from consortia.config import Settings
from consortia.entry.sessions import csrf_ok, node_engine, node_settings, session_principal
from consortia.exceptions import AuthenticationError, PermissionDeniedError
from consortia.services.authentication import principal_from_token

__all__ = [
    "NO_CREDENTIALS",
    "PRINCIPAL_STATE",
    "SECURITY",
    "Caller",
    "CallerDep",
    "CurrentPrincipal",
    "EngineDep",
    "LeanCallerDep",
    "SettingsDep",
    "current_principal",
    "get_engine",
    "get_settings",
    "in_thread",
    "json_response",
    "lean_caller",
]

T = TypeVar("T")

NO_CREDENTIALS = "log in, or send an API token as 'Authorization: Bearer <token>'"
#: Where :class:`~consortia.api.guard.ApiGuard` keeps the principal it checked before
#: reading a large body (``request.state``), so that the route does not look it up again.
PRINCIPAL_STATE: Final = "consortia_principal"

_bearer = HTTPBearer(auto_error=False, description="a personal API token (cst_...)")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="web session (needs X-CSRF-Token)"
)


# The two lookups are ``async`` so that FastAPI calls them on the event loop: a plain
# ``def`` dependency costs a trip through the thread pool on every request.
async def get_engine(request: Request) -> Engine:
    return node_engine(request)


async def get_settings(request: Request) -> Settings:
    return node_settings(request)


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's credentials, not yet checked: :meth:`principal` checks them."""

    request: Request
    engine: Engine
    settings: Settings
    bearer: HTTPAuthorizationCredentials | None
    cookie: str | None

    @classmethod
    def of(
        cls,
        request: Request,
        engine: Engine,
        settings: Settings,
        header: str | None,
        cookie: str | None,
    ) -> Caller:
        """The credentials of ``request``: its ``Authorization`` header and session cookie."""
        bearer = None
        scheme, credentials = get_authorization_scheme_param(header)
        if header is not None and scheme.lower() == "bearer" and credentials:
            bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)
        return cls(request, engine, settings, bearer, cookie)

    def principal(self) -> Principal:
        """The caller, from an API token or a web session (checking CSRF); else 401.

        Reads the database: call it in a worker thread, not on the event loop.
        """
        checked = self.request.scope.get("state", {}).get(PRINCIPAL_STATE)
        if isinstance(checked, Principal):  # checked before the body was read
            return checked
        request, engine, cookie = self.request, self.engine, self.cookie
        if request.headers.get("authorization") is not None:
            if self.bearer is None or not self.bearer.credentials:
                raise AuthenticationError("send the API token as 'Authorization: Bearer <token>'")
            return principal_from_token(engine, self.bearer.credentials)
        if cookie:
            principal = session_principal(request, cookie)
            if request.method not in SAFE_METHODS and not csrf_ok(
                request, cookie, request.headers.get(CSRF_HEADER)
            ):
                raise PermissionDeniedError(
                    f"this change needs the session's CSRF token in the {CSRF_HEADER} header"
                )
            return principal
        raise AuthenticationError(NO_CREDENTIALS)


async def caller(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Caller:
    """The request's credentials (checked later, in a worker thread); none at all: 401.

    Refusing a request without credentials here keeps 401 ahead of a 422 for its body.
    """
    if request.headers.get("authorization") is None and not cookie:
        raise AuthenticationError(NO_CREDENTIALS)
    return Caller(request, engine, settings, bearer, cookie)


CallerDep = Annotated[Caller, Depends(caller)]


async def lean_caller(request: Request) -> Caller:
    """:func:`caller` in one step, for the busiest routes (reading and saving a form).

    FastAPI solves each sub-dependency of :func:`caller` on every request (about a tenth
    of a form read's CPU); this reads the same headers itself. Its routes declare the
    security schemes in their ``openapi_extra`` (:data:`SECURITY`).
    """
    header = request.headers.get("authorization")
    cookie = request.cookies.get(SESSION_COOKIE)
    if header is None and not cookie:
        raise AuthenticationError(NO_CREDENTIALS)
    state = request.app.state
    return Caller.of(request, state.engine, state.settings, header, cookie)


LeanCallerDep = Annotated[Caller, Depends(lean_caller)]

#: What the routes using :data:`LeanCallerDep` put in ``openapi_extra``: the same security
#: requirement FastAPI derives for every other route.
SECURITY: Final[dict[str, Any]] = {"security": [{"HTTPBearer": []}, {"APIKeyCookie": []}]}


def current_principal(who: CallerDep) -> Principal:
    """The caller, from an API token or a web session (checking CSRF); else 401."""
    return who.principal()


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def in_thread(who: Caller, work: Callable[[Principal], T]) -> T:
    """``work(principal)`` in a worker thread, the credentials checked in the same trip."""
    return await run_in_threadpool(lambda: work(who.principal()))


def json_response(model: BaseModel) -> Response:
    """``model`` as a JSON response, serialised once (FastAPI would validate it again)."""
    return Response(model.model_dump_json(), media_type="application/json")
