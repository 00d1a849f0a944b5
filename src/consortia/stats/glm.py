"""Generalised linear models (gaussian, binomial, Poisson) federated by IRLS rounds.

Iteratively reweighted least squares needs, at the current ``beta``, only ``X'WX`` and
``X'Wz`` — sums over rows, so they add across nodes. Each round the lead sends ``beta`` to
every node; a node answers with :class:`GlmAggregates` (``X'WX``, ``X'Wz``, deviance, Pearson
chi-square, log-likelihood, n); the lead adds them and solves for the next ``beta``. The
pooled result equals the fit on the pooled records.

A node keeps its rows in a :class:`GlmNodeData` for the session; :func:`fit_glm_federated`
drives the rounds through one callable per node; :func:`fit_glm` runs the same code locally.
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

import dataclasses
import math
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy import stats as scipy_stats

from consortia.exceptions import StatisticsError
from consortia.stats._arrays import as_float_vector
from consortia.stats.design import design_matrix
from consortia.stats.results import (
    ConvergenceWarning,
    StatResult,
    format_table,
    from_jsonable,
    to_jsonable,
)

__all__ = [
    "Family",
    "GlmAggregates",
    "GlmNodeData",
    "GlmResult",
    "fit_glm",
    "fit_glm_federated",
]

FloatArray = npt.NDArray[np.float64]
Family = Literal["gaussian", "binomial", "poisson"]
LINKS: dict[str, str] = {"gaussian": "identity", "binomial": "logit", "poisson": "log"}


def _check_family(family: str) -> Family:
    if family == "gaussian":
        return "gaussian"
    if family == "binomial":
        return "binomial"
    if family == "poisson":
        return "poisson"
    raise StatisticsError(f"family: {family!r} must be 'gaussian', 'binomial' or 'poisson'")


def _link(family: Family, mu: float) -> float:
    """The canonical link at one mean value (used for the null model's start)."""
    if family == "binomial":
        return math.log(mu / (1 - mu))
    if family == "poisson":
        return math.log(mu)
    return mu


@dataclass(frozen=True, eq=False)
class GlmAggregates:
    """One node's (or several nodes' added) IRLS sums at the ``beta`` it was sent.

    ``sum_y`` is Σ successes (binomial), Σ counts (Poisson) or Σ y (gaussian) and
    ``sum_weights`` Σ trials (binomial) or the number of rows; with ``n`` they are the cells a
    disclosure policy checks.
    """

    family: Family
    xtwx: FloatArray
    xtwz: FloatArray
    deviance: float
    pearson_chi2: float
    loglik: float
    sum_y: float
    sum_weights: float
    n: int

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        """JSON-ready form for crossing the network (numpy arrays kept with ``arrays``)."""
        return {
            "kind": "glm",
            "family": self.family,
            "xtwx": self.xtwx if arrays else to_jsonable(self.xtwx),
            "xtwz": self.xtwz if arrays else to_jsonable(self.xtwz),
            "deviance": to_jsonable(self.deviance),
            "pearson_chi2": to_jsonable(self.pearson_chi2),
            "loglik": to_jsonable(self.loglik),
            "sum_y": self.sum_y,
            "sum_weights": self.sum_weights,
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlmAggregates:
        """Rebuild from :meth:`to_dict` output (``None`` stands for a non-finite value)."""
        xtwz = np.asarray(data["xtwz"], dtype=np.float64).reshape(-1)

        def number(key: str, missing: float) -> float:
            # JSON has no infinities: to_dict wrote them as None.
            value = data[key]
            return missing if value is None else float(value)

        return cls(
            family=_check_family(data["family"]),
            xtwx=np.asarray(data["xtwx"], dtype=np.float64).reshape(xtwz.size, xtwz.size),
            xtwz=xtwz,
            deviance=number("deviance", math.inf),
            pearson_chi2=number("pearson_chi2", math.inf),
            loglik=number("loglik", -math.inf),
            sum_y=float(data["sum_y"]),
            sum_weights=float(data["sum_weights"]),
            n=int(data["n"]),
        )

    def __add__(self, other: GlmAggregates) -> GlmAggregates:
        if other.family != self.family or other.xtwz.size != self.xtwz.size:
            raise StatisticsError(
                f"GLM: nodes disagree on the model ({self.family} with {self.xtwz.size} "
                f"terms vs {other.family} with {other.xtwz.size})"
            )
        return GlmAggregates(
            self.family,
            self.xtwx + other.xtwx,
            self.xtwz + other.xtwz,
            self.deviance + other.deviance,
            self.pearson_chi2 + other.pearson_chi2,
            self.loglik + other.loglik,
            self.sum_y + other.sum_y,
            self.sum_weights + other.sum_weights,
            self.n + other.n,
        )


class GlmNodeData:
    """One node's rows for a GLM session; each :meth:`round` costs only arithmetic.

    ``outcome`` is y (gaussian), 0/1 or successes out of ``trials`` (binomial), or counts
    (Poisson); ``offset`` is added to the linear predictor (e.g. log exposure). An empty
    ``beta`` asks for the starting round (IRLS from the family's starting means, as
    statsmodels does).

    >>> node = GlmNodeData([1.0, 2.0, 4.0], [[1, 0], [1, 1], [1, 2]], family="gaussian")
    >>> aggregates = node.round(np.array([1.0, 1.0]))
    >>> aggregates.n, aggregates.deviance, aggregates.xtwz.tolist()
    (3, 1.0, [7.0, 10.0])
    """

    def __init__(
        self,
        outcome: npt.ArrayLike,
        design: npt.ArrayLike,
        *,
        family: str = "gaussian",
        trials: npt.ArrayLike | None = None,
        offset: npt.ArrayLike | None = None,
    ) -> None:
        self.family: Family = _check_family(family)
        y = as_float_vector(outcome, "outcome")
        x = np.asarray(design, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != y.size:
            raise StatisticsError(f"design: shape {x.shape} does not match {y.size} outcomes")
        if not np.isfinite(x).all():
            raise StatisticsError("design: missing or infinite values")
        self.weights = np.ones(y.size)
        if trials is not None:
            if self.family != "binomial":
                raise StatisticsError("trials: only a binomial outcome has trials")
            self.weights = as_float_vector(trials, "trials")
            if self.weights.size != y.size or (self.weights <= 0).any():
                raise StatisticsError("trials: one positive number of trials per row is needed")
        if self.family == "binomial":
            bad = np.flatnonzero((y < 0) | (y > self.weights))
            if bad.size:
                raise StatisticsError(
                    f"outcome: {bad.size} values are outside 0 to the number of trials"
                )
            self.successes = y
            y = y / self.weights
        elif self.family == "poisson":
            bad = np.flatnonzero(y < 0)
            if bad.size:
                raise StatisticsError(f"outcome: {bad.size} negative counts")
            self.successes = y
        else:
            self.successes = y
        self.y = y
        self.x = x
        self.offset = np.zeros(y.size) if offset is None else as_float_vector(offset, "offset")
        if self.offset.size != y.size:
            raise StatisticsError(f"offset: {self.offset.size} values for {y.size} rows")
        self.n = int(y.size)
        # Terms of the deviance and log-likelihood that do not depend on beta, computed once
        # for the session (every round would otherwise recompute them over all rows).
        with np.errstate(divide="ignore", invalid="ignore"):
            self._y_log_y = special.xlogy(y, y)
            if self.family == "binomial":
                failures = self.weights - self.successes
                self._failures = failures
                self._one_trial = bool(np.all(self.weights == 1))
                self._other_log_other = special.xlogy(1 - y, 1 - y)
                self._log_choose = (
                    special.gammaln(self.weights + 1)
                    - special.gammaln(self.successes + 1)
                    - special.gammaln(failures + 1)
                )
            elif self.family == "poisson":
                self._log_factorial = special.gammaln(y + 1)
        self._sum_successes = float(np.sum(self.successes))
        self._sum_weights = float(np.sum(self.weights))

    def _start_mu(self) -> FloatArray:
        if self.family == "binomial":
            return (self.weights * self.y + 0.5) / (self.weights + 1)
        if self.family == "poisson":
            return (self.y + self.y.mean()) / 2 if self.n else self.y
        return self.y.copy()

    def round(self, beta: npt.ArrayLike) -> GlmAggregates:
        """Answer one IRLS round: X'WX, X'Wz, deviance and friends at ``beta``."""
        coefficients = np.asarray(beta, dtype=np.float64).reshape(-1)
        if coefficients.size == 0:
            mu = self._start_mu()
            with np.errstate(divide="ignore"):
                eta = self._link(mu)
        elif coefficients.size == self.x.shape[1]:
            eta = self.x @ coefficients + self.offset
            mu = self._inverse_link(eta)
        else:
            raise StatisticsError(f"beta: {coefficients.size} values for {self.x.shape[1]} terms")
        y, w = self.y, self.weights
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.family == "binomial":
                variance = mu * (1 - mu)
                log_mu = special.xlogy(y, mu)
                log_other = special.xlogy(1 - y, 1 - mu)
                unit = 2 * (self._y_log_y - log_mu + self._other_log_other - log_other)
                if self._one_trial:  # successes are y and failures 1 - y, bit for bit
                    loglik = self._log_choose + log_mu + log_other
                else:
                    loglik = (
                        self._log_choose
                        + special.xlogy(self.successes, mu)
                        + special.xlogy(self._failures, 1 - mu)
                    )
                mu_eta = variance  # dmu/deta for the logit link
            elif self.family == "poisson":
                variance = mu
                unit = 2 * (self._y_log_y - special.xlogy(y, mu) - y + mu)
                loglik = special.xlogy(y, mu) - mu - self._log_factorial
                mu_eta = mu
            else:
                variance = np.ones_like(mu)
                unit = (y - mu) ** 2
                loglik = np.zeros_like(mu)  # the lead uses the profile likelihood from the RSS
                mu_eta = np.ones_like(mu)
            working_weight = w * mu_eta**2 / variance
            working_response = eta - self.offset + (y - mu) / mu_eta
            pearson = w * (y - mu) ** 2 / variance
        xw = self.x * working_weight[:, None]
        return GlmAggregates(
            family=self.family,
            xtwx=xw.T @ self.x,
            xtwz=xw.T @ working_response,
            deviance=float(np.sum(w * unit)),
            pearson_chi2=float(np.sum(pearson)),
            loglik=float(np.sum(loglik)),
            sum_y=self._sum_successes,
            sum_weights=self._sum_weights,
            n=self.n,
        )

    def _link(self, mu: FloatArray) -> FloatArray:
        if self.family == "binomial":
            return np.asarray(np.log(mu / (1 - mu)), dtype=np.float64)
        if self.family == "poisson":
            return np.asarray(np.log(mu), dtype=np.float64)
        return mu

    def _inverse_link(self, eta: FloatArray) -> FloatArray:
        if self.family == "binomial":
            return np.asarray(special.expit(eta), dtype=np.float64)
        if self.family == "poisson":
            with np.errstate(over="ignore"):
                return np.asarray(np.exp(eta), dtype=np.float64)
        return eta


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
        if not isinstance(data, Mapping) or not isinstance(data.get("covariates"), list):
            raise StatisticsError("GlmResult: 'covariates' must be a list")
        covariates = tuple(str(name) for name in data["covariates"])
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {"covariates": covariates}
        for field in dataclasses.fields(cls):
            if field.name == "covariates":
                continue
            where = f"GlmResult.{field.name}"
            if field.name not in data:
                raise StatisticsError(f"{where}: missing")
            raw = data[field.name]
            if field.name in ("coef", "se", "statistic", "p_value", "ci_lower", "ci_upper"):
                if not isinstance(raw, Mapping) or list(raw) != list(covariates):
                    raise StatisticsError(f"{where}: expected a value per covariate")
                raw = list(raw.values())
            values[field.name] = from_jsonable(hints[field.name], raw, where)
        return cls(**values)

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
