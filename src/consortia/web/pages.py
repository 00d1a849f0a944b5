"""Server-rendered pages: sign in, home (who you are, your roles), sign out, and the data
steward's approval queue (``/approvals``: analysis requests waiting for manual approval).

No JavaScript is needed. The pages use the API's session machinery, not a second one:
:func:`~consortia.services.authentication.login` opens the session, the cookie is the
API's (``Secure; HttpOnly; SameSite=Strict``), and :func:`~consortia.auth.sessions.csrf_matches`
checks the CSRF token that every state-changing form carries in a hidden ``csrf_token``
field (or the ``X-CSRF-Token`` header). Signing in needs no CSRF token, as in the API;
but where the API's JSON body keeps other sites' forms out, a form can be posted from
anywhere, so every form post from another origin (``Origin`` or ``Sec-Fetch-Site``) is
refused: nobody can be signed in to someone else's account behind their back.

Errors become a friendly page in the reader's language, never a stack trace; the
rejected input is never echoed except the email typed into the sign-in form.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal
from consortia.auth.sessions import CSRF_HEADER, SESSION_COOKIE, csrf_token
from consortia.entry.errors import status_for
from consortia.entry.sessions import (
    clear_session_cookie,
    csrf_ok,
    node_engine,
    node_settings,
    set_session_cookie,
)
from consortia.entry.sessions import session_principal as session_principal_of
from consortia.entry.signin import sign_in
from consortia.entry.static_files import static_url
from consortia.exceptions import (
    AuthenticationError,
    ConsortiaError,
    TooManyRequestsError,
    ValidationError,
)
from consortia.services import approvals, authentication
from consortia.services.approvals import ApprovalEntry, ApprovalStatus
from consortia.web.i18n import HTML_LANG, normalise_language, pick_language, translate
from consortia.web.navigation import navigation_for, remember_principal

__all__ = [
    "LANG_COOKIE",
    "MAX_FORM_BYTES",
    "PageError",
    "PageRoute",
    "create_web_router",
    "node_engine",
    "node_settings",
    "page_language",
    "posted_form",
    "redirect",
    "render_page",
    "session_form",
    "session_principal",
    "signed_in_post",
]

LANG_COOKIE = "lang"
MAX_FORM_BYTES = 16 * 1024
_FORM_TYPE = "application/x-www-form-urlencoded"
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
log = logging.getLogger(__name__)

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("consortia.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class PageError(Exception):
    """A request a page refuses: rendered as the error page with ``status``."""

    def __init__(self, status: int, key: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.key = key or f"error.{status}"


@dataclass(frozen=True, slots=True)
class _GrantRow:
    study: str
    site: str
    role: str


@dataclass(frozen=True, slots=True)
class _ApprovalRow:
    """A queued request as the approvals page shows it."""

    id: str
    requester: str
    kind: str
    table: str
    fields: Sequence[tuple[str, str]]
    submitted_at: str
    status: str
    decided_by: str
    decided_at: str
    reason: str


def page_language(request: Request) -> str:
    return pick_language(
        query=request.query_params.get("lang"),
        cookie=request.cookies.get(LANG_COOKIE),
        accept_language=request.headers.get("accept-language"),
    )


def _finish(request: Request, response: Response) -> Response:
    """Add the security headers, and remember a language chosen with ``?lang=``."""
    response.headers.update(_SECURITY_HEADERS)
    chosen = normalise_language(request.query_params.get("lang"))
    if chosen is not None and chosen != request.cookies.get(LANG_COOKIE):
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            max_age=365 * 24 * 3600,
            path="/",
            secure=True,
            httponly=True,
            samesite="lax",
        )
    return response


def render_page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    language = page_language(request)

    def t(key: str) -> str:
        return translate(language, key)

    context.setdefault("page_path", "/")
    is_hub = getattr(request.app.state, "hub", None) is not None
    html = _templates.get_template(template).render(
        t=t,
        html_lang=HTML_LANG[language],
        stylesheet=static_url("consortia.css"),
        static_url=static_url,
        nav=navigation_for(request, is_hub=is_hub),
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    _finish(request, response)
    return response


def _error_page(request: Request, status: int, key: str) -> HTMLResponse:
    return render_page(
        request, "error.html", status, message=translate(page_language(request), key)
    )


def redirect(request: Request, url: str) -> Response:
    return _finish(request, RedirectResponse(url, status_code=303))


def _check_same_origin(request: Request) -> None:
    """Refuse (403) a form posted by a page of another site."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise PageError(403, "error.403_csrf")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise PageError(403, "error.403_csrf")


async def posted_form(
    request: Request, *, max_bytes: int = MAX_FORM_BYTES, max_fields: int = 20
) -> Mapping[str, str]:
    """The fields of a same-origin urlencoded form (the first value of each), size-limited."""
    _check_same_origin(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise PageError(413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PageError(413)
    if not body:
        return {}
    if content_type != _FORM_TYPE:
        raise PageError(415)
    try:
        fields = parse_qs(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=max_fields,
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise PageError(400) from error
    return {name: values[0] for name, values in fields.items()}


async def session_principal(request: Request) -> tuple[Principal, str] | None:
    """The principal and cookie value of the request's live web session, if any."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        principal = await run_in_threadpool(session_principal_of, request, cookie)
    except AuthenticationError:
        return None
    secret = node_settings(request).secret_key.get_secret_value()
    remember_principal(request, principal, csrf_token(secret, cookie))
    return principal, cookie


class PageRoute(APIRoute):
    """A route whose every error is the friendly error page (HTML, never a traceback)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except PageError as error:
                return _error_page(request, error.status, error.key)
            except RequestValidationError:
                return _error_page(request, 400, "error.400")
            except ConsortiaError as error:
                status = status_for(error)
                if status >= 500:
                    log.error("error while serving page %s: %s", request.url.path, error)
                    status = 500
                return _error_page(request, status, f"error.{status}")
            except Exception:
                log.exception("internal error serving page %s %s", request.method, request.url)
                return _error_page(request, 500, "error.500")

        return guarded


def _role_label(language: str, role: str) -> str:
    try:
        return translate(language, f"role.{role}")
    except KeyError:
        return role


def _grant_rows(language: str, principal: Principal) -> list[_GrantRow]:
    everywhere = translate(language, "home.everywhere")
    return [
        _GrantRow(
            study=everywhere if grant.study == "*" else grant.study,
            site=everywhere if grant.site == "*" else grant.site,
            role=_role_label(language, grant.role.value),
        )
        for grant in sorted(principal.grants)
    ]


def _field_text(value: object) -> str:
    """A request field for reading: text as is, a list of names joined, else JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _moment(moment: datetime | None) -> str:
    """A stored time as the pages show it: ISO 8601 UTC to the second (empty for none)."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _approval_row(language: str, entry: ApprovalEntry) -> _ApprovalRow:
    request = entry.request
    fields = [
        (name, _field_text(value))
        for name, value in sorted(request.items())
        if name not in ("kind", "table")
    ]
    return _ApprovalRow(
        id=entry.id,
        requester=entry.requester,
        kind=_field_text(request.get("kind", "")),
        table=_field_text(request.get("table", "")),
        fields=fields,
        submitted_at=_moment(entry.submitted_at),
        status=translate(language, f"approval_status.{entry.status.value}"),
        decided_by=entry.decided_by or "",
        decided_at=_moment(entry.decided_at),
        reason=entry.reason or "",
    )


def _check_csrf(request: Request, form: Mapping[str, str], cookie: str) -> None:
    """Refuse (403) a form post without the session's CSRF token."""
    presented = form.get("csrf_token") or request.headers.get(CSRF_HEADER)
    if not csrf_ok(request, cookie, presented):
        raise PageError(403, "error.403_csrf")


async def session_form(
    request: Request, *, max_bytes: int = MAX_FORM_BYTES, max_fields: int = 20
) -> tuple[Mapping[str, str], str] | None:
    """A signed-in form post: its fields and session cookie, CSRF checked (403 without
    the token); None when there is no session cookie."""
    form = await posted_form(request, max_bytes=max_bytes, max_fields=max_fields)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    _check_csrf(request, form, cookie)
    return form, cookie


async def signed_in_post(
    request: Request, *, max_bytes: int = MAX_FORM_BYTES, max_fields: int = 20
) -> tuple[Mapping[str, str], str, Principal] | None:
    """A form post of a live session: its fields, the session cookie and the principal,
    CSRF checked (403 without the token); None without a session (sign in first)."""
    posted = await session_form(request, max_bytes=max_bytes, max_fields=max_fields)
    if posted is None:
        return None
    signed_in = await session_principal(request)
    if signed_in is None:
        return None
    form, cookie = posted
    return form, cookie, signed_in[0]


async def _approvals_page(
    request: Request, principal: Principal, cookie: str, status: int = 200, invalid: str = ""
) -> Response:
    """The approvals page: pending requests with their forms, decided ones below.

    ``invalid`` is the id of a request whose denial was refused for want of a reason.
    """
    language = page_language(request)
    entries = await run_in_threadpool(
        approvals.list_approvals, node_engine(request), principal, None
    )
    rows = [(entry.status, _approval_row(language, entry)) for entry in entries]
    pending = [row for state, row in rows if state is ApprovalStatus.PENDING]
    # the latest decision first
    decided = sorted(
        (row for state, row in rows if state is not ApprovalStatus.PENDING),
        key=lambda row: row.decided_at,
        reverse=True,
    )
    token = csrf_token(node_settings(request).secret_key.get_secret_value(), cookie)
    return render_page(
        request,
        "approvals.html",
        status,
        page_path="/approvals",
        pending=pending,
        decided=decided,
        invalid=invalid,
        csrf_token=token,
        max_reason=approvals.MAX_REASON_LENGTH,
    )


def create_web_router() -> APIRouter:
    """The pages, at the root of the node's site (not in the OpenAPI description)."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        signed_in = await session_principal(request)
        if signed_in is None:
            response = redirect(request, "/login")
            if request.cookies.get(SESSION_COOKIE):
                clear_session_cookie(response)
            return response
        principal, cookie = signed_in
        token = csrf_token(node_settings(request).secret_key.get_secret_value(), cookie)
        return render_page(
            request,
            "home.html",
            principal=principal,
            grants=_grant_rows(page_language(request), principal),
            may_decide_approvals=can(principal, Action.APPROVAL_DECIDE, Resource()),
            is_hub=getattr(request.app.state, "hub", None) is not None
            and can(principal, Action.HUB_MANAGE, Resource()),
            studies=sorted({grant.study for grant in principal.grants if grant.study != "*"}),
            csrf_token=token,
        )

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        if await session_principal(request) is not None:
            return redirect(request, "/")
        return render_page(
            request, "login.html", page_path="/login", email="", refused=False, missing=()
        )

    @router.post("/login", response_class=HTMLResponse)
    async def log_in(request: Request) -> Response:
        form = await posted_form(request)
        email = form.get("email", "").strip()
        password = form.get("password", "")
        missing = tuple(
            name for name, value in (("email", email), ("password", password)) if not value
        )
        if missing:
            return render_page(
                request,
                "login.html",
                400,
                page_path="/login",
                email=email,
                refused=False,
                missing=missing,
            )
        try:
            result = await sign_in(request, email, password)
        except TooManyRequestsError as error:
            page = render_page(
                request,
                "login.html",
                429,
                page_path="/login",
                email=email,
                refused=False,
                throttled=True,
                missing=(),
            )
            page.headers["Retry-After"] = str(error.retry_after)
            return page
        except AuthenticationError:
            return render_page(
                request,
                "login.html",
                401,
                page_path="/login",
                email=email,
                refused=True,
                missing=(),
            )
        response = redirect(request, "/")
        set_session_cookie(response, result.cookie_value)
        return response

    @router.post("/logout", response_class=HTMLResponse)
    async def log_out(request: Request) -> Response:
        posted = await session_form(request)
        if posted is None:
            return redirect(request, "/login")
        _, cookie = posted
        signed_in = await session_principal(request)
        if signed_in is not None:
            principal, _ = signed_in
            await run_in_threadpool(authentication.logout, node_engine(request), principal, cookie)
        response = redirect(request, "/login")
        clear_session_cookie(response)
        return response

    @router.get("/approvals", response_class=HTMLResponse)
    async def approvals_list(request: Request) -> Response:
        signed_in = await session_principal(request)
        if signed_in is None:
            return redirect(request, "/login")
        principal, cookie = signed_in
        return await _approvals_page(request, principal, cookie)

    async def _decide(request: Request, entry_id: str, approve: bool) -> Response:
        posted = await signed_in_post(request)
        if posted is None:
            return redirect(request, "/login")
        form, cookie, principal = posted
        try:
            await run_in_threadpool(
                approvals.decide,
                node_engine(request),
                principal,
                entry_id,
                approve,
                form.get("reason", ""),
            )
        except ValidationError:
            if approve:  # only an over-long reason, which the form's maxlength prevents
                raise
            return await _approvals_page(request, principal, cookie, 422, invalid=entry_id)
        # post/redirect/get: a reload does not decide twice
        return redirect(request, "/approvals")

    @router.post("/approvals/{entry_id}/approve", response_class=HTMLResponse)
    async def approvals_approve(request: Request, entry_id: str) -> Response:
        return await _decide(request, entry_id, True)

    @router.post("/approvals/{entry_id}/deny", response_class=HTMLResponse)
    async def approvals_deny(request: Request, entry_id: str) -> Response:
        return await _decide(request, entry_id, False)

    return router
