"""Federated diagnostic accuracy equals the pooled computation.

References: direct counting on pooled data (exact), statsmodels proportion_confint for the
Wilson and Clopper–Pearson intervals (1e-10 relative), scipy.stats.mannwhitneyu for the
AUC (1e-12 relative when exact; within ``auc_max_error`` when not), and DeLong's (1988)
variance written out from its definition over every positive–negative pair
(:func:`delong_reference`) for the AUC standard error: 1e-12 relative when the scores lie
on the grid, 2 % relative when the grid bins continuous scores.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from consortia.exceptions import PolicyRefusal, StatisticsError
from consortia.stats.diagnostic import (
    DEFAULT_THRESHOLDS,
    DiagnosticAggregates,
    combine_diagnostic,
    diagnostic_accuracy,
    diagnostic_node,
    releasable_thresholds,
)

CUTS = [70, 180]


@pytest.fixture
def scored_cases() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """AI scores on a 0.01 grid (so many ties) with a reference standard."""
    rng = np.random.default_rng(1982)
    truth = (rng.random(300) < 0.35).astype(float)
    scores = np.clip(rng.normal(0.4 + 0.25 * truth, 0.18), 0.0, 1.0).round(2)
    return scores, truth


def _nodes(
    scores: np.ndarray[Any, Any], truth: np.ndarray[Any, Any], **options: Any
) -> list[DiagnosticAggregates]:
    return [
        diagnostic_node(s, t, **options)
        for s, t in zip(np.split(scores, CUTS), np.split(truth, CUTS), strict=True)
    ]


def test_trapezoid_auc_over_a_grid_with_every_score_equals_mann_whitney_u(
    scored_cases: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    scores, truth = scored_cases
    assert set(scores.tolist()) <= set(DEFAULT_THRESHOLDS)
    result = combine_diagnostic(_nodes(scores, truth))
    positives, negatives = scores[truth == 1], scores[truth == 0]
    u_statistic = sps.mannwhitneyu(positives, negatives).statistic
    assert result.auc == pytest.approx(u_statistic / (positives.size * negatives.size), rel=1e-12)


def test_auc_equals_mann_whitney_u_with_a_grid_of_the_distinct_continuous_scores() -> None:
    rng = np.random.default_rng(5)
    truth = np.repeat([1.0, 0.0], [40, 60])
    scores = np.concatenate([rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 60)])
    scores[:5] = scores[40:45]  # ties across classes
    grid = np.unique(scores).tolist()
    result = combine_diagnostic(_nodes(scores, truth, thresholds=grid))
    u_statistic = sps.mannwhitneyu(scores[:40], scores[40:]).statistic
    assert result.auc == pytest.approx(u_statistic / (40 * 60), rel=1e-12)


def test_diagnostic_across_three_nodes_equals_pooled(
    scored_cases: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    scores, truth = scored_cases
    combined = combine_diagnostic(_nodes(scores, truth, threshold=0.55))
    pooled = diagnostic_accuracy(scores, truth, threshold=0.55)
    assert combined.to_dict() | {"nodes": 1} == pooled.to_dict()


def test_two_by_two_counts_and_rates_match_direct_counting_and_statsmodels_intervals(
    scored_cases: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    scores, truth = scored_cases
    result = combine_diagnostic(_nodes(scores, truth, threshold=0.5))
    called = scores >= 0.5
    tp = int(np.sum(called & (truth == 1)))
    fp = int(np.sum(called & (truth == 0)))
    fn = int(np.sum(~called & (truth == 1)))
    tn = int(np.sum(~called & (truth == 0)))
    assert (result.tp, result.fp, result.fn, result.tn) == (tp, fp, fn, tn)
    assert result.ppv is not None
    assert result.npv is not None
    measures = [
        (result.sensitivity, tp, tp + fn),
        (result.specificity, tn, tn + fp),
        (result.ppv, tp, tp + fp),
        (result.npv, tn, tn + fn),
    ]
    for measure, successes, n in measures:
        assert measure.estimate == successes / n
        assert measure.wilson == pytest.approx(
            proportion_confint(successes, n, method="wilson"), rel=1e-10
        )
        assert measure.clopper_pearson == pytest.approx(
            proportion_confint(successes, n, method="beta"), rel=1e-10
        )


def test_roc_runs_from_everyone_positive_to_nobody_positive(
    scored_cases: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    result = diagnostic_accuracy(*scored_cases)
    assert (result.roc_fpr[0], result.roc_tpr[0]) == (1.0, 1.0)
    assert (result.roc_fpr[-1], result.roc_tpr[-1]) == (0.0, 0.0)
    assert len(result.roc_fpr) == len(DEFAULT_THRESHOLDS) + 2
    assert np.all(np.diff(result.roc_fpr) <= 0)
    assert np.all(np.diff(result.roc_tpr) <= 0)
    assert np.trapezoid(result.roc_tpr[::-1], result.roc_fpr[::-1]) == pytest.approx(
        result.auc, rel=1e-12
    )


def delong_reference(
    positives: np.ndarray[Any, Any], negatives: np.ndarray[Any, Any]
) -> tuple[float, float]:
    """AUC and DeLong SE from the definition: ψ(x, y) = 1 if x > y, ½ if x = y, else 0."""
    psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives)
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    variance = v10.var(ddof=1) / positives.size + v01.var(ddof=1) / negatives.size
    return float(psi.mean()), math.sqrt(variance)


def continuous_cases(seed: int = 1988) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Scores with many decimals: almost every grid bin mixes distinct scores."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(300) < 0.35).astype(float)
    scores = 1 / (1 + np.exp(-rng.normal(-0.6 + 1.8 * truth, 1.0)))
    return scores, truth


def _mann_whitney_auc(scores: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> float:
    positives, negatives = scores[truth == 1], scores[truth == 0]
    return float(
        sps.mannwhitneyu(positives, negatives).statistic / (positives.size * negatives.size)
    )


def test_continuous_scores_over_three_nodes_give_an_auc_within_its_stated_bound() -> None:
    scores, truth = continuous_cases()
    result = combine_diagnostic(_nodes(scores, truth))
    reference = _mann_whitney_auc(scores, truth)
    assert result.exact is False
    assert result.auc != reference
    assert 0 < abs(result.auc - reference) <= result.auc_max_error
    assert "approximate" in result.auc_se_method
    assert "±" in result.summary()


def test_the_bound_is_half_the_same_bin_pairs_and_is_reached_when_they_all_order_one_way() -> None:
    # Every positive outranks every negative, but all share the bin [0.5, 1].
    node = diagnostic_node(
        [0.9, 0.8, 0.7, 0.6, 0.55, 0.52], [1, 1, 1, 0, 0, 0], thresholds=[0, 0.5]
    )
    result = combine_diagnostic([node])
    assert result.auc == 0.5
    assert result.auc_max_error == 0.5 * 9 / 9
    assert _mann_whitney_auc(np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.52]), np.repeat([1, 0], 3)) == (
        result.auc + result.auc_max_error
    )


def test_scores_on_the_grid_give_the_mann_whitney_auc_and_say_exact(
    scored_cases: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    scores, truth = scored_cases
    nodes = _nodes(scores, truth)
    assert all(node.on_grid for node in nodes)
    result = combine_diagnostic(nodes)
    assert result.exact is True
    assert result.auc_max_error == 0.0
    assert result.auc == pytest.approx(_mann_whitney_auc(scores, truth), rel=1e-12)


def test_nodes_each_constant_within_a_bin_but_different_from_each_other_are_not_exact() -> None:
    # Each node's scores are equal within every bin, yet the bin [0.5, 1) mixes 0.6 and 0.7.
    first = diagnostic_node([0.6, 0.6, 0.1], [1, 0, 0], thresholds=[0, 0.5, 1])
    second = diagnostic_node([0.7, 0.7, 0.1], [0, 1, 1], thresholds=[0, 0.5, 1])
    result = combine_diagnostic([first, second])
    assert result.exact is False
    assert result.auc_max_error > 0


def test_no_bin_holding_both_classes_makes_the_grid_auc_exact_whatever_the_scores() -> None:
    result = diagnostic_accuracy([0.93, 0.81, 0.32, 0.14], [1, 1, 0, 0])
    assert (result.exact, result.auc_max_error, result.auc) == (True, 0.0, 1.0)


def test_auc_standard_error_is_delong_and_exact_when_the_scores_lie_on_the_grid(
    scored_cases: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    scores, truth = scored_cases
    result = combine_diagnostic(_nodes(scores, truth))
    auc, se = delong_reference(scores[truth == 1], scores[truth == 0])
    assert result.auc == pytest.approx(auc, rel=1e-12)
    assert result.auc_se == pytest.approx(se, rel=1e-12)
    assert result.auc_se_method == "DeLong"
    z = sps.norm.isf(0.025)
    assert result.auc_ci == pytest.approx((auc - z * se, auc + z * se), rel=1e-12)


def test_auc_standard_error_on_the_grid_bins_is_within_two_percent_of_delong() -> None:
    scores, truth = continuous_cases()
    result = combine_diagnostic(_nodes(scores, truth))
    _, se = delong_reference(scores[truth == 1], scores[truth == 0])
    assert result.auc_se == pytest.approx(se, rel=0.02)


def test_a_node_that_does_not_say_its_scores_are_on_the_grid_is_taken_as_off_the_grid(
    scored_cases: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    message = diagnostic_node(*scored_cases).to_dict()
    assert message["on_grid"] is True
    for value in (None, "true", 1):
        message["on_grid"] = value
        assert DiagnosticAggregates.from_dict(message).on_grid is False
    del message["on_grid"]
    assert DiagnosticAggregates.from_dict(message).on_grid is False


def test_auc_interval_is_clipped_to_zero_and_one() -> None:
    result = diagnostic_accuracy([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])
    assert result.auc == 1.0
    assert result.auc_ci[1] == 1.0


def test_ppv_is_none_when_nothing_is_called_positive() -> None:
    result = diagnostic_accuracy([0.1, 0.2, 0.3], [1, 0, 0], threshold=0.9)
    assert result.ppv is None
    assert result.npv is not None
    assert "PPV" in result.summary()
    json.dumps(result.to_dict(), allow_nan=False)


def test_pairs_with_a_missing_score_or_truth_are_skipped_and_counted() -> None:
    node = diagnostic_node([0.9, None, 0.4, float("nan"), 0.2], [1, 1, None, 0, 0])
    assert node.missing == 3
    assert node.tp + node.fp + node.fn + node.tn == 2


def test_nodes_must_share_a_grid_threshold_and_the_threshold() -> None:
    first = diagnostic_node([0.9, 0.1], [1, 0], thresholds=[0.5])
    other_grid = diagnostic_node([0.9, 0.1], [1, 0], thresholds=[0.6])
    other_threshold = diagnostic_node([0.9, 0.1], [1, 0], threshold=0.3, thresholds=[0.0, 0.5])
    with pytest.raises(StatisticsError, match="no grid threshold in common"):
        combine_diagnostic([first, other_grid])
    with pytest.raises(StatisticsError, match="different thresholds"):
        combine_diagnostic([first, other_threshold])


def test_data_without_both_classes_or_with_bad_truth_is_refused() -> None:
    with pytest.raises(StatisticsError, match="with and without the condition"):
        diagnostic_accuracy([0.3, 0.7], [1, 1])
    with pytest.raises(StatisticsError, match="truth"):
        diagnostic_node([0.3, 0.7], [1, 2])
    with pytest.raises(StatisticsError, match="strictly increasing"):
        diagnostic_node([0.3], [1], thresholds=[0.5, 0.5])


def test_diagnostic_aggregates_survive_a_json_round_trip(
    scored_cases: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    node = diagnostic_node(*scored_cases)
    text = json.dumps(node.to_dict(), allow_nan=False)
    assert DiagnosticAggregates.from_dict(json.loads(text)) == node
    tampered = node.to_dict()
    tampered["tp_at"][3] += 1
    with pytest.raises(StatisticsError, match="disagree"):
        DiagnosticAggregates.from_dict(tampered)


def test_nodes_that_released_different_subsets_of_the_grid_combine_on_the_common_one() -> None:
    # both nodes' scores are on their own grids (on_grid), but 0.6 and 0.5 share a
    # common-grid bin [0, ∞) with both classes in it: the AUC is not exact there
    first = diagnostic_node([0.5, 0.0], [1, 0], thresholds=[0.0, 0.5])
    second = diagnostic_node([0.6, 0.6, 0.0], [0, 1, 0], thresholds=[0.0, 0.6])
    assert first.on_grid
    assert second.on_grid
    result = combine_diagnostic([first, second])
    assert result.thresholds == (0.0,)
    assert result.exact is False
    scores = np.array([0.5, 0.0, 0.6, 0.6, 0.0])
    truth = np.array([1, 0, 0, 1, 0])
    u = sps.mannwhitneyu(scores[truth == 1], scores[truth == 0]).statistic
    assert abs(result.auc - u / 6) <= result.auc_max_error + 1e-12
    assert result.auc_max_error > 0


def _bin_counts_between(cuts: list[float], values: Any) -> list[int]:
    return np.bincount(np.searchsorted(np.asarray(cuts), values, side="right"),
                       minlength=len(cuts) + 1).tolist()  # fmt: skip


def test_releasable_thresholds_leave_no_small_bin_of_either_class() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(20, 80))
        truth = (rng.random(n) < 0.4).astype(int)
        scores = rng.random(n).round(int(rng.integers(1, 4)))
        grid = DEFAULT_THRESHOLDS
        node = diagnostic_node(scores, truth, threshold=0.5)
        if any(0 < c < 5 for c in (node.tp, node.fp, node.fn, node.tn)):
            with pytest.raises(PolicyRefusal, match="small_cells"):
                releasable_thresholds(scores, truth, thresholds=grid, min_count=5)
            continue
        kept = releasable_thresholds(scores, truth, threshold=0.5, thresholds=grid, min_count=5)
        assert set(kept) <= set(grid)
        cuts = sorted({*kept, 0.5})
        for value in (0, 1):
            bins = _bin_counts_between(cuts, scores[truth == value])
            assert all(c == 0 or c >= 5 for c in bins), (value, bins)


def test_releasable_thresholds_keep_a_grid_whose_bins_are_large_or_empty() -> None:
    scores = np.repeat([0.1, 0.3, 0.5, 0.7], 10)
    truth = np.tile([0, 1], 20)
    grid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert releasable_thresholds(scores, truth, thresholds=grid, min_count=5) == tuple(grid)


def test_a_grid_that_cannot_be_split_is_refused_without_values() -> None:
    with pytest.raises(PolicyRefusal) as caught:
        releasable_thresholds([0.2] * 6 + [0.8] * 6, [1, 0] * 6, threshold=0.9,
                              thresholds=[0.3], min_count=5)  # fmt: skip
    assert caught.value.rule == "small_cells"
    assert "0.2" not in str(caught.value)
    assert "0.3" not in str(caught.value)


def test_a_node_s_merged_bins_make_its_on_grid_scores_inexact_within_the_bound() -> None:
    # every score is on the 0.01 grid, but the one positive at 0.42 is merged with others
    scores = np.array([0.3] * 10 + [0.42] + [0.8] * 10 + [0.2] * 10 + [0.4] * 6 + [0.6] * 10)
    truth = np.array([1] * 21 + [0] * 26)
    assert diagnostic_node(scores, truth).on_grid
    kept = releasable_thresholds(scores, truth, min_count=5)
    assert 0.42 not in kept
    node = diagnostic_node(scores, truth, thresholds=kept)
    assert node.on_grid is False
    result = combine_diagnostic([node])
    u = sps.mannwhitneyu(scores[truth == 1], scores[truth == 0]).statistic
    reference = u / (21 * 26)
    assert result.exact is False
    assert 0 < abs(result.auc - reference) <= result.auc_max_error + 1e-12
