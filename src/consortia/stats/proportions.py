"""Federated proportions: per-node counts of successes, pooled exactly, with Wilson and
Clopper-Pearson intervals.

:func:`proportion_node` counts one node's successes and trials, :func:`combine_proportion`
sums them into a :class:`ProportionResult`, and :func:`proportion` runs both on one array.
:mod:`consortia.stats.diagnostic` combines its sensitivity and specificity the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats._arrays import as_float_array
from consortia.stats.aggregates import NodeAggregates, check_confidence, reading_aggregates
from consortia.stats.counts import Count, pool_counts, read_count
from consortia.stats.results import StatResult, format_table

if TYPE_CHECKING:
    from scipy import stats as sps
else:
    from consortia.stats.lazy_scipy import stats as sps

__all__ = [
    "ProportionAggregates",
    "ProportionResult",
    "clopper_pearson_interval",
    "combine_proportion",
    "proportion",
    "proportion_node",
    "wilson_interval",
]


def clopper_pearson_interval(
    successes: int, n: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval from beta quantiles; 0 and 1 at the extremes.

    >>> [round(x, 6) for x in clopper_pearson_interval(3, 10)]
    [0.06674, 0.652453]
    """
    _check_counts(successes, n)
    alpha = 1.0 - check_confidence(confidence)
    low = 0.0 if successes == 0 else float(sps.beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(sps.beta.isf(alpha / 2, successes + 1, n - successes))
    return low, high


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (without continuity correction).

    >>> [round(x, 6) for x in wilson_interval(3, 10)]
    [0.107791, 0.603222]
    """
    _check_counts(successes, n)
    alpha = 1.0 - check_confidence(confidence)
    crit = float(sps.norm.isf(alpha / 2.0))
    crit2 = crit**2
    share = successes / n
    denominator = 1 + crit2 / n
    centre = (share + crit2 / (2 * n)) / denominator
    half_width = crit * math.sqrt(share * (1.0 - share) / n + crit2 / (4.0 * n**2)) / denominator
    return centre - half_width, centre + half_width


def _check_counts(successes: int, n: int) -> None:
    if n <= 0:
        raise StatisticsError(f"proportion: needs n > 0, got n = {n}")
    if not 0 <= successes <= n:
        raise StatisticsError(f"proportion: successes {successes} outside 0–{n}")


@dataclass(frozen=True)
class ProportionAggregates(NodeAggregates):
    """One node's count of successes among non-missing outcomes."""

    successes: int
    n: int
    missing: Count = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProportionAggregates:
        """Read aggregates produced by :meth:`to_dict` (raises StatisticsError if malformed)."""
        with reading_aggregates("proportion"):
            aggregates = cls(
                int(data["successes"]),
                int(data["n"]),
                read_count(data.get("missing", 0), "proportion.missing"),
            )
        if not 0 <= aggregates.successes <= aggregates.n:
            raise StatisticsError("proportion: successes must lie between 0 and n")
        return aggregates


@dataclass(frozen=True)
class ProportionResult(StatResult):
    """A proportion with its Wilson score and Clopper–Pearson (exact) intervals."""

    successes: int
    n: int
    missing: Count
    estimate: float
    confidence: float
    wilson: tuple[float, float]
    clopper_pearson: tuple[float, float]
    exact: bool = True

    def summary(self) -> str:
        """Return the estimate and both intervals as a table."""
        level = f"{self.confidence:.0%}"
        return format_table(
            ["successes", "n", "proportion", f"Wilson {level}", f"Clopper–Pearson {level}"],
            [
                [
                    self.successes,
                    self.n,
                    self.estimate,
                    f"{self.wilson[0]:.4f}–{self.wilson[1]:.4f}",
                    f"{self.clopper_pearson[0]:.4f}–{self.clopper_pearson[1]:.4f}",
                ]
            ],
        )


def proportion_node(outcomes: Iterable[Any] | npt.ArrayLike) -> ProportionAggregates:
    """Count successes (``True``/1) among outcomes; ``None``/NaN are missing.

    >>> proportion_node([1, 0, True, None, 1])
    ProportionAggregates(successes=3, n=4, missing=1)
    """
    array = as_float_array(outcomes, "outcomes")
    present = array[~np.isnan(array)]
    if not np.isin(present, (0.0, 1.0)).all():
        raise StatisticsError("outcomes: values must be 0/1 or True/False (or missing)")
    return ProportionAggregates(
        successes=int(present.sum()), n=int(present.size), missing=int(array.size - present.size)
    )


def combine_proportion(
    aggregates: Sequence[ProportionAggregates], *, confidence: float = 0.95
) -> ProportionResult:
    """Add the nodes' counts and compute the proportion with Wilson and exact intervals.

    >>> combine_proportion([ProportionAggregates(2, 5), ProportionAggregates(1, 5)]).estimate
    0.3
    """
    successes = sum(agg.successes for agg in aggregates)
    n = sum(agg.n for agg in aggregates)
    if n == 0:
        raise StatisticsError("proportion: no non-missing outcomes at any node")
    return ProportionResult(
        successes=successes,
        n=n,
        missing=pool_counts(agg.missing for agg in aggregates),
        estimate=successes / n,
        confidence=confidence,
        wilson=wilson_interval(successes, n, confidence),
        clopper_pearson=clopper_pearson_interval(successes, n, confidence),
    )


def proportion(
    outcomes: Iterable[Any] | npt.ArrayLike, *, confidence: float = 0.95
) -> ProportionResult:
    """Proportion of successes in pooled outcomes with Wilson and Clopper–Pearson CIs.

    >>> proportion([1, 1, 0, 0]).estimate
    0.5
    """
    return combine_proportion([proportion_node(outcomes)], confidence=confidence)
