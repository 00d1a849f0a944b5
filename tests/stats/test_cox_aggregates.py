"""Per-time Cox sums on the wire (packed, lossless) and the vectorised partial likelihood."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from consortia.exceptions import StatisticsError
from consortia.stats.cox_aggregates import (
    CoxStratumAggregates,
    CoxStratumRecords,
    CoxTimeSums,
    combine_cox_time_sums,
    partial_likelihood,
)
from consortia.stats.glm_node import GlmAggregates, GlmNodeData

FloatArray = npt.NDArray[np.float64]


def records(seed: int, n: int = 300, p: int = 4, *, ties: int = 40) -> CoxStratumRecords:
    """Subjects with many tied times (``ties`` distinct times), events and censorings."""
    rng = np.random.default_rng(seed)
    time = rng.integers(1, ties + 1, size=n).astype(np.float64)
    event = rng.random(n) < 0.6
    x = rng.normal(size=(n, p))
    return CoxStratumRecords(time, event, x)


def same(a: FloatArray | None, b: FloatArray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_sums(a: CoxTimeSums, b: CoxTimeSums) -> None:
    assert (a.ties, a.shift, a.n) == (b.ties, b.shift, b.n)
    for name in ("times", "risk0", "risk1", "risk2", "event_x", "tied0", "tied1", "tied2"):
        assert same(getattr(a, name), getattr(b, name)), name
    assert a.events.tolist() == b.events.tolist()


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("arrays", [False, True])
def test_time_sums_cross_the_network_bit_for_bit(ties: Any, arrays: bool) -> None:
    sums = records(1).time_sums(np.array([0.3, -0.2, 0.1, 0.5]), ties)
    data = sums.to_dict(arrays=arrays)
    if not arrays:
        data = json.loads(json.dumps(data, allow_nan=False))
    assert_same_sums(CoxTimeSums.from_dict(data), sums)


def test_the_wire_form_holds_upper_triangles_and_only_the_tied_sums_that_differ() -> None:
    sums = records(2, p=4).time_sums(np.zeros(4), "efron")
    data = sums.to_dict(arrays=True)
    t = sums.times.size
    assert data["risk2"].shape == (t, 10)  # 4 * 5 / 2, not 16
    rows = np.flatnonzero(sums.events > 0)
    assert sums.tied0 is not None
    differs = rows[sums.tied0[rows] != sums.risk0[rows]]
    assert data["tied_rows"].tolist() == differs.tolist()
    assert data["tied2"].shape == (differs.size, 10)


def test_times_where_everyone_had_the_event_send_no_tied_sums() -> None:
    x = np.array([[0.5], [1.0], [0.2], [0.7]])
    sums = CoxStratumRecords(np.array([1.0, 1.0, 2.0, 3.0]), np.ones(4, dtype=bool), x)
    data = sums.time_sums(np.array([0.4]), "efron").to_dict()
    assert data["tied_rows"] == []
    back = CoxTimeSums.from_dict(json.loads(json.dumps(data)))
    assert_same_sums(back, sums.time_sums(np.array([0.4]), "efron"))


def test_the_unpacked_layout_of_earlier_nodes_is_still_read() -> None:
    sums = records(3).time_sums(np.full(4, 0.1), "efron")
    full = {
        "kind": "cox_time_sums",
        "ties": "efron",
        "times": sums.times.tolist(),
        "shift": sums.shift,
        "risk0": sums.risk0.tolist(),
        "risk1": sums.risk1.tolist(),
        "risk2": sums.risk2.tolist(),
        "events": sums.events.tolist(),
        "event_x": sums.event_x.tolist(),
        "tied0": None if sums.tied0 is None else sums.tied0.tolist(),
        "tied1": None if sums.tied1 is None else sums.tied1.tolist(),
        "tied2": None if sums.tied2 is None else sums.tied2.tolist(),
        "n": sums.n,
    }
    assert_same_sums(CoxTimeSums.from_dict(full), sums)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tied_rows": [10_000]}, "tied_rows outside"),
        ({"tied_rows": None}, "Efron ties need"),
        ({"risk2": [[1.0]]}, "shape"),
    ],
)
def test_malformed_time_sums_are_refused(change: dict[str, Any], message: str) -> None:
    data = records(4).time_sums(np.zeros(4), "efron").to_dict()
    with pytest.raises(StatisticsError, match=message):
        CoxTimeSums.from_dict({**data, **change})


def test_stratum_aggregates_keep_arrays_for_the_wire() -> None:
    sums = records(5).time_sums(np.zeros(4), "efron")
    loglik, gradient, hessian = partial_likelihood(sums, np.zeros(4))
    aggregates = CoxStratumAggregates("efron", loglik, gradient, hessian, sums.n, sums.n_events)
    data = aggregates.to_dict(arrays=True)
    assert isinstance(data["hessian"], np.ndarray)
    back = CoxStratumAggregates.from_dict(data)
    assert same(back.hessian, hessian)
    assert same(back.gradient, gradient)


def test_glm_aggregates_keep_arrays_for_the_wire() -> None:
    design = np.column_stack([np.ones(6), np.arange(6.0)])
    aggregates = GlmNodeData([0, 1, 0, 1, 1, 1], design, family="binomial").round(np.zeros(2))
    data = aggregates.to_dict(arrays=True)
    assert isinstance(data["xtwx"], np.ndarray)
    back = GlmAggregates.from_dict(data)
    assert same(back.xtwx, aggregates.xtwx)
    assert back.deviance == aggregates.deviance


def reference_partial_likelihood(
    time: FloatArray, event: npt.NDArray[np.bool_], x: FloatArray, beta: FloatArray, ties: str
) -> tuple[float, FloatArray, FloatArray]:
    """Efron/Breslow partial likelihood written plainly, one event time at a time."""
    p = beta.size
    weight = np.exp(x @ beta)
    loglik, gradient, hessian = 0.0, np.zeros(p), np.zeros((p, p))
    for t in np.unique(time[event]):
        at_risk = time >= t
        dead = (time == t) & event
        d = int(dead.sum())
        s0, s1 = weight[at_risk].sum(), (x[at_risk] * weight[at_risk, None]).sum(axis=0)
        s2 = np.einsum("n,ni,nj->ij", weight[at_risk], x[at_risk], x[at_risk])
        t0, t1 = weight[dead].sum(), (x[dead] * weight[dead, None]).sum(axis=0)
        t2 = np.einsum("n,ni,nj->ij", weight[dead], x[dead], x[dead])
        loglik += float(x[dead].sum(axis=0) @ beta)
        gradient += x[dead].sum(axis=0)
        for k in range(d):
            f = k / d if ties == "efron" else 0.0
            phi, first, second = s0 - f * t0, s1 - f * t1, s2 - f * t2
            mean = first / phi
            loglik -= math.log(phi)
            gradient -= mean
            hessian -= second / phi - np.outer(mean, mean)
    return loglik, gradient, hessian


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_partial_likelihood_equals_the_textbook_loop_over_event_times(ties: Any) -> None:
    rng = np.random.default_rng(6)
    time = rng.integers(1, 30, size=200).astype(np.float64)
    event = rng.random(200) < 0.7
    x = rng.normal(size=(200, 3))
    beta = np.array([0.4, -0.3, 0.2])
    parts = [CoxStratumRecords(time[i::3], event[i::3], x[i::3]) for i in range(3)]
    combined = combine_cox_time_sums([part.time_sums(beta, ties) for part in parts])
    ours = partial_likelihood(combined, beta)
    theirs = reference_partial_likelihood(time, event, x, beta, ties)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-10, atol=1e-12)
