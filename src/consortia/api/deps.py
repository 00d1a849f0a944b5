"""What routes receive: the node's engine and settings, and the authenticated principal.

Credentials, in order: ``Authorization: Bearer <API token>``, else the session cookie.
A cookie-authenticated request that changes state (any method but GET/HEAD/OPTIONS) must
carry the session's CSRF token in ``X-CSRF-Token``; a bearer token needs none (browsers
never send it on their own).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from consortia.auth.principal import Principal
from consortia.auth.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, csrf_matches
from consortia.config import Settings
from consortia.exceptions import AuthenticationError, PermissionDeniedError
from consortia.services.authentication import principal_from_session, principal_from_token

__all__ = [
    "CurrentPrincipal",
    "EngineDep",
    "SettingsDep",
    "current_principal",
    "get_engine",
    "get_settings",
]

_bearer = HTTPBearer(auto_error=False, description="a personal API token (cst_...)")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="web session (needs X-CSRF-Token)"
)


def get_engine(request: Request) -> Engine:
    engine = request.app.state.engine
    assert isinstance(engine, Engine)
    return engine


def get_settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def current_principal(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    """The caller, from an API token or a web session (checking CSRF); else 401."""
    if request.headers.get("authorization") is not None:
        if bearer is None or not bearer.credentials:
            raise AuthenticationError("send the API token as 'Authorization: Bearer <token>'")
        return principal_from_token(engine, bearer.credentials)
    if cookie:
        principal = principal_from_session(engine, settings, cookie)
        if request.method not in SAFE_METHODS:
            secret = settings.secret_key.get_secret_value()
            if not csrf_matches(secret, cookie, request.headers.get(CSRF_HEADER)):
                raise PermissionDeniedError(
                    f"this change needs the session's CSRF token in the {CSRF_HEADER} header"
                )
        return principal
    raise AuthenticationError("log in, or send an API token as 'Authorization: Bearer <token>'")


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
