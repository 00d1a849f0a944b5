"""Changing a password ends the other sessions and the tokens; deactivating an account
ends everything at once; each step is an audit event of the same transaction."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from node_client import Node, SyncClient

from consortia.auth.principal import Role
from consortia.services import users
from consortia.storage.audit import iter_events, verify_trail

PASSWORD = "a long passphrase"
NEW_PASSWORD = "another long passphrase"
EMAIL = "ana@sg.example"
SUBJECTS = "/api/v1/studies/CART01/subjects"


@pytest.fixture
def ana(node: Node) -> str:
    node.add_user(EMAIL, ("CART01", "SG01", Role.COORDINATOR), password=PASSWORD, with_token=False)
    return EMAIL


def _session(node: Node, password: str = PASSWORD) -> tuple[SyncClient, dict[str, str]]:
    client = node.client()
    response = client.post("/api/v1/session", json={"email": EMAIL, "password": password})
    assert response.status_code == 200, response.text
    return client, {"X-CSRF-Token": response.json()["csrf_token"]}


def _token(client: SyncClient, csrf: dict[str, str]) -> str:
    created = client.post("/api/v1/me/tokens", json={"name": "etl"}, headers=csrf)
    assert created.status_code == 201
    token: str = created.json()["token"]
    return token


def _sign_in(node: Node, password: str) -> httpx.Response:
    return node.client().post("/api/v1/session", json={"email": EMAIL, "password": password})


def _events(node: Node) -> list[Any]:
    with node.engine.connect() as connection:
        assert verify_trail(connection).ok
        return list(iter_events(connection, chain="node"))


def _actions(node: Node) -> list[str]:
    return [event.action for event in _events(node)]


def test_changing_ones_password_ends_the_other_sessions_and_every_token(
    node: Node, ana: str
) -> None:
    first, csrf = _session(node)
    second, _ = _session(node)
    token = _token(first, csrf)
    for client in (first, second, node.client(token)):
        assert client.get(SUBJECTS).status_code == 200
    changed = first.put(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=csrf,
    )
    assert changed.status_code == 204, changed.text
    assert first.get(SUBJECTS).status_code == 200  # the session that asked stays
    assert second.get(SUBJECTS).status_code == 401
    assert node.client(token).get(SUBJECTS).status_code == 401
    assert _sign_in(node, PASSWORD).status_code == 401
    assert _sign_in(node, NEW_PASSWORD).status_code == 200
    events = _events(node)
    start = next(i for i, e in enumerate(events) if e.action == "user.password_set")
    # the change and its consequences are consecutive events of one transaction
    assert [e.action for e in events[start : start + 3]] == [
        "user.password_set",
        "session.end_all",
        "token.revoke",
    ]
    assert events[start + 1].after == {"sessions_ended": 1, "current_session_kept": True}


def test_a_wrong_current_password_changes_nothing_and_counts_as_a_failure(
    node: Node, ana: str
) -> None:
    first, csrf = _session(node)
    second, _ = _session(node)
    token = _token(first, csrf)
    refused = first.put(
        "/api/v1/me/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=csrf,
    )
    assert refused.status_code == 401
    for client in (second, node.client(token)):
        assert client.get(SUBJECTS).status_code == 200
    assert _sign_in(node, PASSWORD).status_code == 200
    actions = _actions(node)
    assert "password_change.failed" in actions
    assert "user.password_set" not in actions


def test_a_token_cannot_change_the_password_nor_can_a_session_without_its_csrf_token(
    node: Node, ana: str
) -> None:
    client, csrf = _session(node)
    token = _token(client, csrf)
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    by_token = node.client(token).put("/api/v1/me/password", json=body)
    assert by_token.status_code == 403
    assert "token" in by_token.json()["detail"]
    assert client.put("/api/v1/me/password", json=body).status_code == 403  # no CSRF token
    assert _sign_in(node, PASSWORD).status_code == 200


def test_a_password_set_by_the_node_operator_ends_every_session_and_token(
    node: Node, ana: str
) -> None:
    client, csrf = _session(node)
    token = _token(client, csrf)
    users.set_password(node.engine, users.cli_operator(), email=EMAIL, password=NEW_PASSWORD)
    assert client.get(SUBJECTS).status_code == 401
    assert node.client(token).get(SUBJECTS).status_code == 401
    ended = next(e for e in _events(node) if e.action == "session.end_all")
    assert ended.after == {"sessions_ended": 1, "current_session_kept": False}


def test_a_node_administrator_deactivates_an_account_and_everything_ends_at_once(
    node: Node, ana: str
) -> None:
    admin = node.client(node.add_user("root@sg.example", ("*", "*", Role.NODE_ADMIN)))
    coordinator_token = node.add_user("cy@sg.example", ("CART01", "SG01", Role.COORDINATOR))
    client, csrf = _session(node)
    token = _token(client, csrf)
    user_id = client.get("/api/v1/me").json()["id"]
    # nobody else may, nor may one deactivate oneself
    assert (
        node.client(coordinator_token).post(f"/api/v1/users/{user_id}/deactivate").status_code
        == 403
    )
    root_id = admin.get("/api/v1/me").json()["id"]
    assert admin.post(f"/api/v1/users/{root_id}/deactivate").status_code == 403
    deactivated = admin.post(f"/api/v1/users/{user_id}/deactivate")
    assert deactivated.status_code == 200
    assert deactivated.json()["active"] is False
    assert client.get(SUBJECTS).status_code == 401
    assert node.client(token).get(SUBJECTS).status_code == 401
    refused = _sign_in(node, PASSWORD)
    assert refused.status_code == 401
    assert refused.json()["detail"] == _sign_in(node, "wrong password").json()["detail"]
    assert admin.post(f"/api/v1/users/{user_id}/deactivate").status_code == 409
    events = _events(node)
    start = next(i for i, e in enumerate(events) if e.action == "user.deactivate")
    assert [e.action for e in events[start : start + 3]] == [
        "user.deactivate",
        "session.end_all",
        "token.revoke",
    ]
    # activated again: a fresh sign-in works; the old token stays revoked
    assert admin.post(f"/api/v1/users/{user_id}/activate").json()["active"] is True
    assert _sign_in(node, PASSWORD).status_code == 200
    assert node.client(token).get(SUBJECTS).status_code == 401
    assert "user.activate" in _actions(node)
