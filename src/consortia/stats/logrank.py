"""The k-group log-rank test from the additive per-time counts of :mod:`consortia.stats.survival`.

:func:`logrank_from_counts` combines the nodes' :class:`SurvivalCounts` (one stratum per node
when stratified: the per-stratum O−E and variances are summed); :func:`logrank_test` is the
same code on one node's arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats._arrays import (
    as_float_vector,
    as_labels,
    sort_labels,
)
from consortia.stats.results import (
    StatResult,
    format_table,
    from_jsonable,
    to_jsonable,
)
from consortia.stats.survival import (
    SurvivalCounts,
    at_risk_counts,
    combine_survival_counts,
    survival_counts,
)

if TYPE_CHECKING:
    from scipy import stats as scipy_stats
else:
    from consortia.stats.lazy_scipy import stats as scipy_stats

__all__ = ["LogRankResult", "logrank_from_counts", "logrank_test"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# --------------------------------------------------------------------------- log-rank


@dataclass(frozen=True, eq=False)
class LogRankResult(StatResult):
    """k-group log-rank test: chi-square with k−1 degrees of freedom."""

    groups: tuple[str, ...]
    n: IntArray
    observed: FloatArray
    expected: FloatArray
    variance: FloatArray
    statistic: float
    df: int
    p_value: float
    n_strata: int
    stratified: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "logrank",
            "statistic": to_jsonable(self.statistic),
            "df": self.df,
            "p_value": to_jsonable(self.p_value),
            "stratified": self.stratified,
            "n_strata": self.n_strata,
            "groups": {
                label: {
                    "n": int(self.n[g]),
                    "observed": float(self.observed[g]),
                    "expected": float(self.expected[g]),
                }
                for g, label in enumerate(self.groups)
            },
            "variance": to_jsonable(self.variance),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogRankResult:
        """Read the test back from :meth:`to_dict`."""
        groups = data.get("groups") if isinstance(data, Mapping) else None
        if not isinstance(groups, Mapping) or not all(
            isinstance(group, Mapping) for group in groups.values()
        ):
            raise StatisticsError("a log-rank result needs 'groups' with n, observed, expected")
        try:
            return cls(
                groups=tuple(str(label) for label in groups),
                n=np.asarray([group["n"] for group in groups.values()], dtype=np.int64),
                observed=np.asarray([group["observed"] for group in groups.values()], dtype=float),
                expected=np.asarray([group["expected"] for group in groups.values()], dtype=float),
                variance=from_jsonable(FloatArray, data["variance"], "variance"),
                statistic=from_jsonable(float, data["statistic"], "statistic"),
                df=from_jsonable(int, data["df"], "df"),
                p_value=from_jsonable(float, data["p_value"], "p_value"),
                n_strata=from_jsonable(int, data["n_strata"], "n_strata"),
                stratified=from_jsonable(bool, data["stratified"], "stratified"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StatisticsError(f"not a log-rank result ({exc})") from None

    def summary(self) -> str:
        rows = [
            [label, int(self.n[g]), self.observed[g], self.expected[g]]
            for g, label in enumerate(self.groups)
        ]
        kind = f"stratified ({self.n_strata} strata) " if self.stratified else ""
        return (
            f"{kind}log-rank test: chi2 = {self.statistic:.4f}, df = {self.df}, "
            f"p = {self.p_value:.4g}\n" + format_table(["group", "n", "observed", "expected"], rows)
        )


def _observed_expected(
    counts: SurvivalCounts, groups: tuple[str, ...]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """O, E and the variance matrix of O−E of one stratum, over ``groups``."""
    k = len(groups)
    observed = np.zeros(k)
    expected = np.zeros(k)
    variance = np.zeros((k, k))
    rows = [groups.index(label) for label in counts.groups]
    at_risk = at_risk_counts(counts.events, counts.censored).astype(np.float64)
    died = counts.events.astype(np.float64)
    risk_total = at_risk.sum(axis=0)
    died_total = died.sum(axis=0)
    keep = died_total > 0
    at_risk, died, risk_total, died_total = (
        at_risk[:, keep],
        died[:, keep],
        risk_total[keep],
        died_total[keep],
    )
    share = at_risk / risk_total
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.where(
            risk_total > 1, died_total * (risk_total - died_total) / (risk_total - 1), 0.0
        )
    local_variance = np.einsum("j,gj,gh->gh", spread, share, np.eye(len(rows))) - np.einsum(
        "j,gj,hj->gh", spread, share, share
    )
    observed[rows] = died.sum(axis=1)
    expected[rows] = (share * died_total).sum(axis=1)
    variance[np.ix_(rows, rows)] = local_variance
    return observed, expected, variance


def logrank_from_counts(
    counts: SurvivalCounts | Sequence[SurvivalCounts], *, stratified: bool = False
) -> LogRankResult:
    """Log-rank test from per-time counts; with ``stratified=True`` each part is a stratum.

    Unstratified, the parts are added first (pooled-equivalent). Stratified, each part's
    O−E and variance are computed on its own and summed, as in R's
    ``survdiff(... + strata(node))``.

    >>> a = survival_counts([1, 3, 4, 6], [1, 1, 0, 1], ["t", "c", "t", "c"])
    >>> b = survival_counts([2, 5, 5, 9], [1, 1, 1, 0], ["t", "c", "t", "c"])
    >>> result = logrank_from_counts([a, b], stratified=True)
    >>> result.df, result.n_strata
    (1, 2)
    """
    strata = [counts] if isinstance(counts, SurvivalCounts) else list(counts)
    if not strata:
        raise StatisticsError("log-rank: no counts")
    if not stratified:
        strata = [combine_survival_counts(strata)]
    groups = sort_labels({label for part in strata for label in part.groups})
    k = len(groups)
    if k < 2:
        raise StatisticsError(f"log-rank: needs at least two groups, got {list(groups)}")
    observed = np.zeros(k)
    expected = np.zeros(k)
    variance = np.zeros((k, k))
    n = np.zeros(k, dtype=np.int64)
    for part in strata:
        o, e, v = _observed_expected(part, groups)
        observed += o
        expected += e
        variance += v
        for g, label in enumerate(part.groups):
            n[groups.index(label)] += part.n_at_start[g]
    if observed.sum() == 0:
        raise StatisticsError("log-rank: no events")
    difference = (observed - expected)[:-1]
    statistic = float(difference @ np.linalg.pinv(variance[:-1, :-1]) @ difference)
    df = k - 1
    p_value = float(scipy_stats.chi2.sf(statistic, df))
    return LogRankResult(
        groups, n, observed, expected, variance, statistic, df, p_value, len(strata), stratified
    )


def logrank_test(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    group: npt.ArrayLike,
    *,
    strata: npt.ArrayLike | None = None,
    time_bin: float | None = 1.0,
) -> LogRankResult:
    """Log-rank test on local records, optionally stratified by a local ``strata`` column.

    >>> result = logrank_test([1, 3, 4, 6, 2, 5], [1, 1, 0, 1, 1, 1], list("tctcct"))
    >>> result.df, round(result.observed.sum())
    (1, 5)
    """
    times = as_float_vector(time, "time")
    if strata is None:
        return logrank_from_counts(survival_counts(times, event, group, time_bin=time_bin))
    labels = np.array(as_labels(strata, "strata"))
    events = np.asarray(event)
    groups = np.asarray(group, dtype=object)
    if labels.size != times.size or events.size != times.size or groups.size != times.size:
        raise StatisticsError("log-rank: time, event, group and strata differ in length")
    parts = [
        survival_counts(
            times[labels == s], events[labels == s], groups[labels == s], time_bin=time_bin
        )
        for s in sort_labels(set(labels.tolist()))
    ]
    return logrank_from_counts(parts, stratified=True)
