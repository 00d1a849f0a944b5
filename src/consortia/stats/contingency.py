"""Federated contingency tables: per-node counts of level pairs, pooled exactly, with the
chi-square test (and Fisher's exact test for 2x2 tables).

:func:`crosstab_node` counts one node's pairs of levels (text; missing values left out),
:func:`combine_crosstab` sums every node's counts over the union of levels, and
:func:`crosstab` runs both on one array, which is how the tests obtain the pooled reference.
Counts are sums, so the pooled table is exact. Disclosure control (minimum cell counts) is
the policy layer's business: a node may release a cell as suppressed (``"<5"``, ``">=5"``,
see :mod:`consortia.stats.suppression`); the pooled cell is then the range it lies in, and
the tests, which need every cell, are not computed (``suppressed`` counts such cells).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from consortia.exceptions import StatisticsError
from consortia.stats.aggregates import NodeAggregates, reading_aggregates
from consortia.stats.counts import Count, pool_counts, read_count
from consortia.stats.results import StatResult, format_table

if TYPE_CHECKING:
    from scipy import stats as sps
else:
    from consortia.stats.lazy_scipy import stats as sps

__all__ = ["CrosstabAggregates", "CrosstabResult", "combine_crosstab", "crosstab", "crosstab_node"]


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
    counts: tuple[tuple[Count, ...], ...]
    missing: Count
    n: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CrosstabAggregates:
        """Read aggregates produced by :meth:`to_dict` (raises StatisticsError if malformed).

        Cells may be released as suppressed (``"<5"``, ``">=5"``); ``n`` is then needed."""
        with reading_aggregates("crosstab"):
            n = data.get("n")
            aggregates = cls(
                row_levels=tuple(str(level) for level in data["row_levels"]),
                col_levels=tuple(str(level) for level in data["col_levels"]),
                counts=tuple(
                    tuple(read_count(c, "crosstab.counts") for c in row) for row in data["counts"]
                ),
                missing=read_count(data["missing"], "crosstab.missing"),
                n=None if n is None else int(n),
            )
        if aggregates.n is None and not all(
            isinstance(c, int) for row in aggregates.counts for c in row
        ):
            raise StatisticsError("crosstab: a table with suppressed cells needs its n")
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
    table: tuple[tuple[Count, ...], ...]
    n: int
    missing: Count
    chi2: float | None
    dof: int | None
    p_value: float | None
    yates: bool
    fisher_odds_ratio: float | None
    fisher_p_value: float | None
    nodes: int
    exact: bool = True
    suppressed: int = 0

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
        if self.suppressed:
            tests.append(
                ["tests", f"not computed: they need the {self.suppressed} suppressed cells"]
            )
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
    parts: list[list[list[Count]]] = [[[] for _ in c_levels] for _ in r_levels]
    for agg in aggregates:
        for level, counts in zip(agg.row_levels, agg.counts, strict=True):
            for column, count in zip(agg.col_levels, counts, strict=True):
                parts[r_index[level]][c_index[column]].append(count)
    pooled = [[pool_counts(cell) for cell in row] for row in parts]
    suppressed = sum(1 for row in pooled for cell in row if not isinstance(cell, int))
    n = sum(
        agg.n if agg.n is not None else sum(int(c) for row in agg.counts for c in row)
        for agg in aggregates
    )
    if suppressed:  # the tests need every cell: released without them
        return CrosstabResult(
            row_levels=r_levels,
            col_levels=c_levels,
            table=tuple(tuple(row) for row in pooled),
            n=n,
            missing=pool_counts(agg.missing for agg in aggregates),
            chi2=None,
            dof=None,
            p_value=None,
            yates=False,
            fisher_odds_ratio=None,
            fisher_p_value=None,
            nodes=len(aggregates),
            suppressed=suppressed,
        )
    table = np.asarray(pooled, dtype=np.int64).reshape(len(r_levels), len(c_levels))
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
        missing=pool_counts(agg.missing for agg in aggregates),
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
