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
