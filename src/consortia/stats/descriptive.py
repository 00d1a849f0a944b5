"""Federated descriptive statistics: summaries, contingency tables and proportions.

Each statistic comes as a pair. A *node* function turns one node's arrays into additive
aggregates (a frozen dataclass with ``to_dict()``/``from_dict()``, JSON-ready); the *lead*
combines the aggregates of every node into a result (a :class:`StatResult`). A pooled
convenience function (``describe``, ``crosstab``, ``proportion``) runs both steps on one
array, which is how the tests obtain the pooled reference.

Exactness. Moments are combined with Chan's parallel formula from per-node
``(n, mean, M2)``, so the pooled mean and SD equal the pooled computation up to rounding.
Quantiles are estimated from a histogram on an *agreed* bin grid: the pooled histogram is
the exact sum of node histograms, so the estimate equals what the same estimator gives on
pooled data, but not the sample quantile of the records: each comes with
``quantile_max_error``, the most it can be from numpy's (linear) sample quantile given the
counts, and a result that reports a quantile says ``exact: false``. Contingency tables
and proportions are sums of counts and therefore exact.

Disclosure control (minimum cell counts, minimum rows) is the policy layer's business;
these functions compute and return every count.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from consortia.exceptions import StatisticsError
from consortia.stats.results import StatResult, format_table, to_jsonable

__all__ = [
    "CrosstabAggregates",
    "CrosstabResult",
    "DescribeAggregates",
    "DescribeResult",
    "NodeAggregates",
    "ProportionAggregates",
    "ProportionResult",
    "clopper_pearson_interval",
    "combine_crosstab",
    "combine_describe",
    "combine_proportion",
    "crosstab",
    "crosstab_node",
    "describe",
    "describe_node",
    "proportion",
    "proportion_node",
    "regular_bins",
    "wilson_interval",
]

FloatArray = npt.NDArray[np.float64]
DEFAULT_QUANTILES: tuple[float, ...] = (0.25, 0.5, 0.75)


class NodeAggregates:
    """Base of the frozen dataclasses a node releases: JSON-ready via :meth:`to_dict`.

    Fields are ints, floats, strings, ``None`` and (nested) tuples of those; each subclass
    reads its own JSON back with a validating ``from_dict``.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return the aggregates as plain JSON values (tuples become lists)."""
        if not dataclasses.is_dataclass(self):
            raise TypeError(f"{type(self).__name__} must be a dataclass")
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


@contextmanager
def _reading(kind: str) -> Iterator[None]:
    """Turn a malformed aggregate message into a StatisticsError naming the kind."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as exc:
        raise StatisticsError(f"{kind}: malformed aggregates ({exc!r})") from exc


def _as_float_array(values: Iterable[Any] | npt.ArrayLike, name: str) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise StatisticsError(f"{name}: values must be numbers or missing") from None
    if array.ndim != 1:
        raise StatisticsError(f"{name}: expected a one-dimensional array, got shape {array.shape}")
    if np.isinf(array).any():
        raise StatisticsError(f"{name}: infinite values cannot be summarised")
    return array


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise StatisticsError(f"confidence: {confidence} is outside (0, 1)")
    return float(confidence)


# --------------------------------------------------------------------------- describe


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
    missing: int
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
        with _reading("describe"):
            minimum, maximum = data.get("minimum"), data.get("maximum")
            aggregates = cls(
                n=int(data["n"]),
                missing=int(data["missing"]),
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
    missing: int
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
    array = _as_float_array(values, "values")
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
        missing=sum(agg.missing for agg in aggregates),
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


# --------------------------------------------------------------------------- crosstab


def _level_label(value: Any) -> str | None:
    """Canonical text of a category; ``None``, NaN and ``""`` are missing.

    Integral floats print as integers so that ``1`` and ``1.0`` from two nodes are one level.
    """
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = str(value)
    return text if text != "" else None


def _natural_key(level: str) -> tuple[int, float, str]:
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


@dataclass(frozen=True)
class CrosstabAggregates(NodeAggregates):
    """One node's contingency table over its levels (rows × columns of counts)."""

    row_levels: tuple[str, ...]
    col_levels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    missing: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CrosstabAggregates:
        """Read aggregates produced by :meth:`to_dict` (raises StatisticsError if malformed)."""
        with _reading("crosstab"):
            aggregates = cls(
                row_levels=tuple(str(level) for level in data["row_levels"]),
                col_levels=tuple(str(level) for level in data["col_levels"]),
                counts=tuple(tuple(int(c) for c in row) for row in data["counts"]),
                missing=int(data["missing"]),
            )
        shape_ok = len(aggregates.counts) == len(aggregates.row_levels) and all(
            len(row) == len(aggregates.col_levels) for row in aggregates.counts
        )
        if not shape_ok:
            raise StatisticsError("crosstab: counts do not match the row and column levels")
        return aggregates


@dataclass(frozen=True)
class CrosstabResult(StatResult):
    """Pooled contingency table with Pearson's chi-square and, for 2×2, Fisher's exact test.

    The chi-square test drops all-zero rows and columns (levels no node observed); it is
    ``None`` when fewer than two rows or columns remain. ``yates`` says whether Yates'
    continuity correction was applied (2×2 only). Fisher's exact test is computed for 2×2
    tables only: scipy offers r×c Fisher only as a Monte Carlo/permutation p-value.
    """

    row_levels: tuple[str, ...]
    col_levels: tuple[str, ...]
    table: tuple[tuple[int, ...], ...]
    n: int
    missing: int
    chi2: float | None
    dof: int | None
    p_value: float | None
    yates: bool
    fisher_odds_ratio: float | None
    fisher_p_value: float | None
    nodes: int
    exact: bool = True

    def summary(self) -> str:
        """Return the table followed by the test statistics."""
        rows: list[list[Any]] = [
            [level, *counts] for level, counts in zip(self.row_levels, self.table, strict=True)
        ]
        text = format_table(["", *self.col_levels], rows)
        tests: list[list[Any]] = [["n", self.n], ["missing", self.missing]]
        if self.chi2 is not None:
            label = "chi-square (Yates)" if self.yates else "chi-square"
            tests += [[label, self.chi2], ["df", self.dof], ["p", self.p_value]]
        if self.fisher_p_value is not None:
            tests += [
                ["Fisher odds ratio", self.fisher_odds_ratio],
                ["Fisher p", self.fisher_p_value],
            ]
        return text + "\n\n" + format_table(["test", "value"], tests)


def crosstab_node(
    rows: Iterable[Any],
    columns: Iterable[Any],
    *,
    row_levels: Sequence[Any] | None = None,
    col_levels: Sequence[Any] | None = None,
) -> CrosstabAggregates:
    """Count one node's pairs of categories; a pair with either value missing is skipped.

    With agreed ``row_levels``/``col_levels`` the table has exactly those levels (a value
    outside them is an error); otherwise the node reports the levels it observed.

    >>> agg = crosstab_node(["a", "b", "a", None], [1, 1, 0, 1])
    >>> agg.row_levels, agg.col_levels, agg.counts, agg.missing
    (('a', 'b'), ('0', '1'), ((1, 1), (0, 1)), 1)
    """
    row_list, col_list = list(rows), list(columns)
    if len(row_list) != len(col_list):
        raise StatisticsError(f"crosstab: {len(row_list)} row values but {len(col_list)} columns")
    pairs: list[tuple[str, str]] = []
    missing = 0
    for row_value, col_value in zip(row_list, col_list, strict=True):
        row_label, col_label = _level_label(row_value), _level_label(col_value)
        if row_label is None or col_label is None:
            missing += 1
        else:
            pairs.append((row_label, col_label))

    def levels_for(agreed: Sequence[Any] | None, seen: set[str], axis: str) -> tuple[str, ...]:
        if agreed is None:
            return tuple(sorted(seen, key=_natural_key))
        labels = tuple(label for label in (_level_label(v) for v in agreed) if label is not None)
        unknown = len(seen - set(labels))
        if unknown:
            raise StatisticsError(
                f"crosstab: {unknown} {axis} levels are not among the agreed levels"
            )
        return labels

    r_levels = levels_for(row_levels, {p[0] for p in pairs}, "row")
    c_levels = levels_for(col_levels, {p[1] for p in pairs}, "column")
    r_index = {level: i for i, level in enumerate(r_levels)}
    c_index = {level: j for j, level in enumerate(c_levels)}
    table = np.zeros((len(r_levels), len(c_levels)), dtype=np.int64)
    for row_label, col_label in pairs:
        table[r_index[row_label], c_index[col_label]] += 1
    return CrosstabAggregates(
        row_levels=r_levels,
        col_levels=c_levels,
        counts=tuple(tuple(int(c) for c in row) for row in table),
        missing=missing,
    )


def combine_crosstab(
    aggregates: Sequence[CrosstabAggregates], *, yates: bool = False
) -> CrosstabResult:
    """Union the nodes' levels (numbers numerically, then text), add tables, and test.

    >>> a = crosstab_node(["x", "y"], ["1", "2"])
    >>> b = crosstab_node(["x", "z"], ["2", "2"])
    >>> combine_crosstab([a, b]).table
    ((1, 1), (0, 1), (0, 1))
    """
    if not aggregates:
        raise StatisticsError("crosstab: no node aggregates to combine")
    r_levels = tuple(sorted({lv for a in aggregates for lv in a.row_levels}, key=_natural_key))
    c_levels = tuple(sorted({lv for a in aggregates for lv in a.col_levels}, key=_natural_key))
    r_index = {level: i for i, level in enumerate(r_levels)}
    c_index = {level: j for j, level in enumerate(c_levels)}
    table = np.zeros((len(r_levels), len(c_levels)), dtype=np.int64)
    for agg in aggregates:
        rows = [r_index[level] for level in agg.row_levels]
        cols = [c_index[level] for level in agg.col_levels]
        table[np.ix_(rows, cols)] += np.asarray(agg.counts, dtype=np.int64).reshape(
            len(rows), len(cols)
        )
    chi2: float | None = None
    dof: int | None = None
    p_value: float | None = None
    tested = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if tested.shape[0] >= 2 and tested.shape[1] >= 2:
        test = sps.chi2_contingency(tested, correction=yates)
        chi2, p_value, dof = float(test.statistic), float(test.pvalue), int(test.dof)
    fisher_or: float | None = None
    fisher_p: float | None = None
    if table.shape == (2, 2):
        fisher = sps.fisher_exact(table)
        fisher_or, fisher_p = float(fisher.statistic), float(fisher.pvalue)
    return CrosstabResult(
        row_levels=r_levels,
        col_levels=c_levels,
        table=tuple(tuple(int(c) for c in row) for row in table),
        n=int(table.sum()),
        missing=sum(agg.missing for agg in aggregates),
        chi2=chi2,
        dof=dof,
        p_value=p_value,
        yates=yates and dof == 1,
        fisher_odds_ratio=fisher_or,
        fisher_p_value=fisher_p,
        nodes=len(aggregates),
    )


def crosstab(rows: Iterable[Any], columns: Iterable[Any], *, yates: bool = False) -> CrosstabResult:
    """Cross-tabulate pooled data: the node step on all pairs, then the combine step.

    >>> crosstab(["a", "a", "b", "b"], [1, 0, 1, 1]).n
    4
    """
    return combine_crosstab([crosstab_node(rows, columns)], yates=yates)


# --------------------------------------------------------------------------- proportion


def clopper_pearson_interval(
    successes: int, n: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval from beta quantiles; 0 and 1 at the extremes.

    >>> [round(x, 6) for x in clopper_pearson_interval(3, 10)]
    [0.06674, 0.652453]
    """
    _check_counts(successes, n)
    alpha = 1.0 - _check_confidence(confidence)
    low = 0.0 if successes == 0 else float(sps.beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(sps.beta.isf(alpha / 2, successes + 1, n - successes))
    return low, high


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (without continuity correction).

    >>> [round(x, 6) for x in wilson_interval(3, 10)]
    [0.107791, 0.603222]
    """
    _check_counts(successes, n)
    alpha = 1.0 - _check_confidence(confidence)
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
    missing: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProportionAggregates:
        """Read aggregates produced by :meth:`to_dict` (raises StatisticsError if malformed)."""
        with _reading("proportion"):
            aggregates = cls(int(data["successes"]), int(data["n"]), int(data.get("missing", 0)))
        if not 0 <= aggregates.successes <= aggregates.n:
            raise StatisticsError("proportion: successes must lie between 0 and n")
        return aggregates


@dataclass(frozen=True)
class ProportionResult(StatResult):
    """A proportion with its Wilson score and Clopper–Pearson (exact) intervals."""

    successes: int
    n: int
    missing: int
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
    array = _as_float_array(outcomes, "outcomes")
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
        missing=sum(agg.missing for agg in aggregates),
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
