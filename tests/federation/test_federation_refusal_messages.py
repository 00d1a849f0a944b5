"""A refusal names its rule, the column and counts: never a row's value nor free text.

Each refusal below is triggered on a table with distinctive planted values (free-text
regimens, impossible numbers); none may appear in what the lead receives nor in the
node's audit trail.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import pytest

from consortia.federation.audit import MemoryAuditSink
from consortia.federation.coordinator import AnalysisRefused, Coordinator
from consortia.federation.kinds import (
    KINDS,
    AnalysisKind,
    AnalysisRequest,
    Exchange,
    register_kind,
)
from consortia.federation.node import NodeRunner
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.protocol import AnalysisTask, new_id
from consortia.federation.signing import Peer, TrustStore, generate_key, sign_message
from consortia.federation.tables import ColumnType, Table
from consortia.federation.transport import InProcessTransport, NodeHandle

REGIMENS = ["Dexamethasone-Zq81"] * 15 + ["Pola-R-Zq82"] * 12 + ["Rituximab-Zq83"] * 3
PLANTED = ["Dexamethasone-Zq81", "Pola-R-Zq82", "Rituximab-Zq83", "31337", "4242", "5150", "8080"]
N = len(REGIMENS)


def planted_table() -> Table:
    ones = np.ones(N)
    alternating = (np.arange(N) % 2).astype(float)
    bad_time = np.arange(10.0, 10.0 + N)
    bad_time[4] = -4242.0
    bad_event = alternating.copy()
    bad_event[6] = 31337.0
    bad_outcome = alternating.copy()
    bad_outcome[8] = 5150.0
    bad_count = np.arange(N, dtype=float)
    bad_count[9] = -8080.0
    return Table(
        "trial",
        {
            "regimen": np.array(REGIMENS, dtype=object),
            "arm": np.array(["a", "b"] * (N // 2), dtype=object),
            "age": np.linspace(30, 80, N),
            "days": np.arange(10.0, 10.0 + N),
            "died": alternating,
            "bad_time": bad_time,
            "bad_event": bad_event,
            "bad_outcome": bad_outcome,
            "bad_count": bad_count,
            "constant": ones,
        },
        {
            "regimen": ColumnType.TEXT,
            "arm": ColumnType.TEXT,
            "age": ColumnType.DECIMAL,
            "days": ColumnType.INTEGER,
            "died": ColumnType.BOOLEAN,
            "bad_time": ColumnType.INTEGER,
            "bad_event": ColumnType.INTEGER,
            "bad_outcome": ColumnType.INTEGER,
            "bad_count": ColumnType.INTEGER,
            "constant": ColumnType.INTEGER,
        },
    )


class Fixture:
    def __init__(self) -> None:
        self.lead_key = generate_key()
        self.audit = MemoryAuditSink()
        self.node = NodeRunner(
            "sgh",
            generate_key(),
            TrustStore([Peer(name="lead", public_key=_public(self.lead_key))]),
            {"trial": planted_table()},
            audit=self.audit,
            url="http://sgh.test",
            policy=NodePolicy(min_model_rows=5),
        )
        trust = TrustStore([Peer(name="sgh", public_key=self.node.public_key)])
        self.lead = Coordinator("lead", self.lead_key, trust, round_timeout=10.0)

    def run(self, request: dict[str, Any]) -> AnalysisRefused:
        with pytest.raises(AnalysisRefused) as refused:
            asyncio.run(
                self.lead.run_analysis(
                    request, [NodeHandle("sgh")], InProcessTransport({"sgh": self.node})
                )
            )
        return refused.value

    def send(self, request: dict[str, Any], payload: dict[str, Any], session: str) -> Any:
        body = AnalysisTask(
            task_id=new_id(), session=session, round=1, to="sgh", request=request, payload=payload
        ).model_dump(mode="json")
        return asyncio.run(self.node.handle(sign_message(body, self.lead_key, "lead")))["body"]

    def assert_nothing_planted(self, *texts: str) -> None:
        trail = json.dumps(self.audit.events)
        for value in PLANTED:
            # a planted number as a number of its own (-8080.0), not inside a random hex
            # task id or a nonce, where 4 digits turn up by chance
            planted = re.compile(rf"(?<![0-9A-Za-z.]){re.escape(value)}(?![0-9A-Za-z])")
            assert not planted.search(trail), value
            for text in texts:
                assert not planted.search(text), value


def _public(key: Any) -> str:
    from consortia.federation.signing import public_key_b64

    return public_key_b64(key)


@pytest.fixture
def fixture() -> Fixture:
    return Fixture()


@pytest.mark.parametrize(
    ("request_", "rule"),
    [
        ({"kind": "describe", "variable": "regimen"}, "statistics_error"),
        ({"kind": "proportion", "outcome": "regimen"}, "statistics_error"),
        ({"kind": "proportion", "outcome": "bad_event"}, "statistics_error"),
        ({"kind": "kaplan_meier", "time": "bad_time", "event": "died"}, "statistics_error"),
        ({"kind": "kaplan_meier", "time": "days", "event": "bad_event"}, "statistics_error"),
        ({"kind": "kaplan_meier", "time": "days", "event": "died", "group": "regimen"}, None),
        # every cell small: no complementary suppression protects them, the table is refused
        ({"kind": "crosstab", "rows": "regimen", "columns": "arm"}, "small_cells"),
        ({"kind": "cox", "time": "days", "event": "bad_event", "covariates": ["age"]}, None),
        ({"kind": "cox", "time": "bad_time", "event": "died", "covariates": ["age"]}, None),
        (
            {"kind": "glm", "family": "binomial", "outcome": "bad_outcome", "covariates": ["age"]},
            "statistics_error",
        ),
        (
            {"kind": "glm", "family": "poisson", "outcome": "bad_count", "covariates": ["age"]},
            "statistics_error",
        ),
        ({"kind": "glm", "outcome": "age", "covariates": ["regimen"]}, "min_cell_count"),
        (
            {
                "kind": "meta",
                "term": "age",
                "model": {
                    "kind": "glm",
                    "family": "binomial",
                    "outcome": "constant",
                    "covariates": ["age"],
                },
            },
            "statistics_error",
        ),
        ({"kind": "describe", "variable": "no_such_column"}, "invalid_request"),
    ],
)
def test_refusals_name_the_rule_and_never_a_planted_value(
    fixture: Fixture, request_: dict[str, Any], rule: str | None
) -> None:
    refused = fixture.run({**request_, "table": "trial"})
    if rule is not None:
        assert refused.rule == rule
    fixture.assert_nothing_planted(str(refused), json.dumps(refused.refusals))


def test_levels_that_leave_out_one_of_the_nodes_levels_are_refused_by_count(
    fixture: Fixture,
) -> None:
    """The round that once answered "values ['Dexamethasone', 'Pola-R', …] are not among
    the agreed levels": now refused by count, before any design is built."""
    request = {"kind": "glm", "table": "trial", "outcome": "age", "covariates": ["arm"]}
    session = new_id()
    assert fixture.send(request, {"step": "levels"}, session)["status"] == "ok"
    reply = fixture.send(request, {"step": "round", "levels": {"arm": ["b"]}, "beta": []}, session)
    assert (reply["status"], reply["rule"]) == ("refused", "session_mismatch")
    assert reply["message"] == "arm: 1 of this node's levels are not among the round's levels"
    # and with the planted text column: its levels are refused at the levels round already
    planted = {**request, "covariates": ["regimen"]}
    other = new_id()
    reply = fixture.send(planted, {"step": "levels"}, other)
    assert reply["rule"] == "min_cell_count"
    reply = fixture.send(planted, {"step": "round", "levels": {"regimen": []}, "beta": []}, other)
    assert reply["rule"] == "session_not_agreed"
    fixture.assert_nothing_planted(json.dumps(reply))


class _BrokenRequest(AnalysisRequest):
    kind: Literal["broken"]


class _BrokenKind(AnalysisKind[_BrokenRequest]):
    """A kind with a bug whose exception quotes a row's value."""

    name: ClassVar[str] = "broken"
    request_model = _BrokenRequest

    def columns(self, request: _BrokenRequest) -> list[str]:
        return ["regimen"]

    def node_round(
        self, state: Any, request: Any, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        raise ValueError(f"cannot handle {state.column('regimen')[0]!r}")

    async def lead(self, request: _BrokenRequest, exchange: Exchange) -> dict[str, Any]:
        await exchange.round({})
        return {}


@pytest.fixture
def broken_kind() -> Iterator[None]:
    register_kind(_BrokenKind())
    yield
    del KINDS["broken"]


def test_an_unexpected_error_is_audited_by_its_type_and_place_not_its_message(
    fixture: Fixture, broken_kind: None
) -> None:
    refused = fixture.run({"kind": "broken", "table": "trial"})
    assert refused.rule == "internal_error"
    event = fixture.audit.events[-1]
    assert event["error"].startswith("ValueError at test_federation_refusal_messages.py:")
    fixture.assert_nothing_planted(str(refused))
