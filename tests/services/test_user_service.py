"""Accounts and grants: who may change them, and every change is audited."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.services import users
from consortia.storage.audit import iter_events, verify_trail

OPERATOR = users.cli_operator()


def _node_events(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return [(e.action, e.entity_id) for e in iter_events(connection, chain="node")]


def test_creating_a_user_is_audited_and_the_email_is_normalised(engine: sa.Engine) -> None:
    record = users.create_user(
        engine, OPERATOR, email=" Ana@SG.Example ", name="Ana Lim", password="a long passphrase"
    )
    assert record.email == "ana@sg.example"
    assert _node_events(engine) == [("user.create", "ana@sg.example")]
    with engine.connect() as connection:
        event = next(iter_events(connection, chain="node"))
        assert event.actor.startswith("cli:")
        assert "passphrase" not in str(event.after)
        assert verify_trail(connection).ok


def test_a_second_account_with_the_same_email_is_refused(engine: sa.Engine) -> None:
    users.create_user(engine, OPERATOR, email="ana@sg.example", name="Ana", password=None)
    with pytest.raises(ConflictError, match="already exists"):
        users.create_user(engine, OPERATOR, email="ANA@sg.example", name="Ana", password=None)


def test_a_weak_password_is_refused_before_anything_is_written(engine: sa.Engine) -> None:
    with pytest.raises(ValidationError, match="at least 12"):
        users.create_user(engine, OPERATOR, email="ana@sg.example", name="Ana", password="short")
    assert users.count_users(engine) == 0
    assert _node_events(engine) == []


def test_grants_and_revocations_are_audited_and_change_the_principal(engine: sa.Engine) -> None:
    user = users.create_user(engine, OPERATOR, email="ana@sg.example", name="Ana", password=None)
    users.grant_role(
        engine, OPERATOR, email="ana@sg.example", study="CART01", site="SG01", role="coordinator"
    )
    users.grant_role(
        engine, OPERATOR, email="ana@sg.example", study="CART01", site="SH01", role="monitor"
    )
    assert users.principal_for(engine, user.id).grants == {
        Grant("CART01", "SG01", Role.COORDINATOR),
        Grant("CART01", "SH01", Role.MONITOR),
    }
    users.revoke_role(
        engine, OPERATOR, email="ana@sg.example", study="CART01", site="SG01", role="coordinator"
    )
    assert users.principal_for(engine, user.id).grants == {Grant("CART01", "SH01", Role.MONITOR)}
    actions = [action for action, _ in _node_events(engine)]
    assert actions == ["user.create", "grant.add", "grant.add", "grant.revoke"]
    with pytest.raises(ConflictError, match="already holds"):
        users.grant_role(
            engine, OPERATOR, email="ana@sg.example", study="CART01", site="SH01", role="monitor"
        )
    with pytest.raises(NotFoundError):
        users.revoke_role(
            engine, OPERATOR, email="ana@sg.example", study="CART01", site="SG01", role="monitor"
        )


@pytest.mark.parametrize(
    ("study", "site", "role", "message"),
    [
        ("CART01", "SG01", "node_admin", "node-wide"),
        ("*", "SG01", "monitor", "every site"),
        ("CART 01", "SG01", "monitor", "not a code"),
        ("node", "SG01", "monitor", "reserved"),
        ("CART01", "SG01", "superuser", "not a role"),
    ],
)
def test_malformed_grants_are_refused_with_the_reason(
    engine: sa.Engine, study: str, site: str, role: str, message: str
) -> None:
    users.create_user(engine, OPERATOR, email="ana@sg.example", name="Ana", password=None)
    with pytest.raises(ValidationError, match=message):
        users.grant_role(
            engine, OPERATOR, email="ana@sg.example", study=study, site=site, role=role
        )


def test_a_study_admin_grants_within_its_own_study_and_sites_only(engine: sa.Engine) -> None:
    for email in ("lead@sg.example", "ana@sg.example"):
        users.create_user(engine, OPERATOR, email=email, name=email, password=None)
    lead_id = users.user_by_email(engine, "lead@sg.example").id
    users.grant_role(
        engine, OPERATOR, email="lead@sg.example", study="CART01", site="SG01", role="study_admin"
    )
    lead = users.principal_for(engine, lead_id)
    users.grant_role(
        engine, lead, email="ana@sg.example", study="CART01", site="SG01", role="statistician"
    )
    for study, site, role in [
        ("CART01", "SG01", "coordinator"),  # sees identifiers, the study admin does not
        ("CART01", "SH01", "statistician"),
        ("ORTHO", "SG01", "statistician"),
        ("CART01", "*", "statistician"),
        ("*", "*", "node_admin"),
    ]:
        with pytest.raises(PermissionDeniedError):
            users.grant_role(
                engine, lead, email="ana@sg.example", study=study, site=site, role=role
            )
    visible = users.list_grants(engine, lead)
    assert {(g.email, g.role) for g in visible} == {
        ("lead@sg.example", Role.STUDY_ADMIN),
        ("ana@sg.example", Role.STATISTICIAN),
    }


def test_a_site_lead_who_sees_identifiers_grants_roles_that_see_no_more(
    engine: sa.Engine,
) -> None:
    for email in ("pi@sg.example", "ana@sg.example"):
        users.create_user(engine, OPERATOR, email=email, name=email, password=None)
    for role in ("study_admin", "investigator"):
        users.grant_role(
            engine, OPERATOR, email="pi@sg.example", study="CART01", site="SG01", role=role
        )
    pi = users.principal_for(engine, users.user_by_email(engine, "pi@sg.example").id)
    for role in ("investigator", "coordinator", "monitor", "data_manager"):
        users.grant_role(engine, pi, email="ana@sg.example", study="CART01", site="SG01", role=role)
    with pytest.raises(PermissionDeniedError, match=r"audit\.read"):
        users.grant_role(
            engine, pi, email="ana@sg.example", study="CART01", site="SG01", role="auditor"
        )
    with pytest.raises(PermissionDeniedError, match="themselves"):
        users.grant_role(
            engine, pi, email="pi@sg.example", study="CART01", site="SG01", role="monitor"
        )
    granted = users.principal_for(engine, users.user_by_email(engine, "ana@sg.example").id)
    assert {g.role.value for g in granted.grants} == {
        "investigator",
        "coordinator",
        "monitor",
        "data_manager",
    }


def test_only_node_administrators_list_or_create_accounts(engine: sa.Engine) -> None:
    coordinator = Principal(
        5, "c@sg.example", "C", frozenset({Grant("CART01", "SG01", Role.COORDINATOR)})
    )
    with pytest.raises(PermissionDeniedError):
        users.list_users(engine, coordinator)
    with pytest.raises(PermissionDeniedError):
        users.create_user(engine, coordinator, email="x@sg.example", name="X", password=None)
    assert users.list_users(engine, OPERATOR) == []


def test_a_concurrent_duplicate_is_a_conflict_not_a_crash(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    users.create_user(engine, OPERATOR, email="ana@sg.example", name="Ana", password=None)
    # as if another request created the account between the check and the insert
    monkeypatch.setattr(users.UserRepository, "by_email", lambda *_, **__: None)
    with pytest.raises(ConflictError, match="already exists"):
        users.create_user(engine, OPERATOR, email="ana@sg.example", name="Ana", password=None)
    monkeypatch.undo()
    assert users.count_users(engine) == 1
