"""Typed results end to end: each kind's lead returns its typed estimates, the coordinator an
AnalysisResult; JSON happens at the wire (``to_dict``) and comes back through the result
classes' own ``from_dict``, unchanged.

The key lists pin the wire shape the API and ``consortia analyze --json`` have always
emitted (taken from the results as they were dicts, before they were typed).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consortia.exceptions import StatisticsError
from consortia.federation.kinds import get_kind
from consortia.federation.kinds.model_estimates import CoxEstimates, GlmEstimates
from consortia.federation.kinds.survival import KaplanMeierEstimates
from consortia.federation.local import analyze_local
from consortia.federation.policy import NodePolicy
from consortia.federation.results import AnalysisResult
from consortia.stats.descriptive import DescribeResult
from consortia.stats.survival import KaplanMeierResult

SRC = Path(__file__).resolve().parents[2] / "src" / "consortia"
POLICY = NodePolicy(min_cell_count=1, time_bin=1)
TOP = [
    "kind",
    "exact",
    "complete",
    "nodes",
    "missing_nodes",
    "refusals",
    "rounds",
    "bytes",
    "seconds",
    "protocol",
    "session",
    "request",
    "estimates",
]
GLM_KEYS = [
    "kind", "covariates", "coef", "se", "statistic", "p_value", "ci_lower", "ci_upper",
    "covariance", "family", "link", "statistic_name", "scale", "n", "df_resid", "deviance",
    "null_deviance", "pearson_chi2", "loglik", "aic", "n_nodes", "iterations", "rounds",
    "converged", "alpha", "levels",
]  # fmt: skip
COX_KEYS = [
    "kind", "covariates", "coef", "se", "z", "p_value", "hazard_ratio", "ci_lower", "ci_upper",
    "covariance", "loglik", "loglik_null", "lr_statistic", "lr_p_value", "wald_statistic",
    "wald_p_value", "score_statistic", "score_p_value", "n", "n_events", "ties", "stratified",
    "n_nodes", "iterations", "rounds", "converged", "gradient_norm", "alpha", "df", "levels",
    "time_bin",
]  # fmt: skip
KM_KEYS = ["kind", "alpha", "time_bin", "n", "groups", "logrank"]
CASES: list[tuple[dict[str, Any], list[str]]] = [
    (
        {"kind": "describe", "table": "trial", "variable": "age"},
        ["n", "missing", "mean", "sd", "minimum", "maximum", "nodes", "quantile_max_error",
         "exact"],
    ),
    (
        {"kind": "describe", "table": "trial", "variable": "age",
         "bins": {"start": 20, "stop": 90, "width": 10}},
        ["n", "missing", "mean", "sd", "probabilities", "quantiles", "bin_edges", "bin_counts",
         "below", "above", "minimum", "maximum", "nodes", "quantile_max_error", "exact"],
    ),
    (
        {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "response"},
        ["row_levels", "col_levels", "table", "n", "missing", "chi2", "dof", "p_value", "yates",
         "fisher_odds_ratio", "fisher_p_value", "nodes", "exact", "suppressed"],
    ),
    (
        {"kind": "proportion", "table": "trial", "outcome": "response"},
        ["successes", "n", "missing", "estimate", "confidence", "wilson", "clopper_pearson",
         "exact"],
    ),
    ({"kind": "kaplan_meier", "table": "trial", "time": "pfs_days", "event": "pfs_event"},
     KM_KEYS),
    (
        {"kind": "kaplan_meier", "table": "trial", "time": "pfs_days", "event": "pfs_event",
         "group": "arm", "stratify_by_node": True},
        KM_KEYS,
    ),
    (
        {"kind": "glm", "table": "trial", "family": "binomial", "outcome": "response",
         "covariates": ["age", "arm"]},
        GLM_KEYS,
    ),
    ({"kind": "glm", "table": "trial", "outcome": "biomarker", "covariates": ["age"]}, GLM_KEYS),
    (
        {"kind": "cox", "table": "trial", "time": "pfs_days", "event": "pfs_event",
         "covariates": ["age", "arm"], "strata": ["node"]},
        COX_KEYS,
    ),
    (
        {"kind": "cox", "table": "trial", "time": "pfs_days", "event": "pfs_event",
         "covariates": ["age"], "time_bin": 1},
        COX_KEYS,
    ),
    (
        {"kind": "meta", "table": "trial", "term": "age",
         "model": {"kind": "glm", "family": "binomial", "outcome": "response",
                   "covariates": ["age"]}},
        ["labels", "estimates", "standard_errors", "weights_fixed", "weights_random",
         "confidence", "fixed_estimate", "fixed_se", "fixed_ci", "fixed_p_value",
         "random_estimate", "random_se", "random_ci", "random_p_value", "tau2", "q", "df",
         "q_p_value", "i2", "method", "exact", "term"],
    ),
    (
        {"kind": "iso15197", "table": "trial", "reference": "ref_mgdl", "device": "meter_mgdl"},
        ["n", "missing", "within_iso", "within_iso_pct", "meets_accuracy_criterion",
         "parkes_type1", "parkes_type2", "parkes_ab_pct", "meets_parkes_criterion",
         "meets_iso15197", "clarke", "mard_pct", "bland_altman", "nodes", "exact"],
    ),
    (
        {"kind": "diagnostic", "table": "trial", "score": "ai_score", "truth": "biopsy"},
        ["threshold", "tp", "fp", "fn", "tn", "missing", "sensitivity", "specificity", "ppv",
         "npv", "thresholds", "roc_fpr", "roc_tpr", "auc", "auc_se", "auc_ci", "auc_max_error",
         "auc_se_method", "confidence", "nodes", "exact"],
    ),
]  # fmt: skip


_RUN: dict[int, AnalysisResult] = {}  # the files hold the same rows in every test


class _Results:
    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def __getitem__(self, case: int) -> AnalysisResult:
        if case not in _RUN:
            _RUN[case] = analyze_local(CASES[case][0], self.files, POLICY)
        return _RUN[case]


@pytest.fixture
def results(trial_files: dict[str, Path]) -> _Results:
    return _Results(trial_files)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0]["kind"] for c in CASES])
def test_each_kinds_result_round_trips_through_its_wire_form_unchanged(
    results: _Results, case: int
) -> None:
    request, keys = CASES[case]
    result = results[case]
    assert type(result.estimates) is get_kind(request["kind"]).result_type
    wire = json.loads(json.dumps(result.to_dict()))  # what the API and --json send
    assert list(wire) == TOP
    assert list(wire["estimates"]) == keys
    assert wire["request"] == request
    back = AnalysisResult.from_dict(wire)
    assert type(back.estimates) is type(result.estimates)
    assert json.dumps(back.to_dict()) == json.dumps(wire)
    assert back.summary() == result.summary()


def test_typed_estimates_carry_arrays_and_per_node_counts(
    results: _Results,
) -> None:
    km = results[5]
    assert isinstance(km.estimates, KaplanMeierEstimates)
    assert isinstance(km.estimates.curves, KaplanMeierResult)
    assert km.estimates.logrank is not None
    assert km.estimates.logrank.stratified is True
    assert km.n_by_node == {"sgh": 80, "ruijin": 70, "nuh": 60}
    curve = km.estimates.curves.groups["car_t"]
    assert isinstance(curve.survival, np.ndarray)
    back = AnalysisResult.from_dict(json.loads(json.dumps(km.to_dict())))
    assert isinstance(back.estimates, KaplanMeierEstimates)
    np.testing.assert_array_equal(back.estimates.curves.groups["car_t"].survival, curve.survival)
    glm = results[6].estimates
    assert isinstance(glm, GlmEstimates)
    assert glm.fit.covariates == ("Intercept", "age", "arm[T.soc]")
    assert glm.levels == {"arm": ("car_t", "soc")}
    cox = results[9].estimates
    assert isinstance(cox, CoxEstimates)
    assert cox.time_bin == 1.0
    plain = results[0].estimates
    assert isinstance(plain, DescribeResult)
    assert plain.bin_edges == ()
    assert results[0].exact is False  # as the describe kind has always said without a grid


def test_the_summary_says_who_took_part_then_the_estimates(
    results: _Results,
) -> None:
    text = results[8].summary()
    lines = text.splitlines()
    assert lines[0] == "cox: exact (equals pooling)"
    assert lines[1] == "nodes: sgh (n=80), ruijin (n=70), nuh (n=60)"
    assert lines[2].startswith("rounds: ")
    assert results[8].estimates.summary() in text


def test_a_malformed_stored_result_is_refused_naming_the_field(
    results: _Results,
) -> None:
    wire = results[6].to_dict()
    broken = {**wire, "estimates": {**wire["estimates"], "coef": {"age": 1.0}}}
    with pytest.raises(StatisticsError, match=r"GlmResult\.coef: expected a value per covariate"):
        AnalysisResult.from_dict(broken)
    with pytest.raises(StatisticsError, match=r"DescribeResult\.mean: 'x' is not a number"):
        AnalysisResult.from_dict(
            {**results[0].to_dict(), "estimates": {**results[0].to_dict()["estimates"],
                                                    "mean": "x"}}
        )  # fmt: skip
    with pytest.raises(StatisticsError, match="nodes: expected a list"):
        AnalysisResult.from_dict({**wire, "nodes": None})


def _module_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_results_are_read_back_by_their_classes_not_by_free_functions() -> None:
    free = sorted(
        f"{path.relative_to(SRC)}:{name}"
        for path in SRC.rglob("*.py")
        for name in _module_functions(path)
        if name.endswith("_from_dict") or name == "render_result"
    )
    assert free == []
