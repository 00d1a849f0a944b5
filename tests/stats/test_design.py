"""Design matrices code categorical covariates alike on every node.

Reference: patsy/statsmodels formula coding (treatment contrasts against the first sorted
level, columns named ``name[T.level]``); values compare exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from consortia.exceptions import StatisticsError
from consortia.stats.design import LevelCounts, design_matrix, level_counts, union_levels


def test_union_of_levels_is_sorted_and_its_first_level_is_the_reference() -> None:
    parts = [level_counts(["soc", "car_t", "soc"]), level_counts(["placebo"])]
    assert union_levels(parts) == ("car_t", "placebo", "soc")


def test_numeric_levels_sort_as_numbers() -> None:
    assert union_levels([level_counts([10, 2, 1])]) == ("1", "2", "10")


def test_levels_with_zero_count_are_not_levels() -> None:
    assert union_levels([{"a": 3, "b": 0}]) == ("a",)


def test_level_counts_survive_a_json_round_trip() -> None:
    counts = level_counts(["b", "a", "b"])
    back = LevelCounts.from_dict(json.loads(json.dumps(counts.to_dict())))
    assert back == counts
    assert back.to_dict() == {"counts": {"a": 1, "b": 2}}


def test_a_node_missing_a_level_still_gets_its_dummy_column() -> None:
    design = design_matrix({"arm": ["soc", "soc"]}, ["arm"], {"arm": ("car_t", "placebo", "soc")})
    assert design.names == ("Intercept", "arm[T.placebo]", "arm[T.soc]")
    assert design.matrix.tolist() == [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]]


def test_local_design_equals_the_statsmodels_formula_design() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"y": rng.normal(size=30), "age": rng.normal(size=30), "arm": rng.choice(list("abc"), 30)}
    )
    design = design_matrix(frame, ["age", "arm"])
    reference = smf.ols("y ~ age + arm", frame)
    names = list(reference.exog_names)
    columns = [names.index(name) for name in design.names]
    assert sorted(design.names) == sorted(names)
    np.testing.assert_array_equal(design.matrix, reference.exog[:, columns])


def test_a_value_outside_the_agreed_levels_is_refused_by_count_not_by_value() -> None:
    with pytest.raises(
        StatisticsError, match=r"arm: 1 rows have a level that is not among"
    ) as error:
        design_matrix({"arm": ["a", "other"]}, ["arm"], {"arm": ("a", "b")})
    assert "other" not in str(error.value)


def test_an_unknown_covariate_is_refused() -> None:
    with pytest.raises(StatisticsError, match="'bmi' is not a column"):
        design_matrix({"age": [1, 2]}, ["age", "bmi"])


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(StatisticsError, match="bmi: 3 values, but other columns have 2"):
        design_matrix({"age": [1, 2], "bmi": [20, 21, 22]}, ["age", "bmi"])


def test_a_missing_numeric_value_is_refused_with_a_count() -> None:
    with pytest.raises(StatisticsError, match=r"age: 1 missing"):
        design_matrix({"age": [1.0, np.nan]}, ["age"])
