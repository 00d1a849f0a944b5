"""Logging in, sessions and tokens: throttled, expiring, revocable, and always audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Role
from consortia.config import Settings
from consortia.exceptions import AuthenticationError, PermissionDeniedError
from consortia.services import authentication, tokens, users
from consortia.services.common import utc_now
from consortia.storage.audit import iter_events, verify_trail

OPERATOR = users.cli_operator()
PASSWORD = "a long passphrase"
SETTINGS = Settings(login_max_failures=5, login_lockout_minutes=15, session_minutes=30)


@pytest.fixture
def ana(engine: sa.Engine) -> int:
    user = users.create_user(
        engine, OPERATOR, email="ana@sg.example", name="Ana", password=PASSWORD
    )
    users.grant_role(
        engine, OPERATOR, email="ana@sg.example", study="CART01", site="SG01", role="coordinator"
    )
    users.grant_role(
        engine, OPERATOR, email="ana@sg.example", study="ORTHO", site="SG01", role="monitor"
    )
    return user.id


def _actions(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        assert verify_trail(connection).ok
        return [e.action for e in iter_events(connection, chain="node")][3:]


def test_a_login_opens_a_session_and_is_audited(engine: sa.Engine, ana: int) -> None:
    result = authentication.login(engine, SETTINGS, "Ana@SG.example", PASSWORD)
    assert result.principal.user_id == ana
    assert authentication.principal_from_session(engine, SETTINGS, result.cookie_value) == (
        result.principal
    )
    authentication.logout(engine, result.principal, result.cookie_value)
    with pytest.raises(AuthenticationError):
        authentication.principal_from_session(engine, SETTINGS, result.cookie_value)
    assert _actions(engine) == ["login", "logout"]


def test_every_refusal_gives_the_same_answer_and_the_audit_keeps_the_reason(
    engine: sa.Engine, ana: int
) -> None:
    messages = set()
    for email, password in [("ana@sg.example", "wrong password!"), ("nobody@sg.example", PASSWORD)]:
        with pytest.raises(AuthenticationError) as refused:
            authentication.login(engine, SETTINGS, email, password)
        messages.add(str(refused.value))
    assert messages == {authentication.LOGIN_REFUSED}
    with engine.connect() as connection:
        reasons = [
            e.reason for e in iter_events(connection, chain="node") if e.action == "login.failed"
        ]
    assert reasons == ["wrong password", "unknown email"]


def test_five_failures_lock_the_account_for_fifteen_minutes(engine: sa.Engine, ana: int) -> None:
    start = utc_now()
    for _ in range(5):
        with pytest.raises(AuthenticationError):
            authentication.login(engine, SETTINGS, "ana@sg.example", "wrong password!", now=start)
    with pytest.raises(AuthenticationError):
        authentication.login(engine, SETTINGS, "ana@sg.example", PASSWORD, now=start)
    fourteen = start + timedelta(minutes=14)
    with pytest.raises(AuthenticationError):
        authentication.login(engine, SETTINGS, "ana@sg.example", PASSWORD, now=fourteen)
    later = start + timedelta(minutes=15, seconds=1)
    authentication.login(engine, SETTINGS, "ana@sg.example", PASSWORD, now=later)
    actions = _actions(engine)
    assert actions.count("login.failed") == 7
    assert actions.count("account.locked") == 1
    assert actions[-1] == "login"


def test_a_success_resets_the_failure_count(engine: sa.Engine, ana: int) -> None:
    for _ in range(4):
        with pytest.raises(AuthenticationError):
            authentication.login(engine, SETTINGS, "ana@sg.example", "wrong password!")
    authentication.login(engine, SETTINGS, "ana@sg.example", PASSWORD)
    for _ in range(4):
        with pytest.raises(AuthenticationError):
            authentication.login(engine, SETTINGS, "ana@sg.example", "wrong password!")
    authentication.login(engine, SETTINGS, "ana@sg.example", PASSWORD)


def test_an_idle_session_ends(engine: sa.Engine, ana: int) -> None:
    start = utc_now()
    result = authentication.login(engine, SETTINGS, "ana@sg.example", PASSWORD, now=start)
    still = start + timedelta(minutes=29)
    authentication.principal_from_session(engine, SETTINGS, result.cookie_value, now=still)
    idle = still + timedelta(minutes=31)
    with pytest.raises(AuthenticationError, match="session has ended"):
        authentication.principal_from_session(engine, SETTINGS, result.cookie_value, now=idle)


def test_a_token_acts_only_in_its_studies(engine: sa.Engine, ana: int) -> None:
    principal = users.principal_for(engine, ana)
    created = tokens.create_token(
        engine, principal, name="pipeline", lifetime=timedelta(days=1), studies=["CART01"]
    )
    scoped = authentication.principal_from_token(engine, created.secret)
    assert scoped.grants == {Grant("CART01", "SG01", Role.COORDINATOR)}
    assert scoped.token_studies == {"CART01"}
    with pytest.raises(PermissionDeniedError, match="cannot create tokens"):
        tokens.create_token(engine, scoped, name="wider", lifetime=timedelta(days=1), studies=None)


def test_revoked_and_expired_tokens_are_refused_and_audited(engine: sa.Engine, ana: int) -> None:
    principal = users.principal_for(engine, ana)
    revoked = tokens.create_token(
        engine, principal, name="old", lifetime=timedelta(days=1), studies=None
    )
    tokens.revoke_token(engine, principal, revoked.record.id)
    expired = tokens.create_token(
        engine,
        principal,
        name="short",
        lifetime=timedelta(minutes=1),
        studies=None,
        now=utc_now() - timedelta(minutes=2),
    )
    with pytest.raises(AuthenticationError, match="revoked"):
        authentication.principal_from_token(engine, revoked.secret)
    with pytest.raises(AuthenticationError, match="expired"):
        authentication.principal_from_token(engine, expired.secret)
    with pytest.raises(AuthenticationError, match="not known"):
        authentication.principal_from_token(engine, "cst_" + "x" * 43)
    assert _actions(engine) == [
        "token.create",
        "token.revoke",
        "token.create",
        "token.refused",
        "token.refused",
    ]


def test_only_a_node_administrator_manages_someone_elses_tokens(
    engine: sa.Engine, ana: int
) -> None:
    users.create_user(engine, OPERATOR, email="bo@sg.example", name="Bo", password=None)
    ana_principal = users.principal_for(engine, ana)
    with pytest.raises(PermissionDeniedError):
        tokens.list_tokens(engine, ana_principal, email="bo@sg.example")
    created = tokens.create_token(
        engine, OPERATOR, email="bo@sg.example", name="x", lifetime=timedelta(days=1), studies=None
    )
    assert [t.id for t in tokens.list_tokens(engine, OPERATOR, email="bo@sg.example")] == [
        created.record.id
    ]


@pytest.mark.parametrize("change", ["deactivate", "new password"])
def test_an_account_changed_while_its_password_is_hashed_is_not_signed_in(
    engine: sa.Engine, ana: int, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    from argon2 import PasswordHasher

    class ChangingHasher(PasswordHasher):
        """The real (cheap) hasher; the account changes while a password is verified."""

        changed = False

        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            matched = super().verify(hash, password)
            if not self.changed:
                self.changed = True
                if change == "deactivate":
                    users.deactivate_user(engine, OPERATOR, "ana@sg.example")
                else:
                    users.set_password(
                        engine, OPERATOR, email="ana@sg.example", password="a new passphrase"
                    )
            return matched

    monkeypatch.setattr(
        "consortia.auth.passwords._HASHER",
        ChangingHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    with pytest.raises(AuthenticationError):
        authentication.login(engine, SETTINGS, "ana@sg.example", PASSWORD)
    with engine.connect() as connection:
        failed = [e for e in iter_events(connection, chain="node") if e.action == "login.failed"]
    assert failed[-1].reason in (
        "account inactive",
        "the account changed while the password was checked",
    )
