"""Cell suppression with complementary suppression, and the audit an attacker would run.

A table of counts is released with its small cells (0 < n < k, the *primary* cells)
suppressed as ``"<k"``. Its margins may be known — the table's total always is (it is the
release's n), and the total of any row or column that is not itself small may be known from
another release (a level's count) — so a single suppressed cell in a row would be that
row's total minus the cells released beside it. Other cells are therefore suppressed too
(*complementary* cells, released as ``">=k"``: they are not small, and saying so is what an
attacker could assume anyway), until every suppressed cell is protected:

**The rule.** For every suppressed cell, the range of values it can take — given the
released cells, the totals of the table and of every row and column that is not small
(0 or at least k), primary cells in 1 … k − 1 and complementary cells at least k — must
be at least ``max(1, k − 2)`` wide: for k = 5 no narrower than "1 to 4", which is what
``"<5"`` says already. The range is computed exactly by linear programming (the margins
of a table are a transportation polytope, whose vertices are whole numbers, so the linear
bounds are the integer bounds): :func:`attacker_ranges` is that attack, and
:func:`suppress_cells` adds complementary cells until the attack fails. Zero cells are
never suppressed (a suppressed zero would let a primary cell be solved from its line).
Complements are chosen in the line (row or column) of an unprotected cell, smallest count
first, preferring one that closes a rectangle with cells already suppressed, so as
little as possible is hidden; if no cell is left to add, the table is not
``protected`` and the caller refuses it (``small_cells``).

A one-dimensional table (zones A–E of an error grid) is one line whose total is known.

>>> result = suppress_cells([180, 15, 3, 1, 0], 5)
>>> result.hidden.tolist(), result.protected
([False, True, True, True, False], True)
>>> released_cells([180, 15, 3, 1, 0], result, 5)
[180, '>=5', '<5', '<5', 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from consortia.stats.counts import Count, complementary, suppressed

__all__ = ["Suppression", "attacker_ranges", "released_cells", "suppress_cells"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Suppression:
    """Which cells of a table are suppressed (``hidden``), which of them are primary (small),
    and whether every suppressed cell is protected by the rule."""

    hidden: BoolArray
    primary: BoolArray
    protected: bool

    @property
    def any(self) -> bool:
        """Whether any cell is suppressed."""
        return bool(self.hidden.any())


def _lines(shape: tuple[int, ...]) -> list[list[tuple[int, ...]]]:
    """The cells of each line whose total may be known: the whole table, rows, columns."""
    cells = [tuple(int(i) for i in index) for index in np.ndindex(*shape)]
    lines = [cells]
    if len(shape) == 2:
        lines += [[(i, j) for j in range(shape[1])] for i in range(shape[0])]
        lines += [[(i, j) for i in range(shape[0])] for j in range(shape[1])]
    return lines


def attacker_ranges(
    table: Any, hidden: Any, minimum: int, primary: Any | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The least and greatest value of each suppressed cell that an attacker can compute
    from the released cells and every known total (the table's; each row's and column's
    that is 0 or at least ``minimum``), knowing primary cells lie in 1 … minimum − 1 and
    complementary ones at least at ``minimum``. Released cells get their own value.
    """
    from scipy.optimize import linprog  # only when a table has small cells: keep imports light

    counts = np.asarray(table, dtype=np.int64)
    mask = np.asarray(hidden, dtype=np.bool_)
    small = (
        np.asarray(primary, dtype=np.bool_)
        if primary is not None
        else mask & (counts > 0) & (counts < minimum)
    )
    low = counts.astype(np.float64)
    high = counts.astype(np.float64)
    positions = [tuple(int(i) for i in index) for index in zip(*np.nonzero(mask), strict=True)]
    if not positions:
        return low, high
    column = {cell: k for k, cell in enumerate(positions)}
    rows: list[list[float]] = []
    totals: list[float] = []
    for line in _lines(counts.shape):
        total = int(sum(counts[cell] for cell in line))
        inside = [cell for cell in line if mask[cell]]
        if not inside or (0 < total < minimum and line is not _lines(counts.shape)[0]):
            continue  # a small row or column total is never released: unknown
        row = [0.0] * len(positions)
        for cell in inside:
            row[column[cell]] = 1.0
        rows.append(row)
        totals.append(float(total - sum(int(counts[c]) for c in line if not mask[c])))
    bounds = [(1.0, minimum - 1.0) if small[cell] else (float(minimum), None) for cell in positions]
    for k, cell in enumerate(positions):
        objective = np.zeros(len(positions))
        objective[k] = 1.0
        for sign, target in ((1.0, low), (-1.0, high)):
            solved = linprog(
                sign * objective,
                A_eq=np.asarray(rows) if rows else None,
                b_eq=np.asarray(totals) if rows else None,
                bounds=bounds,
                method="highs",
            )
            if solved.status == 3:  # unbounded: no greatest value
                target[cell] = np.inf
            elif solved.status == 0:
                target[cell] = round(float(sign * solved.fun), 6)
    return low, high


def suppress_cells(table: Any, minimum: int) -> Suppression:
    """Suppress the small cells of a 1- or 2-dimensional table of counts and enough
    complementary cells that none of them can be recovered from the margins (see the
    module's rule)."""
    counts = np.asarray(table, dtype=np.int64)
    primary = (counts > 0) & (counts < minimum)
    hidden = primary.copy()
    needed = max(1, minimum - 2)
    while hidden.any():
        low, high = attacker_ranges(counts, hidden, minimum, primary)
        weak = hidden & (high - low < needed)
        if not weak.any():
            return Suppression(hidden, primary, True)
        cell = tuple(int(i) for i in np.argwhere(weak)[0])
        complement = _complement(counts, hidden, cell)
        if complement is None:
            return Suppression(hidden, primary, False)
        hidden[complement] = True
    return Suppression(hidden, primary, True)


def _complement(counts: IntArray, hidden: BoolArray, cell: tuple[int, ...]) -> Any:
    """The smallest released non-zero cell in a line of ``cell`` (else anywhere)."""
    open_cells = (~hidden) & (counts > 0)
    if counts.ndim == 2:
        near = np.zeros_like(open_cells)
        near[cell[0], :] = True
        near[:, cell[1]] = True
        # a cell whose other line already holds a suppressed cell closes a rectangle:
        # prefer it, then the smallest count
        rows_hidden, columns_hidden = hidden.sum(axis=1), hidden.sum(axis=0)

        def cost(c: tuple[int, int]) -> tuple[int, int, tuple[int, int]]:
            other = columns_hidden[c[1]] if c[0] == cell[0] else rows_hidden[c[0]]
            return (0 if other else 1, int(counts[c]), c)

        for where in (open_cells & near, open_cells):
            if where.any():
                found = [(int(i), int(j)) for i, j in np.argwhere(where).tolist()]
                return min(found, key=cost)
        return None
    if not open_cells.any():
        return None
    candidates = np.flatnonzero(open_cells)
    return (int(min(candidates.tolist(), key=lambda i: (int(counts[i]), i))),)


def released_cells(table: Any, suppression: Suppression, minimum: int) -> Any:
    """The table as released: primary cells ``"<k"``, complementary cells ``">=k"``, the
    others their count (nested lists, as the table)."""
    counts = np.asarray(table, dtype=np.int64)

    def cell(index: tuple[int, ...]) -> Count:
        if suppression.primary[index]:
            return suppressed(minimum)
        if suppression.hidden[index]:
            return complementary(minimum)
        return int(counts[index])

    if counts.ndim == 1:
        return [cell((i,)) for i in range(counts.shape[0])]
    return [[cell((i, j)) for j in range(counts.shape[1])] for i in range(counts.shape[0])]


def cells_of(rows: Sequence[Sequence[Count]]) -> list[Count]:
    """A released 2-D table's cells in row order."""
    return [count for row in rows for count in row]
