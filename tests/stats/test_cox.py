"""Federated Cox regression equals lifelines and statsmodels on the pooled records.

References (rossi recidivism data split across three nodes):

* Efron ties: lifelines ``CoxPHFitter`` (its only ties method), fitted with
  ``fit_options={"precision": 1e-20, "r_precision": 1e-16}`` so its own convergence is not
  the limit; stratified by node: ``CoxPHFitter(strata=["node"])``;
* Breslow and Efron ties: statsmodels ``PHReg(ties=...)``.

Tolerance: 1e-8 relative (``RTOL``) on coefficients, standard errors, log-likelihoods and
test statistics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi
from statsmodels.duration.hazard_regression import PHReg

from consortia.exceptions import StatisticsError
from consortia.stats.cox import CoxNodeData, CoxResult, fit_cox, fit_cox_federated
from consortia.stats.cox_aggregates import (
    CoxAggregates,
    CoxStratumAggregates,
    CoxTimeSums,
)
from consortia.stats.results import ConvergenceWarning

RTOL = 1e-8
COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
TIGHT = {"precision": 1e-20, "r_precision": 1e-16}


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    data = load_rossi()
    data["node"] = np.random.default_rng(11).choice(3, size=len(data), p=[0.45, 0.35, 0.2])
    return data


def _nodes(
    data: pd.DataFrame, *, ties: str = "efron", stratified: bool, time_bin: float | None = None
) -> list[CoxNodeData]:
    return [
        CoxNodeData(
            data.loc[data["node"] == k, "week"],
            data.loc[data["node"] == k, "arrest"],
            data.loc[data["node"] == k, COVARIATES].to_numpy(),
            ties=ties,
            stratified=stratified,
            time_bin=time_bin,
        )
        for k in range(3)
    ]


def _fit(nodes: list[CoxNodeData]) -> CoxResult:
    return fit_cox_federated([node.round for node in nodes], COVARIATES)


def _lifelines(data: pd.DataFrame, strata: list[str] | None = None) -> Any:
    columns = ["week", "arrest", *COVARIATES, *(strata or [])]
    return CoxPHFitter(strata=strata).fit(data[columns], "week", "arrest", fit_options=TIGHT)


def test_unstratified_efron_from_three_nodes_equals_lifelines_on_pooled_records(
    rossi: pd.DataFrame,
) -> None:
    result = _fit(_nodes(rossi, stratified=False))
    reference = _lifelines(rossi)
    assert not result.stratified
    assert result.ties == "efron"
    assert result.converged
    np.testing.assert_allclose(result.coef, reference.params_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(result.se, reference.standard_errors_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(result.loglik, reference.log_likelihood_, rtol=RTOL)
    np.testing.assert_allclose(
        result.lr_statistic, reference.log_likelihood_ratio_test().test_statistic, rtol=RTOL
    )
    summary = reference.summary
    np.testing.assert_allclose(result.p_value, summary["p"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        result.ci_lower, summary["exp(coef) lower 95%"].to_numpy(), rtol=RTOL
    )
    np.testing.assert_allclose(
        result.ci_upper, summary["exp(coef) upper 95%"].to_numpy(), rtol=RTOL
    )
    assert (result.n, result.n_events) == (432, 114)


def test_stratified_by_node_equals_lifelines_with_node_strata(rossi: pd.DataFrame) -> None:
    result = _fit(_nodes(rossi, stratified=True))
    reference = _lifelines(rossi, strata=["node"])
    assert result.stratified
    np.testing.assert_allclose(result.coef, reference.params_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(result.se, reference.standard_errors_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(result.loglik, reference.log_likelihood_, rtol=RTOL)


def test_strata_within_a_node_combine_with_node_strata(rossi: pd.DataFrame) -> None:
    nodes = [
        CoxNodeData(
            rossi.loc[rossi["node"] == k, "week"],
            rossi.loc[rossi["node"] == k, "arrest"],
            rossi.loc[rossi["node"] == k, ["fin", "age", "prio"]].to_numpy(),
            strata=rossi.loc[rossi["node"] == k, "race"],
        )
        for k in range(3)
    ]
    result = fit_cox_federated([node.round for node in nodes], ["fin", "age", "prio"])
    reference = CoxPHFitter(strata=["node", "race"]).fit(
        rossi[["week", "arrest", "fin", "age", "prio", "node", "race"]],
        "week",
        "arrest",
        fit_options=TIGHT,
    )
    np.testing.assert_allclose(result.coef, reference.params_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(result.se, reference.standard_errors_.to_numpy(), rtol=RTOL)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_unstratified_fit_equals_statsmodels_phreg_with_the_same_ties(
    rossi: pd.DataFrame, ties: str
) -> None:
    result = _fit(_nodes(rossi, ties=ties, stratified=False))
    reference = PHReg(
        rossi["week"].to_numpy(),
        rossi[COVARIATES].to_numpy(),
        status=rossi["arrest"].to_numpy(),
        ties=ties,
    ).fit()
    assert result.ties == ties
    np.testing.assert_allclose(result.coef, reference.params, rtol=RTOL)
    np.testing.assert_allclose(result.se, reference.bse, rtol=RTOL)
    np.testing.assert_allclose(result.loglik, reference.llf, rtol=RTOL)


def test_stratified_breslow_equals_statsmodels_phreg_with_node_strata(
    rossi: pd.DataFrame,
) -> None:
    result = _fit(_nodes(rossi, ties="breslow", stratified=True))
    reference = PHReg(
        rossi["week"].to_numpy(),
        rossi[COVARIATES].to_numpy(),
        status=rossi["arrest"].to_numpy(),
        strata=rossi["node"].to_numpy(),
        ties="breslow",
    ).fit()
    np.testing.assert_allclose(result.coef, reference.params, rtol=RTOL)
    np.testing.assert_allclose(result.se, reference.bse, rtol=RTOL)


def test_binned_times_equal_lifelines_on_pooled_times_floored_to_the_bin(
    rossi: pd.DataFrame,
) -> None:
    result = _fit(_nodes(rossi, stratified=False, time_bin=4))
    reference = _lifelines(rossi.assign(week=np.floor(rossi["week"] / 4) * 4))
    np.testing.assert_allclose(result.coef, reference.params_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(result.se, reference.standard_errors_.to_numpy(), rtol=RTOL)


def _over_json(node: CoxNodeData) -> Callable[[npt.NDArray[np.float64]], CoxAggregates]:
    """What a transport does: beta and the answer cross as JSON text."""

    def ask(beta: npt.NDArray[np.float64]) -> CoxAggregates:
        sent = np.asarray(json.loads(json.dumps(beta.tolist())), dtype=np.float64)
        answer = json.loads(json.dumps(node.round(sent).to_dict(), allow_nan=False))
        if answer["kind"] == "cox_stratum":
            return CoxStratumAggregates.from_dict(answer)
        return CoxTimeSums.from_dict(answer)

    return ask


@pytest.mark.parametrize("stratified", [False, True])
def test_aggregates_sent_as_json_give_the_same_fit(rossi: pd.DataFrame, stratified: bool) -> None:
    nodes = _nodes(rossi, stratified=stratified)
    direct = _fit(nodes)
    over_json = fit_cox_federated([_over_json(node) for node in nodes], COVARIATES)
    np.testing.assert_allclose(over_json.coef, direct.coef, rtol=1e-14)
    np.testing.assert_allclose(over_json.se, direct.se, rtol=1e-14)


def test_wald_and_score_tests_equal_their_textbook_formulas(rossi: pd.DataFrame) -> None:
    result = _fit(_nodes(rossi, stratified=False))
    wald = result.coef @ np.linalg.solve(result.covariance, result.coef)
    np.testing.assert_allclose(result.wald_statistic, wald, rtol=RTOL)
    at_zero = CoxNodeData(
        rossi["week"], rossi["arrest"], rossi[COVARIATES].to_numpy()
    ).stratum_round(np.zeros(len(COVARIATES)))
    score = at_zero.gradient @ np.linalg.solve(-at_zero.hessian, at_zero.gradient)
    np.testing.assert_allclose(result.score_statistic, score, rtol=RTOL)
    np.testing.assert_allclose(result.loglik_null, at_zero.loglik, rtol=RTOL)
    assert result.df == len(COVARIATES)


def test_local_fit_codes_text_columns_against_the_first_level(rossi: pd.DataFrame) -> None:
    arm = np.where(rossi["fin"] == 1, "financial_aid", "control")
    result = fit_cox(rossi["week"], rossi["arrest"], {"arm": arm, "age": rossi["age"]})
    reference = CoxPHFitter().fit(
        rossi[["week", "arrest", "fin", "age"]], "week", "arrest", fit_options=TIGHT
    )
    assert result.covariates == ("arm[T.financial_aid]", "age")
    np.testing.assert_allclose(result.coef, reference.params_.to_numpy(), rtol=RTOL)


def test_large_covariate_values_do_not_overflow(rossi: pd.DataFrame) -> None:
    # Age in days: exp(x·beta) would overflow without the per-node shift.
    days = rossi.assign(age=rossi["age"] * 365.25 + 40_000)
    result = _fit(_nodes(days, stratified=False))
    years = _fit(_nodes(rossi, stratified=False))
    np.testing.assert_allclose(result.coef[1] * 365.25, years.coef[1], rtol=1e-7)
    np.testing.assert_allclose(result.loglik, years.loglik, rtol=1e-9)


def test_a_covariate_separating_events_warns_that_the_fit_did_not_converge() -> None:
    time = np.arange(1.0, 21.0)
    event = np.ones(20)
    x = (time <= 10).astype(float)  # every early failure has x = 1: monotone likelihood
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = fit_cox(time, event, {"x": x}, max_iterations=15)
    assert not result.converged
    assert result.iterations == 15


def test_result_dict_is_json_ready_and_keyed_by_covariate(rossi: pd.DataFrame) -> None:
    result = _fit(_nodes(rossi, stratified=False))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert list(data["coef"]) == COVARIATES
    assert set(data["se"]) == set(COVARIATES)
    assert data["converged"] is True
    assert data["ties"] == "efron"
    assert "prio" in result.summary()
    assert "LR chi2" in result.summary()


def test_time_sums_release_counts_a_policy_can_check(rossi: pd.DataFrame) -> None:
    node = _nodes(rossi, stratified=False)[0]
    sums = node.round(np.zeros(len(COVARIATES)))
    assert isinstance(sums, CoxTimeSums)
    assert sums.n == node.n
    assert sums.n_events == node.n_events == int(sums.events.sum())
    assert sums.to_dict()["n_events"] == node.n_events


def test_no_events_is_refused() -> None:
    with pytest.raises(StatisticsError, match="no events"):
        fit_cox([1, 2, 3], [0, 0, 0], {"x": [1.0, 2.0, 3.0]})


def test_collinear_covariates_are_refused(rossi: pd.DataFrame) -> None:
    with pytest.raises(StatisticsError, match="singular"):
        fit_cox(rossi["week"], rossi["arrest"], {"age": rossi["age"], "age2": 2 * rossi["age"]})


def test_nodes_answering_in_different_designs_are_refused(rossi: pd.DataFrame) -> None:
    stratified = _nodes(rossi, stratified=True)[0]
    pooled = _nodes(rossi, stratified=False)[1]
    with pytest.raises(StatisticsError, match="some nodes answered stratified"):
        fit_cox_federated([stratified.round, pooled.round], COVARIATES)


def test_beta_of_the_wrong_length_is_refused(rossi: pd.DataFrame) -> None:
    node = _nodes(rossi, stratified=True)[0]
    with pytest.raises(StatisticsError, match="beta: 2 values for 7 covariates"):
        node.round(np.zeros(2))


def test_unknown_ties_method_is_refused() -> None:
    with pytest.raises(StatisticsError, match="ties: 'exact'"):
        CoxNodeData([1, 2], [1, 1], [[0.0], [1.0]], ties="exact")


def test_strata_in_an_unstratified_node_are_refused() -> None:
    with pytest.raises(StatisticsError, match="only a stratified model has strata"):
        CoxNodeData([1, 2], [1, 1], [[0.0], [1.0]], stratified=False, strata=["a", "b"])
