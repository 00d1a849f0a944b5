"""What the API and the pages both do with a request: find the node's engine and settings,
set and clear the session cookie, check a session's CSRF token and find its principal.

One definition for both entry points, so the cookie the pages set is the one the API
reads, and a rule (the cookie's flags, the CSRF check) cannot drift between them.
"""

from __future__ import annotations

from sqlalchemy import Engine
from starlette.requests import HTTPConnection
from starlette.responses import Response

from consortia.auth.principal import Principal
from consortia.auth.sessions import SESSION_COOKIE, csrf_matches
from consortia.config import Settings
from consortia.services.authentication import principal_from_session

__all__ = [
    "clear_session_cookie",
    "csrf_ok",
    "node_engine",
    "node_settings",
    "session_principal",
    "set_session_cookie",
]


def node_engine(request: HTTPConnection) -> Engine:
    """The node's engine (built once by the app)."""
    engine = request.app.state.engine
    assert isinstance(engine, Engine)
    return engine


def node_settings(request: HTTPConnection) -> Settings:
    """The node's settings."""
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def set_session_cookie(response: Response, value: str) -> None:
    """The session cookie: ``Secure; HttpOnly; SameSite=Strict``, no Max-Age (the browser
    keeps it for its session; the server ends idle sessions)."""
    response.set_cookie(
        SESSION_COOKIE, value, path="/", secure=True, httponly=True, samesite="strict"
    )


def clear_session_cookie(response: Response) -> None:
    """Tell the browser to forget the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def csrf_ok(request: HTTPConnection, cookie: str, presented: str | None) -> bool:
    """Whether ``presented`` is the CSRF token of the session ``cookie``."""
    secret = node_settings(request).secret_key.get_secret_value()
    return csrf_matches(secret, cookie, presented)


def session_principal(request: HTTPConnection, cookie: str) -> Principal:
    """The principal of the live session ``cookie`` (reads the database: call it in a
    worker thread); :class:`~consortia.exceptions.AuthenticationError` once it has ended."""
    return principal_from_session(node_engine(request), node_settings(request), cookie)
