"""Sign-in, sessions, login limits and tokens: each change and its audit event commit
together or not at all, on SQLite and on PostgreSQL.

Each test makes the database itself refuse one audit event (a trigger on ``audit_event``
for that action, which fires after the change it describes was written in the same
transaction) and checks that the change is gone with it; then, with the trigger dropped,
that the change and its event are both there.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta

import pytest
import sqlalchemy as sa

from consortia.config import Settings
from consortia.exceptions import AuthenticationError
from consortia.services import authentication, tokens, users
from consortia.services.common import utc_now
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.tables import api_token, app_user, login_throttle, web_session

OPERATOR = users.cli_operator()
PASSWORD = "a long passphrase"
EMAIL = "ana@sg.example"
SETTINGS = Settings(
    login_max_failures=3,
    login_lockout_minutes=15,
    session_minutes=30,
    login_failures_per_account=2,
    login_failures_per_address=50,
)


#: the ``refuse_event`` fixture (tests/services/conftest.py)
RefuseEvent = Callable[[sa.Engine, str], AbstractContextManager[None]]


@pytest.fixture
def ana(engine: sa.Engine) -> int:
    return users.create_user(engine, OPERATOR, email=EMAIL, name="Ana", password=PASSWORD).id


def _actions(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        assert verify_trail(connection).ok
        return [event.action for event in iter_events(connection, chain="node")]


def _account(engine: sa.Engine) -> tuple[int, bool]:
    """(failed logins, locked) of Ana's account."""
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(app_user.c.failed_logins, app_user.c.locked_until).where(
                app_user.c.email == EMAIL
            )
        ).one()
    return int(row.failed_logins), row.locked_until is not None


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _throttle(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(login_throttle.c.kind, login_throttle.c.failures))
        return {row.kind: int(row.failures) for row in rows}


def test_a_sign_in_and_its_session_are_undone_with_its_login_event(
    engine: sa.Engine, ana: int, refuse_event: RefuseEvent
) -> None:
    with pytest.raises(AuthenticationError):
        authentication.login(engine, SETTINGS, EMAIL, "wrong password!")
    events = _actions(engine)
    with refuse_event(engine, "login"), pytest.raises(sa.exc.DBAPIError):
        authentication.login(engine, SETTINGS, EMAIL, PASSWORD)
    # the session, the reset failure count and the account's cleared limit: all undone
    assert _count(engine, web_session) == 0
    assert _account(engine) == (1, False)
    assert _throttle(engine) == {"address": 1, "account": 1}
    assert _actions(engine) == events

    result = authentication.login(engine, SETTINGS, EMAIL, PASSWORD)
    assert _count(engine, web_session) == 1
    assert _account(engine) == (0, False)
    assert _throttle(engine) == {"address": 1}
    assert _actions(engine) == [*events, "login"]
    assert authentication.principal_from_session(engine, SETTINGS, result.cookie_value)


def test_a_failed_sign_in_counts_only_with_its_event(
    engine: sa.Engine, ana: int, refuse_event: RefuseEvent
) -> None:
    events = _actions(engine)
    with refuse_event(engine, "login.failed"), pytest.raises(sa.exc.DBAPIError):
        authentication.login(engine, SETTINGS, EMAIL, "wrong password!")
    assert _account(engine) == (0, False)
    assert _throttle(engine) == {}
    assert _actions(engine) == events

    with pytest.raises(AuthenticationError):
        authentication.login(engine, SETTINGS, EMAIL, "wrong password!")
    assert _account(engine) == (1, False)
    assert _throttle(engine) == {"address": 1, "account": 1}
    assert _actions(engine) == [*events, "login.failed"]


def test_a_lockout_holds_only_with_its_event(
    engine: sa.Engine, ana: int, refuse_event: RefuseEvent
) -> None:
    settings = SETTINGS.model_copy(update={"login_failures_per_account": 50})
    start = utc_now()
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            authentication.login(engine, settings, EMAIL, "wrong password!", now=start)
    events = _actions(engine)
    with refuse_event(engine, "account.locked"), pytest.raises(sa.exc.DBAPIError):
        authentication.login(engine, settings, EMAIL, "wrong password!", now=start)
    assert _account(engine) == (2, False)
    assert _actions(engine) == events

    with pytest.raises(AuthenticationError):
        authentication.login(engine, settings, EMAIL, "wrong password!", now=start)
    assert _account(engine) == (3, True)
    assert _actions(engine) == [*events, "login.failed", "account.locked"]


def test_a_login_limit_is_reached_only_with_its_event(
    engine: sa.Engine, ana: int, refuse_event: RefuseEvent
) -> None:
    start = utc_now()
    with pytest.raises(AuthenticationError):
        authentication.login(engine, SETTINGS, "nobody@sg.example", "wrong password!", now=start)
    events = _actions(engine)
    with refuse_event(engine, "login.limited"), pytest.raises(sa.exc.DBAPIError):
        authentication.login(engine, SETTINGS, "nobody@sg.example", "wrong password!", now=start)
    assert _throttle(engine) == {"address": 1, "account": 1}
    assert _actions(engine) == events

    with pytest.raises(AuthenticationError):
        authentication.login(engine, SETTINGS, "nobody@sg.example", "wrong password!", now=start)
    assert _throttle(engine) == {"address": 2, "account": 2}
    assert _actions(engine) == [*events, "login.failed", "login.limited"]


def test_an_idle_session_ends_only_with_its_event(
    engine: sa.Engine, ana: int, refuse_event: RefuseEvent
) -> None:
    start = utc_now()
    result = authentication.login(engine, SETTINGS, EMAIL, PASSWORD, now=start)
    idle = start + timedelta(minutes=31)
    events = _actions(engine)
    with refuse_event(engine, "session.expired"), pytest.raises(sa.exc.DBAPIError):
        authentication.principal_from_session(engine, SETTINGS, result.cookie_value, now=idle)
    assert _count(engine, web_session) == 1
    assert _actions(engine) == events

    with pytest.raises(AuthenticationError, match="session has ended"):
        authentication.principal_from_session(engine, SETTINGS, result.cookie_value, now=idle)
    assert _count(engine, web_session) == 0
    assert _actions(engine) == [*events, "session.expired"]


def test_idle_sessions_ended_at_a_sign_in_end_with_their_event(
    engine: sa.Engine, ana: int, refuse_event: RefuseEvent
) -> None:
    start = utc_now()
    authentication.login(engine, SETTINGS, EMAIL, PASSWORD, now=start)
    later = start + timedelta(minutes=31)
    events = _actions(engine)
    with refuse_event(engine, "session.expired"), pytest.raises(sa.exc.DBAPIError):
        authentication.login(engine, SETTINGS, EMAIL, PASSWORD, now=later)
    assert _count(engine, web_session) == 1  # neither ended nor a new one opened
    assert _actions(engine) == events

    authentication.login(engine, SETTINGS, EMAIL, PASSWORD, now=later)
    assert _count(engine, web_session) == 1  # the old one ended, the new one opened
    assert _actions(engine) == [*events, "session.expired", "login"]


def test_a_logout_ends_the_session_only_with_its_event(
    engine: sa.Engine, ana: int, refuse_event: RefuseEvent
) -> None:
    result = authentication.login(engine, SETTINGS, EMAIL, PASSWORD)
    with refuse_event(engine, "logout"), pytest.raises(sa.exc.DBAPIError):
        authentication.logout(engine, result.principal, result.cookie_value)
    assert authentication.principal_from_session(engine, SETTINGS, result.cookie_value)
    authentication.logout(engine, result.principal, result.cookie_value)
    assert _count(engine, web_session) == 0
    assert _actions(engine)[-1] == "logout"


def test_a_token_is_revoked_only_with_its_event_and_a_refusal_is_audited(
    engine: sa.Engine, ana: int, refuse_event: RefuseEvent
) -> None:
    principal = users.principal_for(engine, ana)
    created = tokens.create_token(
        engine, principal, name="pipeline", lifetime=timedelta(days=1), studies=None
    )
    with refuse_event(engine, "token.revoke"), pytest.raises(sa.exc.DBAPIError):
        tokens.revoke_token(engine, principal, created.record.id)
    assert authentication.principal_from_token(engine, created.secret).email == EMAIL

    tokens.revoke_token(engine, principal, created.record.id)
    with refuse_event(engine, "token.refused"), pytest.raises(sa.exc.DBAPIError):
        authentication.principal_from_token(engine, created.secret)
    assert "token.refused" not in _actions(engine)
    with pytest.raises(AuthenticationError, match="revoked"):
        authentication.principal_from_token(engine, created.secret)
    assert _actions(engine)[-2:] == ["token.revoke", "token.refused"]
    assert _count(engine, api_token) == 1
