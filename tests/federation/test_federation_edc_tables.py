"""EDC tables: a node's analysis table built from the data it captured, on both databases.

The cart-lbcl template is loaded into a migrated database and subjects at two sites are
enrolled and their forms saved through the real services; the node is built from a
config file declaring ``tables: {cart: {edc: CART-LBCL}}`` and analysed over the signed
in-process protocol.
"""

from __future__ import annotations

import asyncio
import doctest
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import consortia.federation.edc_tables as edc_tables_module
from consortia.auth.principal import Grant, Principal, Role
from consortia.config import load_settings
from consortia.domain.study_yaml import load_study_text
from consortia.domain.templates import load_template, template_text
from consortia.exceptions import ConfigurationError
from consortia.federation.coordinator import AnalysisRefused, Coordinator
from consortia.federation.edc_tables import EdcTableSpec, edc_columns, read_edc_table
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import NodeConfig, build_node, node_config_from_settings
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64, save_key
from consortia.federation.tables import ColumnType, Table
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.services.data_entry import FormSave, save_form
from consortia.services.schedule import change_status
from consortia.services.studies import load_definition
from consortia.services.subjects import SubjectInput, enrol_subject
from consortia.stats.descriptive import describe
from consortia.stats.survival import kaplan_meier
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from nodetoml import node_config
from randomisation_network import ARM_CODES, record_allocations

STUDY = "CART-LBCL"
TODAY = date(2026, 1, 15)
RTOL = 1e-8
ELIGIBILITY = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "eligible": True,
}
CONSENT = {"consent_given": True, "consent_date": "2025-01-06", "consent_version": "2.1"}


@dataclass(frozen=True)
class Patient:
    """One subject's identity (never analysed) and the values entered for it."""

    subject_id: str
    site: str
    initials: str
    birth_date: str
    hospital_number: str
    age: int
    sex: str
    weight_kg: float
    ecog: int
    arm: str | None = None
    rand_date: str | None = None
    day28: str | None = None
    month3: str | None = None
    progression_date: str | None = None
    death_date: str | None = None
    last_contact: str | None = None
    status: str = "enrolled"


PATIENTS = [
    Patient("SG01-001", "SG01", "ALT", "1961-02-03", "SGH0001", 64, "M", 70.5, 0,
            "car_t", "2025-02-10", "CR", "CR", None, None, "2025-11-30"),
    Patient("SG01-002", "SG01", "BKW", "1958-07-21", "SGH0002", 67, "F", 58.0, 1,
            "soc", "2025-02-17", "PR", "PD", "2025-05-19", None, "2025-06-01"),
    Patient("SG01-003", "SG01", "CHN", "1970-11-09", "SGH0003", 55, "M", 81.2, 1,
            "car_t", "2025-03-03", "CR", None, None, "2025-07-14", "2025-07-14"),
    Patient("SG01-004", "SG01", "DLM", "1966-01-30", "SGH0004", 59, "M", 66.4, 0,
            "soc", "2025-03-10", "SD", "PD", "2025-06-02", None, "2025-09-15"),
    Patient("SH01-001", "SH01", "EWQ", "1972-05-05", "SHH0101", 53, "M", 72.0, 0,
            "car_t", "2025-02-24", "CR", "CR", None, None, "2025-12-08"),
    Patient("SH01-002", "SH01", "FZY", "1963-09-14", "SHH0102", 62, "F", 54.9, 1,
            "soc", "2025-03-17", "PD", None, "2025-04-14", None, "2025-04-20"),
    Patient("SH01-003", "SH01", "GLX", "1955-12-25", "SHH0103", 70, "M", 77.7, 1,
            status="screening"),
]  # fmt: skip
IDENTITY_TEXTS = {
    text
    for patient in PATIENTS
    for text in (patient.subject_id, patient.initials, patient.hospital_number, patient.birth_date)
}


def _principal() -> Principal:
    grants = {Grant(STUDY, "*", Role.STUDY_ADMIN), Grant(STUDY, "*", Role.COORDINATOR)}
    return Principal(1, "coord@consortium.example", "Coordinator", frozenset(grants))


def _save(engine: sa.Engine, patient: Patient, ref: str, form: str, values: Any) -> None:
    save_form(
        engine,
        _principal(),
        STUDY,
        patient.subject_id,
        ref,
        form,
        FormSave(version=0, values=values, complete=True),
        today=TODAY,
    )


def enter_patient(engine: sa.Engine, patient: Patient) -> None:
    """Enrol one patient and enter their forms through the data-entry services."""
    principal = _principal()
    enrol_subject(
        engine,
        principal,
        STUDY,
        SubjectInput(patient.subject_id, patient.site, patient.initials, date(2025, 1, 6)),
    )
    demographics = {
        "initials": patient.initials,
        "birth_date": patient.birth_date,
        "hospital_number": patient.hospital_number,
        "age": patient.age,
        "sex": patient.sex,
        "weight_kg": patient.weight_kg,
        "ethnicity": "chinese",
    }
    _save(engine, patient, "screening", "demographics", demographics)
    _save(engine, patient, "screening", "eligibility", {**ELIGIBILITY, "ecog": patient.ecog})
    if patient.status == "screening":
        return
    _save(engine, patient, "screening", "consent", CONSENT)  # the gates of eligible
    change_status(engine, principal, STUDY, patient.subject_id, "eligible", date(2025, 2, 1), None)
    change_status(engine, principal, STUDY, patient.subject_id, "enrolled", date(2025, 2, 2), None)
    assert patient.rand_date is not None
    assert patient.arm is not None
    record_allocations(engine, {patient.subject_id: patient.arm})
    _save(engine, patient, "randomisation", "randomisation", {"rand_date": patient.rand_date})
    for event, response, day in (("day28", patient.day28, 28), ("month3", patient.month3, 91)):
        if response is None:
            continue
        when = date.fromordinal(date.fromisoformat(patient.rand_date).toordinal() + day)
        values = {"response_date": when.isoformat(), "response_method": "ct", "response": response}
        _save(engine, patient, event, "response", values)
    if patient.progression_date is not None:
        values = {"progression_date": patient.progression_date, "progression_basis": "imaging"}
        _save(engine, patient, "progression", "progression", values)
    if patient.death_date is not None:
        values = {"death_date": patient.death_date, "death_cause": "lymphoma"}
        _save(engine, patient, "death", "death", values)
    reason = "died" if patient.death_date else "in_follow_up"
    values = {"last_contact": patient.last_contact, "status_reason": reason}
    _save(engine, patient, "end_of_study", "status", values)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """A migrated database with cart-lbcl loaded and the patients' data entered."""
    engine = make_engine(database_url)
    upgrade(engine)
    load_definition(engine, _principal(), template_text("cart-lbcl"))
    for patient in PATIENTS:
        enter_patient(engine, patient)
    # one adverse event: a repeating group, whose values never enter the table
    ae = {
        "events": [
            {
                "ae_term": "Cytokine release syndrome",
                "ae_soc": "immun",
                "ae_ctcae_version": "5.0",
                "ae_onset": "2025-02-13",
                "ae_grade": 2,
                "ae_serious": False,
                "ae_related": "definite",
            }
        ]
    }
    _save(engine, PATIENTS[0], "ae_log", "ae", ae)
    yield engine
    engine.dispose()


def _config(folder: Path, database_url: str | None, lead_key: Any, **extra: Any) -> NodeConfig:
    save_key(generate_key(), folder / "node.pem")
    fields = {
        "name": "sgh",
        "url": "http://sgh.test",
        "key_file": "node.pem",
        "peers": [
            {"name": "lead", "url": "http://lead.test", "public_key": public_key_b64(lead_key)}
        ],
        "database_url": database_url,
        "tables": {"cart": {"edc": STUDY}},
        "policy": {"min_cell_count": 1},
        **extra,
    }
    return node_config(folder, fields)


def _analyze(node: NodeRunner, lead_key: Any, request: dict[str, Any]) -> dict[str, Any]:
    trust = TrustStore([Peer(name=node.name, url=node.url, public_key=node.public_key)])
    coordinator = Coordinator("lead", lead_key, trust, round_timeout=10.0)
    handles = [NodeHandle(node.name, node.url)]
    transport = InProcessTransport({node.name: node})
    return asyncio.run(coordinator.run_analysis(request, handles, transport)).to_dict()


def _rows_by_age(table: Table) -> dict[int, int]:
    return {int(age): row for row, age in enumerate(table.column("age"))}


def _day(text: str) -> np.datetime64:
    return np.datetime64(text, "D")


# --------------------------------------------------------------------------- the tests


def test_the_edc_table_has_one_typed_row_per_subject_and_a_column_per_event(
    engine: sa.Engine,
) -> None:
    with engine.connect() as connection:
        table = read_edc_table(connection, "cart", EdcTableSpec(edc=STUDY))
    assert table.n_rows == len(PATIENTS)
    assert table.source == f"edc:{STUDY} v1"
    assert sorted(table.column("site")) == ["SG01"] * 4 + ["SH01"] * 3
    types = dict(table.types)
    for name, kind in {
        "site": ColumnType.TEXT,
        "status": ColumnType.TEXT,
        "age": ColumnType.INTEGER,
        "weight_kg": ColumnType.DECIMAL,
        "sex": ColumnType.TEXT,
        "eligible": ColumnType.BOOLEAN,
        "rand_date": ColumnType.DATE,
        "response_day28": ColumnType.TEXT,
        "response_month3": ColumnType.TEXT,
        "response_date_day28": ColumnType.DATE,
        "pfs_days": ColumnType.INTEGER,
        "pfs_event": ColumnType.INTEGER,
        "fever_masked": ColumnType.BOOLEAN,
    }.items():
        assert types[name] is kind, name
    assert table.column("age").dtype == np.float64
    assert table.column("eligible").dtype == np.float64
    assert table.column("rand_date").dtype == np.dtype("datetime64[D]")
    assert table.column("sex").dtype == object
    # an item collected at several events: one column per event, none under the bare name
    assert "response" not in table
    assert "response_month12" in table
    # repeating groups, repeating events and identifiers never enter
    for absent in ("ae_term", "ae_grade", "max_temp", "initials", "birth_date"):
        assert absent not in table, absent
    assert "hospital_number" not in table
    assert "subject_id" not in table

    rows = _rows_by_age(table)
    for patient in PATIENTS:
        row = rows[patient.age]
        assert table.column("site")[row] == patient.site
        assert table.column("status")[row] == patient.status
        assert table.column("sex")[row] == patient.sex
        assert table.column("ethnicity")[row] == "chinese"
        assert table.column("weight_kg")[row] == pytest.approx(patient.weight_kg)
        assert table.column("ecog")[row] == patient.ecog
        assert table.column("eligible")[row] == 1.0
        assert np.isnan(table.column("ldh_elevated")[row])  # not entered: missing
        assert table.column("response_day28")[row] == patient.day28
        assert table.column("response_month3")[row] == patient.month3
        # the allocation's code, never the arm: a federated analysis is blind
        assert table.column("arm")[row] == (ARM_CODES[patient.arm] if patient.arm else None)
        if patient.rand_date is None:
            assert np.isnat(table.column("rand_date")[row])
            assert np.isnan(table.column("pfs_days")[row])
            continue
        assert table.column("rand_date")[row] == _day(patient.rand_date)
        end = patient.progression_date or patient.death_date or patient.last_contact
        assert end is not None
        pfs_days = (date.fromisoformat(end) - date.fromisoformat(patient.rand_date)).days
        assert table.column("pfs_days")[row] == pfs_days
        has_event = patient.progression_date is not None or patient.death_date is not None
        assert table.column("pfs_event")[row] == float(has_event)
        assert table.column("os_event")[row] == float(patient.death_date is not None)
        expected_death = _day(patient.death_date) if patient.death_date else None
        if expected_death is None:
            assert np.isnat(table.column("death_date")[row])
        else:
            assert table.column("death_date")[row] == expected_death


def test_no_identifier_value_appears_anywhere_in_the_edc_table(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        table = read_edc_table(connection, "cart", EdcTableSpec(edc=STUDY))
    birth_dates = {_day(patient.birth_date) for patient in PATIENTS}
    for name, column in table.columns.items():
        assert not any(text in name for text in ("initials", "birth", "hospital", "subject")), name
        for value in column:
            if table.types[name] is ColumnType.DATE:
                assert value not in birth_dates, (name, value)
            shown = str(value)
            assert not any(text in shown for text in IDENTITY_TEXTS), (name, shown)


def test_sites_statuses_and_named_columns_narrow_the_table(engine: sa.Engine) -> None:
    spec = EdcTableSpec(
        edc=STUDY, sites=["SG01"], statuses=["enrolled"], identifiers=["weight_kg", "response"]
    )
    with engine.connect() as connection:
        table = read_edc_table(connection, "cart", spec, identifiers=["ethnicity"])
    assert table.n_rows == 4
    assert set(table.column("site")) == {"SG01"}
    assert set(table.column("status")) == {"enrolled"}
    assert "weight_kg" not in table
    assert "ethnicity" not in table
    assert "response_day28" not in table  # every event's column of a named item is left out
    assert "response_month3" not in table
    assert "response_method_day28" in table


def test_a_federated_analysis_on_the_edc_table_equals_the_statistic_on_its_arrays(
    engine: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    lead_key = generate_key()
    node = build_node(_config(tmp_path, database_url, lead_key))
    try:
        table = node.tables["cart"]
        assert table.n_rows == len(PATIENTS)
        assert {"birth_date", "initials", "hospital_number", "subject_id"} <= node.identifiers

        edges = [0.0, 55.0, 60.0, 65.0, 100.0]
        result = _analyze(
            node,
            lead_key,
            {"kind": "describe", "table": "cart", "variable": "age", "bin_edges": edges},
        )
        expected = describe(table.numeric("age"), bin_edges=edges)
        estimates = result["estimates"]
        assert estimates["n"] == expected.n == len(PATIENTS)
        assert estimates["mean"] == pytest.approx(expected.mean, rel=RTOL)
        assert estimates["sd"] == pytest.approx(expected.sd, rel=RTOL)
        assert estimates["bin_counts"] == list(expected.bin_counts)

        request = {
            "kind": "kaplan_meier",
            "table": "cart",
            "time": "pfs_days",
            "event": "pfs_event",
            "group": "arm",
        }
        result = _analyze(node, lead_key, request)
        time, event = table.numeric("pfs_days"), table.numeric("pfs_event")
        complete = ~np.isnan(time) & ~np.isnan(event)
        reference = kaplan_meier(
            time[complete], event[complete], table.column("arm")[complete], time_bin=7
        )
        curves = result["estimates"]["groups"]
        assert set(curves) == {"A", "B"}  # by allocation code
        for group, curve in reference.groups.items():
            np.testing.assert_allclose(curves[group]["time"], curve.time, rtol=RTOL)
            np.testing.assert_allclose(curves[group]["survival"], curve.survival, rtol=RTOL)
            np.testing.assert_allclose(curves[group]["at_risk"], curve.at_risk, rtol=RTOL)

        with pytest.raises(AnalysisRefused) as refused:
            _analyze(
                node, lead_key, {"kind": "describe", "table": "cart", "variable": "birth_date"}
            )
        assert refused.value.rule == "identifier_column"
    finally:
        node.close()


def test_data_captured_after_the_node_started_is_in_the_next_analysis(
    engine: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    lead_key = generate_key()
    node = build_node(_config(tmp_path, database_url, lead_key))
    try:
        first = node.tables["cart"]
        assert node.tables["cart"] is first  # nothing changed: the table in memory is reused
        late = Patient(
            "SH01-004", "SH01", "HJK", "1969-04-04", "SHH0104", 48, "M", 69.0, 0, status="screening"
        )
        enter_patient(engine, late)
        request = {"kind": "describe", "table": "cart", "variable": "age"}
        result = _analyze(node, lead_key, request)
        assert result["estimates"]["n"] == len(PATIENTS) + 1
        assert 48.0 in node.tables["cart"].column("age")
    finally:
        node.close()


# --------------------------------------------------------------------------- config and layout


def test_an_edc_table_needs_the_node_database(tmp_path: Path) -> None:
    config = _config(tmp_path, None, generate_key())
    with pytest.raises(ConfigurationError, match=r"tables\.cart: .*needs the node database"):
        build_node(config)


def test_a_table_is_either_a_file_or_an_edc_study(tmp_path: Path) -> None:
    path = tmp_path / "consortia.toml"
    path.write_text(
        'node_name = "sgh"\n[node.tables.t]\nfile = "t.csv"\nedc = "CART-LBCL"\n'
        "[node.tables.u]\ncolumns = {}\n"
    )
    with pytest.raises(ConfigurationError) as error:
        node_config_from_settings(load_settings(path))
    message = str(error.value)
    assert f"{path}:2: node.tables.t: a table needs either 'file'" in message
    assert f"{path}:5: node.tables.u: a table needs either 'file'" in message


def test_an_unmigrated_database_or_an_unknown_study_stops_the_node_at_start(
    database_url: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, database_url, generate_key())
    with pytest.raises(ConfigurationError, match="run `consortia db upgrade` first"):
        build_node(config)
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    with pytest.raises(ConfigurationError, match=f"study {STUDY} has no definition on this node"):
        build_node(config)


def test_a_relative_sqlite_path_resolves_against_the_node_folder(tmp_path: Path) -> None:
    config = _config(tmp_path, "sqlite:///data/node.db", generate_key())
    assert config.database() == f"sqlite:///{tmp_path.resolve()}/data/node.db"


def test_the_database_url_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", "postgresql://node:secret@db.example/consortia")
    config = _config(tmp_path, "sqlite:///in-the-file.db", generate_key())
    assert config.database() == "postgresql://node:secret@db.example/consortia"


MINI = """
study:
  id: MINI
  title: {en: A small study, zh: 小研究}
  phase: pilot
  sponsor: Test
  version: "1"
sites:
  SG01: {name: Singapore, country: SG, node: sgh}
code_lists:
  symptom:
    - {code: fever, label: {en: Fever, zh: 发热}}
    - {code: rash, label: {en: Rash, zh: 皮疹}}
events:
  baseline: {label: {en: Baseline, zh: 基线}, day: 0, forms: [intake, visit]}
  week4: {label: {en: Week 4, zh: 第4周}, day: 28, forms: [visit]}
  call: {label: {en: Phone call, zh: 电话}, unscheduled: true, forms: [phone]}
forms:
  intake:
    label: {en: Intake, zh: 入组}
    groups:
      main:
        items:
          full_name: {type: text, label: {en: Name, zh: 姓名}, identifier: true}
          symptoms: {type: multichoice, code_list: symptom, label: {en: Symptoms, zh: 症状}}
          seen_at: {type: time, label: {en: Time seen, zh: 就诊时间}}
  visit:
    label: {en: Visit, zh: 访视}
    groups:
      main:
        items:
          score: {type: integer, label: {en: Score, zh: 评分}}
  phone:
    label: {en: Phone, zh: 电话}
    groups:
      main:
        items:
          call_outcome: {type: text, label: {en: Outcome, zh: 结果}}
"""


def test_multichoice_codes_are_joined_and_a_repeated_unscheduled_event_gives_its_latest(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    principal = Principal(
        1, "coord@consortium.example", "Coordinator",
        frozenset({Grant("MINI", "*", Role.STUDY_ADMIN), Grant("MINI", "*", Role.COORDINATOR)}),
    )  # fmt: skip
    try:
        load_definition(engine, principal, MINI)
        enrol_subject(engine, principal, "MINI", SubjectInput("S1", "SG01", None, date(2025, 1, 6)))

        def save(ref: str, form: str, values: dict[str, Any]) -> None:
            save_form(engine, principal, "MINI", "S1", ref, form, FormSave(0, values), today=TODAY)

        intake = {"full_name": "Tan Ah Kow", "symptoms": ["fever", "rash"], "seen_at": "09:30"}
        save("baseline", "intake", intake)
        save("baseline", "visit", {"score": 3})
        save("week4", "visit", {"score": 5})
        save("call", "phone", {"call_outcome": "reached"})
        save("call.2", "phone", {"call_outcome": "no answer"})
        with engine.connect() as connection:
            table = read_edc_table(connection, "mini", EdcTableSpec(edc="MINI"))
    finally:
        engine.dispose()
    assert list(table.columns) == [
        "site", "status", "symptoms", "seen_at", "score_baseline", "score_week4", "call_outcome"
    ]  # fmt: skip
    assert table.column("symptoms").tolist() == ["fever|rash"]
    assert table.column("seen_at").tolist() == ["09:30:00"]
    assert table.column("score_baseline").tolist() == [3.0]
    assert table.column("score_week4").tolist() == [5.0]
    assert table.column("call_outcome").tolist() == ["no answer"]


def test_two_sources_of_one_column_name_are_refused() -> None:
    clashing = MINI.replace(
        "          seen_at:", "          score_week4: {type: integer, label: {en: x, zh: x}}\n"
        "          seen_at:"
    )  # fmt: skip
    with pytest.raises(ConfigurationError) as error:
        edc_columns(load_study_text(clashing))
    assert "'score_week4' (item score_week4 at event baseline and item score at event week4)" in (
        str(error.value)
    )
    columns = [column.name for column in edc_columns(load_study_text(clashing), exclude=["score"])]
    assert "score_week4" in columns
    no_site = edc_columns(load_study_text(MINI), exclude=["site"])
    assert [column.name for column in no_site][:2] == ["status", "symptoms"]


def test_the_layout_of_the_cart_template() -> None:
    columns = {column.name: column for column in edc_columns(load_template("cart-lbcl"))}
    assert list(columns)[:2] == ["site", "status"]
    assert columns["response_day28"].event == "day28"
    assert columns["fu_disease_month36"].key == "fu_disease"
    assert columns["age"].event == "screening"
    assert not {"initials", "birth_date", "hospital_number"} & set(columns)


def test_docstring_examples_run() -> None:
    outcome = doctest.testmod(edc_tables_module, optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0
    assert outcome.attempted > 0
