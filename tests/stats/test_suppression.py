"""Cell suppression with complementary suppression: an attacker who knows the released
cells, the table's total, every row and column total that is not small, and the rule
(``"<5"`` is 1 … 4, ``">=5"`` at least 5) cannot recover a suppressed cell.

The attacker (tests/disclosure_attack.py) is written independently of the module: an
integer program (scipy's ``milp``) for the least and greatest value of each suppressed
cell, and the plain subtraction attack (a line whose total is known and which has one
unknown cell).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from consortia.stats.counts import pool_counts
from consortia.stats.suppression import released_cells, suppress_cells
from disclosure_attack import attack, subtraction_attack

MINIMUM = 5


def assert_protected(table: Any) -> Any:
    true = np.asarray(table, dtype=np.int64)
    suppression = suppress_cells(true, MINIMUM)
    assert suppression.protected
    released = released_cells(true, suppression, MINIMUM)
    cells = np.asarray(released, dtype=object)
    for cell in np.ndindex(*true.shape):
        value = cells[cell]
        if isinstance(value, int):
            assert value == true[cell]  # the rest of the table is released as it is
        elif value == "<5":
            assert 0 < true[cell] < MINIMUM
        else:
            assert value == ">=5"
            assert true[cell] >= MINIMUM
    assert not any(0 < true[cell] < MINIMUM for cell in np.ndindex(*true.shape)) or (
        suppression.any
    )
    assert subtraction_attack(true, released) == set()
    for cell, (low, high) in attack(true, released).items():
        assert low <= true[cell] <= high
        if cells[cell] == "<5":  # no narrower than "1 to 4", what "<5" says already
            assert high - low >= MINIMUM - 2, (cell, low, high)
    return released


@pytest.mark.parametrize(
    "table",
    [
        [[30, 2, 25], [20, 40, 1], [15, 18, 22]],
        [[30, 3], [20, 40]],
        [[12, 0, 7, 1], [9, 14, 3, 22], [40, 8, 6, 11]],
        [[50, 1], [2, 60], [30, 30]],
    ],
)
def test_no_suppressed_crosstab_cell_can_be_recomputed_from_the_margins(table: Any) -> None:
    assert_protected(table)


def test_random_tables_with_small_cells_are_protected_or_refused() -> None:
    rng = np.random.default_rng(20)
    protected = 0
    for _ in range(40):
        shape = (int(rng.integers(2, 5)), int(rng.integers(2, 5)))
        table = rng.choice([0, 1, 2, 3, 4, 6, 9, 15, 30, 45, 60], size=shape)
        if not suppress_cells(table, MINIMUM).protected:
            continue  # refused whole by the caller (small_cells)
        assert_protected(table)
        protected += 1
    assert protected >= 15  # the others are refused whole: checked by the module


def test_an_error_grid_zone_table_keeps_its_large_zones_and_hides_the_small_ones() -> None:
    released = assert_protected([180, 15, 3, 1, 0])
    assert released == [180, ">=5", "<5", "<5", 0]
    # one small zone alone needs a complement: the total would give it
    assert assert_protected([190, 6, 3, 0, 0]) == [190, ">=5", "<5", 0, 0]


def test_a_table_without_small_cells_is_released_whole() -> None:
    suppression = suppress_cells([[10, 0], [7, 9]], MINIMUM)
    assert not suppression.any
    assert suppression.protected


def test_a_table_whose_small_cells_follow_from_its_totals_is_not_protected() -> None:
    # [[3, 3], [6, 0]]: the second row's total gives 6, then the first column's the 3
    assert not suppress_cells([[3, 3], [6, 0]], MINIMUM).protected


def test_pooled_suppressed_counts_are_the_range_they_lie_in() -> None:
    assert pool_counts(["<5", 10, 0]) == "11-14"
    assert pool_counts([">=5", "<5"]) == ">=6"
