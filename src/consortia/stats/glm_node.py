"""The node's half of a federated GLM: its rows for the session and its sums in each IRLS round.

A node keeps its rows in a :class:`GlmNodeData` (the design matrix over the agreed levels,
the outcome, the family); at each ``beta`` the lead sends, it answers with
:class:`GlmAggregates` (``X'WX``, ``X'Wz``, deviance, Pearson chi-square, log-likelihood, n),
sums over rows that add across nodes. The lead's half, and the model's conventions, are in
:mod:`consortia.stats.glm`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from consortia.exceptions import StatisticsError
from consortia.stats._arrays import as_float_vector
from consortia.stats.results import to_jsonable

FloatArray = npt.NDArray[np.float64]

__all__ = ["Family", "GlmAggregates", "GlmNodeData"]

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
