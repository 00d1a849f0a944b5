"""Three nodes in one process, over push, pull and in-process transports: every federated
result equals the pooled computation (the same ``consortia.stats`` function on the
concatenated records) to 1e-8 relative.

Push runs each node's FastAPI app behind ``httpx.ASGITransport``; pull runs the lead's app
behind ``httpx.ASGITransport`` and one pull worker per node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import numpy as np
import pytest

from consortia.federation.apps import create_lead_app, create_node_app
from consortia.federation.policy import NodePolicy
from consortia.federation.pull import run_pull_worker
from consortia.federation.tables import Table
from consortia.federation.transport import InProcessTransport, PushTransport, Transport
from consortia.stats.agreement import iso15197
from consortia.stats.contingency import crosstab
from consortia.stats.cox import fit_cox
from consortia.stats.descriptive import describe
from consortia.stats.diagnostic import diagnostic_accuracy
from consortia.stats.glm import fit_glm
from consortia.stats.logrank import logrank_test
from consortia.stats.proportions import proportion
from consortia.stats.survival import kaplan_meier

RTOL = 1e-8
TRANSPORTS = ["in_process", "push", "pull"]


class HostRouter(httpx.AsyncBaseTransport):
    """Routes requests to one ASGI app per host name (several nodes, one client)."""

    def __init__(self, apps: Mapping[str, Any]) -> None:
        self.routes = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.routes[request.url.host].handle_async_request(request)


@contextlib.asynccontextmanager
async def connected(federation: Any, kind: str) -> AsyncIterator[Transport]:
    """A transport to the federation's nodes, closed (and workers stopped) afterwards."""
    if kind == "in_process":
        yield InProcessTransport(federation.runners)
        return
    if kind == "push":
        apps = {f"{name}.test": create_node_app(r) for name, r in federation.runners.items()}
        async with httpx.AsyncClient(transport=HostRouter(apps)) as client:
            yield PushTransport(client)
        return
    lead_app = create_lead_app(federation.coordinator)
    stop = asyncio.Event()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=lead_app), timeout=30) as client:
        workers = [
            asyncio.create_task(
                run_pull_worker("http://lead.test", runner, client=client, wait=5, stop=stop)
            )
            for runner in federation.runners.values()
        ]
        try:
            yield federation.coordinator.broker
        finally:
            stop.set()
            await asyncio.gather(*workers)


def run(federation: Any, transport: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run one analysis over the named transport and return the result JSON."""

    async def main() -> dict[str, Any]:
        async with connected(federation, transport) as channel:
            return (
                await federation.coordinator.run_analysis(request, federation.handles, channel)
            ).to_dict()

    return asyncio.run(main())


def close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=RTOL
    )


def assert_complete(result: dict[str, Any], tables: dict[str, Table]) -> None:
    assert result["complete"] is True
    assert result["refusals"] == []
    assert result["missing_nodes"] == []
    assert [node["name"] for node in result["nodes"]] == list(tables)
    assert result["rounds"] >= 1
    assert result["bytes"] > 0


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_describe_over_each_transport_equals_the_pooled_summary(
    make_federation: Any, transport: str, trial_tables: dict[str, Table], pooled: Table
) -> None:
    edges = [-20.0, 3.0, 5.0, 30.0]
    request = {"kind": "describe", "table": "trial", "variable": "biomarker", "bin_edges": edges}
    result = run(make_federation(), transport, request)
    expected = describe(pooled.numeric("biomarker"), bin_edges=edges)
    assert_complete(result, trial_tables)
    assert result["nodes"] == [
        {"name": n, "n": t.n_rows, "excluded": 0} for n, t in trial_tables.items()
    ]
    assert result["exact"] is False  # histogram quantiles, each with its bound
    assert result["rounds"] == 1
    estimates = result["estimates"]
    close(estimates["quantile_max_error"], expected.quantile_max_error)
    assert estimates["n"] == expected.n == pooled.n_rows
    close([estimates["mean"], estimates["sd"]], [expected.mean, expected.sd])
    close(estimates["quantiles"], expected.quantiles)
    assert estimates["bin_counts"] == list(expected.bin_counts)


def test_kaplan_meier_over_each_transport_equals_the_pooled_curves_and_logrank(
    make_federation: Any, transport: str, trial_tables: dict[str, Table], pooled: Table
) -> None:
    request = {
        "kind": "kaplan_meier",
        "table": "trial",
        "time": "pfs_days",
        "event": "pfs_event",
        "group": "arm",
    }
    result = run(make_federation(), transport, request)
    assert_complete(result, trial_tables)
    time, event, arm = pooled.numeric("pfs_days"), pooled.numeric("pfs_event"), pooled.column("arm")
    expected = kaplan_meier(time, event, arm, time_bin=7)
    curves = result["estimates"]["groups"]
    assert set(curves) == {"car_t", "soc"}
    for group, curve in expected.groups.items():
        got = curves[group]
        close(got["time"], curve.time)
        close(got["at_risk"], curve.at_risk)
        close(got["survival"], curve.survival)
        close(got["se"], curve.se)
        close(got["ci_lower"], curve.ci_lower)
        assert got["median"] == pytest.approx(curve.median, rel=RTOL)
    logrank = logrank_test(time, event, arm, time_bin=7)
    got_logrank = result["estimates"]["logrank"]
    close([got_logrank["statistic"], got_logrank["p_value"]], [logrank.statistic, logrank.p_value])


def test_logistic_glm_over_each_transport_equals_the_pooled_fit(
    make_federation: Any, transport: str, trial_tables: dict[str, Table], pooled: Table
) -> None:
    request = {
        "kind": "glm",
        "family": "binomial",
        "table": "trial",
        "outcome": "response",
        "covariates": ["age", "arm"],
    }
    result = run(make_federation(), transport, request)
    assert_complete(result, trial_tables)
    expected = fit_glm(
        pooled.numeric("response"),
        {"age": pooled.numeric("age"), "arm": pooled.column("arm")},
        ["age", "arm"],
        family="binomial",
    )
    estimates = result["estimates"]
    assert estimates["covariates"] == list(expected.covariates)
    assert estimates["converged"] is True
    names = list(expected.covariates)
    close([estimates["coef"][name] for name in names], expected.coef)
    close([estimates["se"][name] for name in names], expected.se)
    close(estimates["deviance"], expected.deviance)
    close(estimates["null_deviance"], expected.null_deviance)
    assert result["rounds"] == 1 + expected.rounds  # the levels round, then IRLS rounds


def test_cox_stratified_by_node_over_each_transport_equals_the_pooled_stratified_fit(
    make_federation: Any,
    transport: str,
    trial_tables: dict[str, Table],
    pooled: Table,
    node_labels: Any,
) -> None:
    request = {
        "kind": "cox",
        "table": "trial",
        "time": "pfs_days",
        "event": "pfs_event",
        "covariates": ["age", "arm"],
        "ties": "efron",
        "strata": ["node"],
    }
    result = run(make_federation(), transport, request)
    assert_complete(result, trial_tables)
    expected = fit_cox(
        pooled.numeric("pfs_days"),
        pooled.numeric("pfs_event"),
        {"age": pooled.numeric("age"), "arm": pooled.column("arm")},
        ties="efron",
        strata=node_labels,
    )
    estimates = result["estimates"]
    names = list(expected.covariates)
    assert estimates["covariates"] == names
    assert estimates["stratified"] is True
    close([estimates["coef"][name] for name in names], expected.coef)
    close([estimates["se"][name] for name in names], expected.se)
    close(estimates["loglik"], expected.loglik)


def test_unstratified_breslow_cox_from_binned_time_sums_equals_the_pooled_binned_fit(
    make_federation: Any, trial_tables: dict[str, Table], pooled: Table
) -> None:
    request = {
        "kind": "cox",
        "table": "trial",
        "time": "pfs_days",
        "event": "pfs_event",
        "covariates": ["age", "arm"],
        "ties": "breslow",
    }
    # The per-time sums of 7-day bins hold a few subjects each: the default policy refuses
    # them (rows per released time); this test is about the arithmetic, so the nodes'
    # stewards allow any count here.
    federation = make_federation(policy=NodePolicy(min_cell_count=1))
    result = run(federation, "in_process", request)
    assert_complete(result, trial_tables)
    expected = fit_cox(
        pooled.numeric("pfs_days"),
        pooled.numeric("pfs_event"),
        {"age": pooled.numeric("age"), "arm": pooled.column("arm")},
        ties="breslow",
        time_bin=7,
    )
    estimates = result["estimates"]
    assert estimates["time_bin"] == 7
    assert estimates["stratified"] is False
    close([estimates["coef"][name] for name in expected.covariates], expected.coef)
    close([estimates["se"][name] for name in expected.covariates], expected.se)


def test_crosstab_and_proportion_equal_the_pooled_counts(
    make_federation: Any, pooled: Table
) -> None:
    federation = make_federation()
    table = run(
        federation,
        "in_process",
        {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "response"},
    )["estimates"]
    expected = crosstab(pooled.column("arm"), pooled.numeric("response").astype(int))
    assert table["table"] == [list(row) for row in expected.table]
    close([table["chi2"], table["p_value"]], [expected.chi2, expected.p_value])
    share = run(
        federation, "in_process", {"kind": "proportion", "table": "trial", "outcome": "response"}
    )["estimates"]
    reference = proportion(pooled.numeric("response"))
    assert share["successes"] == reference.successes
    assert share["n"] == reference.n
    close(share["wilson"], reference.wilson)


def test_meta_analysis_of_local_fits_is_labelled_not_exact(make_federation: Any) -> None:
    request = {
        "kind": "meta",
        "table": "trial",
        "term": "arm[T.soc]",
        "model": {
            "kind": "glm",
            "family": "binomial",
            "outcome": "response",
            "covariates": ["arm"],
        },
    }
    result = run(make_federation(), "in_process", request)
    assert result["exact"] is False
    assert result["estimates"]["labels"] == ["sgh", "ruijin", "nuh"]
    assert result["estimates"]["term"] == "arm[T.soc]"


def test_glucose_accuracy_and_diagnostic_accuracy_equal_the_pooled_counts(
    make_federation: Any, pooled: Table
) -> None:
    # Rare error-grid zones hold 1–4 readings per node: this consortium's policy allows it.
    federation = make_federation(policy=NodePolicy(min_cell_count=1))
    glucose = run(
        federation,
        "in_process",
        {"kind": "iso15197", "table": "trial", "reference": "ref_mgdl", "device": "meter_mgdl"},
    )["estimates"]
    expected = iso15197(pooled.numeric("ref_mgdl"), pooled.numeric("meter_mgdl")).to_dict()
    assert glucose["n"] == expected["n"] == pooled.n_rows
    assert glucose["parkes_type1"] == expected["parkes_type1"]
    close(glucose["mard_pct"], expected["mard_pct"])
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    reads = run(
        federation,
        "in_process",
        {
            "kind": "diagnostic",
            "table": "trial",
            "score": "ai_score",
            "truth": "biopsy",
            "thresholds": grid,
        },
    )["estimates"]
    reference = diagnostic_accuracy(
        pooled.numeric("ai_score"), pooled.numeric("biopsy"), thresholds=grid
    )
    assert (reads["tp"], reads["fp"], reads["fn"], reads["tn"]) == (
        reference.tp,
        reference.fp,
        reference.fn,
        reference.tn,
    )
    close(reads["auc"], reference.auc)
