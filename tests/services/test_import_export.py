"""Bulk import (all or nothing, with file:line problems) and streaming exports, on both databases."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.exceptions import InterchangeError, PermissionDeniedError, ValidationError
from consortia.services import exports, imports, studies
from consortia.services.exports import ExportFormat, ExportRequest
from consortia.standards.odm import EXTENDED_SCHEMA
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.tables import form_instance, item_value, subject
from processes import STOP_SECONDS, started

STUDY = "CART-LBCL"


def _person(*roles: Role, site: str = "*") -> Principal:
    return Principal(7, "dm@sg.example", "DM", frozenset(Grant(STUDY, site, r) for r in roles))


ADMIN = _person(Role.STUDY_ADMIN, Role.COORDINATOR, Role.AUDITOR)
STATISTICIAN = _person(Role.STATISTICIAN)


def _records_file(folder: Path, subjects: int, *, seed: int = 3) -> Path:
    data = synthesize("cart-lbcl", subjects=subjects, site="SG01", seed=seed)
    return data.write_csv(folder / "cart.csv")


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.fixture
def loaded(engine: sa.Engine) -> sa.Engine:
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    return engine


def test_an_import_writes_every_value_with_the_audit_events_of_interactive_entry(
    loaded: sa.Engine, tmp_path: Path
) -> None:
    path = _records_file(tmp_path, 8)
    report = imports.import_file(loaded, ADMIN, STUDY, path)
    assert report.subjects_created == 8
    assert report.values == _count(loaded, item_value)
    assert report.forms == _count(loaded, form_instance)
    with loaded.connect() as connection:
        assert verify_trail(connection).ok
        actions = [e.action for e in iter_events(connection, chain=STUDY)]
    assert actions.count("subject.create") == 8
    assert actions.count("form.save") == report.forms
    assert actions.count("query.open") == report.queries_opened


def _spoil_ecog(path: Path, pick: Callable[[list[int]], int]) -> int:
    """Set ECOG to 9 (outside 0-5) on the row ``pick`` chooses among rows that have one."""
    with path.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    ecog = rows[0].index("ecog")
    target = pick([n for n, row in enumerate(rows[1:], 1) if row[ecog].strip()])
    rows[target][ecog] = "9"
    with path.open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream).writerows(rows)
    return target


def test_a_file_with_a_bad_value_is_refused_with_its_line_and_nothing_is_written(
    loaded: sa.Engine, tmp_path: Path
) -> None:
    path = _records_file(tmp_path, 4)
    target = _spoil_ecog(path, min)
    with pytest.raises(ValidationError) as refused:
        imports.import_file(loaded, ADMIN, STUDY, path)
    [problem] = refused.value.problems
    assert (problem.file, problem.line, problem.path) == (
        str(path),
        target + 1,
        "forms.eligibility.ecog",
    )
    assert str(problem).startswith(f"{path}:{target + 1}:")
    assert _count(loaded, subject) == 0
    assert _count(loaded, item_value) == 0
    with loaded.connect() as connection:
        assert [e.action for e in iter_events(connection, chain=STUDY)] == ["study.load"]


def test_exports_leave_identifiers_out_unless_an_admin_states_a_reason(
    loaded: sa.Engine, tmp_path: Path
) -> None:
    path = _records_file(tmp_path, 5)
    imports.import_file(loaded, ADMIN, STUDY, path)
    with loaded.connect() as connection:
        numbers = [
            row[0]
            for row in connection.execute(
                sa.select(item_value.c.value_text).where(item_value.c.item == "hospital_number")
            )
        ]
    assert numbers
    out = io.BytesIO()
    exports.export_table(
        loaded, STATISTICIAN, STUDY, "values", ExportRequest(ExportFormat.CSV_LONG), out
    )
    text = out.getvalue().decode()
    assert not any(number in text for number in numbers)
    with pytest.raises(PermissionDeniedError):
        exports.export_table(
            loaded,
            STATISTICIAN,
            STUDY,
            "demographics",
            ExportRequest(ExportFormat.CSV, include_identifiers=True, reason="re-contact"),
            io.BytesIO(),
        )
    with pytest.raises(ValidationError):
        exports.export_table(
            loaded,
            ADMIN,
            STUDY,
            "demographics",
            ExportRequest(ExportFormat.CSV, include_identifiers=True),
            io.BytesIO(),
        )
    out = io.BytesIO()
    exports.export_table(
        loaded,
        ADMIN,
        STUDY,
        "demographics",
        ExportRequest(
            ExportFormat.CSV, include_identifiers=True, reason="ethics-approved re-contact"
        ),
        out,
    )
    assert all(number in out.getvalue().decode() for number in numbers)
    with loaded.connect() as connection:
        exported = [e for e in iter_events(connection, chain=STUDY) if e.action == "data.export"]
    assert [(e.after["identifiers"], e.reason) for e in exported] == [
        (False, None),
        (True, "ethics-approved re-contact"),
    ]


def test_every_format_round_trips_the_values_of_a_form(loaded: sa.Engine, tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    imports.import_file(loaded, ADMIN, STUDY, _records_file(tmp_path, 6))
    counts = {}
    for fmt in (ExportFormat.CSV, ExportFormat.PARQUET, ExportFormat.XPT):
        counts[fmt] = exports.export_study(loaded, ADMIN, STUDY, ExportRequest(fmt), tmp_path / fmt)
    with (tmp_path / "csv" / "eligibility.csv").open(encoding="utf-8") as stream:
        csv_rows = list(csv.DictReader(stream))
    parquet = pq.read_table(tmp_path / "parquet" / "eligibility.parquet").to_pylist()
    xpt = pd.read_sas(tmp_path / "xpt" / "eligibility.xpt", format="xport")
    assert len(csv_rows) == len(parquet) == len(xpt) == 6
    assert [int(r["prior_lines"]) for r in csv_rows] == [r["prior_lines"] for r in parquet]
    assert [r["prior_lines"] for r in parquet] == [int(v) for v in xpt["PRIOR_LI"]]
    assert counts[ExportFormat.CSV]["eligibility"] == 6
    assert "audit" in counts[ExportFormat.CSV]
    assert "audit" not in counts[ExportFormat.XPT]


@pytest.mark.slow
def test_killing_an_import_mid_write_leaves_nothing_and_a_chain_that_verifies(
    tmp_path: Path,
) -> None:
    from consortia.storage.db import make_engine
    from consortia.storage.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = make_engine(url)
    upgrade(engine)
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    path = _records_file(tmp_path, 1000)  # checking and writing take seconds, not 0.3
    env = {**os.environ, "CONSORTIA_DATABASE_URL": url, "CONSORTIA_ENVIRONMENT": "development"}
    with started(
        [sys.executable, "-m", "consortia", "data", "import", STUDY, str(path)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    ) as process:
        assert process.stderr is not None
        # forms are written as their checks come back, in the transaction opened right after
        # reading: 0.3 s after the read, it has written some and is still checking (the
        # pause places the kill; whenever it lands, nothing may be left)
        for line in process.stderr:
            if line.startswith(" read") and "100.0%" in line:
                time.sleep(0.3)
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS)
    assert process.returncode == -signal.SIGKILL
    assert _count(engine, subject) == 0
    assert _count(engine, item_value) == 0
    with engine.connect() as connection:
        report = verify_trail(connection)
    assert report.ok
    assert report.events == 1  # the study.load of the set-up
    engine.dispose()


def _values(engine: sa.Engine) -> set[tuple[object, ...]]:
    from consortia.storage.tables import event_instance

    query = (
        sa.select(
            subject.c.subject_id,
            subject.c.site,
            event_instance.c.event,
            event_instance.c.instance,
            form_instance.c.form,
            item_value.c.item,
            item_value.c.group_instance,
            item_value.c.value_text,
        )
        .join(form_instance, form_instance.c.id == item_value.c.form_pk)
        .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
        .join(subject, subject.c.id == form_instance.c.subject_pk)
    )
    with engine.connect() as connection:
        return {tuple(row) for row in connection.execute(query)}


@pytest.mark.parametrize("fmt", [ExportFormat.CSV_LONG, ExportFormat.ODM])
def test_a_long_csv_or_odm_export_imports_back_into_a_fresh_node_unchanged(
    loaded: sa.Engine, tmp_path: Path, fmt: ExportFormat
) -> None:
    from consortia.storage.db import make_engine
    from consortia.storage.migrations import upgrade

    imports.import_file(loaded, ADMIN, STUDY, _records_file(tmp_path, 6))
    exported = tmp_path / f"export.{fmt.value}"
    request = ExportRequest(fmt, include_identifiers=True, reason="move to the new node")
    exports.export_study(loaded, ADMIN, STUDY, request, exported)
    fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    upgrade(fresh)
    studies.load_definition(fresh, ADMIN, template_text("cart-lbcl"))
    report = imports.import_file(fresh, ADMIN, STUDY, exported, site="SG01")
    assert report.format == ("odm" if fmt is ExportFormat.ODM else "csv-long")
    assert _values(fresh) == _values(loaded)
    with fresh.connect() as connection:
        assert verify_trail(connection).ok
    fresh.dispose()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[sa.Engine]:
    """Another node (SQLite) with the study loaded and no data."""
    from consortia.storage.db import make_engine
    from consortia.storage.migrations import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    upgrade(engine)
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    yield engine
    engine.dispose()


def _enter_forms(engine: sa.Engine) -> None:
    """Two subjects, each with a form saved complete and one saved incomplete."""
    from consortia.services.data_entry import FormSave, save_form
    from consortia.services.subjects import SubjectInput, enrol_subject

    eligibility = {"histology": "dlbcl_nos", "disease_status": "primary_refractory",
                   "prior_lines": 2, "ecog": 1, "eligible": True}  # fmt: skip
    demographics = {"initials": "ABC", "age": 61, "sex": "M", "weight_kg": 70.5}
    forms = {
        "SG01-001": [("screening", "demographics", demographics, True),
                     ("screening", "eligibility", {"histology": "hgbl"}, False)],
        "SH01-001": [("screening", "demographics", {"age": 58}, False),
                     ("screening", "eligibility", eligibility, True),
                     ("ae_log", "ae", {"events": [{"ae_term": "Fever"}, {"ae_term": "Rash"}]},
                      False)],
    }  # fmt: skip
    for subject_id, entries in forms.items():
        site = subject_id[:4]
        enrol_subject(engine, ADMIN, STUDY, SubjectInput(subject_id, site, None, date(2025, 1, 6)))
        for ref, form, values, complete in entries:
            save = FormSave(0, values, complete=complete)
            save_form(engine, ADMIN, STUDY, subject_id, ref, form, save, today=date(2025, 2, 1))


def _form_states(engine: sa.Engine) -> dict[tuple[object, ...], str]:
    from consortia.storage.tables import event_instance

    query = (
        sa.select(
            subject.c.subject_id,
            event_instance.c.event,
            event_instance.c.instance,
            form_instance.c.form,
            form_instance.c.status,
        )
        .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
        .join(subject, subject.c.id == form_instance.c.subject_pk)
    )
    with engine.connect() as connection:
        return {tuple(row[:4]): row.status for row in connection.execute(query)}


@pytest.mark.parametrize("fmt", [ExportFormat.CSV_LONG, ExportFormat.ODM])
def test_forms_saved_complete_or_incomplete_keep_their_status_through_export_and_import(
    loaded: sa.Engine, fresh: sa.Engine, tmp_path: Path, fmt: ExportFormat
) -> None:
    _enter_forms(loaded)
    states = _form_states(loaded)
    assert states == {
        ("SG01-001", "screening", 1, "demographics"): "complete",
        ("SG01-001", "screening", 1, "eligibility"): "in_progress",
        ("SH01-001", "screening", 1, "demographics"): "in_progress",
        ("SH01-001", "screening", 1, "eligibility"): "complete",
        ("SH01-001", "ae_log", 1, "ae"): "in_progress",
    }
    exported = tmp_path / f"export.{fmt.value}"
    request = ExportRequest(fmt, include_identifiers=True, reason="move to the new node")
    exports.export_study(loaded, ADMIN, STUDY, request, exported)
    text = exported.read_text(encoding="utf-8")
    if fmt is ExportFormat.CSV_LONG:
        statuses = [row for row in csv.DictReader(io.StringIO(text)) if row["item"] == "_complete"]
        assert sorted((r["subject_id"], r["form"], r["value"]) for r in statuses) == [
            ("SG01-001", "demographics", "1"),
            ("SG01-001", "eligibility", "0"),
            ("SH01-001", "ae", "0"),
            ("SH01-001", "demographics", "0"),
            ("SH01-001", "eligibility", "1"),
        ]
    else:
        assert text.count('consortia:Complete="Yes"') == 2
        assert text.count('consortia:Complete="No"') == 3
        # a receiver can validate the whole file against the schema we ship
        parser = etree.XMLParser(no_network=True, resolve_entities=False)
        schema = etree.XMLSchema(etree.parse(str(EXTENDED_SCHEMA), parser))
        assert schema.validate(etree.parse(str(exported), parser)), schema.error_log
    report = imports.import_file(fresh, ADMIN, STUDY, exported)
    assert (report.subjects_created, report.forms) == (2, 5)
    assert _form_states(fresh) == states
    assert _values(fresh) == _values(loaded)


@pytest.mark.parametrize(
    ("fmt", "good", "bad", "path", "message"),
    [
        (
            ExportFormat.CSV_LONG,
            ",_complete,1",
            ",_complete,maybe",
            "row.value",
            "'maybe' is not a form status: 1/true complete, 0/false not",
        ),
        (
            ExportFormat.ODM,
            'consortia:Complete="Yes"',
            'consortia:Complete="Done"',
            "FormData/@consortia:Complete",
            "'Done' is not a form status: Yes (complete) or No",
        ),
    ],
)
def test_a_wrong_form_status_is_refused_with_its_line_and_nothing_is_imported(
    loaded: sa.Engine,
    fresh: sa.Engine,
    tmp_path: Path,
    fmt: ExportFormat,
    good: str,
    bad: str,
    path: str,
    message: str,
) -> None:
    _enter_forms(loaded)
    exported = tmp_path / f"export.{fmt.value}"
    exports.export_study(loaded, ADMIN, STUDY, ExportRequest(fmt), exported)
    lines = exported.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(n for n, line in enumerate(lines) if good in line)
    lines[number] = lines[number].replace(good, bad, 1)
    exported.write_text("".join(lines), encoding="utf-8")
    column = 8 if fmt is ExportFormat.CSV_LONG else lines[number].index("<FormData") + 1
    with pytest.raises(InterchangeError) as refused:
        imports.import_file(fresh, ADMIN, STUDY, exported)
    [problem] = refused.value.problems
    assert (problem.file, problem.line, problem.column) == (str(exported), number + 1, column)
    assert (problem.path, problem.message) == (path, message)
    for table in (subject, form_instance, item_value):
        assert _count(fresh, table) == 0
    with fresh.connect() as connection:
        assert [e.action for e in iter_events(connection, chain=STUDY)] == ["study.load"]


def test_checking_in_worker_processes_finds_the_same_values_and_problems(
    loaded: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from consortia.storage.db import make_engine
    from consortia.storage.migrations import upgrade

    path = _records_file(tmp_path, 6)
    imports.import_file(loaded, ADMIN, STUDY, path)  # a small file: checked in process
    monkeypatch.setattr(imports, "PARALLEL_FORMS", 1)  # now in forked workers
    parallel = make_engine(f"sqlite:///{tmp_path / 'parallel.db'}")
    upgrade(parallel)
    studies.load_definition(parallel, ADMIN, template_text("cart-lbcl"))
    report = imports.import_file(parallel, ADMIN, STUDY, path)
    assert report.subjects_created == 6
    assert _values(parallel) == _values(loaded)
    with path.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    ecog = rows[0].index("ecog")
    target = next(n for n, row in enumerate(rows[1:], 1) if row[ecog].strip())
    rows[target][ecog] = "9"
    bad = tmp_path / "bad.csv"
    with bad.open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream).writerows(rows)
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    studies.load_definition(other, ADMIN, template_text("cart-lbcl"))
    with pytest.raises(ValidationError) as refused:
        imports.import_file(other, ADMIN, STUDY, bad)
    assert [(p.line, p.path) for p in refused.value.problems] == [
        (target + 1, "forms.eligibility.ecog")
    ]
    parallel.dispose()
    other.dispose()


@pytest.mark.parametrize("parallel", [False, True])
def test_a_problem_found_after_forms_were_written_rolls_all_of_them_back(
    loaded: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    # forms are written as their checks come back: make that happen many times before the
    # check of the last subject finds its problem
    monkeypatch.setattr(imports, "CHUNK", 50)
    monkeypatch.setattr(imports, "_FORMS_PER_BATCH", 20)
    if parallel:
        monkeypatch.setattr(imports, "PARALLEL_FORMS", 1)
    path = _records_file(tmp_path, 8)
    target = _spoil_ecog(path, max)
    with pytest.raises(ValidationError) as refused:
        imports.import_file(loaded, ADMIN, STUDY, path)
    assert [(p.line, p.message) for p in refused.value.problems] == [
        (target + 1, "9 is outside 0–5")
    ]
    for table in (subject, form_instance, item_value):
        assert _count(loaded, table) == 0
    with loaded.connect() as connection:
        report = verify_trail(connection)
    assert report.ok
    assert report.events == 1  # the study.load of the set-up
