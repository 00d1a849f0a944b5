"""``consortia node approvals …``: the shell decides through the one approval service.

The deciding account is named with ``--as EMAIL``; it must be an active account that the
policy lets decide (``approval.decide``: a node administrator). Every decision is an
event on the node chain, like one made from the pages or the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from consortia.cli import app
from consortia.federation.approval import ApprovalStatus, DatabaseApprovals
from consortia.services import approvals, users
from consortia.services.common import cli_operator
from consortia.storage.audit import iter_events, verify_chain
from consortia.storage.db import make_engine

runner = CliRunner()
STEWARD = "steward@node.example"
COORDINATOR = "coordinator@node.example"


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(migrated_database_url)
    operator = cli_operator()
    for email, role in ((STEWARD, "node_admin"), (COORDINATOR, "coordinator")):
        users.create_user(engine, operator, email=email, name=email, password=None)
        users.grant_role(engine, operator, email=email, study="*", site="*", role=role)
    yield engine
    engine.dispose()


@pytest.fixture
def config(tmp_path: Path, migrated_database_url: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "sgh",
                "database_url": migrated_database_url,
                "policy": {"manual_approval": True},
            }
        )
    )
    return path


def _decisions(engine: sa.Engine) -> list[Any]:
    with engine.connect() as connection:
        return [e for e in iter_events(connection, chain="node") if e.action.startswith("approval")]


def _shell(*args: str) -> Any:
    return runner.invoke(app, ["node", "approvals", *args])


def test_the_shell_decides_as_a_named_node_administrator_and_is_audited(
    engine: sa.Engine, config: Path
) -> None:
    queue = DatabaseApprovals(engine)
    first = queue.find_or_submit({"kind": "describe", "table": "t", "variable": "age"}, "lead")
    second = queue.find_or_submit({"kind": "cox", "table": "t"}, "lead")
    listed = _shell("list", "--config", str(config))
    assert listed.exit_code == 0, listed.output
    assert first.id in listed.output
    assert second.id in listed.output

    approved = _shell("approve", first.id, "--config", str(config), "--as", STEWARD)
    assert approved.exit_code == 0, approved.output
    assert f"approved by {STEWARD}" in approved.output
    denied = _shell(
        "deny", second.id, "--config", str(config), "--as", STEWARD.upper(), "--reason", "no DSA"
    )
    assert denied.exit_code == 0, denied.output

    stored = {e.id: e for e in approvals.list_approvals(engine, cli_operator())}
    assert (stored[first.id].status, stored[first.id].decided_by) == (
        ApprovalStatus.APPROVED,
        STEWARD,
    )
    assert (stored[second.id].status, stored[second.id].reason) == (ApprovalStatus.DENIED, "no DSA")
    events = _decisions(engine)
    assert [(e.action, e.actor, e.entity_id) for e in events] == [
        ("approval.approve", STEWARD, first.id),
        ("approval.deny", STEWARD, second.id),
    ]
    assert events[1].reason == "no DSA"
    with engine.connect() as connection:
        assert verify_chain(connection).ok

    twice = _shell("approve", first.id, "--config", str(config), "--as", STEWARD)
    assert twice.exit_code == 1
    assert "already approved" in twice.output
    assert len(_decisions(engine)) == 2
    remaining = _shell("list", "--config", str(config))
    assert "no requests waiting" in remaining.output


@pytest.mark.parametrize(
    ("email", "message"),
    [
        (COORDINATOR, "approval.decide"),  # an account the policy does not let decide
        ("nobody@node.example", "no active account"),
    ],
)
def test_the_shell_refuses_a_decider_the_policy_does_not_allow_and_changes_nothing(
    engine: sa.Engine, config: Path, email: str, message: str
) -> None:
    entry = DatabaseApprovals(engine).find_or_submit({"kind": "cox", "table": "t"}, "lead")
    for verb in ("approve", "deny"):
        refused = _shell(verb, entry.id, "--config", str(config), "--as", email, "--reason", "x")
        assert refused.exit_code == 1
        assert message in refused.output
    (stored,) = approvals.list_approvals(engine, cli_operator())
    assert stored.status is ApprovalStatus.PENDING
    assert _decisions(engine) == []


def test_the_shell_cannot_decide_without_naming_who_decides(
    engine: sa.Engine, config: Path
) -> None:
    entry = DatabaseApprovals(engine).find_or_submit({"kind": "cox", "table": "t"}, "lead")
    unnamed = _shell("approve", entry.id, "--config", str(config), "--by", "steward")
    assert unnamed.exit_code != 0
    (stored,) = approvals.list_approvals(engine, cli_operator())
    assert stored.status is ApprovalStatus.PENDING


def test_a_deactivated_node_administrator_cannot_decide_from_the_shell(
    engine: sa.Engine, config: Path
) -> None:
    entry = DatabaseApprovals(engine).find_or_submit({"kind": "cox", "table": "t"}, "lead")
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE app_user SET active = :no"), {"no": False})
    refused = _shell("approve", entry.id, "--config", str(config), "--as", STEWARD)
    assert refused.exit_code == 1
    assert "no active account" in refused.output
    assert _decisions(engine) == []


def test_a_node_without_a_database_cannot_list_or_decide(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"name": "sgh"}))
    for args in (["list"], ["approve", "0123456789abcdef", "--as", STEWARD]):
        result = _shell(*args, "--config", str(config))
        assert result.exit_code == 1
        assert "database_url" in result.output
