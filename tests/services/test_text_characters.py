"""Characters XML 1.0 cannot hold: refused with the item's path at every door a value comes
in (a save, a CSV, REDCap or ODM import), nothing saved; and one stored before they were
refused stops an ODM export with its subject, event, form and item, leaving no file."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.exceptions import InterchangeError, ValidationError
from consortia.services import data_entry, exports, imports, studies, subjects
from consortia.services.data_entry import FormSave
from consortia.services.exports import ExportFormat, ExportRequest
from consortia.storage.audit import iter_events
from consortia.storage.tables import form_instance, item_value, subject

STUDY = "CART-LBCL"
ADMIN = Principal(
    7,
    "dm@sg.example",
    "DM",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR, Role.AUDITOR)),
)
AE = {
    "ae_term": "Pyrexia",
    "ae_soc": "genrl",
    "ae_ctcae_version": "5.0",
    "ae_onset": "2025-03-02",
    "ae_grade": 2,
    "ae_serious": False,
    "ae_related": "probable",
}
ALLOWED = "tabs and newlines are allowed"
#: one of each kind XML 1.0 cannot hold: NUL, other C0 controls, a lone surrogate, the two
#: non-characters U+FFFE and U+FFFF
REFUSED = ["\x00", "\x01", "\x0b", "\x1f", "\ud800", "\udfff", "\ufffe", "\uffff"]


def _message(character: str) -> str:
    return (
        f"character U+{ord(character):04X} is not allowed (XML 1.0 cannot hold it); "
        "tabs and newlines are allowed"
    )


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _actions(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return [event.action for event in iter_events(connection, chain=STUDY)]


@pytest.fixture
def loaded(engine: sa.Engine) -> sa.Engine:
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    return engine


@pytest.fixture
def enrolled(loaded: sa.Engine) -> sa.Engine:
    subjects.enrol_subject(
        loaded,
        ADMIN,
        STUDY,
        subjects.SubjectInput("SG01-001", "SG01", screening_date=date(2025, 1, 6)),
    )
    return loaded


def _save_ae(engine: sa.Engine, *events: dict[str, object], version: int = 0) -> object:
    return data_entry.save_form(
        engine,
        ADMIN,
        STUDY,
        "SG01-001",
        "ae_log",
        "ae",
        FormSave(version=version, values={"events": list(events)}, reason="typo"),
    )


@pytest.mark.parametrize("character", REFUSED, ids=lambda c: f"U+{ord(c):04X}")
def test_a_save_with_a_character_xml_cannot_hold_is_refused_with_the_items_path(
    enrolled: sa.Engine, character: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        _save_ae(enrolled, AE, {**AE, "ae_term": f"Pyr{character}exia"})
    [problem] = refused.value.problems
    assert (problem.path, problem.message) == ("forms.ae.events[2].ae_term", _message(character))
    assert ALLOWED in problem.message
    assert (_count(enrolled, form_instance), _count(enrolled, item_value)) == (0, 0)
    assert _actions(enrolled) == ["study.load", "subject.create"]


def test_tabs_newlines_and_carriage_returns_are_kept(enrolled: sa.Engine) -> None:
    term = "Pyrexia\tgrade 2\r\nsecond line\n"
    saved = _save_ae(enrolled, {**AE, "ae_term": term})
    assert saved.values["events"][0]["ae_term"] == term  # type: ignore[attr-defined]
    out = io.BytesIO()
    exports.export_table(enrolled, ADMIN, STUDY, "values", ExportRequest(ExportFormat.ODM), out)
    assert "Pyrexia&#9;grade 2&#13;&#10;second line&#10;" in out.getvalue().decode("utf-8")


def _records(folder: Path) -> tuple[Path, list[list[str]]]:
    path = synthesize("cart-lbcl", subjects=3, site="SG01", seed=5).write_csv(folder / "r.csv")
    with path.open(encoding="utf-8", newline="") as stream:
        return path, list(csv.reader(stream))


def _write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows(rows)


def _nothing_imported(engine: sa.Engine) -> None:
    for table in (subject, form_instance, item_value):
        assert _count(engine, table) == 0
    assert _actions(engine) == ["study.load"]


def test_a_redcap_record_file_with_such_a_character_in_a_value_is_refused_with_line_and_path(
    loaded: sa.Engine, tmp_path: Path
) -> None:
    path, rows = _records(tmp_path)
    rows[0][0] = "record_id"  # as REDCap names the record id
    term, instance = rows[0].index("ae_term"), rows[0].index("redcap_repeat_instance")
    row = next(n for n, cells in enumerate(rows) if n and cells[term])
    rows[row][term] = "Neutro\x00penia"
    _write(path, rows)
    with pytest.raises(ValidationError) as refused:
        imports.import_file(loaded, ADMIN, STUDY, path)
    [problem] = refused.value.problems
    assert (problem.file, problem.line) == (str(path), row + 1)
    assert problem.path == f"forms.ae.events[{rows[row][instance]}].ae_term"
    assert problem.message == _message("\x00")
    _nothing_imported(loaded)


def test_a_record_id_with_such_a_character_is_refused_with_its_line(
    loaded: sa.Engine, tmp_path: Path
) -> None:
    path, rows = _records(tmp_path)
    rows[0][0] = "record_id"
    rows[2][0] = rows[2][0].replace("-", "\x0b")
    _write(path, rows)
    with pytest.raises(InterchangeError) as refused:
        imports.import_file(loaded, ADMIN, STUDY, path)
    [problem] = refused.value.problems
    assert (problem.line, problem.column, problem.path) == (3, 1, "row.record_id")
    assert problem.message == _message("\x0b")
    _nothing_imported(loaded)


def _long_file(engine: sa.Engine, folder: Path) -> Path:
    """A csv-long export of a node holding the synthetic records."""
    path, _ = _records(folder)
    imports.import_file(engine, ADMIN, STUDY, path)
    long = folder / "values.csv"
    exports.export_study(engine, ADMIN, STUDY, ExportRequest(ExportFormat.CSV_LONG), long)
    return long


def test_a_long_file_with_such_a_character_is_refused_with_line_and_path(
    loaded: sa.Engine, fresh: sa.Engine, tmp_path: Path
) -> None:
    path = _long_file(loaded, tmp_path)
    with path.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream))
    value = rows[0].index("value")
    row = next(n for n, cells in enumerate(rows) if cells[rows[0].index("item")] == "ae_term")
    rows[row][value] = "Fatigue\ufffe"
    _write(path, rows)
    with pytest.raises(ValidationError) as refused:
        imports.import_file(fresh, ADMIN, STUDY, path)
    [problem] = refused.value.problems
    assert problem.line == row + 1
    instance = rows[row][rows[0].index("group_instance")]
    assert problem.path == f"forms.ae.events[{instance}].ae_term"
    assert problem.message == _message("\ufffe")
    _nothing_imported(fresh)


@pytest.mark.parametrize("written", ["&#0;", "&#xFFFE;", "\x01", "\uffff"])
def test_an_odm_file_with_such_a_character_is_refused_with_its_line(
    loaded: sa.Engine, fresh: sa.Engine, tmp_path: Path, written: str
) -> None:
    path, _ = _records(tmp_path)
    imports.import_file(loaded, ADMIN, STUDY, path)
    odm = tmp_path / "data.xml"
    exports.export_study(loaded, ADMIN, STUDY, ExportRequest(ExportFormat.ODM), odm)
    lines = odm.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(n for n, line in enumerate(lines) if 'ItemOID="I.ae_term"' in line)
    lines[number] = lines[number].replace('Value="', f'Value="{written}', 1)
    odm.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(InterchangeError) as refused:
        imports.import_file(fresh, ADMIN, STUDY, odm)
    [problem] = refused.value.problems
    assert (problem.file, problem.line) == (str(odm), number + 1)
    assert problem.message.startswith("not well-formed XML")
    _nothing_imported(fresh)


@pytest.fixture
def fresh(
    migrated_database_url: str, migrated_sqlite: Callable[[Path], str], tmp_path: Path
) -> sa.Engine:
    """A second node with the study loaded and nothing else (SQLite: imports are rules)."""
    from consortia.storage.db import make_engine

    engine = make_engine(migrated_sqlite(tmp_path / "fresh.db"))
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    return engine


def test_a_stored_value_xml_cannot_hold_stops_the_odm_export_with_its_path_and_no_file(
    enrolled: sa.Engine, tmp_path: Path
) -> None:
    _save_ae(enrolled, AE, {**AE, "ae_term": "Headache"})
    with enrolled.begin() as connection:  # as an older version stored it
        connection.execute(
            item_value.update()
            .where(item_value.c.item == "ae_term", item_value.c.group_instance == 2)
            .values(value_text="Head\x01ache")
        )
    out = tmp_path / "export" / "data.xml"
    out.parent.mkdir()
    with pytest.raises(ValidationError) as refused:
        exports.export_study(enrolled, ADMIN, STUDY, ExportRequest(ExportFormat.ODM), out)
    [problem] = refused.value.problems
    assert problem.path == "SG01-001/ae_log/ae/events[2].ae_term"
    assert problem.message.startswith(_message("\x01"))
    assert "correct it, then export again" in problem.message
    assert list(out.parent.iterdir()) == []  # neither the file nor a .partial
