"""Who is calling: log in (with throttling), resume a web session, accept an API token.

Every login, failed login, lockout and logout is an audit event on the ``node`` chain,
committed even when the login fails (the failure *is* the event). So is a web session that
ends because it lay idle, and a refused API token. Each goes through the unit of work
(:mod:`consortia.services.unit_of_work`, as :data:`~consortia.services.unit_of_work.SYSTEM`
until someone is signed in): a change and its event commit together or not at all.

Every refusal raises :class:`~consortia.exceptions.AuthenticationError` with the same
message whatever the reason — unknown email, wrong password, locked or inactive account —
so a caller learns nothing about which accounts exist; the audit event records the real
reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Engine

from consortia.auth.passwords import (
    check_password,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from consortia.auth.principal import Principal
from consortia.auth.sessions import csrf_token, new_session_value, session_key
from consortia.auth.tokens import TOKEN_PREFIX, hash_token
from consortia.config import Settings
from consortia.exceptions import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.services import login_limits
from consortia.services.common import normalise_email, utc_now
from consortia.services.unit_of_work import SYSTEM, UnitOfWork, reading, writing
from consortia.services.users import principal_for, set_password
from consortia.storage.repositories import (
    SessionRepository,
    TokenRepository,
    UserRecord,
    UserRepository,
)

__all__ = [
    "LOGIN_REFUSED",
    "LoginAttempt",
    "LoginResult",
    "begin_login",
    "change_own_password",
    "finish_login",
    "login",
    "logout",
    "principal_from_session",
    "principal_from_token",
    "reauthenticate",
]

LOGIN_REFUSED = (
    "the email or password is wrong, or the account is locked after too many failures; "
    "try again later"
)
# a session or token used within this long is not written again (one write per minute)
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A new web session: its principal, the cookie value to set, and its CSRF token."""

    principal: Principal
    cookie_value: str
    csrf_token: str


def _refuse(
    work: UnitOfWork,
    attempted: str,
    reason: str,
    *,
    action: str = "login.failed",
    **extra: object,
) -> None:
    work.audit(
        action,
        "user",
        attempted[:256],
        actor=attempted[:320] or "(empty)",
        reason=reason,
        after=extra or None,
    )


def _refusal_before_password(
    user: UserRecord | None, stored: str | None, now: datetime
) -> str | None:
    if user is None:
        return "unknown email"
    if not user.active:
        return "account inactive"
    if user.locked_until is not None and user.locked_until > now:
        return f"account locked until {user.locked_until.isoformat()}"
    if stored is None:
        return "no password set"
    return None


@dataclass(frozen=True, slots=True)
class _CheckedPassword:
    """A password checked against an account as it was read, with nothing held meanwhile."""

    user: UserRecord | None
    stored: str | None
    refusal: str | None  # None: the password matched an active, unlocked account

    def changed_since(
        self, users: UserRepository, current: UserRecord | None, now: datetime
    ) -> str | None:
        """Why ``current``, the account read again (locked) to write the outcome, is no
        longer the one checked (deactivated, locked, its password changed), or ``None``."""
        stored = None if current is None else users.password_hash(current.id)
        if current is None or self.user is None or current.id != self.user.id:
            return "the account changed while the password was checked"
        if stored != self.stored:
            return "the account changed while the password was checked"
        return _refusal_before_password(current, stored, now)


def _check_password(engine: Engine, email: str, password: str, now: datetime) -> _CheckedPassword:
    """Check ``password`` for the account ``email`` — the costly part (argon2id) — with no
    transaction open (on SQLite no writer waits behind it); unknown, inactive and locked
    accounts cost the same time (:func:`~consortia.auth.passwords.dummy_verify`)."""
    with reading(engine, SYSTEM) as work:
        users = UserRepository(work.connection)
        user = users.by_email(email)
        stored = None if user is None else users.password_hash(user.id)
    refusal = _refusal_before_password(user, stored, now)
    if refusal is not None or stored is None:
        dummy_verify(password)
    elif not verify_password(stored, password):
        refusal = "wrong password"
    return _CheckedPassword(user, stored, refusal)


def _record_failure(
    work: UnitOfWork,
    settings: Settings,
    user: UserRecord | None,
    address: str,
    reason: str,
    now: datetime,
    *,
    action: str = "login.failed",
) -> None:
    """Audit a refused password; count it and lock the account after too many."""
    if user is None or reason not in ("wrong password", "no password set"):
        _refuse(work, address, reason, action=action)
        return
    lock_over = user.locked_until is not None and user.locked_until <= now
    failures = (0 if lock_over else user.failed_logins) + 1
    locked_until = None
    if failures >= settings.login_max_failures:
        locked_until = now + timedelta(minutes=settings.login_lockout_minutes)
    UserRepository(work.connection).update(
        user.id, failed_logins=failures, locked_until=locked_until
    )
    _refuse(work, address, reason, action=action, failures=failures)
    if locked_until is not None:
        work.audit(
            "account.locked",
            "user",
            address,
            actor="system",
            after={"locked_until": locked_until.isoformat(), "failures": failures},
            reason=f"{failures} failed logins",
        )


def reauthenticate(
    engine: Engine,
    settings: Settings,
    principal: Principal,
    password: str,
    *,
    now: datetime | None = None,
) -> str:
    """Check the signed-in user's password again before a signature; return the printed name.

    21 CFR Part 11 §11.200(a): a signature not made in one continuous session of signing
    uses both components (identification and password). A wrong password counts towards the
    lockout like a failed login; the failure is committed even though the signing fails.
    """
    now = now or utc_now()
    checked = _check_password(engine, principal.email, password, now)
    name: str | None = None
    with writing(engine, principal) as work:
        users = UserRepository(work.connection)
        # the row lock keeps concurrent failures from losing counts (SQLite: BEGIN IMMEDIATE)
        user = users.by_email(principal.email, for_update=True)
        reason = checked.refusal or checked.changed_since(users, user, now)
        if reason is None and user is not None:
            users.update(user.id, failed_logins=0, locked_until=None)
            name = user.name
        else:
            _record_failure(
                work,
                settings,
                user,
                principal.email,
                reason or "",
                now,
                action="signature.failed",
            )
    if name is None:
        raise AuthenticationError("the password is wrong or the account is locked; not signed")
    return name


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """A sign-in past the attempt limits, its password not yet checked."""

    account: str  # the account name as typed, normalised
    client: str  # the client's address as the limits count it


def begin_login(
    engine: Engine,
    settings: Settings,
    email: str,
    *,
    client_address: str | None = None,
    now: datetime | None = None,
) -> LoginAttempt:
    """The cheap first step of a sign-in: refuse it at once
    (:class:`~consortia.exceptions.TooManyRequestsError`) while its address or account
    name has used up its failures (:mod:`consortia.services.login_limits`); no password
    is hashed for a refused sign-in."""
    now = now or utc_now()
    try:
        account = normalise_email(email)
    except ValidationError:
        account = email.strip()
    client = login_limits.client_key(client_address)
    login_limits.refuse_if_limited(engine, settings, account, client, now)
    return LoginAttempt(account, client)


def finish_login(
    engine: Engine,
    settings: Settings,
    attempt: LoginAttempt,
    password: str,
    *,
    now: datetime | None = None,
) -> LoginResult:
    """The costly second step: check the password (argon2id), then open a web session, or
    count the failure and lock the account after ``settings.login_max_failures`` in a row
    (for ``settings.login_lockout_minutes``; while locked even the right password is
    refused). A server runs this on its password threads (:mod:`consortia.auth.hashing`).

    No transaction is open while the password is hashed; the account is read again, locked,
    when the outcome is written, and a sign-in whose account changed meanwhile (password,
    deactivation, lockout) is refused.
    """
    account = attempt.account
    now = now or utc_now()
    checked = _check_password(engine, account, password, now)
    new_hash = None
    if checked.refusal is None and checked.stored is not None and needs_rehash(checked.stored):
        new_hash = hash_password(password)
    result: LoginResult | None = None
    # nobody is signed in yet: the unit of work is the node's, each event names its actor
    with writing(engine, SYSTEM) as work:
        users = UserRepository(work.connection)
        # the row lock keeps concurrent failures from losing counts (SQLite: BEGIN IMMEDIATE)
        current = users.by_email(account, for_update=True)
        reason = checked.refusal or checked.changed_since(users, current, now)
        if reason is not None:
            _record_failure(work, settings, current, account, reason, now)
            login_limits.record_failure(work, settings, account, attempt.client, now)
        else:
            assert current is not None
            users.update(current.id, failed_logins=0, locked_until=None)
            if new_hash is not None:
                users.update(current.id, password_hash=new_hash)
            login_limits.record_success(work, settings, account, now)
            principal = principal_for(work.connection, current.id)
            cookie_value = new_session_value()
            sessions = SessionRepository(work.connection)
            _end_idle_sessions(work, sessions, now - timedelta(minutes=settings.session_minutes))
            sessions.add(session_key(cookie_value), current.id, now=now)
            work.audit("login", "user", principal.email, actor=principal.email)
            secret = settings.secret_key.get_secret_value()
            result = LoginResult(principal, cookie_value, csrf_token(secret, cookie_value))
    if result is None:
        raise AuthenticationError(LOGIN_REFUSED)
    return result


def login(
    engine: Engine,
    settings: Settings,
    email: str,
    password: str,
    *,
    client_address: str | None = None,
    now: datetime | None = None,
) -> LoginResult:
    """Sign in: :func:`begin_login` then :func:`finish_login`, in the calling thread."""
    attempt = begin_login(engine, settings, email, client_address=client_address, now=now)
    return finish_login(engine, settings, attempt, password, now=now)


def change_own_password(
    engine: Engine,
    settings: Settings,
    principal: Principal,
    *,
    current_password: str,
    new_password: str,
    session_cookie: str,
    now: datetime | None = None,
) -> None:
    """A signed-in person changes their password, giving the current one again.

    Only from a web session (an API token is refused: whoever holds a token must not be
    able to take the account). A wrong current password changes nothing and counts towards
    the lockout like a failed sign-in. On success every *other* session of the person ends
    and every token of theirs is revoked (:func:`~consortia.services.users.set_password`);
    the session that asked stays signed in.
    """
    if principal.by_token:
        raise PermissionDeniedError(
            "an API token cannot change the password; sign in (web session) to change it"
        )
    check_password(new_password, email=principal.email, min_length=settings.min_password_length)
    now = now or utc_now()
    reason = _check_password(engine, principal.email, current_password, now).refusal
    if reason is not None:
        with writing(engine, principal) as work:
            current = UserRepository(work.connection).by_email(principal.email, for_update=True)
            _record_failure(
                work,
                settings,
                current,
                principal.email,
                reason,
                now,
                action="password_change.failed",
            )
        raise AuthenticationError(
            "the current password is wrong or the account is locked; nothing changed"
        )
    set_password(
        engine,
        principal,
        email=principal.email,
        password=new_password,
        min_password_length=settings.min_password_length,
        keep_session=session_key(session_cookie),
    )


def principal_from_session(
    engine: Engine, settings: Settings, cookie_value: str, *, now: datetime | None = None
) -> Principal:
    """The principal of a live web session; idle sessions end after ``session_minutes``."""
    now = now or utc_now()
    key = session_key(cookie_value)
    idle_limit = timedelta(minutes=settings.session_minutes)
    # most requests only read: a live session seen a moment ago needs no touch, so its
    # check takes no writer lock; ending or touching a session is a (short) write
    with reading(engine, SYSTEM) as work:
        session = SessionRepository(work.connection).get(key)
        if session is not None and now - session.last_seen_at < min(_TOUCH_EVERY, idle_limit):
            try:
                return principal_for(work.connection, session.user_id)
            except NotFoundError:
                pass  # the account is gone: the write below ends the session
    with writing(engine, SYSTEM) as work:
        sessions = SessionRepository(work.connection)
        session = sessions.get(key)
        if session is not None and session.last_seen_at + idle_limit < now:
            sessions.remove(key)
            _session_ended(work, session.user_id, "idle for longer than the session lasts")
            session = None
        if session is not None:
            if now - session.last_seen_at >= _TOUCH_EVERY:
                # renewal: only the time of last use moves (at most once a minute), which
                # the audit trail does not hold; the session's start and end are events
                sessions.touch(key, now=now)
            try:
                return principal_for(work.connection, session.user_id)
            except NotFoundError:
                sessions.remove(key)
                _session_ended(work, session.user_id, "the account is no longer active")
    raise AuthenticationError("the session has ended; log in again")


def _session_ended(work: UnitOfWork, user_id: int, reason: str) -> None:
    """Audit a web session the node ended (not a logout), in the transaction that ends it."""
    user = UserRepository(work.connection).by_id(user_id)
    who = user.email if user is not None else f"user {user_id}"
    work.audit("session.expired", "user", who, actor="system", reason=reason)


def _end_idle_sessions(work: UnitOfWork, sessions: SessionRepository, before: datetime) -> None:
    """End every session last used before ``before`` (at a sign-in), audited as one event."""
    ended = sessions.remove_idle(before=before)
    if ended:
        work.audit(
            "session.expired",
            "web_session",
            "idle",
            actor="system",
            reason=f"{ended} idle session{'s' if ended != 1 else ''} ended",
            after={"ended": ended, "last_used_before": before.isoformat()},
        )


def logout(engine: Engine, principal: Principal, cookie_value: str) -> None:
    """End a web session."""
    with writing(engine, principal) as work:
        SessionRepository(work.connection).remove(session_key(cookie_value))
        work.audit("logout", "user", principal.email)


def _as_token(owner: Principal, studies: tuple[str, ...] | None) -> Principal:
    """The owner as seen through a token: marked ``by_token``, narrowed to its studies."""
    principal = replace(owner, by_token=True)
    return principal if studies is None else principal.narrowed_to(studies)


def principal_from_token(engine: Engine, token: str, *, now: datetime | None = None) -> Principal:
    """The principal of a personal API token, narrowed to the token's studies.

    Revoked and expired tokens are refused (and the refusal audited: the token was real).
    """
    now = now or utc_now()
    if not token.startswith(TOKEN_PREFIX):
        raise AuthenticationError("not a Consortia API token")
    refusal: str | None = None
    digest = hash_token(token)
    # the common case reads only: a usable token used within the last minute
    found = TokenRepository.read_with_owner(engine, digest)
    if found is not None:
        known, owner = found
        last_used = known.last_used_at
        # an inactive owner, a refusal or a stale last-use time: the path below
        if (
            owner is not None
            and last_used is not None
            and known.usable_at(now)
            and now - last_used < _TOUCH_EVERY
        ):
            return _as_token(owner, known.studies)
    with writing(engine, SYSTEM) as work:
        tokens = TokenRepository(work.connection)
        record = tokens.by_hash(digest)
        if record is None:
            refusal = "the API token is not known"
        elif not record.usable_at(now):
            refusal = "the API token was revoked" if record.revoked_at else "the API token expired"
            work.audit(
                "token.refused",
                "api_token",
                record.id,
                actor=f"token:{record.prefix}",
                reason=refusal,
            )
        else:
            if record.last_used_at is None or now - record.last_used_at >= _TOUCH_EVERY:
                tokens.update(record.id, last_used_at=now)
            try:
                return _as_token(principal_for(work.connection, record.user_id), record.studies)
            except NotFoundError:
                refusal = "the API token's owner is no longer active"
    raise AuthenticationError(refusal)
