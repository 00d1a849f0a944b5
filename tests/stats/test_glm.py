"""Federated GLMs equal statsmodels ``GLM`` on the pooled records.

References: statsmodels ``sm.GLM`` with the Gaussian, Binomial and Poisson families (their
canonical links), fitted with ``fit(tol=1e-14, tol_criterion="params")`` so its own
convergence is not the limit; gaussian fits with ``use_t=True`` (t tests with n − p df).
Data: statsmodels' bundled datasets (scotland, spector, star98, randhie) and synthetic
data, each split across three nodes.

Tolerances: 1e-8 relative (``RTOL``) on coefficients, standard errors, test statistics,
confidence limits, deviance, null deviance, log-likelihood, AIC and dispersion. p-values are
compared at 1e-6 relative: a p-value near 1e-10 magnifies a 1e-10 difference in ``z``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from consortia.exceptions import StatisticsError
from consortia.stats.design import design_matrix, level_counts, union_levels
from consortia.stats.glm import GlmResult, fit_glm, fit_glm_federated
from consortia.stats.glm_node import GlmAggregates, GlmNodeData
from consortia.stats.results import ConvergenceWarning

RTOL = 1e-8
P_RTOL = 1e-6
FAMILIES: dict[str, Any] = {
    "gaussian": sm.families.Gaussian,
    "binomial": sm.families.Binomial,
    "poisson": sm.families.Poisson,
}


def _node_of(n: int) -> npt.NDArray[np.int64]:
    return np.random.default_rng(5).choice(3, size=n, p=[0.5, 0.3, 0.2])


def _federated(
    outcome: npt.NDArray[np.float64],
    design: pd.DataFrame,
    family: str,
    *,
    trials: npt.NDArray[np.float64] | None = None,
    offset: npt.NDArray[np.float64] | None = None,
) -> GlmResult:
    node = _node_of(len(outcome))
    nodes = [
        GlmNodeData(
            outcome[node == k],
            design.to_numpy(dtype=float)[node == k],
            family=family,
            trials=None if trials is None else trials[node == k],
            offset=None if offset is None else offset[node == k],
        )
        for k in range(3)
    ]
    return fit_glm_federated([n.round for n in nodes], list(design.columns))


def _reference(
    outcome: npt.NDArray[np.float64],
    design: pd.DataFrame,
    family: str,
    *,
    trials: npt.NDArray[np.float64] | None = None,
    offset: npt.NDArray[np.float64] | None = None,
) -> Any:
    endog = outcome if trials is None else np.column_stack([outcome, trials - outcome])
    model = sm.GLM(endog, design.to_numpy(dtype=float), family=FAMILIES[family](), offset=offset)
    return model.fit(tol=1e-14, tol_criterion="params", use_t=family == "gaussian")


def _assert_equal_fits(result: GlmResult, reference: Any) -> None:
    np.testing.assert_allclose(result.coef, reference.params, rtol=RTOL)
    np.testing.assert_allclose(result.se, reference.bse, rtol=RTOL)
    np.testing.assert_allclose(result.statistic, reference.tvalues, rtol=RTOL)
    np.testing.assert_allclose(result.p_value, reference.pvalues, rtol=P_RTOL, atol=1e-300)
    limits = reference.conf_int()
    np.testing.assert_allclose(result.ci_lower, limits[:, 0], rtol=RTOL)
    np.testing.assert_allclose(result.ci_upper, limits[:, 1], rtol=RTOL)
    np.testing.assert_allclose(result.deviance, reference.deviance, rtol=RTOL)
    np.testing.assert_allclose(result.null_deviance, reference.null_deviance, rtol=RTOL)
    np.testing.assert_allclose(result.pearson_chi2, reference.pearson_chi2, rtol=RTOL)
    np.testing.assert_allclose(result.loglik, reference.llf, rtol=RTOL)
    np.testing.assert_allclose(result.aic, reference.aic, rtol=RTOL)
    np.testing.assert_allclose(result.scale, reference.scale, rtol=RTOL)
    assert result.df_resid == reference.df_resid
    assert result.n == reference.nobs
    assert result.converged


def _with_intercept(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(Intercept=1.0)[["Intercept", *frame.columns]]


def test_gaussian_from_three_nodes_equals_statsmodels_with_t_tests() -> None:
    data = sm.datasets.scotland.load_pandas().data
    design = _with_intercept(data.drop(columns="YES"))
    outcome = data["YES"].to_numpy(dtype=float)
    result = _federated(outcome, design, "gaussian")
    _assert_equal_fits(result, _reference(outcome, design, "gaussian"))
    assert result.statistic_name == "t"
    rss = float(np.sum((outcome - design.to_numpy() @ result.coef) ** 2))
    np.testing.assert_allclose(result.scale, rss / (len(outcome) - design.shape[1]), rtol=RTOL)


def test_binomial_from_three_nodes_equals_statsmodels_logit() -> None:
    data = sm.datasets.spector.load_pandas().data
    design = _with_intercept(data[["GPA", "TUCE", "PSI"]])
    outcome = data["GRADE"].to_numpy(dtype=float)
    result = _federated(outcome, design, "binomial")
    _assert_equal_fits(result, _reference(outcome, design, "binomial"))
    assert result.statistic_name == "z"
    assert result.scale == 1.0


def test_binomial_with_trials_equals_statsmodels_two_column_outcome() -> None:
    data = sm.datasets.star98.load_pandas().data
    design = _with_intercept(data[["LOWINC", "PERASIAN", "PERBLACK", "PERHISP", "PCTCHRT"]])
    successes = data["NABOVE"].to_numpy(dtype=float)
    trials = (data["NABOVE"] + data["NBELOW"]).to_numpy(dtype=float)
    result = _federated(successes, design, "binomial", trials=trials)
    _assert_equal_fits(result, _reference(successes, design, "binomial", trials=trials))


def test_poisson_from_three_nodes_equals_statsmodels() -> None:
    data = sm.datasets.randhie.load_pandas().data
    design = _with_intercept(data.drop(columns="mdvis"))
    outcome = data["mdvis"].to_numpy(dtype=float)
    result = _federated(outcome, design, "poisson")
    _assert_equal_fits(result, _reference(outcome, design, "poisson"))


def test_poisson_with_log_exposure_offset_equals_statsmodels() -> None:
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame({"Intercept": 1.0, "age": rng.normal(60, 10, n)})
    exposure = rng.uniform(0.2, 3.0, n)
    rate = np.exp(-3.0 + 0.04 * frame["age"].to_numpy())
    outcome = rng.poisson(exposure * rate).astype(float)
    offset = np.log(exposure)
    result = _federated(outcome, frame, "poisson", offset=offset)
    _assert_equal_fits(result, _reference(outcome, frame, "poisson", offset=offset))


def _trial_frame() -> pd.DataFrame:
    rng = np.random.default_rng(8)
    n = 500
    arm = rng.choice(["soc", "car_t", "placebo"], size=n)
    age = rng.normal(55, 12, size=n)
    eta = -1.0 + 0.02 * (age - 55) + np.select([arm == "car_t", arm == "soc"], [1.2, 0.4], 0.0)
    return pd.DataFrame(
        {
            "response": rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float),
            "age": age,
            "arm": arm,
            "node": _node_of(n),
        }
    )


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_categorical_covariate_coded_over_levels_unioned_across_nodes_equals_statsmodels(
    family: str,
) -> None:
    frame = _trial_frame()
    # Node 2 never enrolled a placebo patient: it must still code arm like the others.
    frame = frame[~((frame["node"] == 2) & (frame["arm"] == "placebo"))]
    parts = [frame[frame["node"] == k] for k in range(3)]
    assert "placebo" not in set(parts[2]["arm"])
    levels = union_levels([level_counts(part["arm"]) for part in parts])
    assert levels == ("car_t", "placebo", "soc")
    designs = [design_matrix(part, ["age", "arm"], {"arm": levels}) for part in parts]
    nodes = [
        GlmNodeData(part["response"], design.matrix, family=family)
        for part, design in zip(parts, designs, strict=True)
    ]
    result = fit_glm_federated([node.round for node in nodes], designs[0].names)
    reference = smf.glm("response ~ age + arm", frame, family=FAMILIES[family]()).fit(
        tol=1e-14, tol_criterion="params"
    )
    assert result.covariates == ("Intercept", "age", "arm[T.placebo]", "arm[T.soc]")
    coef = result.to_dict()["coef"]
    se = result.to_dict()["se"]
    for name in result.covariates:
        np.testing.assert_allclose(coef[name], reference.params[name], rtol=RTOL)
        np.testing.assert_allclose(se[name], reference.bse[name], rtol=RTOL)


def test_local_fit_equals_the_federated_fit_of_the_same_rows() -> None:
    frame = _trial_frame()
    local = fit_glm(frame["response"], frame, ["age", "arm"], family="binomial")
    levels = union_levels([level_counts(frame["arm"])])
    parts = [frame[frame["node"] == k] for k in range(3)]
    nodes = [
        GlmNodeData(
            part["response"],
            design_matrix(part, ["age", "arm"], {"arm": levels}).matrix,
            family="binomial",
        )
        for part in parts
    ]
    federated = fit_glm_federated([node.round for node in nodes], local.covariates)
    np.testing.assert_allclose(federated.coef, local.coef, rtol=1e-10)
    np.testing.assert_allclose(federated.se, local.se, rtol=1e-10)
    assert federated.n_nodes == 3
    assert local.n_nodes == 1


def _over_json(node: GlmNodeData) -> Callable[[npt.NDArray[np.float64]], GlmAggregates]:
    """What a transport does: beta and the answer cross as JSON text."""

    def ask(beta: npt.NDArray[np.float64]) -> GlmAggregates:
        sent = np.asarray(json.loads(json.dumps(beta.tolist())), dtype=np.float64)
        answer = json.loads(json.dumps(node.round(sent).to_dict(), allow_nan=False))
        return GlmAggregates.from_dict(answer)

    return ask


def test_aggregates_sent_as_json_give_the_same_fit() -> None:
    data = sm.datasets.spector.load_pandas().data
    design = _with_intercept(data[["GPA", "TUCE", "PSI"]]).to_numpy()
    nodes = [GlmNodeData(data["GRADE"][k::3], design[k::3], family="binomial") for k in range(3)]
    names = ["Intercept", "GPA", "TUCE", "PSI"]
    direct = fit_glm_federated([node.round for node in nodes], names)
    over_json = fit_glm_federated([_over_json(node) for node in nodes], names)
    np.testing.assert_allclose(over_json.coef, direct.coef, rtol=1e-14)
    np.testing.assert_allclose(over_json.se, direct.se, rtol=1e-14)


def test_result_dict_is_json_ready_and_keyed_by_covariate() -> None:
    frame = _trial_frame()
    result = fit_glm(frame["response"], frame, ["age", "arm"], family="binomial")
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert list(data["coef"]) == ["Intercept", "age", "arm[T.placebo]", "arm[T.soc]"]
    assert set(data["se"]) == set(data["coef"])
    for key in ("deviance", "null_deviance", "aic", "iterations", "converged"):
        assert key in data
    text = result.summary()
    assert "arm[T.soc]" in text
    assert "binomial (logit link)" in text


def test_a_separating_covariate_warns_that_irls_did_not_converge() -> None:
    x = np.arange(20.0)
    y = (x >= 10).astype(float)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = fit_glm(y, {"x": x}, ["x"], family="binomial", max_iterations=25)
    assert not result.converged


def test_collinear_covariates_are_refused() -> None:
    x = np.arange(10.0)
    with pytest.raises(StatisticsError, match="singular"):
        fit_glm(x + 1, {"x": x, "twice_x": 2 * x}, ["x", "twice_x"])


def test_binomial_outcome_outside_its_trials_is_refused() -> None:
    with pytest.raises(
        StatisticsError, match=r"outcome: 1 values are outside 0 to the number of trials"
    ):
        GlmNodeData([1, 3], [[1.0], [1.0]], family="binomial", trials=[2, 2])


def test_negative_poisson_count_is_refused() -> None:
    with pytest.raises(StatisticsError, match=r"outcome: 1 negative counts"):
        GlmNodeData([-1, 3], [[1.0], [1.0]], family="poisson")


def test_unknown_family_is_refused() -> None:
    with pytest.raises(StatisticsError, match="family: 'gamma'"):
        GlmNodeData([1, 3], [[1.0], [1.0]], family="gamma")


def test_an_outcome_that_never_varies_is_refused() -> None:
    with pytest.raises(StatisticsError, match="never varies"):
        fit_glm([0.0] * 6, {"x": [1, 2, 3, 4, 5, 6]}, ["x"], family="binomial")


def test_nodes_fitting_different_families_are_refused() -> None:
    design = np.column_stack([np.ones(4), [1.0, 2.0, 3.0, 4.0]])
    gaussian = GlmNodeData([0, 1, 1, 0], design, family="gaussian")
    binomial = GlmNodeData([0, 1, 1, 0], design, family="binomial")
    with pytest.raises(StatisticsError, match="nodes disagree"):
        fit_glm_federated([gaussian.round, binomial.round], ["Intercept", "x"])


def test_aggregates_carry_the_counts_a_policy_checks() -> None:
    node = GlmNodeData([0, 1, 1, 0, 1], np.ones((5, 1)), family="binomial")
    aggregates = node.round(np.zeros(1)).to_dict()
    assert aggregates["n"] == 5
    assert aggregates["sum_y"] == 3
