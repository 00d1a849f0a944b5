"""Generalised linear models (gaussian, binomial, Poisson) federated by IRLS rounds.

Iteratively reweighted least squares needs, at the current ``beta``, only ``X'WX`` and
``X'Wz`` — sums over rows, so they add across nodes. Each round the lead sends ``beta`` to
every node; a node answers with :class:`~consortia.stats.glm_node.GlmAggregates` (``X'WX``,
``X'Wz``, deviance, Pearson chi-square, log-likelihood, n); the lead adds them and solves for
the next ``beta``. The pooled result equals the fit on the pooled records.

This module is the lead's half. A node keeps its rows in a
:class:`~consortia.stats.glm_node.GlmNodeData` for the session (the node's half is
:mod:`consortia.stats.glm_node`); :func:`fit_glm_federated` drives the rounds through one
callable per node; :func:`fit_glm` runs the same code locally.
Categorical covariates are dummy-coded over levels agreed across nodes
(:mod:`consortia.stats.design`).

Each family uses its canonical link: gaussian–identity, binomial–logit, Poisson–log. The
gaussian dispersion is RSS/(n − p) and its tests use the t distribution; binomial and Poisson
have dispersion 1 and z tests. Deviance, log-likelihood and AIC follow statsmodels' ``GLM``
(AIC = −2·llf + 2p; gaussian llf at the ML scale RSS/n). The null deviance is that of the
intercept-only model; a model without an ``Intercept`` term is compared with ``beta = 0``
(as R does; statsmodels always fits an intercept-only null model).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats.design import design_matrix
from consortia.stats.glm_node import LINKS, Family, FloatArray, GlmAggregates, GlmNodeData
from consortia.stats.results import (
    ConvergenceWarning,
    StatResult,
    format_table,
    read_fit_fields,
    to_jsonable,
)

if TYPE_CHECKING:
    from scipy import stats as scipy_stats
else:
    from consortia.stats.lazy_scipy import stats as scipy_stats

__all__ = ["GlmResult", "fit_glm", "fit_glm_federated"]


def _link(family: Family, mu: float) -> float:
    """The canonical link at one mean value (used for the null model's start)."""
    if family == "binomial":
        return math.log(mu / (1 - mu))
    if family == "poisson":
        return math.log(mu)
    return mu


@dataclass(frozen=True, eq=False)
class GlmResult(StatResult):
    """A fitted GLM: coefficients with SEs, tests and CIs, fit statistics, diagnostics."""

    family: Family
    link: str
    covariates: tuple[str, ...]
    coef: FloatArray
    se: FloatArray
    statistic: FloatArray
    statistic_name: Literal["t", "z"]
    p_value: FloatArray
    ci_lower: FloatArray
    ci_upper: FloatArray
    covariance: FloatArray
    scale: float
    n: int
    df_resid: int
    deviance: float
    null_deviance: float
    pearson_chi2: float
    loglik: float
    aic: float
    n_nodes: int
    iterations: int
    rounds: int
    converged: bool
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        keyed = {
            name: {c: to_jsonable(getattr(self, name)[i]) for i, c in enumerate(self.covariates)}
            for name in ("coef", "se", "statistic", "p_value", "ci_lower", "ci_upper")
        }
        scalars = {
            name: to_jsonable(getattr(self, name))
            for name in (
                "family",
                "link",
                "statistic_name",
                "scale",
                "n",
                "df_resid",
                "deviance",
                "null_deviance",
                "pearson_chi2",
                "loglik",
                "aic",
                "n_nodes",
                "iterations",
                "rounds",
                "converged",
                "alpha",
            )
        }
        return {
            "kind": "glm",
            "covariates": list(self.covariates),
            **keyed,
            "covariance": to_jsonable(self.covariance),
            **scalars,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlmResult:
        """Read the fit back from :meth:`to_dict` (per-term values keyed by covariate)."""
        return cls(
            **read_fit_fields(
                cls, data, ("coef", "se", "statistic", "p_value", "ci_lower", "ci_upper")
            )
        )

    def summary(self) -> str:
        level = f"{100 * (1 - self.alpha):g}%"
        rows = [
            [
                name,
                float(self.coef[i]),
                float(self.se[i]),
                float(self.statistic[i]),
                float(self.p_value[i]),
                float(self.ci_lower[i]),
                float(self.ci_upper[i]),
            ]
            for i, name in enumerate(self.covariates)
        ]
        table = format_table(
            ["term", "coef", "se", self.statistic_name, "p", f"{level} lower", "upper"], rows
        )
        return (
            f"GLM {self.family} ({self.link} link): n={self.n}, df_resid={self.df_resid}, "
            f"nodes={self.n_nodes}\n{table}\n"
            f"deviance {self.deviance:.4f} (null {self.null_deviance:.4f}), "
            f"dispersion {self.scale:.4g}, log-likelihood {self.loglik:.4f}, AIC {self.aic:.4f}\n"
            f"{'converged' if self.converged else 'NOT converged'} in {self.iterations} "
            f"iterations ({self.rounds} rounds)"
        )


def _evaluate(
    nodes: Sequence[Callable[[FloatArray], GlmAggregates]], beta: FloatArray
) -> GlmAggregates:
    answers = [node(beta.copy()) for node in nodes]
    total = answers[0]
    for answer in answers[1:]:
        total = total + answer
    return total


def _singularity(xtwx: FloatArray, names: Sequence[str]) -> str | None:
    """Why ``X'WX`` cannot be inverted, or ``None`` when it can."""
    if not np.isfinite(xtwx).all():
        return "X'WX has infinite or missing entries"
    diagonal = np.diag(xtwx)
    empty = [name for name, value in zip(names, diagonal, strict=True) if not value > 0]
    if empty:
        return f"terms {empty} carry no weight in any row"
    scaling = 1 / np.sqrt(diagonal)
    # Scale-free condition number: large only for (near-)collinear terms.
    condition = float(np.linalg.cond(xtwx * np.outer(scaling, scaling)))
    if not condition < 1e12:
        return (
            "the design is singular (collinear covariates, or a level never seen with some "
            f"other level?); scaled condition number {condition:.3g}"
        )
    return None


def _null_deviance(
    nodes: Sequence[Callable[[FloatArray], GlmAggregates]],
    names: Sequence[str],
    start: GlmAggregates,
    tolerance: float,
) -> tuple[float, int]:
    """Deviance of the intercept-only model (or at beta = 0 without an intercept)."""
    beta = np.zeros(len(names))
    if "Intercept" not in names:
        return _evaluate(nodes, beta).deviance, 1
    at = names.index("Intercept")
    beta[at] = _link(start.family, start.sum_y / start.sum_weights)
    rounds = 0
    for _ in range(50):
        aggregates = _evaluate(nodes, beta)
        rounds += 1
        # IRLS on the intercept alone: the other coefficients stay at zero.
        step = aggregates.xtwz[at] / aggregates.xtwx[at, at] - beta[at]
        beta[at] += step
        if abs(step) <= tolerance * (1 + abs(beta[at])):
            return aggregates.deviance, rounds
    return aggregates.deviance, rounds


def fit_glm_federated(
    nodes: Sequence[Callable[[FloatArray], GlmAggregates]],
    covariates: Sequence[str],
    *,
    alpha: float = 0.05,
    max_iterations: int = 100,
    tolerance: float = 1e-10,
    max_halvings: int = 30,
) -> GlmResult:
    """Fit a GLM by IRLS rounds over nodes (lead side); the family is the nodes'.

    Each element of ``nodes`` sends ``beta`` to one node and returns its aggregates. A step
    that raises the deviance is halved. Iteration stops when the largest coefficient change
    is below ``tolerance·(1 + |beta|)`` and the relative deviance change below ``tolerance``;
    otherwise a :class:`ConvergenceWarning` is issued.

    >>> x = np.column_stack([np.ones(6), [0, 1, 2, 3, 4, 5]])
    >>> nodes = [GlmNodeData([1, 3, 2, 5, 4, 6][i::2], x[i::2]) for i in range(2)]
    >>> fit = fit_glm_federated([node.round for node in nodes], ["Intercept", "dose"])
    >>> fit.coef.round(4).tolist(), fit.statistic_name
    ([1.2857, 0.8857], 't')
    """
    names = tuple(covariates)
    if not nodes:
        raise StatisticsError("GLM: no nodes")
    if not names:
        raise StatisticsError("GLM: no terms in the model")
    if not 0 < alpha < 1:
        raise StatisticsError(f"alpha: {alpha} must be between 0 and 1")
    start = _evaluate(nodes, np.zeros(0))
    rounds = 1
    family = start.family
    p = len(names)
    if start.xtwz.size != p:
        raise StatisticsError(f"GLM: nodes have {start.xtwz.size} terms, names give {p}")
    if start.n <= p:
        raise StatisticsError(f"GLM: {start.n} rows cannot estimate {p} coefficients")
    problem = _singularity(start.xtwx, names)
    if problem:
        raise StatisticsError(f"GLM: {problem}")
    mean = start.sum_y / start.sum_weights
    if family != "gaussian" and not 0 < mean < (1 if family == "binomial" else math.inf):
        raise StatisticsError("GLM: the outcome never varies")
    beta = np.asarray(np.linalg.solve(start.xtwx, start.xtwz), dtype=np.float64)
    previous: tuple[FloatArray, float] | None = None
    converged = False
    halvings = 0
    iterations = 0
    current = start
    while iterations < max_iterations:
        current = _evaluate(nodes, beta)
        rounds += 1
        worse = not math.isfinite(current.deviance) or (
            previous is not None and current.deviance > previous[1] + 1e-12 * (abs(previous[1]) + 1)
        )
        if worse:
            if previous is None:
                raise StatisticsError("GLM: the deviance is not finite at the first estimate")
            if halvings == max_halvings:
                beta, current = previous[0], _evaluate(nodes, previous[0])
                rounds += 1
                break
            halvings += 1
            beta = (beta + previous[0]) / 2
            continue
        iterations += 1
        halvings = 0
        if _singularity(current.xtwx, names):
            break  # weights vanished: fitted means reached 0 or 1 (separation)
        following = np.asarray(np.linalg.solve(current.xtwx, current.xtwz), dtype=np.float64)
        step = float(np.max(np.abs(following - beta)))
        change = math.inf if previous is None else abs(current.deviance - previous[1])
        if step <= tolerance * (1 + float(np.max(np.abs(beta)))) and change <= tolerance * (
            abs(current.deviance) + 0.1
        ):
            converged = True
            break
        previous = (beta, current.deviance)
        beta = following
    if not converged:
        warnings.warn(
            f"GLM: IRLS did not converge in {iterations} iterations; estimates are doubtful "
            "(perfect separation, or too few iterations?)",
            ConvergenceWarning,
            stacklevel=2,
        )
    null_deviance, null_rounds = _null_deviance(nodes, names, start, tolerance)
    rounds += null_rounds
    df_resid = current.n - p
    if _singularity(current.xtwx, names):
        inverse = np.full((p, p), np.nan)
        np.fill_diagonal(inverse, np.inf)
    else:
        inverse = np.asarray(np.linalg.inv(current.xtwx), dtype=np.float64)
    if family == "gaussian":
        scale = current.pearson_chi2 / df_resid
        loglik = -current.n / 2 * (math.log(2 * math.pi * current.deviance / current.n) + 1)
        statistic_name: Literal["t", "z"] = "t"
        reference: Any = scipy_stats.t(df_resid)
    else:
        scale = 1.0
        loglik = current.loglik
        statistic_name = "z"
        reference = scipy_stats.norm()
    covariance = inverse * scale
    se = np.sqrt(np.diag(covariance))
    statistic = beta / se
    critical = float(reference.ppf(1 - alpha / 2))
    return GlmResult(
        family=family,
        link=LINKS[family],
        covariates=names,
        coef=beta,
        se=se,
        statistic=statistic,
        statistic_name=statistic_name,
        p_value=np.asarray(2 * reference.sf(np.abs(statistic)), dtype=np.float64),
        ci_lower=beta - critical * se,
        ci_upper=beta + critical * se,
        covariance=covariance,
        scale=scale,
        n=current.n,
        df_resid=df_resid,
        deviance=current.deviance,
        null_deviance=null_deviance,
        pearson_chi2=current.pearson_chi2,
        loglik=loglik,
        aic=-2 * loglik + 2 * p,
        n_nodes=len(nodes),
        iterations=iterations,
        rounds=rounds,
        converged=converged,
        alpha=alpha,
    )


def fit_glm(
    outcome: npt.ArrayLike,
    columns: Mapping[str, npt.ArrayLike],
    covariates: Sequence[str],
    *,
    family: str = "gaussian",
    trials: npt.ArrayLike | None = None,
    offset: npt.ArrayLike | None = None,
    intercept: bool = True,
    alpha: float = 0.05,
    max_iterations: int = 100,
    tolerance: float = 1e-10,
) -> GlmResult:
    """Fit a GLM on local records (one node, same code as the federated fit).

    Text and boolean columns are dummy-coded against their first sorted level.

    >>> fit = fit_glm([0, 0, 1, 0, 1, 1], {"dose": [1, 2, 3, 4, 5, 6]}, ["dose"],
    ...               family="binomial")
    >>> fit.covariates, fit.converged, round(float(fit.coef[1]), 4)
    (('Intercept', 'dose'), True, 1.214)
    """
    design = design_matrix(columns, covariates, intercept=intercept)
    node = GlmNodeData(outcome, design.matrix, family=family, trials=trials, offset=offset)
    return fit_glm_federated(
        [node.round],
        design.names,
        alpha=alpha,
        max_iterations=max_iterations,
        tolerance=tolerance,
    )
