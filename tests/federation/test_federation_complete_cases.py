"""Complete cases, counted: a row with a missing value in an analysis' variables is left out
and the rows left out are released as a count — as ``"<5"`` when 0 < n < the minimum cell
count — instead of refusing the analysis; the release ledger still refuses a release that,
with an earlier one, would give that suppressed count (and the left-out rows' values).

References, on the pooled complete cases of three nodes: statsmodels ``Logit`` (GLM),
lifelines ``CoxPHFitter`` with node strata (Cox, Efron ties), lifelines
``KaplanMeierFitter`` on the binned times (Kaplan–Meier) and scipy ``chi2_contingency``
(crosstab). Tolerance: 1e-8 relative against lifelines and scipy (their fits run to tight
precision), 1e-6 against statsmodels' IRLS (its default convergence); counts exactly.
"""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, KaplanMeierFitter
from scipy.stats import chi2_contingency

from consortia.federation.coordinator import AnalysisRefused
from consortia.federation.tables import Table, read_table
from consortia.federation.transport import InProcessTransport
from consortia.stats._arrays import bin_times

RTOL = 1e-8
STATSMODELS_RTOL = 1e-6
# Rows left out at each node, and in which column: sgh 2 (released "<5"), ruijin 6
# (released as 6), nuh none.
GAPS = {"sgh": 2, "ruijin": 6, "nuh": 0}


NODE_SIZES = {"sgh": 80, "ruijin": 70, "nuh": 60}  # as the trial files (conftest.py)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def gaps(trial_files: dict[str, Path]) -> Any:
    """The trial files' rows with GAPS[node] values of one column blanked (rows 3, 4 …)."""

    def rows_with_gaps(column: str) -> dict[str, list[dict[str, Any]]]:
        nodes = {}
        for name, path in trial_files.items():
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            for row in rows[3 : 3 + GAPS[name]]:
                row[column] = ""
            nodes[name] = rows
        return nodes

    return rows_with_gaps


def _tables(tmp_path: Path, nodes: dict[str, list[dict[str, Any]]]) -> dict[str, Table]:
    return {
        name: read_table(
            write_csv(tmp_path / "gaps" / name / "trial.csv", rows), identifiers=["mrn"]
        )
        for name, rows in nodes.items()
    }


def _frame(nodes: dict[str, list[dict[str, Any]]], column: str) -> pd.DataFrame:
    """The three nodes' rows as one frame (with a ``node`` column), complete cases only."""
    frames = [pd.DataFrame(rows).assign(node=name) for name, rows in nodes.items()]
    frame = pd.concat(frames, ignore_index=True).replace("", np.nan)
    numbers = ["age", "response", "pfs_days", "pfs_event", "biomarker"]
    return frame.dropna(subset=[column]).astype(dict.fromkeys(numbers, float))


def run(federation: Any, request: dict[str, Any]) -> dict[str, Any]:
    transport = InProcessTransport(federation.runners)
    return asyncio.run(
        federation.coordinator.run_analysis(request, federation.handles, transport)
    ).to_dict()


def assert_counted(result: dict[str, Any]) -> None:
    """Each node's rows, and its rows left out, as released."""
    assert result["complete"] is True
    assert [(node["name"], node["excluded"]) for node in result["nodes"]] == [
        ("sgh", "<5"),
        ("ruijin", 6),
        ("nuh", 0),
    ]
    assert [node["n"] for node in result["nodes"]] == [
        NODE_SIZES[name] - GAPS[name] for name in NODE_SIZES
    ]


def test_a_logistic_glm_with_incomplete_rows_is_fitted_on_the_complete_cases(
    make_federation: Any, tmp_path: Path, gaps: Any
) -> None:
    request = {
        "kind": "glm",
        "family": "binomial",
        "table": "trial",
        "outcome": "response",
        "covariates": ["age", "biomarker"],
    }
    result = run(make_federation(tables=_tables(tmp_path, gaps("age"))), request)
    assert_counted(result)
    frame = _frame(gaps("age"), "age")
    design = sm.add_constant(frame[["age", "biomarker"]])
    reference = sm.Logit(frame["response"], design).fit(disp=0, tol=1e-12)
    estimates = result["estimates"]
    names = ["Intercept", "age", "biomarker"]
    assert estimates["n"] == len(frame) == 202
    np.testing.assert_allclose(
        [estimates["coef"][name] for name in names], reference.params.to_numpy(), rtol=RTOL
    )
    np.testing.assert_allclose(
        [estimates["se"][name] for name in names], reference.bse.to_numpy(), rtol=STATSMODELS_RTOL
    )


def test_a_cox_model_with_incomplete_rows_is_fitted_on_the_complete_cases(
    make_federation: Any, tmp_path: Path, gaps: Any
) -> None:
    request = {
        "kind": "cox",
        "table": "trial",
        "time": "pfs_days",
        "event": "pfs_event",
        "covariates": ["age", "biomarker"],
        "strata": ["node"],
    }
    result = run(make_federation(tables=_tables(tmp_path, gaps("biomarker"))), request)
    assert_counted(result)
    frame = _frame(gaps("biomarker"), "biomarker")[
        ["pfs_days", "pfs_event", "age", "biomarker", "node"]
    ]
    reference = CoxPHFitter(strata=["node"]).fit(
        frame,
        "pfs_days",
        "pfs_event",
        fit_options={"precision": 1e-20, "r_precision": 1e-16},
    )
    estimates = result["estimates"]
    names = ["age", "biomarker"]
    np.testing.assert_allclose(
        [estimates["coef"][name] for name in names], reference.params_.to_numpy(), rtol=RTOL
    )
    np.testing.assert_allclose(
        [estimates["se"][name] for name in names],
        reference.standard_errors_.to_numpy(),
        rtol=RTOL,
    )


def test_kaplan_meier_with_incomplete_rows_is_the_curve_of_the_complete_cases(
    make_federation: Any, tmp_path: Path, gaps: Any
) -> None:
    request = {"kind": "kaplan_meier", "table": "trial", "time": "pfs_days", "event": "pfs_event"}
    result = run(make_federation(tables=_tables(tmp_path, gaps("pfs_days"))), request)
    assert_counted(result)
    frame = _frame(gaps("pfs_days"), "pfs_days")
    fitter = KaplanMeierFitter().fit(
        bin_times(frame["pfs_days"].to_numpy(), 7.0), frame["pfs_event"]
    )
    (curve,) = result["estimates"]["groups"].values()
    np.testing.assert_array_equal(curve["time"], fitter.survival_function_.index.to_numpy())
    np.testing.assert_array_equal(curve["at_risk"], fitter.event_table["at_risk"].to_numpy())
    np.testing.assert_allclose(
        curve["survival"], fitter.survival_function_.to_numpy()[:, 0], rtol=RTOL
    )


def test_a_crosstab_with_incomplete_rows_counts_the_complete_pairs(
    make_federation: Any, tmp_path: Path, gaps: Any
) -> None:
    request = {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "response"}
    result = run(make_federation(tables=_tables(tmp_path, gaps("arm"))), request)
    assert_counted(result)
    frame = pd.concat([pd.DataFrame(rows) for rows in gaps("arm").values()], ignore_index=True)
    frame = frame[frame["arm"] != ""]
    table = pd.crosstab(frame["arm"], frame["response"].astype(str))
    chi2, p_value, dof, _ = chi2_contingency(table.to_numpy(), correction=False)
    estimates = result["estimates"]
    assert estimates["table"] == table.to_numpy().tolist()
    assert estimates["missing"] == "7-10"  # 6 at ruijin and 1 to 4 at sgh
    np.testing.assert_allclose(
        [estimates["chi2"], estimates["p_value"]], [chi2, p_value], rtol=RTOL
    )
    assert estimates["dof"] == dof


def test_the_released_count_left_out_is_in_the_audit_and_never_the_small_number(
    make_federation: Any, tmp_path: Path, gaps: Any
) -> None:
    federation = make_federation(tables=_tables(tmp_path, gaps("age")))
    run(federation, {"kind": "describe", "table": "trial", "variable": "age"})
    released = federation.audits["sgh"].events[-1]
    assert released["decision"] == "released"
    assert released["released"]["missing"] == released["released"]["excluded"] == "<5"
    assert federation.audits["ruijin"].events[-1]["released"]["excluded"] == 6


def test_a_release_that_would_reveal_a_suppressed_count_is_refused_by_the_ledger(
    make_federation: Any, tmp_path: Path, gaps: Any
) -> None:
    """``describe age`` leaves out 2 rows at sgh (released "<5"); ``describe biomarker``
    has every row, so its n minus the first n would be those 2 rows: refused."""
    federation = make_federation(tables=_tables(tmp_path, gaps("age")))
    first = run(federation, {"kind": "describe", "table": "trial", "variable": "age"})
    assert first["nodes"][0]["excluded"] == "<5"
    with pytest.raises(AnalysisRefused) as refused:
        run(federation, {"kind": "describe", "table": "trial", "variable": "biomarker"})
    assert [(r["node"], r["rule"]) for r in refused.value.refusals] == [("sgh", "differencing")]


def test_a_count_released_as_a_number_records_the_whole_table_in_the_ledger(
    make_federation: Any, tmp_path: Path, gaps: Any
) -> None:
    """At ruijin 6 rows lack age and 2 others lack biomarker. ``describe age`` releases
    n = 64 and 6 left out, hence the table's 70 rows; ``describe biomarker`` (n = 68, "<5"
    left out) would give its 2 by subtraction from 70: refused, though its rows differ
    from the first release's by 8."""
    rows = gaps("age")["ruijin"]
    for row in rows[20:22]:
        row["biomarker"] = ""
    table = read_table(write_csv(tmp_path / "ruijin.csv", rows), identifiers=["mrn"])
    federation = make_federation(tables={"ruijin": table})
    first = run(federation, {"kind": "describe", "table": "ruijin", "variable": "age"})
    assert first["nodes"] == [{"name": "ruijin", "n": 64, "excluded": 6}]
    with pytest.raises(AnalysisRefused) as refused:
        run(federation, {"kind": "describe", "table": "ruijin", "variable": "biomarker"})
    assert refused.value.refusals[0]["rule"] == "differencing"
