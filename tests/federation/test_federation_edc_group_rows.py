"""An EDC table with one row per instance of a repeating group, on both databases.

glucose-iso15197's plan reads ``ref_mgdl`` and ``meter_mgdl``, items of the repeating group
``readings``: its table ``glucose_pairs`` has a row per paired reading. Readings are entered
through the data-entry service and the table is checked cell by cell against values worked
out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import load_template, template_text
from consortia.exceptions import ConfigurationError
from consortia.federation.edc_group_rows import GROUP_ROW_FACTOR
from consortia.federation.edc_tables import EdcTableSpec, edc_columns, plan_tables, read_edc_table
from consortia.federation.tables import SUBJECT_SHIFT
from consortia.services.data_entry import FormSave, save_form
from consortia.services.studies import load_definition
from consortia.services.subjects import SubjectInput, enrol_subject
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade

STUDY = "GLUCOSE-ISO15197"
TODAY = date(2026, 1, 15)
PRINCIPAL = Principal(
    1,
    "coord@consortium.example",
    "Coordinator",
    frozenset({Grant(STUDY, "*", Role.STUDY_ADMIN), Grant(STUDY, "*", Role.COORDINATOR)}),
)
#: subject -> (age, [(reference, meter), ...]); SG01-003 has no readings (no row)
READINGS: dict[str, tuple[int, list[tuple[float, int]]]] = {
    "SG01-001": (54, [(62.0, 70), (180.5, 150)]),
    "SG01-002": (37, [(95.0, 112), (240.0, 262), (410.2, 400)]),
    "SG01-003": (61, []),
}


def _save(engine: sa.Engine, subject: str, event: str, form: str, values: Any) -> None:
    save = FormSave(version=0, values=values, complete=True)
    save_form(engine, PRINCIPAL, STUDY, subject, event, form, save, today=TODAY)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    load_definition(engine, PRINCIPAL, template_text("glucose-iso15197"))
    for subject, (age, pairs) in READINGS.items():
        enrol_subject(engine, PRINCIPAL, STUDY, SubjectInput(subject, "SG01", None, TODAY))
        demographics = {"age": age, "sex": "F", "diabetes_type": "none"}
        _save(engine, subject, "screening", "demographics", demographics)
        if not pairs:
            continue
        readings = [
            {
                "sample_time": f"09:{10 * number:02d}",
                "sample_type": "capillary",
                "meter_lot": "lot_a",
                "reference_method": "ysi",
                "ref_mgdl": reference,
                "meter_mgdl": meter,
            }
            for number, (reference, meter) in enumerate(pairs)
        ]
        _save(engine, subject, "test_session", "glucose_readings", {"readings": readings})
    yield engine
    engine.dispose()


def test_the_plan_of_paired_readings_reads_a_table_with_a_row_per_reading(
    engine: sa.Engine,
) -> None:
    spec = plan_tables(load_template("glucose-iso15197"))["glucose_pairs"]
    assert spec == EdcTableSpec(edc=STUDY, rows="readings")
    with engine.connect() as connection:
        table = read_edc_table(connection, "glucose_pairs", spec)
    # 2 + 3 readings; the subject without readings has no row
    assert table.n_rows == 5
    assert table.dataset == f"{STUDY}:readings".join(["edc:", ""])
    assert table.columns["ref_mgdl"].tolist() == [62.0, 180.5, 95.0, 240.0, 410.2]
    assert table.columns["meter_mgdl"].tolist() == [70.0, 150.0, 112.0, 262.0, 400.0]
    assert table.columns["age"].tolist() == [54.0, 54.0, 37.0, 37.0, 37.0]
    assert table.columns["site"].tolist() == ["SG01"] * 5
    assert table.columns["meter_lot"].tolist() == ["lot_a"] * 5
    # worked out by hand: within 15 mg/dL below 100 mg/dL, else within 15 %:
    # 62/70 yes (8), 180.5/150 no (30.5 > 27.075), 95/112 no (17), 240/262 yes (22 <= 36),
    # 410.2/400 yes (10.2 <= 61.53)
    reference = table.columns["ref_mgdl"]
    difference = np.abs(table.columns["meter_mgdl"] - reference)
    limit = np.where(reference < 100, 15.0, 0.15 * reference)
    assert (difference <= limit).tolist() == [True, False, False, True, True]
    assert math.isclose(float(difference.sum()), 8 + 30.5 + 17 + 22 + 10.2, rel_tol=1e-12)
    # derived variables read per subject from its latest values are no column of a reading
    assert not {"within_iso", "difference_mgdl"} & set(table.columns)
    assert "event" not in table.columns  # one event collects the readings
    assert not {"initials", "hospital_number"} & set(table.columns)
    # one ledger key per reading: subject key * 2**32 + form rank * 2**20 + reading number
    keys = table.keys()
    assert len(set(keys.tolist())) == 5
    assert sorted(int(key) % GROUP_ROW_FACTOR for key in keys) == [1, 1, 2, 2, 3]
    # each row's subject: its subject row (never a column), and in its ledger key
    assert table.subject_key is not None
    assert table.subject_key.tolist() == [0, 0, 1, 1, 1]
    assert "subject_key" not in table.columns
    assert table.people() == 2
    with engine.connect() as connection:
        subject_pks = (
            connection.execute(sa.text("SELECT id FROM subject ORDER BY id")).scalars().all()
        )
    owners = (table.row_keys >> SUBJECT_SHIFT).tolist()
    assert owners == [subject_pks[0]] * 2 + [subject_pks[1]] * 3


def test_a_subject_table_of_the_same_study_keeps_one_row_per_subject(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        table = read_edc_table(connection, "subjects", EdcTableSpec(edc=STUDY))
    assert table.n_rows == 3
    assert "ref_mgdl" not in table.columns
    assert table.dataset == f"edc:{STUDY}"


def test_a_group_in_a_repeating_event_gets_an_event_column_and_an_unknown_group_is_refused() -> (
    None
):
    cart = load_template("cart-lbcl")
    names = [column.name for column in edc_columns(cart, rows="events")]
    assert {"ae_term", "ae_grade", "event", "site", "age"} <= set(names)
    with pytest.raises(ConfigurationError, match="no repeating group 'readings'"):
        edc_columns(cart, rows="readings")
