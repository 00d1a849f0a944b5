"""``/api/v1/approvals``: the data steward lists and decides queued analysis requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from node_client import Node, running_node

from consortia.auth.principal import Role
from consortia.federation.approval import ApprovalStatus, DatabaseApprovals, request_digest
from consortia.services import approvals
from consortia.services.common import cli_operator
from consortia.storage.audit import iter_events

REQUEST: dict[str, Any] = {
    "kind": "kaplan_meier",
    "table": "cart_efficacy",
    "time": "pfs_days",
    "event": "progressed",
}
STEWARD = "steward@node.example"


@pytest.fixture
def node(migrated_database_url: str) -> Iterator[Node]:
    with running_node(migrated_database_url) as running:
        yield running


def _submit(node: Node, request: dict[str, Any] = REQUEST) -> Any:
    """Queue a request as the federation node does, in the node database."""
    return DatabaseApprovals(node.engine).find_or_submit(request, "lead-node")


def _stored(node: Node) -> list[Any]:
    return approvals.list_approvals(node.engine, cli_operator())


def _steward(node: Node) -> str:
    return node.add_user(STEWARD, ("*", "*", Role.NODE_ADMIN))


def _node_events(node: Node) -> list[tuple[str, str, str]]:
    with node.engine.connect() as connection:
        return [
            (e.action, e.entity_id, e.actor)
            for e in iter_events(connection, chain="node")
            if e.entity_type == "approval"
        ]


def test_the_steward_lists_pending_requests_and_approves_one(node: Node) -> None:
    client = node.client(_steward(node))
    entry = _submit(node)
    other = _submit(node, {**REQUEST, "time": "os_days"})
    client.post(f"/api/v1/approvals/{other.id}/deny", json={"reason": "duplicate"})

    listed = client.get("/api/v1/approvals", params={"status": "pending"})
    assert listed.status_code == 200
    (pending,) = listed.json()
    assert pending["id"] == entry.id
    assert pending["requester"] == "lead-node"
    assert pending["request"] == REQUEST
    assert pending["digest"] == request_digest(REQUEST, "lead-node")
    assert pending["status"] == "pending"
    assert pending["kind"] == "kaplan_meier"
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
    assert [e.id for e in _stored(node) if e.status is ApprovalStatus.APPROVED] == [entry.id]
    assert _node_events(node) == [
        ("approval.deny", other.id, STEWARD),
        ("approval.approve", entry.id, STEWARD),
    ]


def test_approving_needs_no_body(node: Node) -> None:
    client = node.client(_steward(node))
    entry = _submit(node)
    response = client.post(f"/api/v1/approvals/{entry.id}/approve")
    assert response.status_code == 200
    assert response.json()["reason"] is None


def test_a_denial_without_a_reason_is_422_and_changes_nothing(node: Node) -> None:
    client = node.client(_steward(node))
    entry = _submit(node)
    for body in ({}, {"reason": ""}, {"reason": "   "}, None):
        response = client.post(f"/api/v1/approvals/{entry.id}/deny", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
        assert any(
            error["path"].endswith("reason") or error["path"] == "body"
            for error in response.json()["errors"]
        ), response.json()
    assert _stored(node)[0].status is ApprovalStatus.PENDING
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


def test_deciding_twice_is_409_and_keeps_the_first_decision(node: Node) -> None:
    client = node.client(_steward(node))
    entry = _submit(node)
    assert client.post(f"/api/v1/approvals/{entry.id}/approve").status_code == 200
    again = client.post(f"/api/v1/approvals/{entry.id}/deny", json={"reason": "changed my mind"})
    assert again.status_code == 409
    assert "already approved" in again.json()["detail"]
    assert _stored(node)[0].status is ApprovalStatus.APPROVED
    assert [action for action, _, _ in _node_events(node)] == ["approval.approve"]


@pytest.mark.parametrize(
    "role", [role for role in Role if role is not Role.NODE_ADMIN], ids=lambda r: r.value
)
def test_every_other_role_is_403_even_with_an_every_study_grant(node: Node, role: Role) -> None:
    entry = _submit(node)
    client = node.client(node.add_user(f"{role.value}@node.example", ("*", "*", role)))
    assert client.get("/api/v1/approvals").status_code == 403
    assert client.post(f"/api/v1/approvals/{entry.id}/approve").status_code == 403
    denied = client.post(f"/api/v1/approvals/{entry.id}/deny", json={"reason": "no"})
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert _stored(node)[0].status is ApprovalStatus.PENDING
    assert _node_events(node) == []


def test_a_token_scoped_to_studies_does_not_carry_the_stewards_power(node: Node) -> None:
    _submit(node)
    scoped = node.add_user(STEWARD, ("*", "*", Role.NODE_ADMIN), token_studies=["CART01"])
    assert node.client(scoped).get("/api/v1/approvals").status_code == 403


def test_without_credentials_it_is_401(node: Node) -> None:
    assert node.client().get("/api/v1/approvals").status_code == 401


def test_a_decision_made_in_one_app_instance_is_seen_by_another_on_the_same_database(
    migrated_database_url: str,
) -> None:
    # two processes of one node (or two hosts behind a load balancer) share the database
    with (
        running_node(migrated_database_url) as first,
        running_node(migrated_database_url) as second,
    ):
        entry = _submit(first)
        steward = _steward(first)
        listed = second.client(steward).get("/api/v1/approvals", params={"status": "pending"})
        assert [e["id"] for e in listed.json()] == [entry.id]
        approved = first.client(steward).post(f"/api/v1/approvals/{entry.id}/approve")
        assert approved.status_code == 200
        # the other instance sees the decision, and refuses to decide it again
        (seen,) = second.client(steward).get("/api/v1/approvals").json()
        assert (seen["status"], seen["decided_by"]) == ("approved", STEWARD)
        again = second.client(steward).post(
            f"/api/v1/approvals/{entry.id}/deny", json={"reason": "x"}
        )
        assert again.status_code == 409
        # and the node's federation side, on its own engine, finds the request approved
        found = DatabaseApprovals(second.engine).find_or_submit(REQUEST, "lead-node")
        assert found.status is ApprovalStatus.APPROVED
        assert _node_events(second) == [("approval.approve", entry.id, STEWARD)]
