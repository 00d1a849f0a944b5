"""The data steward's decisions: who may decide, what a decision needs, and its audit event."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.federation.approval import ApprovalStatus, DatabaseApprovals, request_digest
from consortia.services import approvals
from consortia.storage.audit import AuditEvent, iter_events, verify_trail

STEWARD = Principal(
    1, "steward@node.example", "Steward", frozenset({Grant("*", "*", Role.NODE_ADMIN)})
)
REQUEST: dict[str, Any] = {"kind": "describe", "table": "cart_efficacy", "variable": "age"}


def _submit(engine: sa.Engine, request: dict[str, Any] = REQUEST) -> Any:
    """Queue a request as the federation node does (its own short transaction)."""
    return DatabaseApprovals(engine).find_or_submit(request, "lead-node")


def _stored(engine: sa.Engine) -> list[Any]:
    return approvals.list_approvals(engine, STEWARD)


def _node_events(engine: sa.Engine) -> list[AuditEvent]:
    with engine.connect() as connection:
        return list(iter_events(connection, chain="node"))


def test_approving_decides_the_queue_and_audits_the_request(engine: sa.Engine) -> None:
    entry = _submit(engine)
    decided = approvals.decide(engine, STEWARD, entry.id, True, "  ethics ok  ")
    assert decided.status is ApprovalStatus.APPROVED
    assert decided.decided_by == STEWARD.email
    assert decided.reason == "ethics ok"
    # another connection (another process of the node) sees the decision
    (stored,) = _stored(engine)
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
        assert verify_trail(connection).ok


def test_denying_needs_a_reason_and_is_audited_with_it(engine: sa.Engine) -> None:
    entry = _submit(engine)
    for reason in ("", "   ", None):
        with pytest.raises(ValidationError, match="reason"):
            approvals.decide(engine, STEWARD, entry.id, False, reason)
    assert _stored(engine)[0].status is ApprovalStatus.PENDING
    assert _node_events(engine) == []
    decided = approvals.decide(engine, STEWARD, entry.id, False, "not in the protocol")
    assert (decided.status, decided.reason) == (ApprovalStatus.DENIED, "not in the protocol")
    (event,) = _node_events(engine)
    assert (event.action, event.reason) == ("approval.deny", "not in the protocol")


@pytest.mark.parametrize(
    "role", [role for role in Role if role is not Role.NODE_ADMIN], ids=lambda r: r.value
)
def test_only_a_node_administrator_may_list_or_decide(engine: sa.Engine, role: Role) -> None:
    entry = _submit(engine)
    # even a study-wide grant at every study is not the node's data steward
    other = Principal(2, "other@node.example", "Other", frozenset({Grant("*", "*", role)}))
    with pytest.raises(PermissionDeniedError, match=r"approval\.decide"):
        approvals.list_approvals(engine, other)
    with pytest.raises(PermissionDeniedError, match=r"approval\.decide"):
        approvals.decide(engine, other, entry.id, True, "")
    assert _stored(engine)[0].status is ApprovalStatus.PENDING
    assert _node_events(engine) == []


def test_listing_filters_by_status_oldest_first(engine: sa.Engine) -> None:
    first = _submit(engine)
    second = _submit(engine, {**REQUEST, "variable": "weight"})
    approvals.decide(engine, STEWARD, first.id, False, "no")
    assert [e.id for e in approvals.list_approvals(engine, STEWARD)] == [first.id, second.id]
    pending = approvals.list_approvals(engine, STEWARD, ApprovalStatus.PENDING)
    assert [e.id for e in pending] == [second.id]


def test_an_unknown_or_already_decided_request_is_refused_and_changes_nothing(
    engine: sa.Engine,
) -> None:
    entry = _submit(engine)
    with pytest.raises(NotFoundError, match="does not exist"):
        approvals.decide(engine, STEWARD, "0123456789abcdef", True, "")
    first = approvals.decide(engine, STEWARD, entry.id, True, "ok")
    events = _node_events(engine)
    with pytest.raises(ConflictError, match=r"already approved by steward@node\.example"):
        approvals.decide(engine, STEWARD, entry.id, False, "too late")
    (stored,) = _stored(engine)
    assert stored == first
    assert _node_events(engine) == events


def test_a_failed_audit_leaves_the_queue_unchanged(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _submit(engine)

    def broken_audit(*_args: object, **_kwargs: object) -> None:
        raise sa.exc.OperationalError("INSERT INTO audit_event", {}, Exception("disk full"))

    monkeypatch.setattr("consortia.services.unit_of_work.append_event", broken_audit)
    with pytest.raises(sa.exc.OperationalError):
        approvals.decide(engine, STEWARD, entry.id, True, "")
    assert _stored(engine)[0].status is ApprovalStatus.PENDING


def test_a_too_long_reason_is_refused(engine: sa.Engine) -> None:
    entry = _submit(engine)
    long_reason = "x" * (approvals.MAX_REASON_LENGTH + 1)
    with pytest.raises(ValidationError, match="at most"):
        approvals.decide(engine, STEWARD, entry.id, False, long_reason)


def test_the_docstring_example_holds() -> None:
    outcome = doctest.testmod(approvals, optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0
    assert outcome.failed == 0


_DECIDE_IN_ANOTHER_PROCESS = """
import sys
from consortia.auth.principal import Grant, Principal, Role
from consortia.exceptions import ConflictError
from consortia.services import approvals
from consortia.storage.db import make_engine

url, entry_id, email, approve = sys.argv[1:5]
steward = Principal(9, email, email, frozenset({Grant("*", "*", Role.NODE_ADMIN)}))
engine = make_engine(url)
with engine.connect():  # connected before the signal, so both start together
    pass
print("ready", flush=True)
sys.stdin.readline()
try:
    approvals.decide(engine, steward, entry_id, approve == "yes", "reason " + email)
except ConflictError:
    print("conflict", flush=True)
else:
    print("decided", flush=True)
engine.dispose()
"""


def test_two_processes_deciding_the_same_request_at_once_decide_it_once(
    engine: sa.Engine, migrated_database_url: str
) -> None:
    entry = _submit(engine)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    deciders = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _DECIDE_IN_ANOTHER_PROCESS,
                migrated_database_url,
                entry.id,
                email,
                yes,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for email, yes in (("one@node.example", "yes"), ("two@node.example", "no"))
    ]
    try:
        for decider in deciders:
            assert decider.stdout is not None
            assert decider.stdout.readline().strip() == "ready", decider.stderr
        for decider in deciders:  # both go at once
            assert decider.stdin is not None
            decider.stdin.write("go\n")
            decider.stdin.flush()
        outcomes = []
        for decider in deciders:
            out, err = decider.communicate(timeout=60)
            assert decider.returncode == 0, err
            outcomes.append(out.strip())
    finally:
        for decider in deciders:
            if decider.poll() is None:
                decider.kill()
                decider.wait()
    assert sorted(outcomes) == ["conflict", "decided"]
    winner = ("one@node.example", "two@node.example")[outcomes.index("decided")]
    (stored,) = _stored(engine)
    assert stored.decided_by == winner
    assert stored.reason == f"reason {winner}"
    # exactly one decision, and exactly one audit event, by the one who decided
    (event,) = _node_events(engine)
    assert (event.actor, event.entity_id) == (winner, entry.id)
    with engine.connect() as connection:
        assert verify_trail(connection).ok


def test_a_request_asked_again_is_queued_once_and_keeps_its_decision(engine: sa.Engine) -> None:
    entry = _submit(engine)
    assert _submit(engine) == entry
    approvals.decide(engine, STEWARD, entry.id, True, "")
    again = _submit(engine)
    assert (again.id, again.status) == (entry.id, ApprovalStatus.APPROVED)
    assert len(_stored(engine)) == 1
