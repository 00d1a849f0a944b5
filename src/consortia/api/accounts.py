"""Accounts: web sessions, the caller's own tokens, users, role grants, the node's audit.

* ``POST /session`` logs in and sets the session cookie (``Secure; HttpOnly;
  SameSite=Strict``); the body carries the CSRF token. ``DELETE /session`` logs out.
* ``/me/tokens``: personal API tokens; creating one needs a web session, not a token.
* ``PUT /me/password``: change one's password (a web session, the current password).
* ``/users`` and ``/grants``: node and study administration, as the policy allows.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from consortia.api.deps import CallerDep, CurrentPrincipal, EngineDep, SettingsDep
from consortia.api.schemas import (
    GRANT_CODE_PATTERN,
    AuditEventPublic,
    GrantCreate,
    GrantPublic,
    LoginRequest,
    MePublic,
    PasswordChange,
    SessionPublic,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    UserCreate,
    UserPublic,
)
from consortia.auth.sessions import SESSION_COOKIE, csrf_token
from consortia.auth.tokens import parse_lifetime
from consortia.entry.sessions import clear_session_cookie, set_session_cookie
from consortia.entry.signin import password_work, sign_in
from consortia.exceptions import AuthenticationError
from consortia.services import audit_trail, authentication, tokens, users

__all__ = ["router"]

router = APIRouter(tags=["accounts"])

RecordId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _session_cookie(request: Request) -> str:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise AuthenticationError("this needs a web session (log in first)")
    return cookie


@router.post(
    "/session",
    response_model=SessionPublic,
    responses={429: {"description": "too many failed sign-ins; see Retry-After"}},
)
async def log_in(body: LoginRequest, request: Request, response: Response) -> SessionPublic:
    """Log in with email and password; 5 failures in a row lock the account for a while,
    and too many failures from one address or for one account are refused (429)."""
    result = await sign_in(request, body.email, body.password)
    # no Max-Age: the browser keeps it for its session; the server ends it when idle
    set_session_cookie(response, result.cookie_value)
    return SessionPublic(me=MePublic.of(result.principal), csrf_token=result.csrf_token)


@router.get("/session", response_model=SessionPublic)
def current_session(
    request: Request, principal: CurrentPrincipal, settings: SettingsDep
) -> SessionPublic:
    """The current web session and its CSRF token (for a page that was reloaded)."""
    cookie = _session_cookie(request)
    token = csrf_token(settings.secret_key.get_secret_value(), cookie)
    return SessionPublic(me=MePublic.of(principal), csrf_token=token)


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
def log_out(request: Request, principal: CurrentPrincipal, engine: EngineDep) -> Response:
    """End the web session (needs the CSRF token)."""
    authentication.logout(engine, principal, _session_cookie(request))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(response)
    return response


@router.get("/me", response_model=MePublic)
def me(principal: CurrentPrincipal) -> MePublic:
    """Who the caller is, with the roles in force for this request."""
    return MePublic.of(principal)


@router.put("/me/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_my_password(
    body: PasswordChange, request: Request, who: CallerDep, settings: SettingsDep
) -> Response:
    """Change one's password, giving the current one (a web session only, not a token):
    every other session ends and every token is revoked; this session stays."""

    def change() -> None:
        principal = who.principal()
        authentication.change_own_password(
            who.engine,
            settings,
            principal,
            current_password=body.current_password,
            new_password=body.new_password,
            session_cookie=who.cookie or "",
        )

    await password_work(request).run(change)  # two password hashes: on the password threads
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/tokens", response_model=list[TokenPublic])
def my_tokens(principal: CurrentPrincipal, engine: EngineDep) -> list[TokenPublic]:
    """The caller's API tokens (never their secrets)."""
    return [TokenPublic.of(record) for record in tokens.list_tokens(engine, principal)]


@router.post("/me/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_my_token(
    body: TokenCreate, principal: CurrentPrincipal, engine: EngineDep
) -> TokenCreated:
    """Create an API token for the caller; its secret is in this response only."""
    created = tokens.create_token(
        engine,
        principal,
        name=body.name,
        lifetime=parse_lifetime(body.expires),
        studies=body.studies,
    )
    public = TokenPublic.of(created.record)
    return TokenCreated(**public.model_dump(), token=created.secret)


@router.delete("/me/tokens/{token_id}", response_model=TokenPublic)
def revoke_my_token(
    token_id: RecordId, principal: CurrentPrincipal, engine: EngineDep
) -> TokenPublic:
    """Revoke one of the caller's tokens; it is refused from now on."""
    return TokenPublic.of(tokens.revoke_token(engine, principal, token_id))


@router.get("/users", response_model=list[UserPublic])
def list_users(principal: CurrentPrincipal, engine: EngineDep) -> list[UserPublic]:
    """Every account on the node (node administrators)."""
    return [UserPublic.of(record) for record in users.list_users(engine, principal)]


@router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, principal: CurrentPrincipal, engine: EngineDep, settings: SettingsDep
) -> UserPublic:
    """Create an account (node administrators)."""
    record = users.create_user(
        engine,
        principal,
        email=body.email,
        name=body.name,
        password=body.password,
        min_password_length=settings.min_password_length,
    )
    return UserPublic.of(record)


@router.post("/users/{user_id}/deactivate", response_model=UserPublic)
def deactivate_user(
    user_id: RecordId, principal: CurrentPrincipal, engine: EngineDep
) -> UserPublic:
    """Deactivate an account: its sessions end and its tokens are revoked at once (node
    administrators; not one's own)."""
    return UserPublic.of(users.deactivate_user(engine, principal, user_id))


@router.post("/users/{user_id}/activate", response_model=UserPublic)
def activate_user(user_id: RecordId, principal: CurrentPrincipal, engine: EngineDep) -> UserPublic:
    """Activate a deactivated account again (node administrators); it signs in afresh."""
    return UserPublic.of(users.activate_user(engine, principal, user_id))


@router.get("/grants", response_model=list[GrantPublic])
def list_grants(
    principal: CurrentPrincipal,
    engine: EngineDep,
    study: Annotated[str | None, Query(pattern=GRANT_CODE_PATTERN)] = None,
) -> list[GrantPublic]:
    """The grants the caller manages (all of them for a node administrator)."""
    return [GrantPublic.of(r) for r in users.list_grants(engine, principal, study=study)]


@router.post("/grants", response_model=GrantPublic, status_code=status.HTTP_201_CREATED)
def create_grant(body: GrantCreate, principal: CurrentPrincipal, engine: EngineDep) -> GrantPublic:
    """Grant a role, within the studies and sites the caller manages."""
    record = users.grant_role(
        engine, principal, email=body.email, study=body.study, site=body.site, role=body.role
    )
    return GrantPublic.of(record)


@router.delete("/grants/{grant_id}", response_model=GrantPublic)
def revoke_grant(grant_id: RecordId, principal: CurrentPrincipal, engine: EngineDep) -> GrantPublic:
    """Revoke a grant the caller manages."""
    return GrantPublic.of(users.revoke_grant(engine, principal, grant_id))


@router.get("/audit", response_model=list[AuditEventPublic])
def node_audit(
    principal: CurrentPrincipal,
    engine: EngineDep,
    after_seq: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEventPublic]:
    """The node's audit chain: accounts, logins, grants, tokens (node admins, auditors)."""
    events = audit_trail.node_audit_trail(engine, principal, after_seq=after_seq, limit=limit)
    return [AuditEventPublic.of(event) for event in events]
