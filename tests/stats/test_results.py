"""Result helpers: JSON conversion, tables, the warning class, and every module's examples."""

from __future__ import annotations

import doctest
import importlib
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from consortia.stats.results import ConvergenceWarning, StatResult, format_table, to_jsonable

MODULES = [
    "consortia.stats.results",
    "consortia.stats._arrays",
    "consortia.stats.survival",
    "consortia.stats.logrank",
    "consortia.stats.design",
    "consortia.stats.cox_aggregates",
    "consortia.stats.cox",
    "consortia.stats.glm",
    "consortia.stats.glm_node",
    "consortia.stats.descriptive",
    "consortia.stats.contingency",
    "consortia.stats.proportions",
    "consortia.stats.plots",
]


@dataclass(frozen=True, eq=False)
class _Estimate(StatResult):
    label: str
    values: np.ndarray
    bound: float

    def summary(self) -> str:
        return format_table(["label", "bound"], [[self.label, self.bound]])


def test_to_dict_turns_arrays_into_lists_and_non_finite_numbers_into_null() -> None:
    data = _Estimate("x", np.array([1.0, np.nan, np.inf]), math.inf).to_dict()
    assert data == {"label": "x", "values": [1.0, None, None], "bound": None}
    json.dumps(data, allow_nan=False)


def test_to_jsonable_handles_numpy_scalars_nested_mappings_and_tuples() -> None:
    value = {1: (np.int64(2), np.float32(0.5), np.bool_(True)), "m": np.eye(2)}
    assert to_jsonable(value) == {"1": [2, 0.5, True], "m": [[1.0, 0.0], [0.0, 1.0]]}


def test_to_jsonable_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match="cannot turn a object into JSON"):
        to_jsonable(object())


def test_results_are_frozen() -> None:
    estimate = _Estimate("x", np.zeros(1), 1.0)
    with pytest.raises(AttributeError):
        estimate.bound = 2.0  # type: ignore[misc]


def test_str_of_a_result_is_its_summary() -> None:
    estimate = _Estimate("x", np.zeros(1), 1.0)
    assert str(estimate) == estimate.summary()


def test_convergence_warning_is_a_user_warning() -> None:
    assert issubclass(ConvergenceWarning, UserWarning)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    outcome = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0
    assert outcome.attempted > 0


def test_local_results_read_back_from_their_json_as_the_same_result() -> None:
    """Every result class reads its own ``to_dict`` back (``from_dict``), so a stored or
    received result is typed again: arrays, nested results, never-reached medians."""
    from consortia.stats import (
        crosstab,
        describe,
        diagnostic_accuracy,
        fit_cox,
        fit_glm,
        iso15197,
        kaplan_meier,
        logrank_test,
        meta_analysis,
        proportion,
    )

    rng = np.random.default_rng(7)
    n = 60
    age = rng.normal(55, 10, n)
    time = rng.integers(1, 400, n).astype(float)
    event = (rng.random(n) < 0.6).astype(float)
    arm = np.where(rng.random(n) < 0.5, "a", "b")
    reference = rng.uniform(60, 300, n)
    results = [
        describe(age, bin_edges=[20, 40, 60, 80, 100]),
        crosstab(arm, (age > 55).astype(int).astype(str)),
        proportion(event),
        kaplan_meier([1, 2, 3], [1, 0, 0]),  # never falls to 0.5: the median is infinite
        kaplan_meier(time, event, arm),
        logrank_test(time, event, arm),
        fit_cox(time, event, {"age": age}),
        fit_glm(event, {"age": age, "arm": arm}, ["age", "arm"], family="binomial"),
        meta_analysis([0.3, 0.1], [0.1, 0.2], ["a", "b"]),
        iso15197(reference, reference * rng.normal(1, 0.05, n)),
        diagnostic_accuracy(rng.random(n), (rng.random(n) < 0.4).astype(float)),
    ]
    for result in results:
        wire = json.loads(json.dumps(result.to_dict()))
        back = type(result).from_dict(wire)
        assert json.dumps(back.to_dict()) == json.dumps(wire), type(result).__name__
        assert back.summary() == result.summary(), type(result).__name__
    assert math.isinf(type(results[3]).from_dict(results[3].to_dict()).curves[0].median)


def test_from_dict_names_the_missing_or_mistyped_field() -> None:
    from consortia.exceptions import StatisticsError

    with pytest.raises(StatisticsError, match=r"_Estimate\.bound: missing"):
        _Estimate.from_dict({"label": "x", "values": [1.0]})
    with pytest.raises(StatisticsError, match=r"_Estimate\.label: 3 is not a str"):
        _Estimate.from_dict({"label": 3, "bound": 1.0, "values": [1.0]})
    back = _Estimate.from_dict({"label": "x", "bound": None, "values": [1.0, None]})
    assert math.isnan(back.bound)
    assert np.isnan(back.values[1])
