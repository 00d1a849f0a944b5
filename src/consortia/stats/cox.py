"""Cox proportional-hazards regression, federated by Newton rounds.

Each round the lead sends ``beta`` to every node and gets additive aggregates back
(:mod:`consortia.stats.cox_aggregates`). Two designs give exactly the pooled fit:

* **stratified by node** — each node is its own stratum and returns its partial
  log-likelihood, gradient and Hessian; the lead adds them;
* **unstratified** — each node returns per-time sums; the lead adds them by time and computes
  the Breslow or Efron partial likelihood of the pooled records.

A node holds its records in a :class:`CoxNodeData` for the session; the lead drives
:func:`fit_cox_federated` with one callable per node, "send beta, get aggregates back", so
any transport can sit in between. :func:`fit_cox` runs the same code on local records.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats._arrays import as_event_vector, as_float_vector, as_labels, bin_times
from consortia.stats.cox_aggregates import (
    CoxAggregates,
    CoxStratumAggregates,
    CoxStratumRecords,
    CoxTimeSums,
    Ties,
    check_ties,
    combine_cox_time_sums,
    partial_likelihood,
)
from consortia.stats.design import design_matrix
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

__all__ = ["CoxNodeData", "CoxResult", "fit_cox", "fit_cox_federated"]

FloatArray = npt.NDArray[np.float64]


class CoxNodeData:
    """One node's records for a Cox session; each :meth:`round` costs only arithmetic.

    ``stratified=True`` makes the node (and, within it, each value of ``strata``) its own
    stratum; ``stratified=False`` returns per-time sums for the unstratified pooled fit.
    ``time_bin`` reports times at the start of their bins (more ties, same pooled result as
    fitting the binned times); ``None`` keeps exact times.

    >>> node = CoxNodeData([5, 8, 3, 9], [1, 0, 1, 1], [[1.0], [0.0], [1.0], [0.0]])
    >>> aggregates = node.round(np.zeros(1))
    >>> aggregates.n, aggregates.n_events, round(aggregates.loglik, 4)
    (4, 3, -2.4849)
    """

    def __init__(
        self,
        time: npt.ArrayLike,
        event: npt.ArrayLike,
        covariates: npt.ArrayLike,
        *,
        ties: str = "efron",
        stratified: bool = True,
        strata: npt.ArrayLike | None = None,
        time_bin: float | None = None,
    ) -> None:
        times = as_float_vector(time, "time")
        if (times < 0).any():
            raise StatisticsError(f"time: {int((times < 0).sum())} negative times")
        events = as_event_vector(event, times.size)
        x = np.asarray(covariates, dtype=np.float64)
        if x.ndim == 1 and times.size:
            x = x.reshape(times.size, -1)
        if x.ndim != 2 or x.shape[0] != times.size:
            raise StatisticsError(f"covariates: shape {x.shape} does not match {times.size} rows")
        if not np.isfinite(x).all():
            raise StatisticsError("covariates: missing or infinite values")
        self.ties: Ties = check_ties(ties)
        self.stratified = stratified
        self.n_covariates = x.shape[1]
        binned = bin_times(times, time_bin)
        if strata is not None and not stratified:
            raise StatisticsError("strata: only a stratified model has strata within a node")
        if strata is None:
            self._strata = [CoxStratumRecords(binned, events, x)]
        else:
            labels = np.array(as_labels(strata, "strata"), dtype=object)
            if labels.size != times.size:
                raise StatisticsError(f"strata: {labels.size} values for {times.size} rows")
            self._strata = [
                CoxStratumRecords(binned[labels == s], events[labels == s], x[labels == s])
                for s in sorted(set(labels.tolist()))
            ]
        self.n = int(times.size)
        self.n_events = int(events.sum())

    def _check_beta(self, beta: npt.ArrayLike) -> FloatArray:
        coefficients = np.asarray(beta, dtype=np.float64).reshape(-1)
        if coefficients.size != self.n_covariates:
            raise StatisticsError(
                f"beta: {coefficients.size} values for {self.n_covariates} covariates"
            )
        return coefficients

    def stratum_round(self, beta: npt.ArrayLike) -> CoxStratumAggregates:
        """This node's own partial likelihood, gradient and Hessian at ``beta``."""
        coefficients = self._check_beta(beta)
        p = coefficients.size
        loglik, gradient, hessian = 0.0, np.zeros(p), np.zeros((p, p))
        for stratum in self._strata:
            ll, g, h = partial_likelihood(stratum.time_sums(coefficients, self.ties), coefficients)
            loglik, gradient, hessian = loglik + ll, gradient + g, hessian + h
        return CoxStratumAggregates(self.ties, loglik, gradient, hessian, self.n, self.n_events)

    def time_sums_round(self, beta: npt.ArrayLike) -> CoxTimeSums:
        """This node's per-time sums at ``beta`` for the unstratified fit."""
        return self._strata[0].time_sums(self._check_beta(beta), self.ties)

    def round(self, beta: npt.ArrayLike) -> CoxAggregates:
        """Answer one Newton round: what the lead needs at ``beta``."""
        return self.stratum_round(beta) if self.stratified else self.time_sums_round(beta)


@dataclass(frozen=True, eq=False)
class CoxResult(StatResult):
    """A fitted Cox model: coefficients, hazard ratios, tests and convergence diagnostics."""

    covariates: tuple[str, ...]
    coef: FloatArray
    se: FloatArray
    z: FloatArray
    p_value: FloatArray
    hazard_ratio: FloatArray
    ci_lower: FloatArray
    ci_upper: FloatArray
    covariance: FloatArray
    loglik: float
    loglik_null: float
    lr_statistic: float
    lr_p_value: float
    wald_statistic: float
    wald_p_value: float
    score_statistic: float
    score_p_value: float
    n: int
    n_events: int
    ties: Ties
    stratified: bool
    n_nodes: int
    iterations: int
    rounds: int
    converged: bool
    gradient_norm: float
    alpha: float

    @property
    def df(self) -> int:
        """Degrees of freedom of the global tests."""
        return len(self.covariates)

    def to_dict(self) -> dict[str, Any]:
        keyed = {
            name: {c: to_jsonable(getattr(self, name)[i]) for i, c in enumerate(self.covariates)}
            for name in ("coef", "se", "z", "p_value", "hazard_ratio", "ci_lower", "ci_upper")
        }
        scalars = {
            name: to_jsonable(getattr(self, name))
            for name in (
                "loglik",
                "loglik_null",
                "lr_statistic",
                "lr_p_value",
                "wald_statistic",
                "wald_p_value",
                "score_statistic",
                "score_p_value",
                "n",
                "n_events",
                "ties",
                "stratified",
                "n_nodes",
                "iterations",
                "rounds",
                "converged",
                "gradient_norm",
                "alpha",
                "df",
            )
        }
        return {
            "kind": "cox",
            "covariates": list(self.covariates),
            **keyed,
            "covariance": to_jsonable(self.covariance),
            **scalars,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CoxResult:
        """Read the fit back from :meth:`to_dict` (per-term values keyed by covariate)."""
        return cls(
            **read_fit_fields(
                cls, data, ("coef", "se", "z", "p_value", "hazard_ratio", "ci_lower", "ci_upper")
            )
        )

    def summary(self) -> str:
        level = f"{100 * (1 - self.alpha):g}%"
        rows = [
            [name, *(float(v[i]) for v in self._columns())]
            for i, name in enumerate(self.covariates)
        ]
        table = format_table(
            ["covariate", "coef", "se", "HR", f"HR {level} lower", "HR upper", "z", "p"], rows
        )
        strata = "stratified by node" if self.stratified else "unstratified"
        return (
            f"Cox proportional hazards ({self.ties} ties, {strata}): n={self.n}, "
            f"events={self.n_events}, nodes={self.n_nodes}\n{table}\n"
            f"log-likelihood {self.loglik:.4f} (null {self.loglik_null:.4f}); "
            f"LR chi2 {self.lr_statistic:.4f} on {self.df} df, p={self.lr_p_value:.4g}; "
            f"Wald chi2 {self.wald_statistic:.4f}, p={self.wald_p_value:.4g}\n"
            f"{'converged' if self.converged else 'NOT converged'} in {self.iterations} "
            f"iterations ({self.rounds} rounds), |gradient| {self.gradient_norm:.2e}"
        )

    def _columns(self) -> tuple[FloatArray, ...]:
        return (
            self.coef,
            self.se,
            self.hazard_ratio,
            self.ci_lower,
            self.ci_upper,
            self.z,
            self.p_value,
        )


@dataclass(frozen=True)
class _Evaluation:
    loglik: float
    gradient: FloatArray
    hessian: FloatArray
    n: int
    n_events: int
    ties: Ties
    stratified: bool


def _evaluate(
    nodes: Sequence[Callable[[FloatArray], CoxAggregates]], beta: FloatArray
) -> _Evaluation:
    answers = [node(beta.copy()) for node in nodes]
    ties = {answer.ties for answer in answers}
    if len(ties) > 1:
        raise StatisticsError(f"Cox: nodes used different ties methods {sorted(ties)}")
    if all(isinstance(answer, CoxStratumAggregates) for answer in answers):
        strata = [answer for answer in answers if isinstance(answer, CoxStratumAggregates)]
        for answer in strata:
            if answer.gradient.size != beta.size:
                raise StatisticsError(f"Cox: a node sent {answer.gradient.size} gradients")
        return _Evaluation(
            loglik=sum(answer.loglik for answer in strata),
            gradient=np.sum([answer.gradient for answer in strata], axis=0),
            hessian=np.sum([answer.hessian for answer in strata], axis=0),
            n=sum(answer.n for answer in strata),
            n_events=sum(answer.n_events for answer in strata),
            ties=strata[0].ties,
            stratified=True,
        )
    if all(isinstance(answer, CoxTimeSums) for answer in answers):
        combined = combine_cox_time_sums([a for a in answers if isinstance(a, CoxTimeSums)])
        loglik, gradient, hessian = partial_likelihood(combined, beta)
        return _Evaluation(
            loglik, gradient, hessian, combined.n, combined.n_events, combined.ties, False
        )
    raise StatisticsError("Cox: some nodes answered stratified, others unstratified")


def _no_worse(candidate: float, current: float) -> bool:
    return math.isfinite(candidate) and candidate >= current - 1e-12 * abs(current)


def _information_inverse(hessian: FloatArray) -> FloatArray:
    try:
        return np.asarray(np.linalg.inv(-hessian), dtype=np.float64)
    except np.linalg.LinAlgError:
        raise StatisticsError(
            "Cox: the information matrix is singular (collinear or constant covariates?)"
        ) from None


def fit_cox_federated(
    nodes: Sequence[Callable[[FloatArray], CoxAggregates]],
    covariates: Sequence[str],
    *,
    alpha: float = 0.05,
    max_iterations: int = 50,
    tolerance: float = 1e-10,
    max_halvings: int = 30,
) -> CoxResult:
    """Fit a Cox model by Newton–Raphson rounds over nodes (lead side).

    Each element of ``nodes`` sends ``beta`` to one node and returns its aggregates. Ties and
    stratification are what the nodes were set up with (all must agree). A step that lowers
    the log-likelihood is halved. Iteration stops when both |Δ log-likelihood| and the
    largest |step| are below ``tolerance``; otherwise a :class:`ConvergenceWarning` is issued.

    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(60, 1))
    >>> t = rng.exponential(np.exp(-0.7 * x[:, 0]))
    >>> nodes = [CoxNodeData(t[i::3], np.ones(20), x[i::3], stratified=False) for i in range(3)]
    >>> fit = fit_cox_federated([node.round for node in nodes], ["x"])
    >>> pooled = fit_cox(t, np.ones(60), {"x": x[:, 0]})
    >>> fit.converged, fit.n, bool(np.allclose(fit.coef, pooled.coef, rtol=1e-10))
    (True, 60, True)
    """
    names = tuple(covariates)
    if not names:
        raise StatisticsError("Cox: no covariates")
    if not nodes:
        raise StatisticsError("Cox: no nodes")
    if not 0 < alpha < 1:
        raise StatisticsError(f"alpha: {alpha} must be between 0 and 1")
    p = len(names)
    beta = np.zeros(p)
    current = _evaluate(nodes, beta)
    rounds = 1
    if current.n_events == 0:
        raise StatisticsError("Cox: no events, so no coefficient can be estimated")
    null = current
    null_information = _information_inverse(null.hessian)
    converged = False
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        try:
            step = np.linalg.solve(-current.hessian, current.gradient)
        except np.linalg.LinAlgError:
            raise StatisticsError(
                f"Cox: the information matrix became singular at iteration {iterations}"
            ) from None
        candidate = _evaluate(nodes, beta + step)
        rounds += 1
        halvings = 0
        # Halve a step that lowers the log-likelihood (beyond rounding) or leaves it undefined.
        while not _no_worse(candidate.loglik, current.loglik) and halvings < max_halvings:
            step = step / 2
            halvings += 1
            candidate = _evaluate(nodes, beta + step)
            rounds += 1
        if not _no_worse(candidate.loglik, current.loglik):
            break  # no step improves the fit: keep the last estimate, report non-convergence
        change = candidate.loglik - current.loglik
        beta = beta + step
        current = candidate
        if abs(change) < tolerance and float(np.max(np.abs(step))) < tolerance:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"Cox: Newton–Raphson did not converge in {iterations} iterations "
            f"(|gradient| {np.linalg.norm(current.gradient):.3g}); estimates are doubtful, "
            "perhaps a covariate separates events from non-events",
            ConvergenceWarning,
            stacklevel=2,
        )
    covariance = _information_inverse(current.hessian)
    se = np.sqrt(np.diag(covariance))
    z = beta / se
    critical = float(scipy_stats.norm.ppf(1 - alpha / 2))
    with np.errstate(over="ignore"):  # a diverging fit has infinite hazard-ratio bounds
        hazard_ratio = np.exp(beta)
        ci_lower = np.exp(beta - critical * se)
        ci_upper = np.exp(beta + critical * se)
    lr = 2 * (current.loglik - null.loglik)
    wald = float(beta @ np.linalg.solve(covariance, beta))
    score = float(null.gradient @ null_information @ null.gradient)
    return CoxResult(
        covariates=names,
        coef=beta,
        se=se,
        z=z,
        p_value=2 * scipy_stats.norm.sf(np.abs(z)),
        hazard_ratio=hazard_ratio,
        ci_lower=ci_lower,
        ci_upper=ci_upper,
        covariance=covariance,
        loglik=current.loglik,
        loglik_null=null.loglik,
        lr_statistic=lr,
        lr_p_value=float(scipy_stats.chi2.sf(lr, p)),
        wald_statistic=wald,
        wald_p_value=float(scipy_stats.chi2.sf(wald, p)),
        score_statistic=score,
        score_p_value=float(scipy_stats.chi2.sf(score, p)),
        n=current.n,
        n_events=current.n_events,
        ties=current.ties,
        stratified=current.stratified,
        n_nodes=len(nodes),
        iterations=iterations,
        rounds=rounds,
        converged=converged,
        gradient_norm=float(np.linalg.norm(current.gradient)),
        alpha=alpha,
    )


def fit_cox(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    covariates: Mapping[str, npt.ArrayLike],
    *,
    ties: str = "efron",
    strata: npt.ArrayLike | None = None,
    time_bin: float | None = None,
    alpha: float = 0.05,
    max_iterations: int = 50,
    tolerance: float = 1e-10,
) -> CoxResult:
    """Fit a Cox model on local records (one node, same code as the federated fit).

    Text columns are dummy-coded against their first sorted level; ``strata`` fits a
    stratified model with one baseline hazard per stratum.

    >>> fit = fit_cox([5, 8, 3, 9, 4, 7], [1, 0, 1, 1, 1, 1], {"age": [60, 50, 70, 40, 66, 41]})
    >>> fit.covariates, bool(fit.coef[0] > 0)
    (('age',), True)
    """
    design = design_matrix(covariates, list(covariates), intercept=False)
    node = CoxNodeData(
        time,
        event,
        design.matrix,
        ties=ties,
        stratified=True,
        strata=strata,
        time_bin=time_bin,
    )
    return fit_cox_federated(
        [node.round],
        design.names,
        alpha=alpha,
        max_iterations=max_iterations,
        tolerance=tolerance,
    )
