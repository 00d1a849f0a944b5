"""The data steward's decisions: who may decide, what a decision needs, and its audit event."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.config import Settings
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.federation.approval import ApprovalQueue, ApprovalStatus, request_digest
from consortia.services import approvals
from consortia.storage.audit import AuditEvent, iter_events, verify_chain

STEWARD = Principal(
    1, "steward@node.example", "Steward", frozenset({Grant("*", "*", Role.NODE_ADMIN)})
)
REQUEST: dict[str, Any] = {"kind": "describe", "table": "cart_efficacy", "variable": "age"}


@pytest.fixture
def queue_path(tmp_path: Path) -> Path:
    return tmp_path / "approvals.json"


@pytest.fixture
def settings(database_url: str, queue_path: Path) -> Settings:
    return Settings(database_url=database_url, approvals_file=queue_path)


def _node_events(engine: sa.Engine) -> list[AuditEvent]:
    with engine.connect() as connection:
        return list(iter_events(connection, chain="node"))


def test_approving_decides_the_queue_and_audits_the_request(
    engine: sa.Engine, settings: Settings, queue_path: Path
) -> None:
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    decided = approvals.decide(engine, settings, STEWARD, entry.id, True, "  ethics ok  ")
    assert decided.status is ApprovalStatus.APPROVED
    assert decided.decided_by == STEWARD.email
    assert decided.reason == "ethics ok"
    # another process reading the same file sees the decision
    (stored,) = ApprovalQueue(queue_path).list()
    assert stored.status is ApprovalStatus.APPROVED
    (event,) = _node_events(engine)
    assert (event.action, event.entity_type, event.entity_id) == (
        "approval.approve",
        "approval",
        entry.id,
    )
    assert event.actor == STEWARD.email
    assert event.reason == "ethics ok"
    assert event.after == {
        "requester": "lead-node",
        "digest": request_digest(REQUEST, "lead-node"),
        "request": REQUEST,
    }
    with engine.connect() as connection:
        assert verify_chain(connection).ok


def test_denying_needs_a_reason_and_is_audited_with_it(
    engine: sa.Engine, settings: Settings, queue_path: Path
) -> None:
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    for reason in ("", "   ", None):
        with pytest.raises(ValidationError, match="reason"):
            approvals.decide(engine, settings, STEWARD, entry.id, False, reason)
    assert ApprovalQueue(queue_path).list()[0].status is ApprovalStatus.PENDING
    assert _node_events(engine) == []
    decided = approvals.decide(engine, settings, STEWARD, entry.id, False, "not in the protocol")
    assert (decided.status, decided.reason) == (ApprovalStatus.DENIED, "not in the protocol")
    (event,) = _node_events(engine)
    assert (event.action, event.reason) == ("approval.deny", "not in the protocol")


@pytest.mark.parametrize(
    "role", [role for role in Role if role is not Role.NODE_ADMIN], ids=lambda r: r.value
)
def test_only_a_node_administrator_may_list_or_decide(
    engine: sa.Engine, settings: Settings, queue_path: Path, role: Role
) -> None:
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    # even a study-wide grant at every study is not the node's data steward
    other = Principal(2, "other@node.example", "Other", frozenset({Grant("*", "*", role)}))
    with pytest.raises(PermissionDeniedError, match=r"approval\.decide"):
        approvals.list_approvals(settings, other)
    with pytest.raises(PermissionDeniedError, match=r"approval\.decide"):
        approvals.decide(engine, settings, other, entry.id, True, "")
    assert ApprovalQueue(queue_path).list()[0].status is ApprovalStatus.PENDING
    assert _node_events(engine) == []


def test_listing_filters_by_status_oldest_first(settings: Settings, queue_path: Path) -> None:
    queue = ApprovalQueue(queue_path)
    first = queue.submit(REQUEST, "lead-node")
    second = queue.submit({**REQUEST, "variable": "weight"}, "lead-node")
    queue.deny(first.id, by="cli:steward", reason="no")
    assert [e.id for e in approvals.list_approvals(settings, STEWARD)] == [first.id, second.id]
    pending = approvals.list_approvals(settings, STEWARD, ApprovalStatus.PENDING)
    assert [e.id for e in pending] == [second.id]


def test_an_unknown_or_already_decided_request_is_refused_and_not_audited(
    engine: sa.Engine, settings: Settings, queue_path: Path
) -> None:
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    with pytest.raises(NotFoundError, match="does not exist"):
        approvals.decide(engine, settings, STEWARD, "0123456789abcdef", True, "")
    # decided meanwhile from the CLI, in another process
    ApprovalQueue(queue_path).approve(entry.id, by="cli:steward")
    with pytest.raises(ConflictError, match="already approved by cli:steward"):
        approvals.decide(engine, settings, STEWARD, entry.id, False, "too late")
    assert ApprovalQueue(queue_path).list()[0].status is ApprovalStatus.APPROVED
    assert _node_events(engine) == []


def test_a_decision_made_between_the_check_and_the_queue_write_rolls_the_event_back(
    engine: sa.Engine, settings: Settings, queue_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    real_approve = ApprovalQueue.approve

    def raced(self: ApprovalQueue, entry_id: str, *, by: str, reason: str = "") -> Any:
        ApprovalQueue(queue_path).deny(entry_id, by="cli:steward", reason="raced")
        return real_approve(self, entry_id, by=by, reason=reason)

    monkeypatch.setattr(ApprovalQueue, "approve", raced)
    with pytest.raises(ConflictError, match="already denied"):
        approvals.decide(engine, settings, STEWARD, entry.id, True, "")
    assert _node_events(engine) == []


def test_a_failed_audit_leaves_the_queue_unchanged(
    engine: sa.Engine, settings: Settings, queue_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    before = queue_path.read_text(encoding="utf-8")

    def broken_audit(*_args: object, **_kwargs: object) -> None:
        raise sa.exc.OperationalError("INSERT INTO audit_event", {}, Exception("disk full"))

    monkeypatch.setattr("consortia.services.approvals.audit", broken_audit)
    with pytest.raises(sa.exc.OperationalError):
        approvals.decide(engine, settings, STEWARD, entry.id, True, "")
    assert queue_path.read_text(encoding="utf-8") == before
    assert ApprovalQueue(queue_path).list()[0].status is ApprovalStatus.PENDING


def test_a_node_without_an_approvals_file_says_which_setting_to_set(
    engine: sa.Engine, database_url: str
) -> None:
    settings = Settings(database_url=database_url, approvals_file=None)
    with pytest.raises(approvals.NoApprovalQueueError, match="CONSORTIA_APPROVALS_FILE"):
        approvals.list_approvals(settings, STEWARD)
    with pytest.raises(approvals.NoApprovalQueueError, match="approvals_file"):
        approvals.decide(engine, settings, STEWARD, "0123456789abcdef", True, "")


def test_a_too_long_reason_is_refused(
    engine: sa.Engine, settings: Settings, queue_path: Path
) -> None:
    entry = ApprovalQueue(queue_path).submit(REQUEST, "lead-node")
    long_reason = "x" * (approvals.MAX_REASON_LENGTH + 1)
    with pytest.raises(ValidationError, match="at most"):
        approvals.decide(engine, settings, STEWARD, entry.id, False, long_reason)


def test_the_docstring_example_holds() -> None:
    outcome = doctest.testmod(approvals, optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0
    assert outcome.failed == 0
