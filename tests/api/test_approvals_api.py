"""``/api/v1/approvals``: the data steward lists and decides queued analysis requests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_client import Node, running_node

from consortia.auth.principal import Role
from consortia.federation.approval import ApprovalQueue, ApprovalStatus, request_digest
from consortia.storage.audit import iter_events

REQUEST: dict[str, Any] = {
    "kind": "kaplan_meier",
    "table": "cart_efficacy",
    "time": "pfs_days",
    "event": "progressed",
}
STEWARD = "steward@node.example"


@pytest.fixture
def queue_path(tmp_path: Path) -> Path:
    return tmp_path / "approvals.json"


@pytest.fixture
def node(database_url: str, queue_path: Path) -> Iterator[Node]:
    with running_node(database_url, approvals_file=queue_path) as running:
        yield running


def _steward(node: Node) -> str:
    return node.add_user(STEWARD, ("*", "*", Role.NODE_ADMIN))


def _node_events(node: Node) -> list[tuple[str, str, str]]:
    with node.engine.connect() as connection:
        return [
            (e.action, e.entity_id, e.actor)
            for e in iter_events(connection, chain="node")
            if e.entity_type == "approval"
        ]


def test_the_steward_lists_pending_requests_and_approves_one(node: Node, queue_path: Path) -> None:
    client = node.client(_steward(node))
    queue = ApprovalQueue(queue_path)
    entry = queue.submit(REQUEST, "lead-node")
    other = queue.submit({**REQUEST, "time": "os_days"}, "lead-node")
    queue.deny(other.id, by="cli:steward", reason="duplicate")

    listed = client.get("/api/v1/approvals", params={"status": "pending"})
    assert listed.status_code == 200
    (pending,) = listed.json()
    assert pending["id"] == entry.id
    assert pending["requester"] == "lead-node"
    assert pending["request"] == REQUEST
    assert pending["digest"] == request_digest(REQUEST, "lead-node")
    assert pending["status"] == "pending"
    everything = client.get("/api/v1/approvals").json()
    assert [e["id"] for e in everything] == [entry.id, other.id]

    approved = client.post(f"/api/v1/approvals/{entry.id}/approve", json={"reason": "IRB 2025-7"})
    assert approved.status_code == 200
    body = approved.json()
    assert (body["status"], body["decided_by"], body["reason"]) == (
        "approved",
        STEWARD,
        "IRB 2025-7",
    )
    assert ApprovalQueue(queue_path).list(ApprovalStatus.APPROVED)[0].id == entry.id
    assert _node_events(node) == [("approval.approve", entry.id, STEWARD)]


def test_approving_needs_no_body(node: Node, queue_path: Path) -> None:
    client = node.client(_steward(node))
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    response = client.post(f"/api/v1/approvals/{entry.id}/approve")
    assert response.status_code == 200
    assert response.json()["reason"] is None


def test_a_denial_without_a_reason_is_422_and_changes_nothing(node: Node, queue_path: Path) -> None:
    client = node.client(_steward(node))
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    for body in ({}, {"reason": ""}, {"reason": "   "}, None):
        response = client.post(f"/api/v1/approvals/{entry.id}/deny", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
        assert any(
            error["path"].endswith("reason") or error["path"] == "body"
            for error in response.json()["errors"]
        ), response.json()
    assert ApprovalQueue(queue_path).list()[0].status is ApprovalStatus.PENDING
    assert _node_events(node) == []
    denied = client.post(f"/api/v1/approvals/{entry.id}/deny", json={"reason": "identifiable"})
    assert denied.status_code == 200
    assert (denied.json()["status"], denied.json()["reason"]) == ("denied", "identifiable")
    assert _node_events(node) == [("approval.deny", entry.id, STEWARD)]
    with node.engine.connect() as connection:
        (event,) = [e for e in iter_events(connection, chain="node") if e.action == "approval.deny"]
    assert event.reason == "identifiable"
    assert event.after["request"] == REQUEST
    assert event.after["requester"] == "lead-node"


def test_an_unknown_request_is_404(node: Node) -> None:
    client = node.client(_steward(node))
    response = client.post("/api/v1/approvals/0123456789abcdef/approve", json={})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "0123456789abcdef" in response.json()["detail"]


def test_deciding_twice_is_409_and_keeps_the_first_decision(node: Node, queue_path: Path) -> None:
    client = node.client(_steward(node))
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    assert client.post(f"/api/v1/approvals/{entry.id}/approve").status_code == 200
    again = client.post(f"/api/v1/approvals/{entry.id}/deny", json={"reason": "changed my mind"})
    assert again.status_code == 409
    assert "already approved" in again.json()["detail"]
    assert ApprovalQueue(queue_path).list()[0].status is ApprovalStatus.APPROVED
    assert [action for action, _, _ in _node_events(node)] == ["approval.approve"]


@pytest.mark.parametrize(
    "role", [role for role in Role if role is not Role.NODE_ADMIN], ids=lambda r: r.value
)
def test_every_other_role_is_403_even_with_an_every_study_grant(
    node: Node, queue_path: Path, role: Role
) -> None:
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    client = node.client(node.add_user(f"{role.value}@node.example", ("*", "*", role)))
    assert client.get("/api/v1/approvals").status_code == 403
    assert client.post(f"/api/v1/approvals/{entry.id}/approve").status_code == 403
    denied = client.post(f"/api/v1/approvals/{entry.id}/deny", json={"reason": "no"})
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert ApprovalQueue(queue_path).list()[0].status is ApprovalStatus.PENDING
    assert _node_events(node) == []


def test_a_token_scoped_to_studies_does_not_carry_the_stewards_power(
    node: Node, queue_path: Path
) -> None:
    ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    scoped = node.add_user(STEWARD, ("*", "*", Role.NODE_ADMIN), token_studies=["CART01"])
    assert node.client(scoped).get("/api/v1/approvals").status_code == 403


def test_without_credentials_it_is_401(node: Node) -> None:
    assert node.client().get("/api/v1/approvals").status_code == 401


def test_a_node_without_an_approval_queue_says_so(database_url: str) -> None:
    with running_node(database_url) as node:
        client = node.client(_steward(node))
        response = client.get("/api/v1/approvals")
        assert response.status_code == 404
        assert "CONSORTIA_APPROVALS_FILE" in response.json()["detail"]
