"""Federated descriptive statistics of a numeric column: count, mean, SD, range, quantiles.

Each statistic comes as a pair. A *node* function turns one node's arrays into additive
aggregates (a frozen dataclass with ``to_dict()``/``from_dict()``, JSON-ready; see
:mod:`consortia.stats.aggregates`); the *lead* combines the aggregates of every node into a
result (a :class:`StatResult`). A pooled convenience function (here ``describe``) runs both
steps on one array, which is how the tests obtain the pooled reference. Contingency tables
are :mod:`consortia.stats.contingency`, proportions :mod:`consortia.stats.proportions`.

Exactness. Moments are combined with Chan's parallel formula from per-node
``(n, mean, M2)``, so the pooled mean and SD equal the pooled computation up to rounding.
Quantiles are estimated from a histogram on an *agreed* bin grid: the pooled histogram is
the exact sum of node histograms, so the estimate equals what the same estimator gives on
pooled data, but not the sample quantile of the records: each comes with
``quantile_max_error``, the most it can be from numpy's (linear) sample quantile given the
counts, and a result that reports a quantile says ``exact: false``.

Disclosure control (minimum cell counts, minimum rows) is the policy layer's business;
these functions compute and return every count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats._arrays import as_float_array
from consortia.stats.aggregates import NodeAggregates, reading_aggregates
from consortia.stats.counts import Count, pool_counts, read_count
from consortia.stats.results import StatResult, format_table

__all__ = [
    "DescribeAggregates",
    "DescribeResult",
    "combine_describe",
    "describe",
    "describe_node",
    "regular_bins",
]

FloatArray = npt.NDArray[np.float64]
DEFAULT_QUANTILES: tuple[float, ...] = (0.25, 0.5, 0.75)


def regular_bins(start: float, stop: float, width: float) -> tuple[float, ...]:
    """Return the edges of an agreed histogram grid ``start, start + width, …, stop``.

    >>> regular_bins(0, 1, 0.25)
    (0.0, 0.25, 0.5, 0.75, 1.0)
    """
    if not width > 0 or not stop > start:
        raise StatisticsError(
            f"bins: need stop > start and width > 0, got {start}, {stop}, {width}"
        )
    count = math.ceil((stop - start) / width - 1e-9)
    return tuple(float(start + k * width) for k in range(count + 1))


def _check_edges(bin_edges: Sequence[float]) -> tuple[float, ...]:
    edges = tuple(float(edge) for edge in bin_edges)
    if len(edges) < 2:
        raise StatisticsError("bin_edges: need at least two edges")
    if not all(math.isfinite(edge) for edge in edges):
        raise StatisticsError("bin_edges: edges must be finite")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise StatisticsError("bin_edges: edges must be strictly increasing")
    return edges


@dataclass(frozen=True)
class DescribeAggregates(NodeAggregates):
    """One node's summary of a numeric variable.

    ``mean`` and ``m2`` (sum of squared deviations from the node mean) are 0 when ``n`` is 0.
    Bins are half-open ``[e_i, e_i+1)`` except the last, which is closed (numpy's
    convention); ``below``/``above`` count values outside the grid.
    """

    n: int
    missing: Count
    mean: float
    m2: float
    bin_edges: tuple[float, ...]
    bin_counts: tuple[int, ...]
    below: int
    above: int
    minimum: float | None = None
    maximum: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DescribeAggregates:
        """Read aggregates produced by :meth:`to_dict` (raises StatisticsError if malformed)."""
        with reading_aggregates("describe"):
            minimum, maximum = data.get("minimum"), data.get("maximum")
            aggregates = cls(
                n=int(data["n"]),
                missing=read_count(data["missing"], "describe.missing"),
                mean=float(data["mean"]),
                m2=float(data["m2"]),
                bin_edges=_check_edges(data["bin_edges"]),
                bin_counts=tuple(int(count) for count in data["bin_counts"]),
                below=int(data["below"]),
                above=int(data["above"]),
                minimum=None if minimum is None else float(minimum),
                maximum=None if maximum is None else float(maximum),
            )
        if len(aggregates.bin_counts) != len(aggregates.bin_edges) - 1:
            raise StatisticsError("describe: bin_counts must have one count per bin")
        if aggregates.below + aggregates.above + sum(aggregates.bin_counts) != aggregates.n:
            raise StatisticsError("describe: histogram counts do not add up to n")
        return aggregates


_HISTOGRAM = ("probabilities", "quantiles", "bin_edges", "bin_counts", "below", "above")


@dataclass(frozen=True)
class DescribeResult(StatResult):
    """Pooled summary of a numeric variable; quantiles are histogram estimates.

    ``quantiles[i]`` estimates the ``probabilities[i]`` quantile by linear interpolation of
    the pooled histogram's cumulative counts; it is ``None`` when it falls outside the grid.
    ``quantile_max_error[i]`` bounds its distance from the sample quantile (numpy's default,
    linear) of the pooled values: the order statistics that quantile interpolates lie in
    known bins, so it lies between the lower edge of the first and the upper edge of the
    second. It is infinite (``null`` in JSON) when one of them lies outside the grid.
    ``exact`` is false as soon as a quantile is reported.
    ``minimum``/``maximum`` are present only when every contributing node allowed them.
    Without a grid (no ``bin_edges``) there is no histogram: its fields are empty and left
    out of the JSON.
    """

    n: int
    missing: Count
    mean: float
    sd: float
    probabilities: tuple[float, ...]
    quantiles: tuple[float | None, ...]
    bin_edges: tuple[float, ...]
    bin_counts: tuple[int, ...]
    below: int
    above: int
    minimum: float | None
    maximum: float | None
    nodes: int
    quantile_max_error: tuple[float | None, ...] = ()
    exact: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if not self.bin_edges:
            for key in _HISTOGRAM:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DescribeResult:
        if isinstance(data, Mapping) and "bin_edges" not in data:
            data = {**data, **{key: [] for key in _HISTOGRAM[:4]}, "below": 0, "above": 0}
        return super().from_dict(data)

    def summary(self) -> str:
        """Return n, missing, mean, SD, quantiles and (if released) min/max as a table."""
        rows: list[list[Any]] = [
            ["n", self.n],
            ["missing", self.missing],
            ["mean", self.mean],
            ["sd", self.sd],
        ]
        errors = (*self.quantile_max_error, *(None,) * len(self.quantiles))
        for probability, value, error in zip(
            self.probabilities, self.quantiles, errors, strict=False
        ):
            if value is None:
                rows.append([f"q{probability:g}", "outside grid"])
            else:
                bound = "unbounded" if error is None or math.isinf(error) else f"{error:.4g}"
                rows.append([f"q{probability:g} (histogram, ± {bound})", value])
        if self.minimum is not None and self.maximum is not None:
            rows += [["min", self.minimum], ["max", self.maximum]]
        return format_table(["statistic", "value"], rows)


def describe_node(
    values: Iterable[Any] | npt.ArrayLike,
    *,
    bin_edges: Sequence[float],
    allow_min_max: bool = False,
) -> DescribeAggregates:
    """Compute one node's aggregates of a numeric variable (missing = ``None``/NaN).

    >>> agg = describe_node([1.0, 2.0, None, 4.0], bin_edges=[0, 2, 4])
    >>> agg.n, agg.missing, agg.mean, agg.bin_counts, agg.minimum
    (3, 1, 2.3333333333333335, (1, 2), None)
    """
    edges = _check_edges(bin_edges)
    array = as_float_array(values, "values")
    present = array[~np.isnan(array)]
    n = int(present.size)
    mean = float(present.mean()) if n else 0.0
    m2 = float(np.sum((present - mean) ** 2)) if n else 0.0
    counts, _ = np.histogram(present, bins=np.asarray(edges))
    show = allow_min_max and n > 0
    return DescribeAggregates(
        n=n,
        missing=int(array.size - n),
        mean=mean,
        m2=m2,
        bin_edges=edges,
        bin_counts=tuple(int(count) for count in counts),
        below=int(np.sum(present < edges[0])),
        above=int(np.sum(present > edges[-1])),
        minimum=float(present.min()) if show else None,
        maximum=float(present.max()) if show else None,
    )


def _histogram_quantile(
    probability: float, edges: Sequence[float], counts: Sequence[int], below: int, above: int
) -> float | None:
    total = below + sum(counts) + above
    target = probability * total
    cumulative = float(below)
    if target < cumulative or (below > 0 and target == cumulative):
        return None
    for index, count in enumerate(counts):
        if count and cumulative + count >= target:
            fraction = (target - cumulative) / count
            return float(edges[index] + fraction * (edges[index + 1] - edges[index]))
        cumulative += count
    return None


def _quantile_max_error(
    probability: float,
    estimate: float | None,
    edges: Sequence[float],
    counts: Sequence[int],
    below: int,
    above: int,
) -> float | None:
    """How far ``estimate`` can be from numpy's linear sample quantile, given the counts.

    That quantile interpolates between the order statistics of ranks ``floor(h)`` and
    ``ceil(h)``, ``h = (n − 1) p`` (0-based); each lies in the bin its rank falls in.
    """
    if estimate is None:
        return None
    position = (below + sum(counts) + above - 1) * probability
    bins = []
    for rank in (math.floor(position), math.ceil(position)):
        cumulative, found = below, None
        if rank >= cumulative:
            for index, count in enumerate(counts):
                cumulative += count
                if rank < cumulative:
                    found = index
                    break
        if found is None:  # in a tail beyond the grid: no bound
            return math.inf
        bins.append(found)
    lowest, highest = edges[bins[0]], edges[bins[1] + 1]
    return float(max(estimate - lowest, highest - estimate))


def combine_describe(
    aggregates: Sequence[DescribeAggregates],
    *,
    probabilities: Sequence[float] = DEFAULT_QUANTILES,
) -> DescribeResult:
    """Combine node aggregates (Chan's parallel formula for mean and M2).

    >>> edges = regular_bins(0, 10, 1)
    >>> nodes = [describe_node([1, 2, 3], bin_edges=edges), describe_node([4, 5], bin_edges=edges)]
    >>> result = combine_describe(nodes, probabilities=[0.5])
    >>> result.mean, round(result.sd, 6), result.quantiles
    (3.0, 1.581139, (3.5,))
    """
    if not aggregates:
        raise StatisticsError("describe: no node aggregates to combine")
    probs = tuple(float(p) for p in probabilities)
    if any(not 0.0 <= p <= 1.0 for p in probs):
        raise StatisticsError(f"probabilities: {probs} must lie in [0, 1]")
    edges = aggregates[0].bin_edges
    if any(agg.bin_edges != edges for agg in aggregates):
        raise StatisticsError("describe: nodes used different bin grids; agree on one grid first")
    n, mean, m2 = 0, 0.0, 0.0
    for agg in aggregates:
        if agg.n == 0:
            continue
        total = n + agg.n
        delta = agg.mean - mean
        mean += delta * agg.n / total
        m2 += agg.m2 + delta * delta * n * agg.n / total
        n = total
    counts = tuple(
        int(sum(column)) for column in zip(*(a.bin_counts for a in aggregates), strict=True)
    )
    below = sum(agg.below for agg in aggregates)
    above = sum(agg.above for agg in aggregates)
    contributing = [agg for agg in aggregates if agg.n > 0]
    released = bool(contributing) and all(
        agg.minimum is not None and agg.maximum is not None for agg in contributing
    )
    quantiles = tuple(
        _histogram_quantile(p, edges, counts, below, above) if n else None for p in probs
    )
    errors = tuple(
        _quantile_max_error(p, q, edges, counts, below, above)
        for p, q in zip(probs, quantiles, strict=True)
    )
    return DescribeResult(
        n=n,
        missing=pool_counts(agg.missing for agg in aggregates),
        mean=mean if n else math.nan,
        sd=math.sqrt(m2 / (n - 1)) if n > 1 else math.nan,
        probabilities=probs,
        quantiles=quantiles,
        bin_edges=edges,
        bin_counts=counts,
        below=below,
        above=above,
        minimum=min(a.minimum for a in contributing if a.minimum is not None) if released else None,
        maximum=max(a.maximum for a in contributing if a.maximum is not None) if released else None,
        nodes=len(aggregates),
        quantile_max_error=errors,
        exact=all(q is None for q in quantiles),
    )


def describe(
    values: Iterable[Any] | npt.ArrayLike,
    *,
    bin_edges: Sequence[float],
    probabilities: Sequence[float] = DEFAULT_QUANTILES,
    allow_min_max: bool = False,
) -> DescribeResult:
    """Describe pooled data: the node step on all values, then the combine step.

    >>> describe([2.0, 4.0, 6.0], bin_edges=regular_bins(0, 8, 2)).sd
    2.0
    """
    node = describe_node(values, bin_edges=bin_edges, allow_min_max=allow_min_max)
    return combine_describe([node], probabilities=probabilities)
