"""Federated describe, crosstab and proportion equal the pooled computations.

References: numpy (mean, SD with ddof=1, quantiles: each within its stated bound), scipy.stats.chi2_contingency and
fisher_exact, statsmodels.stats.proportion.proportion_confint. Tolerances are stated per
test: 1e-10 relative for moments and intervals; counts compare exactly.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from consortia.exceptions import StatisticsError
from consortia.stats.contingency import (
    CrosstabAggregates,
    combine_crosstab,
    crosstab,
    crosstab_node,
)
from consortia.stats.descriptive import (
    DescribeAggregates,
    combine_describe,
    describe,
    describe_node,
    regular_bins,
)
from consortia.stats.proportions import (
    ProportionAggregates,
    clopper_pearson_interval,
    combine_proportion,
    proportion,
    proportion_node,
    wilson_interval,
)

EDGES = regular_bins(0.0, 200.0, 2.0)


def _split(values: np.ndarray[Any, Any], sizes: tuple[int, ...] = (37, 120)) -> list[Any]:
    return np.split(values, list(sizes))


def _json_round_trip(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(data, allow_nan=False))
    return result


@pytest.fixture
def ages() -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(20240611)
    return rng.normal(62.0, 11.0, size=300).round(1)


# --------------------------------------------------------------------------- describe


def test_describe_across_three_nodes_matches_numpy_mean_and_sd_on_pooled_data(
    ages: np.ndarray[Any, Any],
) -> None:
    with_missing = ages.copy()
    with_missing[[3, 150, 299]] = np.nan
    nodes = [describe_node(part, bin_edges=EDGES) for part in _split(with_missing)]
    result = combine_describe(nodes)
    present = with_missing[~np.isnan(with_missing)]
    assert result.n == present.size
    assert result.missing == 3
    assert result.mean == pytest.approx(np.mean(present), rel=1e-10)
    assert result.sd == pytest.approx(np.std(present, ddof=1), rel=1e-10)


def test_describe_is_numerically_stable_for_values_with_a_large_offset() -> None:
    rng = np.random.default_rng(7)
    values = 1e9 + rng.normal(0.0, 1.0, size=1000)
    nodes = [describe_node(part, bin_edges=[0.0, 2e9]) for part in _split(values, (100, 700))]
    result = combine_describe(nodes)
    assert result.sd == pytest.approx(np.std(values, ddof=1), rel=1e-6)


def test_histogram_quantiles_lie_within_one_bin_width_of_numpy(
    ages: np.ndarray[Any, Any],
) -> None:
    probabilities = (0.05, 0.25, 0.5, 0.75, 0.95)
    nodes = [describe_node(part, bin_edges=EDGES) for part in _split(ages)]
    result = combine_describe(nodes, probabilities=probabilities)
    width = EDGES[1] - EDGES[0]
    for probability, estimate in zip(probabilities, result.quantiles, strict=True):
        assert estimate is not None
        assert abs(estimate - np.quantile(ages, probability)) <= width


def test_each_histogram_quantile_is_within_its_stated_bound_and_the_result_is_not_exact(
    ages: np.ndarray[Any, Any],
) -> None:
    probabilities = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
    nodes = [describe_node(part, bin_edges=EDGES) for part in _split(ages)]
    result = combine_describe(nodes, probabilities=probabilities)
    assert result.exact is False
    for probability, estimate, bound in zip(
        probabilities, result.quantiles, result.quantile_max_error, strict=True
    ):
        assert estimate is not None
        assert bound is not None
        assert abs(estimate - np.quantile(ages, probability)) <= bound <= 2 * (EDGES[1] - EDGES[0])


def test_the_quantile_bound_is_reached_and_is_infinite_when_an_order_statistic_is_off_grid() -> (
    None
):
    result = describe([1, 2, 3, 4, 5], bin_edges=list(range(11)), probabilities=[0.5])
    assert result.quantiles == (3.5,)  # the sample median is 3: the bound 0.5 is reached
    assert result.quantile_max_error == (0.5,)
    assert "± 0.5" in result.summary()
    tails = describe([-5.0, 1.0, 1.5, 3.0, 3.5], bin_edges=[0.0, 2.0, 4.0], probabilities=[0.21])
    assert tails.quantiles[0] is not None
    assert tails.quantile_max_error == (math.inf,)
    assert tails.to_dict()["quantile_max_error"] == [None]


def test_a_summary_without_quantiles_is_exact(ages: np.ndarray[Any, Any]) -> None:
    result = combine_describe(
        [describe_node(part, bin_edges=EDGES) for part in _split(ages)], probabilities=[]
    )
    assert result.exact is True
    assert result.mean == pytest.approx(np.mean(ages), rel=1e-12)


def test_combined_describe_equals_describe_of_pooled_data(ages: np.ndarray[Any, Any]) -> None:
    combined = combine_describe([describe_node(p, bin_edges=EDGES) for p in _split(ages)])
    pooled = describe(ages, bin_edges=EDGES)
    assert combined.bin_counts == pooled.bin_counts
    assert combined.quantiles == pytest.approx(pooled.quantiles, rel=1e-12)
    assert combined.nodes == 3
    assert pooled.nodes == 1


def test_min_and_max_are_released_only_when_every_node_allows_them(
    ages: np.ndarray[Any, Any],
) -> None:
    parts = _split(ages)
    hidden = describe_node(parts[0], bin_edges=EDGES)
    assert hidden.minimum is None
    assert hidden.maximum is None
    shown = [describe_node(p, bin_edges=EDGES, allow_min_max=True) for p in parts]
    result = combine_describe(shown)
    assert (result.minimum, result.maximum) == (ages.min(), ages.max())
    assert combine_describe([hidden, *shown[1:]]).minimum is None


def test_quantile_outside_the_agreed_grid_is_none() -> None:
    values = np.array([-5.0, -4.0, -3.0, 1.0, 3.0])
    result = describe(values, bin_edges=[0.0, 2.0, 4.0], probabilities=[0.1, 0.9])
    assert result.below == 3
    assert result.quantiles[0] is None
    assert result.quantiles[1] == pytest.approx(3.0)


def test_a_node_without_values_contributes_only_its_missing_count() -> None:
    empty = describe_node([None, None], bin_edges=EDGES)
    full = describe_node([10.0, 20.0, 30.0], bin_edges=EDGES)
    result = combine_describe([empty, full])
    assert (result.n, result.missing, result.mean, result.sd) == (3, 2, 20.0, 10.0)


def test_nodes_with_different_bin_grids_are_refused() -> None:
    first = describe_node([1.0], bin_edges=[0.0, 2.0])
    second = describe_node([1.0], bin_edges=[0.0, 3.0])
    with pytest.raises(StatisticsError, match="different bin grids"):
        combine_describe([first, second])


def test_describe_aggregates_survive_a_json_round_trip(ages: np.ndarray[Any, Any]) -> None:
    node = describe_node(ages, bin_edges=EDGES, allow_min_max=True)
    assert DescribeAggregates.from_dict(_json_round_trip(node.to_dict())) == node


def test_describe_aggregates_whose_counts_do_not_add_up_are_refused() -> None:
    data = describe_node([1.0, 3.0], bin_edges=[0.0, 2.0, 4.0]).to_dict()
    data["bin_counts"] = [1, 5]
    with pytest.raises(StatisticsError, match="do not add up"):
        DescribeAggregates.from_dict(data)


def test_describe_summary_and_to_dict_are_readable(ages: np.ndarray[Any, Any]) -> None:
    result = describe(ages, bin_edges=EDGES)
    assert "mean" in result.summary()
    assert "q0.5" in result.summary()
    json.dumps(result.to_dict(), allow_nan=False)


def test_non_numeric_values_are_refused_with_the_argument_name() -> None:
    with pytest.raises(StatisticsError, match="values"):
        describe_node(["a", "b"], bin_edges=EDGES)


# --------------------------------------------------------------------------- crosstab


def _categorical_nodes() -> tuple[list[list[Any]], list[list[Any]]]:
    rng = np.random.default_rng(3)
    arms = rng.choice(["CAR-T", "SOC"], size=240)
    responses = rng.choice(["CR", "PR", "SD", "PD"], size=240, p=[0.3, 0.3, 0.2, 0.2])
    rows = [list(part) for part in np.split(arms, [60, 150])]
    cols = [list(part) for part in np.split(responses, [60, 150])]
    cols[0] = [c if c != "SD" else "PR" for c in cols[0]]  # node 1 never observed SD
    return rows, cols


def test_crosstab_across_three_nodes_unions_levels_and_matches_scipy_chi_square() -> None:
    rows, cols = _categorical_nodes()
    nodes = [crosstab_node(r, c) for r, c in zip(rows, cols, strict=True)]
    assert "SD" not in nodes[0].col_levels
    result = combine_crosstab(nodes)
    pooled = crosstab(list(itertools.chain(*rows)), list(itertools.chain(*cols)))
    assert result.table == pooled.table
    assert result.col_levels == ("CR", "PD", "PR", "SD")
    reference = sps.chi2_contingency(np.array(result.table), correction=False)
    assert result.chi2 == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-10)
    assert result.dof == reference.dof == 3
    assert result.fisher_p_value is None  # r×c Fisher is not computed


def test_two_by_two_crosstab_gives_yates_chi_square_and_fisher_exact_test() -> None:
    rows = ["a"] * 12 + ["b"] * 15
    cols = [1] * 9 + [0] * 3 + [1] * 4 + [0] * 11
    nodes = [crosstab_node(rows[:10], cols[:10]), crosstab_node(rows[10:], cols[10:])]
    result = combine_crosstab(nodes, yates=True)
    table = np.array(result.table)
    np.testing.assert_array_equal(table, [[3, 9], [11, 4]])
    yates = sps.chi2_contingency(table, correction=True)
    fisher = sps.fisher_exact(table)
    assert result.yates is True
    assert result.chi2 == pytest.approx(yates.statistic, rel=1e-10)
    assert result.fisher_odds_ratio == pytest.approx(fisher.statistic, rel=1e-10)
    assert result.fisher_p_value == pytest.approx(fisher.pvalue, rel=1e-10)


def test_crosstab_chi_square_drops_levels_that_no_node_observed() -> None:
    node = crosstab_node(
        ["x", "x", "y", "y", "y"], [1, 2, 1, 2, 2], row_levels=["x", "y", "z"], col_levels=[1, 2]
    )
    result = combine_crosstab([node])
    assert result.table == ((1, 1), (1, 2), (0, 0))
    reference = sps.chi2_contingency(np.array([[1, 1], [1, 2]]), correction=False)
    assert result.chi2 == pytest.approx(reference.statistic, rel=1e-10)


def test_crosstab_counts_pairs_with_a_missing_value_as_missing() -> None:
    node = crosstab_node(["a", None, "b", "", "a"], [1, 1, float("nan"), 0, 0])
    assert node.missing == 3
    assert sum(map(sum, node.counts)) == 2


def test_crosstab_treats_integral_floats_and_ints_as_one_level_in_natural_order() -> None:
    first = crosstab_node([1, 2, 10], ["x", "x", "y"])
    second = crosstab_node([1.0, 10.0], ["y", "y"])
    result = combine_crosstab([first, second])
    assert result.row_levels == ("1", "2", "10")
    assert result.table == ((1, 1), (1, 0), (0, 2))


def test_crosstab_value_outside_the_agreed_levels_is_refused() -> None:
    with pytest.raises(StatisticsError, match="not among the agreed levels"):
        crosstab_node(["a", "c"], [1, 1], row_levels=["a", "b"])


def test_crosstab_aggregates_survive_a_json_round_trip() -> None:
    node = crosstab_node(["a", "b", "a"], [1, 1, 0])
    assert CrosstabAggregates.from_dict(_json_round_trip(node.to_dict())) == node
    assert "chi-square" in combine_crosstab([node]).summary()


# --------------------------------------------------------------------------- proportion


@pytest.mark.parametrize(("successes", "n"), [(0, 12), (1, 12), (7, 31), (30, 31), (31, 31)])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_proportion_intervals_match_statsmodels(successes: int, n: int, confidence: float) -> None:
    alpha = 1 - confidence
    exact = clopper_pearson_interval(successes, n, confidence)
    wilson = wilson_interval(successes, n, confidence)
    assert exact == pytest.approx(
        proportion_confint(successes, n, alpha=alpha, method="beta"), rel=1e-10, abs=1e-15
    )
    assert wilson == pytest.approx(
        proportion_confint(successes, n, alpha=alpha, method="wilson"), rel=1e-10, abs=1e-15
    )


def test_proportion_across_three_nodes_equals_pooled() -> None:
    rng = np.random.default_rng(11)
    outcomes = (rng.random(90) < 0.3).astype(float)
    outcomes[[5, 50]] = np.nan
    nodes = [proportion_node(part) for part in np.split(outcomes, [20, 55])]
    combined = combine_proportion(nodes)
    assert combined == proportion(outcomes)
    assert (combined.n, combined.missing) == (88, 2)
    assert combined.clopper_pearson == pytest.approx(
        proportion_confint(combined.successes, combined.n, method="beta"), rel=1e-10
    )


def test_proportion_refuses_non_binary_outcomes_and_empty_data() -> None:
    with pytest.raises(StatisticsError, match="0/1"):
        proportion_node([0, 1, 2])
    with pytest.raises(StatisticsError, match="no non-missing"):
        combine_proportion([ProportionAggregates(0, 0, 3)])


def test_proportion_aggregates_survive_a_json_round_trip() -> None:
    node = proportion_node([True, False, None, True])
    assert ProportionAggregates.from_dict(_json_round_trip(node.to_dict())) == node
    assert "Wilson 95%" in proportion([1, 0, 1]).summary()
