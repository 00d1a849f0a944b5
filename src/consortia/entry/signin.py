"""Signing in from a request, for the API (``POST /api/v1/session``) and the sign-in page.

The cheap first step (:func:`~consortia.services.authentication.begin_login`: the attempt
limits, 429 at once) runs on a request thread; the password check and what follows
(:func:`~consortia.services.authentication.finish_login`) runs on the app's password
threads (:class:`~consortia.auth.hashing.PasswordWork`), awaited on the event loop, so a
sign-in waiting for its hash holds none of the threads that serve other requests.
"""

from __future__ import annotations

import functools

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from consortia.auth.hashing import PasswordWork
from consortia.services import authentication
from consortia.services.authentication import LoginResult

__all__ = ["password_work", "sign_in"]


def password_work(request: Request) -> PasswordWork:
    """The app's password threads."""
    work = request.app.state.password_work
    assert isinstance(work, PasswordWork)
    return work


async def sign_in(request: Request, email: str, password: str) -> LoginResult:
    """Sign in with ``email`` and ``password`` from the request's client address."""
    engine, settings = request.app.state.engine, request.app.state.settings
    host = request.client.host if request.client is not None else None
    attempt = await run_in_threadpool(
        functools.partial(authentication.begin_login, engine, settings, email, client_address=host)
    )
    finish = functools.partial(authentication.finish_login, engine, settings, attempt, password)
    return await password_work(request).run(finish)
