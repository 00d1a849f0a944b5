"""A node that does not answer fails the analysis naming it, or, with ``allow_partial``,
is left out and the result says so; nothing partial is reported as complete."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from consortia.exceptions import NodeUnavailableError
from consortia.federation.tables import Table, concat_tables
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.stats.glm import fit_glm

DESCRIBE = {"kind": "describe", "table": "trial", "variable": "age", "timeout": 2.0}
GLM = {
    "kind": "glm",
    "family": "binomial",
    "table": "trial",
    "outcome": "response",
    "covariates": ["age", "arm"],
    "timeout": 2.0,
}


class SilentAfter(InProcessTransport):
    """Delivers to every node, except that ``silent`` stops answering after ``answers``."""

    def __init__(self, runners: Mapping[str, Any], silent: str, answers: int = 0) -> None:
        super().__init__(runners)
        self.silent = silent
        self.answers = answers

    async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
        if node.name == self.silent:
            if self.answers <= 0:
                await asyncio.sleep(3600)
            self.answers -= 1
        return await super().send(node, message)


def analyze(federation: Any, request: dict[str, Any], transport: Any) -> dict[str, Any]:
    return asyncio.run(
        federation.coordinator.run_analysis(request, federation.handles, transport)
    ).to_dict()


def test_a_node_that_does_not_answer_in_time_fails_the_analysis_naming_it(
    make_federation: Any,
) -> None:
    federation = make_federation()
    with pytest.raises(NodeUnavailableError) as unavailable:
        analyze(federation, DESCRIBE, SilentAfter(federation.runners, "ruijin"))
    assert unavailable.value.node == "ruijin"
    assert "ruijin" in str(unavailable.value)
    assert "2 s" in str(unavailable.value)


def test_with_allow_partial_a_silent_node_is_left_out_and_the_result_is_not_complete(
    make_federation: Any, trial_tables: dict[str, Table]
) -> None:
    federation = make_federation()
    request = {**DESCRIBE, "allow_partial": True}
    result = analyze(federation, request, SilentAfter(federation.runners, "ruijin"))
    assert result["complete"] is False
    assert result["missing_nodes"] == ["ruijin"]
    assert [node["name"] for node in result["nodes"]] == ["sgh", "nuh"]
    kept = np.concatenate([trial_tables[name].numeric("age") for name in ("sgh", "nuh")])
    assert result["estimates"]["n"] == kept.size
    assert result["estimates"]["mean"] == pytest.approx(kept.mean(), rel=1e-12)


def test_a_node_lost_during_newton_rounds_restarts_the_fit_without_it(
    make_federation: Any, trial_tables: dict[str, Table]
) -> None:
    federation = make_federation()
    request = {**GLM, "allow_partial": True}
    result = analyze(federation, request, SilentAfter(federation.runners, "nuh", answers=3))
    assert result["complete"] is False
    assert result["missing_nodes"] == ["nuh"]
    assert [node["name"] for node in result["nodes"]] == ["sgh", "ruijin"]
    kept = concat_tables([trial_tables["sgh"], trial_tables["ruijin"]])
    expected = fit_glm(
        kept.numeric("response"),
        {"age": kept.numeric("age"), "arm": kept.column("arm")},
        ["age", "arm"],
        family="binomial",
    )
    coef = [result["estimates"]["coef"][name] for name in expected.covariates]
    np.testing.assert_allclose(coef, expected.coef, rtol=1e-8)
    assert result["estimates"]["n"] == kept.n_rows


def test_when_every_node_is_silent_even_a_partial_analysis_fails(make_federation: Any) -> None:
    federation = make_federation()

    class Silent(InProcessTransport):
        async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

    with pytest.raises(NodeUnavailableError, match="no node answered"):
        analyze(federation, {**DESCRIBE, "allow_partial": True}, Silent(federation.runners))


def test_an_unreachable_push_node_is_unavailable_not_a_crash(make_federation: Any) -> None:
    import httpx

    from consortia.federation.transport import PushTransport

    federation = make_federation()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
            return (
                await federation.coordinator.run_analysis(
                    DESCRIBE, federation.handles, PushTransport(client)
                )
            ).to_dict()

    with pytest.raises(NodeUnavailableError) as unavailable:
        asyncio.run(main())
    assert unavailable.value.node == "sgh"
    assert "cannot be reached" in str(unavailable.value)
