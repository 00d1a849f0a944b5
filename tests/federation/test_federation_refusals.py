"""Every refusal names its rule, reaches the lead, and is written to the node's audit log.

Signature rules are exercised by posting hand-made messages to a node's push endpoint;
policy rules by running analyses through the coordinator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.exceptions import NodeUnavailableError, SignatureError
from consortia.federation.approval import ApprovalStatus, DatabaseApprovals
from consortia.federation.apps import create_node_app
from consortia.federation.coordinator import AnalysisRefused
from consortia.federation.kinds import InvalidRequest
from consortia.federation.node import NodeRunner
from consortia.federation.policy import NodePolicy, TableAccess
from consortia.federation.protocol import AnalysisTask, new_id
from consortia.federation.signing import (
    Peer,
    TrustStore,
    Verifier,
    generate_key,
    sign_message,
)
from consortia.federation.tables import ColumnType, Table
from consortia.federation.transport import InProcessTransport
from consortia.services import approvals
from consortia.storage.db import make_engine

DESCRIBE = {"kind": "describe", "table": "trial", "variable": "age"}


def analyze(federation: Any, request: dict[str, Any]) -> dict[str, Any]:
    transport = InProcessTransport(federation.runners)
    return asyncio.run(
        federation.coordinator.run_analysis(request, federation.handles, transport)
    ).to_dict()


def last_event(federation: Any, node: str) -> dict[str, Any]:
    return federation.audits[node].events[-1]


def task_body(to: str = "sgh", request: dict[str, Any] | None = None) -> dict[str, Any]:
    task = AnalysisTask(
        task_id=new_id(), session=new_id(), round=1, to=to, request=request or DESCRIBE
    )
    return task.model_dump(mode="json")


def post(node: NodeRunner, *messages: Any) -> list[dict[str, Any]]:
    """POST messages to the node's push endpoint; return the verified reply bodies."""
    lead_view = Verifier(TrustStore([Peer(name=node.name, public_key=node.public_key)]))

    async def main() -> list[dict[str, Any]]:
        transport = httpx.ASGITransport(app=create_node_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as client:
            replies = []
            for message in messages:
                response = await client.post("/federation/v1/analyze", json=message)
                assert response.status_code == 200
                replies.append(lead_view.verify(response.json())[1])
            return replies

    return asyncio.run(main())


def assert_refused_and_audited(
    federation: Any, reply: dict[str, Any], node: str, rule: str
) -> None:
    assert reply["status"] == "refused"
    assert reply["rule"] == rule
    assert reply["aggregates"] is None
    event = last_event(federation, node)
    assert event["decision"] == "refused"
    assert event["rule"] == rule
    assert event["released"] is None


# --------------------------------------------------------------------------- signatures


def test_an_unsigned_request_is_refused_and_audited(make_federation: Any) -> None:
    federation = make_federation()
    (reply,) = post(federation.runners["sgh"], {"body": task_body()})
    assert_refused_and_audited(federation, reply, "sgh", "signature.unsigned")
    assert last_event(federation, "sgh")["verified"] is False


def test_a_replayed_request_is_refused_the_second_time_and_audited(make_federation: Any) -> None:
    federation = make_federation()
    message = federation.coordinator.sign(task_body())
    first, second = post(federation.runners["sgh"], message, message)
    assert first["status"] == "ok"
    assert_refused_and_audited(federation, second, "sgh", "signature.replay")
    decisions = [event["decision"] for event in federation.audits["sgh"].events]
    assert decisions == ["released", "refused"]


def test_a_request_with_a_bad_signature_is_refused_and_audited(make_federation: Any) -> None:
    federation = make_federation()
    message = federation.coordinator.sign(task_body())
    forged = generate_key().sign(b"something else")
    import base64

    message["envelope"]["signature"] = base64.b64encode(forged).decode()
    (reply,) = post(federation.runners["sgh"], message)
    assert_refused_and_audited(federation, reply, "sgh", "signature.bad_signature")


def test_a_request_whose_body_was_changed_after_signing_is_refused(make_federation: Any) -> None:
    federation = make_federation()
    message = federation.coordinator.sign(task_body())
    message["body"]["request"]["variable"] = "biomarker"
    (reply,) = post(federation.runners["sgh"], message)
    assert_refused_and_audited(federation, reply, "sgh", "signature.body_hash")


def test_a_request_signed_by_an_untrusted_key_is_refused_and_audited(
    make_federation: Any,
) -> None:
    federation = make_federation()
    message = sign_message(task_body(), generate_key(), "mallory")
    (reply,) = post(federation.runners["sgh"], message)
    assert_refused_and_audited(federation, reply, "sgh", "signature.untrusted_key")
    assert "mallory" in reply["message"]
    assert last_event(federation, "sgh")["claimed_sender"] == "mallory"


def test_a_request_from_a_revoked_peer_is_refused(make_federation: Any) -> None:
    federation = make_federation()
    node = federation.runners["sgh"]
    lead = node.trust.get("lead")
    assert lead is not None
    node.trust.add(lead.model_copy(update={"trusted": False}))
    (reply,) = post(node, federation.coordinator.sign(task_body()))
    assert_refused_and_audited(federation, reply, "sgh", "signature.untrusted_key")
    assert "revoked" in reply["message"]


@pytest.mark.parametrize("offset_minutes", [-6, 6])
def test_a_request_outside_the_clock_skew_window_is_refused_and_audited(
    make_federation: Any, offset_minutes: int
) -> None:
    federation = make_federation()
    sent = datetime.now(UTC) + timedelta(minutes=offset_minutes)
    message = sign_message(task_body(), federation.coordinator.key, "lead", now=sent)
    (reply,) = post(federation.runners["sgh"], message)
    assert_refused_and_audited(federation, reply, "sgh", "signature.clock_skew")


def test_a_task_addressed_to_another_node_is_refused(make_federation: Any) -> None:
    federation = make_federation()
    (reply,) = post(federation.runners["sgh"], federation.coordinator.sign(task_body(to="nuh")))
    assert_refused_and_audited(federation, reply, "sgh", "invalid_request")


def test_a_reply_signed_by_a_key_the_lead_does_not_trust_fails_the_analysis(
    make_federation: Any,
) -> None:
    federation = make_federation()
    federation.runners["nuh"].key = generate_key()
    with pytest.raises(SignatureError, match="nuh"):
        analyze(federation, DESCRIBE)


# --------------------------------------------------------------------------- policy


def test_a_column_not_allowed_is_refused_by_name_and_audited(make_federation: Any) -> None:
    policy = NodePolicy(tables={"trial": TableAccess(columns=["age", "arm"])})
    federation = make_federation(policies={"ruijin": policy})
    request = {"kind": "describe", "table": "trial", "variable": "biomarker"}
    with pytest.raises(AnalysisRefused) as refused:
        analyze(federation, request)
    assert refused.value.rule == "column_not_allowed"
    assert refused.value.refusals == [
        {
            "node": "ruijin",
            "rule": "column_not_allowed",
            "message": "trial.biomarker is not allowed for analysis",
        }
    ]
    event = last_event(federation, "ruijin")
    assert (event["decision"], event["rule"], event["released"]) == (
        "refused",
        "column_not_allowed",
        None,
    )
    assert event["request"] == request


def test_with_allow_partial_a_refusing_node_is_left_out_and_the_result_says_so(
    make_federation: Any, trial_tables: dict[str, Table]
) -> None:
    policy = NodePolicy(tables={"trial": TableAccess(columns=["age"])})
    federation = make_federation(policies={"ruijin": policy})
    request = {"kind": "describe", "table": "trial", "variable": "biomarker", "allow_partial": True}
    result = analyze(federation, request)
    assert result["complete"] is False
    assert [node["name"] for node in result["nodes"]] == ["sgh", "nuh"]
    assert result["refusals"][0]["node"] == "ruijin"
    kept = np.concatenate([trial_tables[n].numeric("biomarker") for n in ("sgh", "nuh")])
    assert result["estimates"]["mean"] == pytest.approx(kept.mean(), rel=1e-12)


def small_table(arms: list[str], responses: list[int]) -> Table:
    return Table(
        "trial",
        {
            "arm": np.array(arms, dtype=object),
            "response": np.array(responses, dtype=float),
            "age": np.linspace(40, 70, len(arms)),
            "biomarker": np.linspace(1, 9, len(arms)),
            "ref_mgdl": np.linspace(80, 200, len(arms)) ** 1.1,
        },
        {
            "arm": ColumnType.TEXT,
            "response": ColumnType.BOOLEAN,
            "age": ColumnType.DECIMAL,
            "biomarker": ColumnType.DECIMAL,
            "ref_mgdl": ColumnType.DECIMAL,
        },
    )


def test_a_cell_under_the_minimum_count_refuses_the_whole_request_unaltered(
    make_federation: Any,
) -> None:
    big = small_table(["a"] * 10 + ["b"] * 10, [0] * 5 + [1] * 5 + [0] * 5 + [1] * 5)
    # [[3, 3], [6, 0]]: the small cells would follow from the rows' and the first column's
    # totals whatever else is suppressed (zeros never are), so the table is refused whole
    tiny = small_table(["a"] * 6 + ["b"] * 6, [0] * 3 + [1] * 3 + [0] * 6)
    federation = make_federation(tables={"sgh": big, "ruijin": big, "nuh": tiny})
    with pytest.raises(AnalysisRefused) as refused:
        analyze(
            federation, {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "response"}
        )
    assert [(r["node"], r["rule"]) for r in refused.value.refusals] == [("nuh", "small_cells")]
    assert "3" not in refused.value.refusals[0]["message"]  # the small count never leaves
    event = last_event(federation, "nuh")
    assert event["rule"] == "small_cells"
    assert event["released"] is None
    assert last_event(federation, "sgh")["decision"] == "released"


def test_a_model_with_too_many_parameters_for_the_node_rows_is_refused(
    make_federation: Any,
) -> None:
    rows = small_table(["a"] * 6 + ["b"] * 6, [0, 1] * 6)
    federation = make_federation(tables={"sgh": rows, "ruijin": rows, "nuh": rows})
    request = {
        "kind": "glm",
        "family": "binomial",
        "table": "trial",
        "outcome": "response",
        "covariates": ["age", "arm", "biomarker", "ref_mgdl"],
    }
    with pytest.raises(AnalysisRefused) as refused:
        analyze(federation, request)
    assert {r["rule"] for r in refused.value.refusals} == {"max_parameters"}
    assert "5 parameters need at least 16 complete rows" in refused.value.refusals[0]["message"]
    assert last_event(federation, "nuh")["rule"] == "max_parameters"


def test_a_model_on_fewer_than_the_minimum_rows_is_refused(make_federation: Any) -> None:
    rows = small_table(["a"] * 4 + ["b"] * 4, [0, 1] * 4)
    federation = make_federation(
        tables={"sgh": rows, "ruijin": rows, "nuh": rows}, policy=NodePolicy(min_cell_count=1)
    )
    request = {"kind": "glm", "table": "trial", "outcome": "biomarker", "covariates": ["age"]}
    with pytest.raises(AnalysisRefused) as refused:
        analyze(federation, request)
    assert refused.value.rule == "min_model_rows"


def test_identifier_columns_are_refused_by_name(make_federation: Any) -> None:
    federation = make_federation()
    with pytest.raises(AnalysisRefused) as refused:
        analyze(federation, {"kind": "describe", "table": "trial", "variable": "mrn"})
    assert refused.value.rule == "identifier_column"
    assert all("mrn" not in table.columns for table in federation.runners["sgh"].tables.values())


def test_event_times_finer_than_the_policy_bin_are_refused(make_federation: Any) -> None:
    federation = make_federation()
    request = {
        "kind": "kaplan_meier",
        "table": "trial",
        "time": "pfs_days",
        "event": "pfs_event",
        "time_bin": 1,
    }
    with pytest.raises(AnalysisRefused) as refused:
        analyze(federation, request)
    assert refused.value.rule == "time_bin"


def test_an_analysis_kind_the_policy_does_not_allow_is_refused(make_federation: Any) -> None:
    federation = make_federation(policy=NodePolicy(analyses=["kaplan_meier"]))
    with pytest.raises(AnalysisRefused) as refused:
        analyze(federation, DESCRIBE)
    assert refused.value.rule == "analysis_not_allowed"
    assert len(refused.value.refusals) == 3


def test_an_unknown_kind_is_refused_before_any_node_is_asked(make_federation: Any) -> None:
    federation = make_federation()
    with pytest.raises(InvalidRequest, match="not an analysis kind"):
        analyze(federation, {"kind": "astrology", "table": "trial"})
    assert all(audit.events == [] for audit in federation.audits.values())


# --------------------------------------------------------------------------- approval


STEWARD = Principal(
    1, "steward@nuh.example", "Steward", frozenset({Grant("*", "*", Role.NODE_ADMIN)})
)


@pytest.fixture
def node_database(migrated_database_url: str) -> str:
    """The node database the approval queue lives in (migrated), by its URL."""
    return migrated_database_url


@pytest.fixture
def node_engine(node_database: str) -> Iterator[sa.Engine]:
    """The federation node's own engine: its process's connection to the node database."""
    engine = make_engine(node_database)
    yield engine
    engine.dispose()


@pytest.fixture
def steward_engine(node_database: str) -> Iterator[sa.Engine]:
    """Another process of the node (its pages, API or shell): a second engine."""
    engine = make_engine(node_database)
    yield engine
    engine.dispose()


def _manual(make_federation: Any, node_engine: sa.Engine) -> Any:
    return make_federation(
        policies={"nuh": NodePolicy(manual_approval=True)},
        approvals=DatabaseApprovals(node_engine),
    )


def test_manual_approval_holds_the_request_until_the_steward_approves(
    make_federation: Any, node_engine: sa.Engine, steward_engine: sa.Engine
) -> None:
    federation = _manual(make_federation, node_engine)

    async def main() -> dict[str, Any]:
        transport = InProcessTransport(federation.runners)
        running = asyncio.create_task(
            federation.coordinator.run_analysis(DESCRIBE, federation.handles, transport)
        )
        # the steward's process sees the request the node queued in the database
        while not approvals.list_approvals(steward_engine, STEWARD):
            await asyncio.sleep(0.01)
        (entry,) = approvals.list_approvals(steward_engine, STEWARD)
        assert entry.requester == "lead"
        assert entry.request == DESCRIBE
        assert entry.kind == "describe"
        assert not running.done()
        await asyncio.to_thread(approvals.decide, steward_engine, STEWARD, entry.id, True, "")
        return (await running).to_dict()

    result = asyncio.run(main())
    assert result["complete"] is True
    decisions = [event["decision"] for event in federation.audits["nuh"].events]
    assert decisions[0] == "pending"
    assert decisions[-1] == "released"


def test_a_request_the_steward_denies_is_refused_with_the_reason(
    make_federation: Any, node_engine: sa.Engine, steward_engine: sa.Engine
) -> None:
    federation = _manual(make_federation, node_engine)
    entry = DatabaseApprovals(steward_engine).find_or_submit(DESCRIBE, "lead")
    approvals.decide(steward_engine, STEWARD, entry.id, False, "not in the approved protocol")
    with pytest.raises(AnalysisRefused) as refused:
        analyze(federation, DESCRIBE)
    assert refused.value.rule == "manual_approval"
    assert "not in the approved protocol" in refused.value.refusals[0]["message"]
    (stored,) = approvals.list_approvals(steward_engine, STEWARD)
    assert stored.status is ApprovalStatus.DENIED


def test_a_request_still_awaiting_approval_when_the_round_times_out_names_the_node(
    make_federation: Any, node_engine: sa.Engine
) -> None:
    federation = _manual(make_federation, node_engine)
    with pytest.raises(NodeUnavailableError, match="approval") as unavailable:
        analyze(federation, {**DESCRIBE, "timeout": 2.0})
    assert unavailable.value.node == "nuh"


def test_a_node_that_said_pending_is_named_as_awaiting_approval_even_if_its_last_ask_hangs(
    make_federation: Any, node_engine: sa.Engine
) -> None:
    class SlowAfterPending(InProcessTransport):
        """Answers at once until a node says pending; its next answer never comes."""

        def __init__(self, runners: Any) -> None:
            super().__init__(runners)
            self.pending: set[str] = set()

        async def send(self, node: Any, message: Any) -> Any:
            if node.name in self.pending:
                await asyncio.sleep(60)
            reply = await super().send(node, message)
            if reply["body"].get("status") == "pending":
                self.pending.add(node.name)
            return reply

    federation = _manual(make_federation, node_engine)
    transport = SlowAfterPending(federation.runners)
    with pytest.raises(NodeUnavailableError, match="awaiting its data steward") as unavailable:
        asyncio.run(
            federation.coordinator.run_analysis(
                {**DESCRIBE, "timeout": 0.5}, federation.handles, transport
            )
        )
    assert unavailable.value.node == "nuh"
    assert transport.pending == {"nuh"}
