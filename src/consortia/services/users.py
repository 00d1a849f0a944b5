"""People and their roles: create accounts, grant and revoke roles, build principals.

Each function is one transaction with its audit event on the ``node`` chain (ICH E6(R3)
§4.2.2: user accounts, role and permission changes are audited). Who may call what is
decided by :mod:`consortia.auth.policy` only.

>>> from consortia.storage.db import make_engine
>>> from consortia.storage.migrations import upgrade
>>> engine = make_engine("sqlite://"); upgrade(engine)
>>> admin = cli_operator()
>>> user = create_user(engine, admin, email="Ana@SG.example", name="Ana", password=None)
>>> grant_role(engine, admin, email="ana@sg.example", study="CART01", site="SG01",
...            role="coordinator").role.value
'coordinator'
>>> sorted(str(g) for g in principal_for(engine, user.id).grants)
['coordinator at CART01/SG01']
>>> engine.dispose()
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Engine

from consortia.auth.passwords import MIN_PASSWORD_LENGTH, check_password, hash_password
from consortia.auth.policy import Action, Resource, grant_refusal
from consortia.auth.principal import WILDCARD, Grant, Principal, Role
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.services import centre_enforcement
from consortia.services.common import (
    audit,
    check_code,
    cli_operator,
    normalise_email,
    require,
    utc_now,
)
from consortia.services.unit_of_work import SYSTEM, reading, writing
from consortia.storage.repositories import (
    GrantRecord,
    GrantRepository,
    SessionRepository,
    TokenRepository,
    UserRecord,
    UserRepository,
    load_grants,
)

__all__ = [
    "GrantRecord",
    "UserRecord",
    "activate_user",
    "cli_operator",
    "count_users",
    "create_user",
    "deactivate_user",
    "grant_role",
    "list_grants",
    "list_users",
    "parse_role",
    "principal_for",
    "revoke_grant",
    "revoke_role",
    "set_password",
    "user_by_email",
]


def parse_role(value: str) -> Role:
    """The role named ``value``; a wrong name lists the right ones."""
    try:
        return Role(value)
    except ValueError:
        names = ", ".join(role.value for role in Role)
        problem = Problem("role", f"{value!r} is not a role; use one of {names}")
        raise ValidationError([problem]) from None


def principal_for(
    engine_or_connection: Engine | Connection,
    user_id: int,
    *,
    token_studies: Iterable[str] | None = None,
) -> Principal:
    """The principal of user ``user_id``: their grants, narrowed to a token's studies."""
    if isinstance(engine_or_connection, Engine):
        with reading(engine_or_connection, SYSTEM) as work:
            return principal_for(work.connection, user_id, token_studies=token_studies)
    connection = engine_or_connection
    user = UserRepository(connection).by_id(user_id)
    if user is None or not user.active:
        raise NotFoundError(f"user {user_id} not found")
    principal = Principal(user.id, user.email, user.name, load_grants(connection, user.id))
    return principal if token_studies is None else principal.narrowed_to(token_studies)


def create_user(
    engine: Engine,
    principal: Principal,
    *,
    email: str,
    name: str,
    password: str | None,
    min_password_length: int = MIN_PASSWORD_LENGTH,
) -> UserRecord:
    """Create an account; without a password the person can use API tokens only."""
    require(principal, Action.USER_MANAGE, Resource())
    email = normalise_email(email)
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError([Problem("name", "give the person's name (1-200 characters)")])
    password_hash = None
    if password is not None:
        check_password(password, email=email, min_length=min_password_length)
        password_hash = hash_password(password)
    with writing(engine, principal, conflict=f"a user with email {email} already exists") as work:
        connection = work.connection
        users = UserRepository(connection)
        if users.by_email(email) is not None:
            raise ConflictError(f"a user with email {email} already exists")
        user_id = users.add(email=email, name=name, password_hash=password_hash, now=utc_now())
        audit(
            connection,
            principal,
            "user.create",
            "user",
            email,
            after={"email": email, "name": name, "password_set": password is not None},
        )
        record = users.by_id(user_id)
    assert record is not None
    return record


def _end_access(
    connection: Connection,
    principal: Principal,
    user: UserRecord,
    *,
    reason: str,
    keep_session: str | None = None,
) -> None:
    """End every web session of ``user`` (but ``keep_session``, a stored session key) and
    revoke every token not yet revoked; each step audited in the caller's transaction."""
    ended = SessionRepository(connection).remove_of_user(user.id, keep=keep_session)
    audit(
        connection,
        principal,
        "session.end_all",
        "user",
        user.email,
        reason=reason,
        after={"sessions_ended": ended, "current_session_kept": keep_session is not None},
    )
    tokens = TokenRepository(connection)
    now = utc_now()
    for token in tokens.of_user(user.id):
        if token.revoked_at is not None:
            continue
        tokens.update(token.id, revoked_at=now)
        audit(
            connection,
            principal,
            "token.revoke",
            "api_token",
            token.id,
            reason=reason,
            before={"owner": user.email, "name": token.name, "prefix": token.prefix},
        )


def set_password(
    engine: Engine,
    principal: Principal,
    *,
    email: str,
    password: str,
    min_password_length: int = MIN_PASSWORD_LENGTH,
    keep_session: str | None = None,
) -> None:
    """Set a person's password (themselves, or a node administrator); unlocks the account.

    In the same transaction every web session of the person ends (but ``keep_session``,
    the stored key of the session that asked, when one changes one's own password) and
    every API token of theirs is revoked: whoever held the old password, or anything made
    with it, is out.
    """
    email = normalise_email(email)
    if email != principal.email:
        require(principal, Action.USER_MANAGE, Resource())
    check_password(password, email=email, min_length=min_password_length)
    password_hash = hash_password(password)
    with writing(engine, principal) as work:
        users = UserRepository(work.connection)
        user = users.by_email(email)
        if user is None:
            raise NotFoundError(f"user {email} not found")
        users.update(user.id, password_hash=password_hash, failed_logins=0, locked_until=None)
        work.audit("user.password_set", "user", email)
        _end_access(
            work.connection, principal, user, reason="password changed", keep_session=keep_session
        )


def _account(connection: Connection, who: str | int) -> UserRecord:
    users = UserRepository(connection)
    user = users.by_id(who) if isinstance(who, int) else users.by_email(normalise_email(who))
    if user is None:
        raise NotFoundError(f"user {who} not found")
    return user


def deactivate_user(engine: Engine, principal: Principal, who: str | int) -> UserRecord:
    """Deactivate the account ``who`` (email or id): it can neither sign in nor use a
    token, and in the same transaction all its sessions end and all its tokens are revoked
    (node administrators; nobody deactivates their own account)."""
    require(principal, Action.USER_MANAGE, Resource())
    with writing(engine, principal) as work:
        user = _account(work.connection, who)
        if user.email == principal.email or user.id == principal.user_id:
            raise PermissionDeniedError("nobody may deactivate their own account")
        if not user.active:
            raise ConflictError(f"user {user.email} is already inactive")
        UserRepository(work.connection).update(user.id, active=False)
        work.audit(
            "user.deactivate",
            "user",
            user.email,
            before={"active": True},
            after={"active": False},
        )
        _end_access(work.connection, principal, user, reason="account deactivated")
        record = UserRepository(work.connection).by_id(user.id)
    assert record is not None
    return record


def activate_user(engine: Engine, principal: Principal, who: str | int) -> UserRecord:
    """Activate again the deactivated account ``who``: it may sign in (a fresh start, no
    lockout); its old sessions and tokens stay ended (node administrators)."""
    require(principal, Action.USER_MANAGE, Resource())
    with writing(engine, principal) as work:
        user = _account(work.connection, who)
        if user.active:
            raise ConflictError(f"user {user.email} is already active")
        UserRepository(work.connection).update(
            user.id, active=True, failed_logins=0, locked_until=None
        )
        work.audit(
            "user.activate",
            "user",
            user.email,
            before={"active": False},
            after={"active": True},
        )
        record = UserRepository(work.connection).by_id(user.id)
    assert record is not None
    return record


def list_users(engine: Engine, principal: Principal) -> list[UserRecord]:
    """Every account on the node (node administrators)."""
    require(principal, Action.USER_READ, Resource())
    with reading(engine, principal) as work:
        return UserRepository(work.connection).list()


def _checked_grant(study: str, site: str, role: str | Role) -> Grant:
    role = role if isinstance(role, Role) else parse_role(role)
    study = check_code(study, "study", wildcard=True)
    site = check_code(site, "site", wildcard=True)
    if role is Role.NODE_ADMIN and (study, site) != (WILDCARD, WILDCARD):
        raise ValidationError(
            [
                Problem(
                    "role", "node_admin is a node-wide role: grant it with --study '*' --site '*'"
                )
            ]
        )
    if study == WILDCARD and site != WILDCARD:
        raise ValidationError(
            [Problem("site", "a grant for every study ('*') must also cover every site ('*')")]
        )
    return Grant(study, site, role)


def _require_revoke_rights(principal: Principal, grant: Grant) -> None:
    """Revoke only within what one manages; node_admin needs user.manage."""
    if grant.role is Role.NODE_ADMIN:
        require(principal, Action.USER_MANAGE, Resource())
    require(principal, Action.GRANT_MANAGE, Resource(grant.study, grant.site))


def grant_role(
    engine: Engine, principal: Principal, *, email: str, study: str, site: str, role: str | Role
) -> GrantRecord:
    """Give a person a role at a study (or ``*``) and site (or ``*``).

    :func:`~consortia.auth.policy.grant_refusal` decides: never to oneself, never a role
    that sees more than the granter's own roles there.
    """
    grant = _checked_grant(study, site, role)
    email = normalise_email(email)
    # refused before the account is looked up: a refusal says nothing about who exists
    refusal = grant_refusal(principal, grant, to_self=email == principal.email)
    if refusal is not None:
        raise PermissionDeniedError(refusal)
    with writing(engine, principal, conflict=f"{email} already holds {grant}") as work:
        connection = work.connection
        user = UserRepository(connection).by_email(email)
        if user is None:
            raise NotFoundError(f"user {email} not found")
        if user.id == principal.user_id:
            raise PermissionDeniedError("nobody may grant a role to themselves")
        grants = GrantRepository(connection, principal)
        if grants.find(user.id, grant) is not None:
            raise ConflictError(f"{email} already holds {grant}")
        centre_enforcement.check_role_training(connection, email=email, grant=grant)
        grant_id = grants.add(user.id, grant, now=utc_now())
        audit(
            connection,
            principal,
            "grant.add",
            "role_grant",
            grant_id,
            site=None if grant.site == WILDCARD else grant.site,
            after={
                "email": email,
                "study": grant.study,
                "site": grant.site,
                "role": grant.role.value,
            },
        )
        record = grants.get(grant_id)
    assert record is not None
    return record


def _revoke(connection: Connection, principal: Principal, record: GrantRecord) -> None:
    _require_revoke_rights(principal, record.grant)
    GrantRepository(connection, principal).remove(record.id)
    audit(
        connection,
        principal,
        "grant.revoke",
        "role_grant",
        record.id,
        site=None if record.site == WILDCARD else record.site,
        before={
            "email": record.email,
            "study": record.study,
            "site": record.site,
            "role": record.role.value,
        },
    )


def revoke_role(
    engine: Engine, principal: Principal, *, email: str, study: str, site: str, role: str | Role
) -> GrantRecord:
    """Take a role away; it must be held exactly as named (study, site, role)."""
    grant = _checked_grant(study, site, role)
    email = normalise_email(email)
    with writing(engine, principal) as work:
        user = UserRepository(work.connection).by_email(email)
        record = None
        if user is not None:
            record = GrantRepository(work.connection, principal).find(user.id, grant)
        if record is None:
            raise NotFoundError(f"{email} holds no {grant} that you manage")
        _revoke(work.connection, principal, record)
    return record


def revoke_grant(engine: Engine, principal: Principal, grant_id: int) -> GrantRecord:
    """Take away the grant ``grant_id`` (one the principal manages; others are not found)."""
    with writing(engine, principal) as work:
        record = GrantRepository(work.connection, principal).get(grant_id)
        if record is None:
            raise NotFoundError(f"grant {grant_id} not found")
        _revoke(work.connection, principal, record)
    return record


def list_grants(
    engine: Engine, principal: Principal, *, study: str | None = None, email: str | None = None
) -> list[GrantRecord]:
    """The grants the principal manages, optionally for one study or one person."""
    if study is not None:
        check_code(study, "study", wildcard=True)
    with reading(engine, principal) as work:
        return work.grants().list(
            study=study, email=None if email is None else normalise_email(email)
        )


def user_by_email(engine: Engine, email: str) -> UserRecord:
    """The account with ``email`` (for the CLI, run by the node operator)."""
    email = normalise_email(email)
    with reading(engine, SYSTEM) as work:
        user = UserRepository(work.connection).by_email(email)
    if user is None:
        raise NotFoundError(f"user {email} not found")
    return user


def count_users(engine: Engine) -> int:
    """How many accounts the node has (``consortia init`` creates the first)."""
    with reading(engine, SYSTEM) as work:
        return UserRepository(work.connection).count()
