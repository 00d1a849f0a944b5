"""Web sessions (cookie + CSRF, throttled login) and API tokens (scoped, revocable)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from node_client import Node, SyncClient

from consortia.auth.principal import Role
from consortia.services.common import utc_now
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.tables import api_token

PASSWORD = "a long passphrase"
SUBJECTS = "/api/v1/studies/CART01/subjects"


@pytest.fixture
def coordinator(node: Node) -> str:
    return node.add_user(
        "ana@sg.example",
        ("CART01", "SG01", Role.COORDINATOR),
        ("ORTHO", "SG01", Role.COORDINATOR),
        password=PASSWORD,
        with_token=False,
    )


def _log_in(node: Node, password: str = PASSWORD) -> tuple[SyncClient, httpx.Response]:
    client = node.client()
    response = client.post(
        "/api/v1/session", json={"email": "ana@sg.example", "password": password}
    )
    return client, response


def _node_actions(node: Node) -> list[str]:
    with node.engine.connect() as connection:
        assert verify_trail(connection).ok
        return [event.action for event in iter_events(connection, chain="node")]


def test_logging_in_sets_a_secure_httponly_strict_cookie(node: Node, coordinator: str) -> None:
    _, response = _log_in(node)
    assert response.status_code == 200
    cookie = response.headers["set-cookie"].lower()
    for attribute in ("secure", "httponly", "samesite=strict", "path=/"):
        assert attribute in cookie
    assert "max-age" not in cookie  # ends with the browser session or when idle on the server
    body = response.json()
    assert body["me"]["email"] == "ana@sg.example"
    assert len(body["csrf_token"]) == 64


def test_a_password_is_taken_exactly_as_typed(node: Node) -> None:
    node.add_user("bo@sg.example", password="  spaces around  ", with_token=False)
    client = node.client()
    for password, status in [("  spaces around  ", 200), ("spaces around", 401)]:
        body = {"email": "bo@sg.example", "password": password}
        assert client.post("/api/v1/session", json=body).status_code == status


def test_a_change_without_the_csrf_token_is_refused_and_nothing_is_written(
    node: Node, coordinator: str
) -> None:
    client, response = _log_in(node)
    csrf = response.json()["csrf_token"]
    subject = {"subject_id": "SG01-001", "site": "SG01", "initials": "AL"}
    refused = client.post(SUBJECTS, json=subject)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert (
        client.post(SUBJECTS, json=subject, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    )
    assert client.get(SUBJECTS).json() == []
    created = client.post(SUBJECTS, json=subject, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201
    assert client.delete("/api/v1/session").status_code == 403
    assert client.get("/api/v1/session").json()["csrf_token"] == csrf


def test_logging_out_ends_the_session(node: Node, coordinator: str) -> None:
    client, response = _log_in(node)
    csrf = response.json()["csrf_token"]
    assert client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get(SUBJECTS).status_code == 401
    assert _node_actions(node)[-2:] == ["login", "logout"]


def test_five_failed_logins_lock_the_account_without_saying_so(
    node: Node, coordinator: str
) -> None:
    answers = [_log_in(node, "wrong password!")[1] for _ in range(5)]
    assert {a.status_code for a in answers} == {401}
    _, locked = _log_in(node)
    assert locked.status_code == 401
    assert locked.json()["detail"] == answers[0].json()["detail"]
    assert "set-cookie" not in locked.headers
    actions = _node_actions(node)
    assert actions.count("login.failed") == 6
    assert "account.locked" in actions


def test_a_token_for_one_study_cannot_touch_another(node: Node, coordinator: str) -> None:
    client, response = _log_in(node)
    csrf = {"X-CSRF-Token": response.json()["csrf_token"]}
    created = client.post(
        "/api/v1/me/tokens", json={"name": "cart only", "studies": ["CART01"]}, headers=csrf
    )
    assert created.status_code == 201
    token = created.json()["token"]
    scoped = node.client(token)
    assert scoped.get(SUBJECTS).status_code == 200
    ortho = "/api/v1/studies/ORTHO/subjects"
    assert scoped.get(ortho).status_code == 404
    assert scoped.post(ortho, json={"subject_id": "SG01-9", "site": "SG01"}).status_code == 404
    assert client.get(ortho).status_code == 200
    assert scoped.get("/api/v1/me").json()["token_studies"] == ["CART01"]
    assert scoped.post("/api/v1/me/tokens", json={"name": "wider"}).status_code == 403


def test_revoked_and_expired_tokens_are_refused(node: Node, coordinator: str) -> None:
    client, response = _log_in(node)
    csrf = {"X-CSRF-Token": response.json()["csrf_token"]}
    first = client.post("/api/v1/me/tokens", json={"name": "one"}, headers=csrf).json()
    second = client.post("/api/v1/me/tokens", json={"name": "two"}, headers=csrf).json()
    assert node.client(first["token"]).get(SUBJECTS).status_code == 200
    revoked = client.delete(f"/api/v1/me/tokens/{first['id']}", headers=csrf)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert node.client(first["token"]).get(SUBJECTS).status_code == 401
    with node.engine.begin() as connection:
        connection.execute(
            api_token.update()
            .where(api_token.c.id == second["id"])
            .values(expires_at=utc_now() - timedelta(seconds=1))
        )
    expired = node.client(second["token"]).get(SUBJECTS)
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    listed = client.get("/api/v1/me/tokens").json()
    assert [t["name"] for t in listed] == ["one", "two"]
    assert all("token" not in t for t in listed)
    actions = _node_actions(node)
    assert actions.count("token.create") == 2
    assert actions.count("token.revoke") == 1
    assert actions.count("token.refused") == 2


def test_a_token_is_stored_only_as_its_hash(node: Node, coordinator: str) -> None:
    client, response = _log_in(node)
    csrf = {"X-CSRF-Token": response.json()["csrf_token"]}
    secret = client.post("/api/v1/me/tokens", json={"name": "x"}, headers=csrf).json()["token"]
    with node.engine.connect() as connection:
        stored = [tuple(row) for row in connection.execute(sa.select(api_token))]
    assert secret not in repr(stored)


@pytest.mark.parametrize("header", ["Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Bearer", "Bearer nonsense"])
def test_malformed_or_unknown_credentials_are_refused(node: Node, header: str) -> None:
    response = node.client().get(SUBJECTS, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("studies", [None, ["CART01"]])
def test_no_api_token_can_create_a_token_and_nothing_is_written(
    node: Node, coordinator: str, studies: list[str] | None
) -> None:
    client, response = _log_in(node)
    csrf = {"X-CSRF-Token": response.json()["csrf_token"]}
    body: dict[str, object] = {"name": "first", "expires": "366d"}
    if studies is not None:
        body["studies"] = studies
    assert client.post("/api/v1/me/tokens", json=body).status_code == 403  # no CSRF token
    created = client.post("/api/v1/me/tokens", json=body, headers=csrf)
    assert created.status_code == 201
    by_token = node.client(created.json()["token"])
    assert by_token.get(SUBJECTS).status_code == 200  # the token works
    minted = by_token.post("/api/v1/me/tokens", json={"name": "minted", "expires": "366d"})
    assert minted.status_code == 403
    assert "sign in" in minted.json()["detail"]
    assert [t["name"] for t in client.get("/api/v1/me/tokens").json()] == ["first"]
    assert _node_actions(node).count("token.create") == 1


def test_a_node_administrators_all_studies_token_cannot_create_tokens(node: Node) -> None:
    token = node.add_user("root@sg.example", ("*", "*", Role.NODE_ADMIN))
    minted = node.client(token).post("/api/v1/me/tokens", json={"name": "more"})
    assert minted.status_code == 403
