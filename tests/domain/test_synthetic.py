"""Synthetic data of the shipped templates: valid, reproducible, and usable by the statistics."""

from __future__ import annotations

import csv
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consortia import stats
from consortia.domain.synthetic import ANALYSIS_TABLES, ID_COLUMNS, SyntheticData, synthesize
from consortia.domain.templates import TEMPLATE_NAMES
from consortia.domain.validation import validate_form
from consortia.exceptions import StudyDefinitionError, ValidationError
from consortia.federation.local import analyze_local
from consortia.federation.policy import NodePolicy
from consortia.federation.tables import read_table

SITES = {
    "cart-lbcl": ("SG01", "SH01"),
    "ortho-3dp": ("SH02", "SG02"),
    "glucose-iso15197": ("SG01",),
    "ai-diagnostic": ("SG01", "SH01"),
}


@cache
def _data(template: str, subjects: int = 60, seed: int = 11, site: str = "") -> SyntheticData:
    return synthesize(template, subjects=subjects, site=site or SITES[template][0], seed=seed)


def _column(rows: list[dict[str, object]], name: str) -> list[Any]:
    """One column of the analysis table (numbers, text or None)."""
    return [row[name] for row in rows]


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_synthetic_form_instance_passes_validation(template: str) -> None:
    data = _data(template)

    failures = []
    for entry in data.entries:
        check = validate_form(data.study, entry.form, entry.values, complete=True)
        failures += [f"{entry.subject_id} {entry.event}: {problem}" for problem in check.errors]
    assert failures == []
    assert {entry.subject_id for entry in data.entries} == {
        f"{data.site}-{number:04d}" for number in range(1, 61)
    }


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_the_same_seed_reproduces_the_data_exactly_and_another_seed_or_site_does_not(
    template: str,
) -> None:
    first = synthesize(template, subjects=15, site=SITES[template][0], seed=3)
    again = synthesize(template, subjects=15, site=SITES[template][0], seed=3)
    other = synthesize(template, subjects=15, site=SITES[template][0], seed=4)

    assert first.records == again.records
    assert first.analysis_rows() == again.analysis_rows()
    assert first.analysis_rows() != other.analysis_rows()
    if len(SITES[template]) > 1:
        elsewhere = synthesize(template, subjects=15, site=SITES[template][1], seed=3)
        assert first.analysis_rows() != elsewhere.analysis_rows()


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_records_are_a_wide_export_with_identifiers_and_analysis_rows_have_none(
    template: str,
) -> None:
    data = _data(template)
    items = [name for _, _, name, _ in data.study.iter_items()]
    identifiers = {name for _, _, name, item in data.study.iter_items() if item.identifier}

    assert data.columns == (*ID_COLUMNS, *items)
    assert all(tuple(record) == data.columns for record in data.records)
    assert any(record[name] for record in data.records for name in identifiers)
    rows = data.analysis_rows()
    assert data.analysis_table == ANALYSIS_TABLES[template]
    assert not set(rows[0]) & (identifiers | set(ID_COLUMNS))
    planned = {
        value
        for request in data.study.analysis_plan.values()
        for key, value in request.model_dump().items()
        if key
        in (
            "time",
            "event",
            "group",
            "outcome",
            "variable",
            "reference",
            "device",
            "score",
            "truth",
        )
    } | {
        name
        for request in data.study.analysis_plan.values()
        for name in request.model_dump().get("covariates", [])
    }
    assert planned <= set(rows[0])


def test_repeating_events_and_repeating_groups_get_their_own_rows() -> None:
    data = _data("cart-lbcl")

    daily = [r for r in data.records if r["redcap_event_name"] == "crs_daily"]
    assert daily
    assert all(r["redcap_repeat_instrument"] == "" for r in daily)
    first_subject = [r for r in daily if r["subject_id"] == daily[0]["subject_id"]]
    assert [r["redcap_repeat_instance"] for r in first_subject] == [str(d) for d in range(1, 15)]
    adverse = [r for r in data.records if r["redcap_repeat_instrument"] == "ae"]
    assert adverse
    assert all(r["ae_term"] and r["redcap_repeat_instance"] for r in adverse)
    screening = [r for r in data.records if r["redcap_event_name"] == "screening"]
    assert len(screening) == 60
    assert all(r["consent_date"] and r["age"] for r in screening)


def test_a_few_optional_items_are_left_empty() -> None:
    data = _data("cart-lbcl")

    screening = [r for r in data.records if r["redcap_event_name"] == "screening"]
    empty_ethnicity = sum(1 for r in screening if not r["ethnicity"])
    assert all(r["disease_status"] for r in screening)
    assert 0 <= empty_ethnicity <= 8
    optional = ["ethnicity", "weight_kg", "biobank_consent", "ldh_elevated"]
    cells = [r[name] for r in screening for name in optional]
    assert 0 < cells.count("") < 0.08 * len(cells)


def test_the_csv_files_round_trip_and_the_analysis_table_reads_as_typed_columns(
    tmp_path: Path,
) -> None:
    data = _data("cart-lbcl")

    records = data.write_csv(tmp_path / "records.csv")
    with records.open(encoding="utf-8", newline="") as handle:
        assert list(csv.DictReader(handle)) == data.records
    table = read_table(data.write_analysis_csv(tmp_path / "cart_efficacy.csv"))
    assert table.name == "cart_efficacy"
    assert table.n_rows == 60
    assert {table.types[c].value for c in ("pfs_days", "pfs_event", "age")} == {"integer"}
    assert table.types["arm"].value == "text"


def test_cart_t_progression_free_survival_is_longer_than_standard_of_care() -> None:
    rows = _data("cart-lbcl", subjects=160).analysis_rows()
    time, event, arm = (_column(rows, name) for name in ("pfs_days", "pfs_event", "arm"))

    curves = stats.kaplan_meier(time, event, arm).groups
    assert curves["car_t"].median > 1.8 * curves["soc"].median
    assert 250 < curves["car_t"].median < 500
    assert 80 < curves["soc"].median < 170
    assert Counter(arm) == {"car_t": 80, "soc": 80}
    cox = stats.fit_cox(time, event, {"arm": arm, "age": _column(rows, "age")})
    assert cox.covariates[0] == "arm[T.soc]"
    assert np.exp(cox.coef[0]) > 1.8


def test_cart_t_brings_more_complete_responses_and_mostly_low_grade_crs() -> None:
    rows = _data("cart-lbcl", subjects=160).analysis_rows()
    car_t = [row for row in rows if row["arm"] == "car_t"]
    soc = [row for row in rows if row["arm"] == "soc"]

    fit = stats.fit_glm(
        _column(rows, "cr_day28"), {"arm": _column(rows, "arm")}, ["arm"], family="binomial"
    )
    assert fit.covariates[1] == "arm[T.soc]"
    assert fit.coef[1] < 0
    crs = [grade for grade in _column(car_t, "crs_max_grade") if grade is not None]
    assert 0.65 < np.mean([grade > 0 for grade in crs]) < 0.95
    assert sum(1 for g in crs if g in (1, 2)) > 3 * sum(1 for g in crs if g in (3, 4)) > 0
    icans = [grade for grade in _column(car_t, "icans_max_grade") if grade is not None]
    assert 0.15 < np.mean([grade > 0 for grade in icans]) < 0.45
    assert all(row["crs_max_grade"] is None for row in soc)


def test_ortho_msts_improves_and_infection_and_loosening_are_the_commonest_failures() -> None:
    data = _data("ortho-3dp", subjects=150)
    rows = data.analysis_rows()

    means = {
        event: np.mean([v for v in _column(rows, f"msts_percent_{event}") if v is not None])
        for event in ("month3", "month6", "month12")
    }
    assert 35 < means["month3"] < means["month6"] < means["month12"] < 85
    curve = stats.kaplan_meier(
        _column(rows, "implant_survival_days"), _column(rows, "revision_event")
    ).groups["all"]
    assert 0.6 < curve.survival[-1] < 0.97
    types = Counter(
        instance["henderson_type"]
        for entry in data.entries
        if entry.form == "complication"
        for instance in entry.values["complications"]  # type: ignore[attr-defined]
    )
    assert {kind for kind, _ in types.most_common(2)} == {"4", "2"}


def test_glucose_meter_meets_iso15197_with_96_to_98_percent_within_limits() -> None:
    rows = _data("glucose-iso15197", subjects=200).analysis_rows()
    reference, meter = _column(rows, "ref_mgdl"), _column(rows, "meter_mgdl")

    result = stats.iso15197(reference, meter)
    assert 95 <= result.within_iso_pct <= 99.5
    assert min(reference) >= 40
    assert max(reference) <= 450
    low = sum(1 for value in reference if value < 50)
    assert 0.02 < low / len(reference) < 0.09
    assert np.mean(_column(rows, "within_iso")) == pytest.approx(result.within_iso_pct / 100)


def test_the_ai_score_discriminates_with_an_auc_near_0_9() -> None:
    rows = _data("ai-diagnostic", subjects=300).analysis_rows()

    truth = _column(rows, "reference_positive")
    result = stats.diagnostic_accuracy(_column(rows, "ai_score"), truth, threshold=0.5)
    assert 0.85 < result.auc < 0.95
    assert 0.22 < np.mean(truth) < 0.38
    reader = stats.diagnostic_accuracy(_column(rows, "reader_positive"), truth, threshold=0.5)
    assert 0.65 < reader.sensitivity.estimate < 0.92


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_planned_analysis_runs_federated_on_the_synthetic_tables(
    template: str, tmp_path: Path
) -> None:
    files = {}
    for site in SITES[template]:
        data = _data(template, subjects=60, seed=5, site=site)
        (tmp_path / site).mkdir()
        files[site.lower()] = data.write_analysis_csv(
            tmp_path / site / f"{data.analysis_table}.csv"
        )
    # Parkes zones and ROC tails have cells below 5 at demo sizes; this test is about the
    # plan and the table fitting together, so the cell rule is relaxed here.
    policy = NodePolicy(min_cell_count=1)

    for name, request in data.study.analysis_plan.items():
        result = analyze_local(request.model_dump(), files, policy).to_dict()
        assert result["complete"], (name, result)
        assert sum(node["n"] for node in result["nodes"]) >= 60


@pytest.mark.parametrize("template", ["cart-lbcl", "ortho-3dp"])
def test_survival_plans_pass_the_default_disclosure_policy(template: str, tmp_path: Path) -> None:
    files = {}
    for site in SITES[template]:
        data = _data(template, subjects=60, seed=5, site=site)
        (tmp_path / site).mkdir()
        files[site.lower()] = data.write_analysis_csv(
            tmp_path / site / f"{data.analysis_table}.csv"
        )

    for request in data.study.analysis_plan.values():
        assert analyze_local(request.model_dump(), files).to_dict()["complete"]


def test_a_site_the_template_does_not_list_and_bad_counts_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        synthesize("cart-lbcl", subjects=0, site="XX99", seed=-1)

    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("site", "'XX99' is not a site of cart-lbcl: SG01, SH01"),
        ("subjects", "0 is below the minimum 1"),
        ("seed", "-1 is negative; use a seed of 0 or more"),
    ]
    with pytest.raises(StudyDefinitionError):
        synthesize("cart", subjects=5, site="SG01", seed=1)
