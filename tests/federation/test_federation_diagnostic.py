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
import contextlib
import itertools
import json
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
from consortia.stats.diagnostic import DEFAULT_THRESHOLDS

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
            return (
                await federation.coordinator.run_analysis(
                    REQUEST, federation.handles, PushTransport(client)
                )
            ).to_dict()

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


# --------------------------------------------------------------------------- small bins
# The ROC counts are cumulative (cases scoring at or above each threshold): the lead
# subtracts two adjacent ones to get the cases between them. With the default minimum cell
# count of 5, that difference must be 0 or at least 5 for each class, as every released
# count is.


class RecordingRouter(HostRouter):
    """A :class:`HostRouter` that keeps every reply body the lead receives over HTTP."""

    def __init__(self, apps: Any) -> None:
        super().__init__(apps)
        self.bodies: list[Any] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        body = await response.aread()
        with contextlib.suppress(ValueError):
            self.bodies.append(json.loads(body))
        return httpx.Response(response.status_code, headers=response.headers, content=body)


def _releases(value: Any) -> list[dict[str, Any]]:
    """Every diagnostic release (a dict with ``tp_at``) inside the recorded bodies."""
    if isinstance(value, dict):
        found = [value] if "tp_at" in value else []
        return found + [r for item in value.values() for r in _releases(item)]
    if isinstance(value, list):
        return [r for item in value for r in _releases(item)]
    return []


def _differences(release: dict[str, Any]) -> list[int]:
    """What the lead gets by subtracting adjacent released cumulative counts (the 2×2
    threshold is a cut too: tp and fp are counts at or above it)."""
    cuts = sorted({*release["thresholds"], release["threshold"]})
    differences = []
    for above, at_threshold, total in (
        ("tp_at", "tp", release["tp"] + release["fn"]),
        ("fp_at", "fp", release["fp"] + release["tn"]),
    ):
        at = dict(zip(release["thresholds"], release[above], strict=True))
        at[release["threshold"]] = release[at_threshold]
        cumulative = [total, *(at[cut] for cut in cuts), 0]
        differences += [a - b for a, b in itertools.pairwise(cumulative)]
    return differences


def _run(
    make_federation: Any, tmp_path: Path, nodes: dict[str, tuple[Any, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tables = {}
    for name, (node_scores, node_truth) in nodes.items():
        lines = [f"{float(s)!r},{int(t)}" for s, t in zip(node_scores, node_truth, strict=True)]
        path = tmp_path / "reads" / name / "reads.csv"
        path.parent.mkdir(parents=True)
        path.write_text("ai_score,biopsy\n" + "\n".join(lines) + "\n", encoding="utf-8")
        tables[name] = read_table(path)
    federation = make_federation(policy=NodePolicy(), tables=tables)  # min_cell_count 5
    apps = {f"{name}.test": create_node_app(r) for name, r in federation.runners.items()}
    router = RecordingRouter(apps)

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=router) as client:
            return (
                await federation.coordinator.run_analysis(
                    REQUEST, federation.handles, PushTransport(client)
                )
            ).to_dict()

    result: dict[str, Any] = asyncio.run(main())
    return result, _releases(router.bodies)


def _on_grid_node(rng: Any) -> tuple[Any, Any]:
    """Scores 0.1, 0.2, …, 0.9 (on the grid), each held by 0 or 5 to 8 cases of a class:
    every bin of the 0.01 grid is releasable as it is."""
    scores: list[float] = []
    truth: list[int] = []
    for value in np.arange(1, 10) / 10:
        for state, rate in ((1, value), (0, 1 - value)):
            count = int(rng.integers(5, 9)) if rng.random() < rate else 0
            scores += [round(float(value), 2)] * count
            truth += [state] * count
    return np.array(scores), np.array(truth)


def test_one_positive_in_a_narrow_band_is_not_released_as_a_difference_of_roc_counts(
    make_federation: Any, tmp_path: Path
) -> None:
    # sgh: every 2×2 cell and every cumulative count is 0 or ≥ 10, but exactly one
    # positive scores 0.42: on the 0.01 grid, tp_at[0.42] − tp_at[0.43] would be 1
    sgh = (
        np.array([0.3] * 10 + [0.42] + [0.8] * 10 + [0.2] * 10 + [0.6] * 10),
        np.array([1] * 21 + [0] * 20),
    )
    rng = np.random.default_rng(11)
    others = {name: _on_grid_node(rng) for name in ("ruijin", "nuh")}
    result, releases = _run(make_federation, tmp_path, {"sgh": sgh, **others})

    assert result["complete"] is True
    assert len(releases) == 3
    for release in releases:
        small = [d for d in _differences(release) if 0 < d < 5]
        assert small == [], f"a bin of {small} cases follows from the released counts"
    scores = np.concatenate([sgh[0], others["ruijin"][0], others["nuh"][0]])
    truth = np.concatenate([sgh[1], others["ruijin"][1], others["nuh"][1]])
    estimates = result["estimates"]
    assert 0.42 not in estimates["thresholds"]
    # every score is on the agreed grid, but merged bins hold several of its values
    assert estimates["exact"] is False
    error = abs(estimates["auc"] - _mann_whitney_auc(scores, truth))
    assert error <= estimates["auc_max_error"] + 1e-12
    assert estimates["auc_se_method"] == "DeLong on the grid bins (approximate)"


def test_scores_on_the_grid_with_enough_cases_per_bin_stay_exact_under_the_minimum(
    make_federation: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    nodes = {name: _on_grid_node(rng) for name in ("sgh", "ruijin", "nuh")}
    result, releases = _run(make_federation, tmp_path, nodes)

    assert result["complete"] is True
    assert len(releases) == 3
    assert all(release["thresholds"] == list(DEFAULT_THRESHOLDS) for release in releases)
    estimates = result["estimates"]
    assert estimates["exact"] is True
    assert estimates["auc_max_error"] == 0.0
    scores = np.concatenate([s for s, _ in nodes.values()])
    truth = np.concatenate([t for _, t in nodes.values()])
    assert estimates["auc"] == pytest.approx(_mann_whitney_auc(scores, truth), rel=1e-12)
    _, se = delong_reference(scores[truth == 1], scores[truth == 0])
    assert estimates["auc_se"] == pytest.approx(se, rel=1e-12)
