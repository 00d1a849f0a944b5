"""An attacker of released tables with suppressed cells, written independently of
consortia.stats.suppression: who knows the released cells, the table's total, every row and
column total that is not small, and the rule (``"<5"`` is 1 … 4, ``">=5"`` at least 5).

:func:`attack` is an integer program (scipy's ``milp``) for the least and greatest value of
each suppressed cell; :func:`subtraction_attack` solves, again and again, every line whose
total is known and that has one unknown cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

MINIMUM = 5


def _lines(shape: tuple[int, ...]) -> list[list[tuple[int, ...]]]:
    cells = list(np.ndindex(*shape))
    lines = [cells]
    if len(shape) == 2:
        lines += [[(i, j) for j in range(shape[1])] for i in range(shape[0])]
        lines += [[(i, j) for i in range(shape[0])] for j in range(shape[1])]
    return lines


def _known_lines(true: np.ndarray[Any, Any]) -> list[tuple[list[tuple[int, ...]], int]]:
    """Lines whose totals may be public: the whole table; rows and columns not small."""
    known = []
    for number, line in enumerate(_lines(true.shape)):
        total = int(sum(true[cell] for cell in line))
        if number == 0 or total == 0 or total >= MINIMUM:
            known.append((line, total))
    return known


def attack(true: np.ndarray[Any, Any], released: Any) -> dict[tuple[int, ...], tuple[int, int]]:
    """The integer range of each suppressed cell, from what an attacker knows."""
    flat = np.asarray(released, dtype=object)
    unknown = [cell for cell in np.ndindex(*true.shape) if isinstance(flat[cell], str)]
    if not unknown:
        return {}
    index = {cell: k for k, cell in enumerate(unknown)}
    rows, totals = [], []
    for line, total in _known_lines(true):
        row = np.zeros(len(unknown))
        rest = total
        for cell in line:
            if cell in index:
                row[index[cell]] = 1
            else:
                rest -= int(flat[cell])
        if row.any():
            rows.append(row)
            totals.append(rest)
    lower = [1 if flat[c] == "<5" else 5 for c in unknown]
    upper = [4 if flat[c] == "<5" else np.inf for c in unknown]
    constraint = LinearConstraint(np.array(rows), totals, totals)
    ranges = {}
    for cell, k in index.items():
        ends = []
        for sign in (1, -1):
            objective = np.zeros(len(unknown))
            objective[k] = sign
            solved = milp(
                objective,
                constraints=constraint,
                integrality=np.ones(len(unknown)),
                bounds=Bounds(lower, upper),
            )
            assert solved.status in (0, 3), solved.message
            ends.append(round(sign * solved.fun) if solved.status == 0 else 10**9)
        ranges[cell] = (ends[0], ends[1])
    return ranges


def subtraction_attack(true: np.ndarray[Any, Any], released: Any) -> set[tuple[int, ...]]:
    """Cells recovered by repeatedly solving lines with one unknown cell."""
    flat = np.asarray(released, dtype=object).copy()
    recovered: set[tuple[int, ...]] = set()
    changed = True
    while changed:
        changed = False
        for line, total in _known_lines(true):
            unknown = [cell for cell in line if isinstance(flat[cell], str)]
            if len(unknown) == 1:
                flat[unknown[0]] = total - sum(int(flat[c]) for c in line if c != unknown[0])
                recovered.add(unknown[0])
                changed = True
    return recovered
