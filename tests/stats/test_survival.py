"""Kaplan–Meier and log-rank from node counts equal the pooled-record references.

References, on the pooled records of data split across three nodes:

* lifelines ``KaplanMeierFitter`` — ``survival_function_``, ``confidence_interval_``
  (log(-log) "exponential Greenwood"), ``event_table.at_risk``, ``median_survival_time_`` and
  ``median_survival_times(confidence_interval_)``;
* statsmodels ``SurvfuncRight.surv_prob_se`` — Greenwood standard errors;
* lifelines ``logrank_test`` / ``multivariate_logrank_test`` and statsmodels ``survdiff``
  (with ``strata``) — log-rank chi-square.

Tolerance: 1e-8 relative (``RTOL``) on every estimate; times and counts compare exactly.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_lung, load_rossi, load_waltons
from lifelines.statistics import logrank_test as lifelines_logrank
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import median_survival_times
from scipy.stats import chi2
from statsmodels.duration.survfunc import SurvfuncRight, survdiff

from consortia.exceptions import StatisticsError
from consortia.stats.logrank import logrank_from_counts, logrank_test
from consortia.stats.survival import (
    KaplanMeierResult,
    SurvivalCounts,
    combine_survival_counts,
    kaplan_meier,
    kaplan_meier_from_counts,
    survival_counts,
)

RTOL = 1e-8


def _node_of(n: int, seed: int = 7) -> npt.NDArray[np.int64]:
    """Assign rows to three nodes at random (uneven sizes, like real hospitals)."""
    return np.random.default_rng(seed).choice(3, size=n, p=[0.5, 0.3, 0.2])


def _node_counts(frame: pd.DataFrame, time_bin: float | None = 1.0) -> list[SurvivalCounts]:
    node = _node_of(len(frame))
    return [
        survival_counts(
            frame["time"][node == k],
            frame["event"][node == k],
            frame["group"][node == k],
            time_bin=time_bin,
        )
        for k in range(3)
    ]


def _json_round_trip(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(data, allow_nan=False))
    return result


def _waltons() -> pd.DataFrame:
    data = load_waltons()
    return pd.DataFrame({"time": data["T"], "event": data["E"], "group": data["group"]})


def _lung() -> pd.DataFrame:
    data = load_lung().dropna()
    return pd.DataFrame({"time": data["time"], "event": data["status"], "group": data["sex"]})


def _rossi() -> pd.DataFrame:
    data = load_rossi()
    return pd.DataFrame({"time": data["week"], "event": data["arrest"], "group": data["fin"]})


def _synthetic() -> pd.DataFrame:
    rng = np.random.default_rng(2024)
    n = 600
    group = rng.choice(["car_t", "soc", "placebo"], size=n)
    scale = np.select([group == "car_t", group == "soc"], [400.0, 250.0], 150.0)
    event_time = np.ceil(rng.exponential(scale))  # whole days: many ties
    censor_time = np.ceil(rng.uniform(30, 700, size=n))
    return pd.DataFrame(
        {
            "time": np.minimum(event_time, censor_time),
            "event": (event_time <= censor_time).astype(int),
            "group": group,
        }
    )


DATASETS = {"waltons": _waltons, "lung": _lung, "rossi": _rossi, "synthetic": _synthetic}


def _assert_matches_lifelines(result: KaplanMeierResult, frame: pd.DataFrame) -> None:
    labels = {str(value): value for value in frame["group"].unique()}
    assert sorted(result.groups) == sorted(labels)
    for label, curve in result.groups.items():
        rows = frame["group"] == labels[label]
        fitter = KaplanMeierFitter().fit(frame["time"][rows], frame["event"][rows])
        np.testing.assert_array_equal(curve.time, fitter.survival_function_.index.to_numpy())
        np.testing.assert_array_equal(curve.at_risk, fitter.event_table["at_risk"].to_numpy())
        np.testing.assert_allclose(
            curve.survival, fitter.survival_function_.to_numpy()[:, 0], rtol=RTOL, atol=0
        )
        bands = fitter.confidence_interval_.to_numpy()
        np.testing.assert_allclose(curve.ci_lower, bands[:, 0], rtol=RTOL, atol=0)
        np.testing.assert_allclose(curve.ci_upper, bands[:, 1], rtol=RTOL, atol=0)
        assert curve.median == fitter.median_survival_time_
        median_bands = median_survival_times(fitter.confidence_interval_).to_numpy()[0]
        assert (curve.median_ci_lower, curve.median_ci_upper) == tuple(median_bands)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_kaplan_meier_from_three_nodes_equals_lifelines_on_pooled_records(dataset: str) -> None:
    frame = DATASETS[dataset]()
    result = kaplan_meier_from_counts(_node_counts(frame))
    _assert_matches_lifelines(result, frame)


def test_binned_times_equal_lifelines_on_pooled_times_floored_to_the_bin() -> None:
    frame = _lung()
    result = kaplan_meier_from_counts(_node_counts(frame, time_bin=7))
    binned = frame.assign(time=np.floor(frame["time"] / 7) * 7)
    _assert_matches_lifelines(result, binned)
    assert result.time_bin == 7
    assert all((curve.time % 7 == 0).all() for curve in result.curves)


def test_greenwood_standard_errors_equal_statsmodels_at_event_times() -> None:
    frame = _synthetic()
    result = kaplan_meier_from_counts(_node_counts(frame))
    for label, curve in result.groups.items():
        rows = frame["group"] == label
        reference = SurvfuncRight(frame["time"][rows].to_numpy(), frame["event"][rows].to_numpy())
        at = np.searchsorted(curve.time, reference.surv_times)
        np.testing.assert_array_equal(curve.time[at], reference.surv_times)
        np.testing.assert_allclose(curve.survival[at], reference.surv_prob, rtol=RTOL)
        np.testing.assert_allclose(curve.se[at], reference.surv_prob_se, rtol=RTOL)


def test_node_counts_add_up_to_the_counts_of_the_pooled_records() -> None:
    frame = _synthetic()
    combined = combine_survival_counts(_node_counts(frame))
    pooled = survival_counts(frame["time"], frame["event"], frame["group"])
    assert combined.groups == pooled.groups == ("car_t", "placebo", "soc")
    np.testing.assert_array_equal(combined.times, pooled.times)
    np.testing.assert_array_equal(combined.events, pooled.events)
    np.testing.assert_array_equal(combined.censored, pooled.censored)
    assert combined.n == pooled.n == len(frame)


def test_times_are_reported_at_the_start_of_their_bin() -> None:
    counts = survival_counts([0.5, 6.9, 7.0, 13.99, 15], [1, 0, 1, 1, 0], time_bin=7)
    assert counts.times.tolist() == [0.0, 7.0, 14.0]
    assert counts.events.tolist() == [[1, 2, 0]]
    assert counts.censored.tolist() == [[1, 0, 1]]
    assert counts.n_at_start.tolist() == [5]


def test_counts_survive_a_json_round_trip_unchanged() -> None:
    counts = _node_counts(_synthetic(), time_bin=7)[1]
    wire = _json_round_trip(counts.to_dict())
    back = SurvivalCounts.from_dict(wire)
    assert back.groups == counts.groups
    assert back.time_bin == 7
    np.testing.assert_array_equal(back.times, counts.times)
    np.testing.assert_array_equal(back.events, counts.events)
    np.testing.assert_array_equal(back.censored, counts.censored)
    assert wire["n"] == counts.n


def test_counts_with_different_time_bins_are_refused() -> None:
    a = survival_counts([1, 2], [1, 1], time_bin=1)
    b = survival_counts([1, 2], [1, 1], time_bin=7)
    with pytest.raises(StatisticsError, match="different time bins"):
        combine_survival_counts([a, b])


def test_result_dict_is_json_ready_and_keyed_by_group_label() -> None:
    frame = _lung()
    data = _json_round_trip(kaplan_meier(frame["time"], frame["event"], frame["group"]).to_dict())
    assert set(data["groups"]) == {"1", "2"}
    curve = data["groups"]["1"]
    keys = {"time", "survival", "at_risk", "median", "ci_lower", "ci_upper", "se"}
    assert keys <= set(curve)
    assert len(curve["time"]) == len(curve["survival"]) == len(curve["at_risk"])


def test_median_not_reached_is_infinite_and_null_in_json() -> None:
    result = kaplan_meier([5, 8, 12, 20], [1, 0, 0, 0])
    curve = result.groups["all"]
    assert curve.median == np.inf
    assert result.to_dict()["groups"]["all"]["median"] is None


def test_summary_lists_each_group_with_its_median() -> None:
    frame = _waltons()
    text = kaplan_meier(frame["time"], frame["event"], frame["group"]).summary()
    assert "control" in text
    assert "miR-137" in text
    assert "58.0000" in text


def test_curve_counts_subjects_at_risk_at_any_time() -> None:
    curve = kaplan_meier([2, 4, 4, 7, 9], [1, 0, 1, 1, 0]).groups["all"]
    assert [curve.at_risk_at(t) for t in (0, 3, 4, 8, 10)] == [5, 4, 4, 1, 0]


@pytest.mark.parametrize(
    ("time", "event", "message"),
    [
        ([1, -2], [1, 1], r"time: 1 negative times"),
        ([1, np.nan], [1, 1], r"time: 1 missing"),
        ([1, 2], [1, 2], r"event: 1 values are not 0 or 1"),
        ([1, 2], [1], "event: 1 values for 2 times"),
    ],
)
def test_unusable_survival_data_are_refused_with_a_count_and_no_value(
    time: list[float], event: list[int], message: str
) -> None:
    with pytest.raises(StatisticsError, match=message):
        survival_counts(time, event)


def test_missing_group_is_refused() -> None:
    with pytest.raises(StatisticsError, match=r"group: 1 missing values"):
        survival_counts([1, 2], [1, 1], ["a", None])


# --------------------------------------------------------------------------- log-rank


def test_two_group_logrank_from_three_nodes_equals_lifelines_logrank_test() -> None:
    frame = _waltons()
    result = logrank_from_counts(_node_counts(frame))
    control = frame["group"] == "control"
    reference = lifelines_logrank(
        frame["time"][control],
        frame["time"][~control],
        frame["event"][control],
        frame["event"][~control],
    )
    assert result.df == 1
    np.testing.assert_allclose(result.statistic, reference.test_statistic, rtol=RTOL)
    np.testing.assert_allclose(result.p_value, reference.p_value, rtol=RTOL)


@pytest.mark.parametrize("dataset", ["synthetic", "lung", "rossi"])
def test_k_group_logrank_from_three_nodes_equals_lifelines_multivariate_test(
    dataset: str,
) -> None:
    frame = DATASETS[dataset]()
    result = logrank_from_counts(_node_counts(frame))
    reference = multivariate_logrank_test(frame["time"], frame["group"], frame["event"])
    assert result.df == frame["group"].nunique() - 1
    np.testing.assert_allclose(result.statistic, reference.test_statistic, rtol=RTOL)
    np.testing.assert_allclose(result.p_value, reference.p_value, rtol=RTOL)
    np.testing.assert_allclose(result.observed.sum(), result.expected.sum(), rtol=RTOL)


def test_logrank_stratified_by_node_equals_statsmodels_survdiff_with_node_strata() -> None:
    frame = _synthetic()
    node = _node_of(len(frame))
    result = logrank_from_counts(_node_counts(frame), stratified=True)
    statistic, _ = survdiff(
        frame["time"].to_numpy(), frame["event"].to_numpy(), frame["group"].to_numpy(), strata=node
    )
    assert result.stratified
    assert result.n_strata == 3
    np.testing.assert_allclose(result.statistic, statistic, rtol=RTOL)
    # statsmodels reports 1 - cdf, which loses digits for p ~ 1e-13; compare with the sf.
    np.testing.assert_allclose(result.p_value, chi2.sf(statistic, 2), rtol=RTOL)


def test_local_stratified_logrank_equals_statsmodels_survdiff() -> None:
    frame = _lung()
    strata = load_lung().dropna()["ph.ecog"].to_numpy()
    result = logrank_test(frame["time"], frame["event"], frame["group"], strata=strata)
    statistic, p_value = survdiff(
        frame["time"].to_numpy(),
        frame["event"].to_numpy(),
        frame["group"].to_numpy(),
        strata=strata,
    )
    np.testing.assert_allclose(result.statistic, statistic, rtol=RTOL)
    np.testing.assert_allclose(result.p_value, p_value, rtol=RTOL)


def test_stratified_logrank_without_strata_differences_equals_the_unstratified_test() -> None:
    frame = _waltons()
    counts = survival_counts(frame["time"], frame["event"], frame["group"])
    assert logrank_from_counts([counts], stratified=True).statistic == pytest.approx(
        logrank_from_counts(counts).statistic, rel=1e-12
    )


def test_logrank_result_dict_is_json_ready() -> None:
    frame = _synthetic()
    data = _json_round_trip(logrank_from_counts(_node_counts(frame)).to_dict())
    assert data["df"] == 2
    assert set(data["groups"]) == {"car_t", "placebo", "soc"}
    assert sum(group["n"] for group in data["groups"].values()) == len(frame)


def test_logrank_needs_two_groups() -> None:
    with pytest.raises(StatisticsError, match="at least two groups"):
        logrank_test([1, 2, 3], [1, 0, 1], ["a", "a", "a"])


@st.composite
def _records_on_nodes(draw: st.DrawFn) -> tuple[pd.DataFrame, npt.NDArray[np.int64]]:
    n = draw(st.integers(min_value=2, max_value=60))
    column = st.lists(st.integers(0, 30), min_size=n, max_size=n)
    frame = pd.DataFrame(
        {
            "time": draw(column),
            "event": draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
            "group": draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n)),
        }
    )
    node = np.asarray(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    return frame, node


@given(_records_on_nodes())
@settings(max_examples=40, deadline=None)
def test_any_split_of_records_across_nodes_gives_exactly_the_pooled_curves(
    case: tuple[pd.DataFrame, npt.NDArray[np.int64]],
) -> None:
    frame, node = case
    parts = [
        survival_counts(
            frame["time"][node == k], frame["event"][node == k], frame["group"][node == k]
        )
        for k in np.unique(node)
    ]
    federated = kaplan_meier_from_counts(parts)
    pooled = kaplan_meier(frame["time"], frame["event"], frame["group"])
    assert federated.groups.keys() == pooled.groups.keys()
    for label, curve in pooled.groups.items():
        other = federated.groups[label]
        np.testing.assert_array_equal(other.time, curve.time)
        np.testing.assert_array_equal(other.survival, curve.survival)
        np.testing.assert_array_equal(other.ci_lower, curve.ci_lower)
        assert other.median == curve.median


@pytest.mark.parametrize(
    "group",
    [
        ["b", "a", "b", "c", "a", "10", "9"],
        [2, 1, 2, 3, 1, 10, 9],
        [2.0, 1.5, 2.0, 3.0, 1.5, 10.0, 9.0],
        np.array(["x", "y", "x", "x", "y", "y", "x"]),
        ["a", 1, "a", 1, "b", 2.5, "a"],
    ],
)
def test_groups_are_labelled_and_counted_as_text_of_each_value(group: Any) -> None:
    time = [3, 5, 5, 8, 2, 9, 4]
    event = [1, 0, 1, 1, 1, 0, 0]
    counts = survival_counts(time, event, group)
    labels = [str(value) for value in np.asarray(group, dtype=object).tolist()]
    assert set(counts.groups) == set(labels)
    for g, label in enumerate(counts.groups):
        rows = [i for i, value in enumerate(labels) if value == label]
        for j, t in enumerate(counts.times):
            at = [i for i in rows if time[i] == t]
            assert counts.events[g, j] == sum(event[i] for i in at)
            assert counts.censored[g, j] == sum(1 - event[i] for i in at)


def test_counts_cross_the_network_as_plain_lists() -> None:
    data = survival_counts([1.0, 2.0, 2.0], [1, 0, 1], ["a", "b", "a"]).to_dict()
    assert data["times"] == [1.0, 2.0]
    assert data["events"] == [[1, 1], [0, 0]]
    assert data["censored"] == [[0, 0], [0, 1]]
    assert data["n_at_start"] == [2, 1]
