"""Suppress a cell, not the analysis: a node whose crosstab or error-grid zones hold a count
0 < n < 5 releases that cell as ``"<5"`` with complementary cells (``">=5"``), and the rest
of the table; the lead pools each cell into the range it lies in and says which estimates
need the suppressed cells. The lead, knowing the node's totals, cannot recompute a
suppressed cell (tests/stats/test_suppression.py has the integer-program attacker; here
the lead's own view of the node's reply is attacked by subtraction and by that program).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest

from consortia.federation.tables import ColumnType, Table
from consortia.federation.transport import InProcessTransport
from consortia.stats.agreement import iso15197_node
from disclosure_attack import attack, subtraction_attack


def run(federation: Any, request: dict[str, Any]) -> dict[str, Any]:
    transport = InProcessTransport(federation.runners)
    return asyncio.run(
        federation.coordinator.run_analysis(request, federation.handles, transport)
    ).to_dict()


def grades_table(cells: list[list[int]]) -> Table:
    """Rows ``arm`` (a, b) × columns ``grade`` (1, 2, 3) with the given counts."""
    arms, grades = [], []
    for arm, row in zip(["a", "b"], cells, strict=True):
        for grade, count in zip(["1", "2", "3"], row, strict=True):
            arms += [arm] * count
            grades += [grade] * count
    return Table(
        "trial",
        {"arm": np.array(arms, dtype=object), "grade": np.array(grades, dtype=object)},
        {"arm": ColumnType.TEXT, "grade": ColumnType.TEXT},
    )


SMALL = [[30, 2, 25], [20, 40, 1]]  # two small cells at nuh
LARGE = [[20, 10, 15], [12, 30, 8]]


def test_a_crosstab_with_small_cells_is_released_with_them_suppressed(
    make_federation: Any,
) -> None:
    federation = make_federation(
        tables={
            "sgh": grades_table(LARGE),
            "ruijin": grades_table(LARGE),
            "nuh": grades_table(SMALL),
        }
    )
    result = run(
        federation, {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "grade"}
    )
    assert result["complete"] is True
    assert result["refusals"] == []
    estimates = result["estimates"]
    assert estimates["n"] == 2 * sum(map(sum, LARGE)) + sum(map(sum, SMALL))
    # the node's small cells are ranges in the pool; the rest is exact
    nuh = federation.audits["nuh"].events[-1]["released"]["counts"]
    for i, row in enumerate(estimates["table"]):
        for j, cell in enumerate(row):
            expected = 2 * LARGE[i][j]
            if isinstance(nuh[i][j], int):
                assert cell == expected + SMALL[i][j]
            else:
                assert isinstance(cell, str)
    assert nuh[0][1] == "<5"
    assert nuh[1][2] == "<5"
    assert estimates["suppressed"] >= 2
    # chi-square needs every cell: not computed, and the result says so
    assert estimates["chi2"] is None
    assert estimates["p_value"] is None


def test_the_lead_cannot_recompute_a_suppressed_cell_from_the_nodes_totals(
    make_federation: Any,
) -> None:
    federation = make_federation(tables={"nuh": grades_table(SMALL)})
    result = run(
        federation, {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "grade"}
    )
    released = federation.audits["nuh"].events[-1]["released"]["counts"]
    true = np.asarray(SMALL)
    assert result["nodes"][0]["n"] == true.sum()  # the total is known to the lead
    assert subtraction_attack(true, released) == set()
    for cell, (low, high) in attack(true, released).items():
        if released[cell[0]][cell[1]] == "<5":
            assert high - low >= 3


def test_suppressed_cells_are_kept_out_of_the_release_ledger(make_federation: Any) -> None:
    """A suppressed cell's rows were not released: an earlier release of a set one of them
    away does not make this one a differencing refusal, and the cells' rows are not held."""
    federation = make_federation(tables={"nuh": grades_table(SMALL)})
    run(federation, {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "grade"})
    again = run(
        federation, {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "grade"}
    )
    assert again["complete"] is True


def glucose_table(reference: list[float], device: list[float]) -> Table:
    return Table(
        "pairs",
        {"ref_mgdl": np.array(reference), "meter_mgdl": np.array(device)},
        {"ref_mgdl": ColumnType.DECIMAL, "meter_mgdl": ColumnType.DECIMAL},
    )


def test_error_grid_zones_with_small_counts_are_released_with_them_suppressed(
    make_federation: Any,
) -> None:
    rng = np.random.default_rng(7)
    tables, expected = {}, {}
    for name, outliers in (("sgh", 0), ("ruijin", 0), ("nuh", 3)):
        reference = rng.uniform(70, 300, 100)
        device = reference * (1 + rng.normal(0, 0.05, 100))
        device[:outliers] = reference[:outliers] * 1.9  # zone C (or worse) pairs
        tables[name] = glucose_table(reference.tolist(), device.tolist())
        expected[name] = iso15197_node(reference, device)
    federation = make_federation(tables=tables)
    result = run(
        federation,
        {"kind": "iso15197", "table": "pairs", "reference": "ref_mgdl", "device": "meter_mgdl"},
    )
    assert result["complete"] is True
    released = federation.audits["nuh"].events[-1]["released"]
    true = np.asarray(expected["nuh"].parkes_type1)
    assert any(0 < count < 5 for count in true)  # the case the default policy refused
    assert "<5" in released["parkes_type1"]
    for zone, count in zip(true, released["parkes_type1"], strict=True):
        assert count == zone if isinstance(count, int) else zone > 0
    assert subtraction_attack(true, released["parkes_type1"]) == set()
    for (index,), (low, high) in attack(true, released["parkes_type1"]).items():
        assert low <= true[index] <= high
    estimates = result["estimates"]
    # the other nodes' zones add exactly; the mean differences (MARD, bias) are unaffected
    assert estimates["n"] == 300
    assert estimates["mard_pct"] == pytest.approx(
        100 * sum(e.sum_abs_relative_difference for e in expected.values()) / 300, rel=1e-12
    )
    # A+B needs zone B, suppressed at nuh: not a number, and the criterion says so or
    # is decided from the range
    if any(isinstance(released["parkes_type1"][k], str) for k in (0, 1)):
        assert estimates["parkes_ab_pct"] is None or math.isnan(estimates["parkes_ab_pct"])


def test_pairs_within_the_iso_limits_are_released_as_a_range_when_few_are_outside(
    make_federation: Any,
) -> None:
    """3 of 100 pairs outside the limits: the count within is released as "96-99" (a small
    count outside would follow from an exact one), and the pooled criterion is decided
    from the range."""
    rng = np.random.default_rng(3)
    reference = rng.uniform(70, 300, 100)
    device = reference * (1 + rng.normal(0, 0.02, 100))
    device[:3] = reference[:3] * 1.3
    federation = make_federation(tables={"nuh": glucose_table(reference.tolist(), device.tolist())})
    result = run(
        federation,
        {"kind": "iso15197", "table": "pairs", "reference": "ref_mgdl", "device": "meter_mgdl"},
    )
    assert iso15197_node(reference, device).within_iso == 97
    estimates = result["estimates"]
    assert estimates["within_iso"] == "96-99"
    assert estimates["within_iso_pct"] is None  # not a number: the result says a range
    assert estimates["meets_accuracy_criterion"] is True  # 96 of 100 already meets 95 %
