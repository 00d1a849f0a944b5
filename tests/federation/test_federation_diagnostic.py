"""The ``diagnostic`` kind over HTTP (three node apps behind ``httpx.ASGITransport``): the
AUC says ``exact`` only when it is the Mann–Whitney AUC of the pooled scores, and bounds
its error otherwise.

References: ``scipy.stats.mannwhitneyu`` (U / (n₁ n₀)) on the pooled scores — 1e-12
relative when exact, within ``auc_max_error`` when not; DeLong's variance from its
definition (:func:`delong_reference`, as in tests/stats/test_diagnostic.py) — 1e-12
relative on the grid, 2 % relative for continuous scores.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats as sps
from test_federation_transports import HostRouter

from consortia.federation.apps import create_node_app
from consortia.federation.policy import NodePolicy
from consortia.federation.tables import read_table
from consortia.federation.transport import PushTransport

REQUEST = {"kind": "diagnostic", "table": "reads", "score": "ai_score", "truth": "biopsy"}
# Per-threshold counts near the ends of the 0.01 grid are small: this consortium allows it.
POLICY = NodePolicy(min_cell_count=1)


def delong_reference(positives: Any, negatives: Any) -> tuple[float, float]:
    """AUC and DeLong SE from the definition: ψ(x, y) = 1 if x > y, ½ if x = y, else 0."""
    psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives)
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    variance = v10.var(ddof=1) / positives.size + v01.var(ddof=1) / negatives.size
    return float(psi.mean()), math.sqrt(variance)


def _federate(make_federation: Any, tmp_path: Path, scores: Any, truth: Any) -> dict[str, Any]:
    tables = {}
    cuts = [110, 200]
    for name, node_scores, node_truth in zip(
        ["sgh", "ruijin", "nuh"], np.split(scores, cuts), np.split(truth, cuts), strict=True
    ):
        lines = [f"{float(s)!r},{int(t)}" for s, t in zip(node_scores, node_truth, strict=True)]
        path = tmp_path / "reads" / name / "reads.csv"
        path.parent.mkdir(parents=True)
        path.write_text("ai_score,biopsy\n" + "\n".join(lines) + "\n", encoding="utf-8")
        tables[name] = read_table(path)
    federation = make_federation(policy=POLICY, tables=tables)
    apps = {f"{name}.test": create_node_app(r) for name, r in federation.runners.items()}

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=HostRouter(apps)) as client:
            return await federation.coordinator.run_analysis(
                REQUEST, federation.handles, PushTransport(client)
            )

    result: dict[str, Any] = asyncio.run(main())
    assert result["complete"] is True
    assert [node["n"] for node in result["nodes"]] == [110, 90, 100]
    return result


def _cases(decimals: int | None) -> tuple[Any, Any]:
    rng = np.random.default_rng(2026)
    truth = (rng.random(300) < 0.4).astype(int)
    scores = 1 / (1 + np.exp(-rng.normal(-0.5 + 1.6 * truth, 1.0)))
    return (scores if decimals is None else scores.round(decimals)), truth


def _mann_whitney_auc(scores: Any, truth: Any) -> float:
    positives, negatives = scores[truth == 1], scores[truth == 0]
    u = sps.mannwhitneyu(positives, negatives).statistic
    return float(u / (positives.size * negatives.size))


def test_continuous_scores_over_three_nodes_are_labelled_not_exact_with_their_bound(
    make_federation: Any, tmp_path: Path
) -> None:
    scores, truth = _cases(decimals=None)
    result = _federate(make_federation, tmp_path, scores, truth)
    estimates = result["estimates"]
    assert result["exact"] is False
    assert estimates["exact"] is False
    error = abs(estimates["auc"] - _mann_whitney_auc(scores, truth))
    assert 0 < error <= estimates["auc_max_error"]
    _, se = delong_reference(scores[truth == 1], scores[truth == 0])
    assert estimates["auc_se"] == pytest.approx(se, rel=0.02)
    assert estimates["auc_se_method"] == "DeLong on the grid bins (approximate)"


def test_scores_on_the_grid_over_three_nodes_give_the_exact_mann_whitney_auc(
    make_federation: Any, tmp_path: Path
) -> None:
    scores, truth = _cases(decimals=2)
    result = _federate(make_federation, tmp_path, scores, truth)
    estimates = result["estimates"]
    assert result["exact"] is True
    assert estimates["exact"] is True
    assert estimates["auc_max_error"] == 0.0
    assert estimates["auc"] == pytest.approx(_mann_whitney_auc(scores, truth), rel=1e-12)
    _, se = delong_reference(scores[truth == 1], scores[truth == 0])
    assert estimates["auc_se"] == pytest.approx(se, rel=1e-12)
    assert estimates["auc_se_method"] == "DeLong"
