"""Reading clinical data files: REDCap record exports, our long CSV and ODM ClinicalData."""

from __future__ import annotations

import csv
import doctest
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO
from xml.sax.saxutils import quoteattr

import pytest

from consortia.domain.study import ItemType, Study
from consortia.domain.synthetic import FormEntry, SyntheticData, synthesize
from consortia.domain.templates import load_template
from consortia.domain.validation import validate_form
from consortia.exceptions import InterchangeError, Problem
from consortia.standards import clinical_data, clinical_records, redcap_import, redcap_naming
from consortia.standards.clinical_data import (
    LONG_COLUMNS,
    MAX_PROBLEMS,
    FileFormRecord,
    read_long_csv,
    read_odm_clinical,
    read_wide_csv,
    sniff_format,
)
from consortia.standards.odm_clinical import CHUNK, CONSORTIA_NS
from consortia.standards.odm_clinical_writer import ClinicalValue, write_odm_clinical
from consortia.standards.odm_xml import ODM_NS
from consortia.standards.redcap_naming import checkbox_column, redcap_names

Reader = Callable[[Study, Path], list[FileFormRecord]]

# ------------------------------------------------------------------------------ writers


def groups_of(entries: Iterable[FormEntry]) -> list[tuple[tuple[str, str, int], list[FormEntry]]]:
    """Consecutive entries of one subject's event instance."""
    out: list[tuple[tuple[str, str, int], list[FormEntry]]] = []
    for entry in entries:
        key = (entry.subject_id, entry.event, entry.event_instance or 1)
        if out and out[-1][0] == key:
            out[-1][1].append(entry)
        else:
            out.append((key, [entry]))
    return out


def repeating(study: Study, form: str) -> str | None:
    return next((name for name, g in study.forms[form].groups.items() if g.repeating), None)


def write_wide(study: Study, entries: Sequence[FormEntry], path: Path, status: str = "2") -> Path:
    """A REDCap record export as REDCap writes one: unique event names, DAGs in lowercase,
    checkbox columns (0 in every row where unticked), a status column per form."""
    names = redcap_names(study)
    columns = [names.record_id, "redcap_event_name", "redcap_repeat_instrument"]
    columns += ["redcap_repeat_instance", "redcap_data_access_group"]
    boxes: dict[str, list[tuple[str, str]]] = {}
    for _, _, item, spec in study.iter_items():
        if spec.type is ItemType.MULTICHOICE:
            codes = [entry.code for entry in study.code_lists[spec.code_list or ""]]
            boxes[item] = [(code, checkbox_column(names.fields[item], code)) for code in codes]
            columns += [column for _, column in boxes[item]]
        else:
            columns.append(names.fields[item])
    columns += [f"{names.forms[form]}_complete" for form in study.forms]
    rows: list[dict[str, str]] = []

    def row(entry: FormEntry, instrument: str = "", instance: str = "") -> dict[str, str]:
        cells = dict.fromkeys(columns, "") | {
            names.record_id: entry.subject_id,
            "redcap_event_name": names.events[entry.event],
            "redcap_repeat_instrument": instrument,
            "redcap_repeat_instance": instance,
            "redcap_data_access_group": entry.site.lower(),
        }
        for options in boxes.values():
            cells |= {column: "0" for _, column in options}
        return cells

    def fill(cells: dict[str, str], values: Mapping[str, object]) -> None:
        for item, value in values.items():
            assert isinstance(value, str)
            if item in boxes:
                ticked = value.split("|")
                cells |= {column: "1" for code, column in boxes[item] if code in ticked}
            else:
                cells[names.fields[item]] = value

    for (_, _, instance), group in groups_of(entries):
        plain = [entry for entry in group if repeating(study, entry.form) is None]
        if plain:
            cells = row(plain[0], instance="" if plain[0].event_instance is None else str(instance))
            for entry in plain:
                fill(cells, entry.values)
                cells[f"{names.forms[entry.form]}_complete"] = status
            rows.append(cells)
        for entry in group:
            name = repeating(study, entry.form)
            instances = entry.values.get(name or "", [])
            assert isinstance(instances, list)
            for number, values in enumerate(instances if name else [], 1):
                cells = row(entry, names.forms[entry.form], str(number))
                fill(cells, values)
                cells[f"{names.forms[entry.form]}_complete"] = status
                rows.append(cells)
    return write_csv(path, columns, rows)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def long_rows(study: Study, entries: Iterable[FormEntry]) -> Iterator[dict[str, str]]:
    for entry in entries:
        head = {"subject_id": entry.subject_id, "site": entry.site, "event": entry.event}
        head |= {"event_instance": str(entry.event_instance or ""), "form": entry.form}
        for name, value in entry.values.items():
            if isinstance(value, list):
                for number, instance in enumerate(value, 1):
                    for item, text in instance.items():
                        yield head | {"group_instance": str(number), "item": item, "value": text}
            else:
                assert isinstance(value, str)
                yield head | {"group_instance": "", "item": name, "value": value}
        yield head | {"group_instance": "", "item": "_complete", "value": "1"}


def write_long(study: Study, entries: Iterable[FormEntry], path: Path) -> Path:
    return write_csv(path, LONG_COLUMNS, long_rows(study, entries))


def odm_text(study: Study, entries: Sequence[FormEntry], complete: bool = True) -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<ODM xmlns="{ODM_NS}" xmlns:consortia="{CONSORTIA_NS}" FileType="Snapshot"'
        ' FileOID="test" CreationDateTime="2024-01-01T00:00:00" ODMVersion="1.3.2">',
        f'  <ClinicalData StudyOID="S.{study.study.id}" MetaDataVersionOID="MDV.1">',
    ]
    subject = ""
    for (subject_id, event, instance), group in groups_of(entries):
        if subject_id != subject:
            if subject:
                lines.append("    </SubjectData>")
            lines.append(f"    <SubjectData SubjectKey={quoteattr(subject_id)}>")
            lines.append(f'      <SiteRef LocationOID="{group[0].site}"/>')
            subject = subject_id
        key = "" if group[0].event_instance is None else f' StudyEventRepeatKey="{instance}"'
        lines.append(f'      <StudyEventData StudyEventOID="SE.{event}"{key}>')
        for entry in group:
            status = ' consortia:Complete="Yes"' if complete else ""
            lines.append(f'        <FormData FormOID="F.{entry.form}"{status}>')
            by_group: dict[str, list[tuple[int, str, str]]] = {}
            for name, value in entry.values.items():
                if isinstance(value, list):
                    for number, one in enumerate(value, 1):
                        by_group.setdefault(name, []).extend(
                            (number, item, text) for item, text in one.items()
                        )
                else:
                    assert isinstance(value, str)
                    group_name = next(
                        g
                        for g, spec in study.forms[entry.form].groups.items()
                        if name in spec.items
                    )
                    by_group.setdefault(group_name, []).append((0, name, value))
            for group_name, values in by_group.items():
                numbers = sorted({number for number, _, _ in values})
                for number in numbers:
                    key = f' ItemGroupRepeatKey="{number}"' if number else ""
                    lines.append(
                        f'          <ItemGroupData ItemGroupOID="IG.{entry.form}.{group_name}"{key}>'
                    )
                    lines += [
                        f'            <ItemData ItemOID="I.{item}" Value={quoteattr(text)}/>'
                        for n, item, text in values
                        if n == number
                    ]
                    lines.append("          </ItemGroupData>")
            lines.append("        </FormData>")
        lines.append("      </StudyEventData>")
    if subject:
        lines.append("    </SubjectData>")
    lines += ["  </ClinicalData>", "</ODM>", ""]
    return "\n".join(lines)


def write_odm(study: Study, entries: Sequence[FormEntry], path: Path) -> Path:
    path.write_text(odm_text(study, entries), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ readers


def read_wide(study: Study, path: Path) -> list[FileFormRecord]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return list(read_wide_csv(study, stream, file=path.name))


def read_long(study: Study, path: Path) -> list[FileFormRecord]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return list(read_long_csv(study, stream, file=path.name))


def read_odm(study: Study, path: Path) -> list[FileFormRecord]:
    with path.open("rb") as stream:
        return list(read_odm_clinical(study, stream, file=path.name))


FORMATS: dict[str, tuple[Callable[[Study, Sequence[FormEntry], Path], Path], Reader, str]] = {
    "csv": (write_wide, read_wide, "export.csv"),
    "csv-long": (write_long, read_long, "long.csv"),
    "odm": (write_odm, read_odm, "clinical.xml"),
}


def canonical(study: Study, form: str, values: Mapping[str, object]) -> Any:
    """Values as comparable data: multichoice codes in code-list order."""

    def one(item: str, text: object) -> object:
        spec = study.item(item)
        if spec.type is ItemType.MULTICHOICE and isinstance(text, str):
            codes = [entry.code for entry in study.code_lists[spec.code_list or ""]]
            return "|".join(code for code in codes if code in text.split("|"))
        return text

    out: dict[str, object] = {}
    for name, value in values.items():
        if isinstance(value, list):
            if value:
                out[name] = tuple(
                    tuple(sorted((k, one(k, v)) for k, v in instance.items())) for instance in value
                )
        else:
            out[name] = one(name, value)
    return tuple(sorted(out.items()))


def summary(study: Study, records: Iterable[FileFormRecord]) -> list[tuple[Any, ...]]:
    """Everything a record says apart from where it came from, sorted."""
    return sorted(
        (
            r.subject_id,
            r.site,
            r.event,
            r.event_instance,
            r.form,
            canonical(study, r.form, r.values),
            r.complete,
        )
        for r in records
    )


def expected(data: SyntheticData, complete: bool = True) -> list[tuple[Any, ...]]:
    entries = [
        entry
        for entry in data.entries
        if any(value not in ([], "") for value in entry.values.values())
    ]
    return sorted(
        (
            e.subject_id,
            e.site,
            e.event,
            e.event_instance or 1,
            e.form,
            canonical(data.study, e.form, e.values),
            complete,
        )
        for e in entries
    )


@pytest.fixture(scope="module", params=["cart-lbcl", "glucose-iso15197"])
def data(request: pytest.FixtureRequest) -> SyntheticData:
    return synthesize(request.param, subjects=6, site="SG01", seed=11)


def problems_of(call: Callable[[], object]) -> list[str]:
    with pytest.raises(InterchangeError) as caught:
        call()
    return [str(problem) for problem in caught.value.problems]


# ------------------------------------------------------------------------ good data


@pytest.mark.parametrize("kind", FORMATS)
def test_every_reader_yields_the_synthetic_forms_and_validate_form_accepts_them(
    data: SyntheticData, kind: str, tmp_path: Path
) -> None:
    write, read, name = FORMATS[kind]
    path = write(data.study, data.entries, tmp_path / name)
    assert sniff_format(path) == kind
    records = read(data.study, path)
    assert summary(data.study, records) == expected(data)
    for record in records:
        check = validate_form(data.study, record.form, record.values, complete=record.complete)
        assert check.ok, (record, check.errors)
        assert record.file == name
        assert record.item_lines
        assert min(record.item_lines.values()) >= 2


def test_the_same_data_in_three_formats_gives_the_same_records(
    data: SyntheticData, tmp_path: Path
) -> None:
    found = [
        summary(data.study, read(data.study, write(data.study, data.entries, tmp_path / name)))
        for write, read, name in FORMATS.values()
    ]
    assert found[0] == found[1] == found[2]
    assert len(found[0]) > 10


def test_the_synthetic_record_export_reads_as_written(data: SyntheticData, tmp_path: Path) -> None:
    """subject_id and site columns, plain event names, multichoice as 'a|b', no status."""
    records = read_wide(data.study, data.write_csv(tmp_path / "records.csv"))
    assert summary(data.study, records) == expected(data, complete=False)


def test_a_form_is_complete_only_with_status_2(tmp_path: Path) -> None:
    data = synthesize("glucose-iso15197", subjects=1, site="SG01", seed=1)
    for status, complete in (("2", True), ("1", False)):
        records = read_wide(
            data.study, write_wide(data.study, data.entries, tmp_path / "e.csv", status)
        )
        assert {record.complete for record in records} == {complete}
    without = odm_text(data.study, data.entries, complete=False)
    records = list(read_odm_clinical(data.study, io.BytesIO(without.encode()), file="x.xml"))
    assert records
    assert not any(record.complete for record in records)


# ----------------------------------------------------------- checkboxes, repeats, lines

AE_HEADER = (
    "record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,"
    "redcap_data_access_group,ae_term,ae_grade,ae_serious,ae_serious_criteria___death,"
    "ae_serious_criteria___life_threatening,ae_serious_criteria___hospitalisation,ae_complete"
)


def wide(study: Study, *lines: str, file: str = "ae.csv") -> list[FileFormRecord]:
    text = "\n".join([AE_HEADER, *lines]) + "\n"
    return list(read_wide_csv(study, io.StringIO(text, newline=""), file=file))


def test_checkbox_columns_become_codes_in_code_list_order_and_instances_are_ordered() -> None:
    study = load_template("cart-lbcl")
    [record] = wide(
        study,
        "S1,ae_log_arm_1,ae,2,sh01,Fever,5,1,1,0,1,2",
        "S1,ae_log_arm_1,ae,1,sh01,Nausea,1,0,0,0,0,1",
    )
    assert (record.subject_id, record.site, record.event, record.form) == (
        "S1",
        "SH01",
        "ae_log",
        "ae",
    )
    assert record.values == {
        "events": [
            {"ae_term": "Nausea", "ae_grade": "1", "ae_serious": "0"},
            {
                "ae_term": "Fever",
                "ae_grade": "5",
                "ae_serious": "1",
                "ae_serious_criteria": "death|hospitalisation",
            },
        ]
    }
    assert not record.complete  # complete only when every instance says so
    assert record.line == 2
    assert record.item_lines["forms.ae.events[1].ae_term"] == 3
    assert record.item_lines["forms.ae.events[2].ae_serious_criteria"] == 2
    assert record.item_lines["forms.ae.events[2]"] == 2


def test_item_lines_locate_the_problems_validate_form_finds_later() -> None:
    study = load_template("cart-lbcl")
    [record] = wide(
        study,
        "S1,ae_log_arm_1,ae,1,,Nausea,1,0,0,0,0,",
        "S1,ae_log_arm_1,ae,2,,Fever,9,1,0,0,1,",
    )
    check = validate_form(study, record.form, record.values, complete=True)
    located = {f"{record.file}:{record.line_of(p.path)}: {p.path}" for p in check.errors}
    assert "ae.csv:3: forms.ae.events[2].ae_grade" in located
    assert "ae.csv:2: forms.ae.events[1].ae_soc" in located  # required, missing: the row's line


def test_a_quoted_value_over_several_lines_keeps_the_lines_after_it_right() -> None:
    study = load_template("cart-lbcl")
    records = wide(
        study,
        'S1,ae_log_arm_1,ae,1,,"Rash,\nmaculo-papular",2,0,0,0,0,',
        "S1,ae_log_arm_1,ae,2,,Fever,1,0,0,0,0,",
        "S2,ae_log_arm_1,ae,1,,Cough,1,0,0,0,0,",
    )
    assert [r.line for r in records] == [2, 5]
    assert records[0].values["events"] == [
        {"ae_term": "Rash,\nmaculo-papular", "ae_grade": "2", "ae_serious": "0"},
        {"ae_term": "Fever", "ae_grade": "1", "ae_serious": "0"},
    ]
    assert records[0].item_lines["forms.ae.events[2].ae_term"] == 4


def test_a_row_holding_several_forms_of_an_event_splits_into_one_record_each() -> None:
    study = load_template("glucose-iso15197")
    text = (
        "subject_id,redcap_event_name,consent_date,age,sex,diabetes_type,consent_complete,"
        "demographics_complete,session_complete\n"
        "S1,screening,2024-01-02,40,F,none,2,0,\n"
        "S2,screening,,,,,0,1,\n"
    )
    records = list(read_wide_csv(study, io.StringIO(text), file="x.csv"))
    assert [(r.subject_id, r.form, r.values, r.complete) for r in records] == [
        ("S1", "consent", {"consent_date": "2024-01-02"}, True),
        ("S1", "demographics", {"age": "40", "sex": "F", "diabetes_type": "none"}, False),
        ("S2", "demographics", {}, False),  # no value, but marked unverified
    ]
    assert records[1].item_lines == {
        f"forms.demographics.{i}": 2 for i in ("age", "sex", "diabetes_type")
    }


def test_a_one_event_study_needs_no_event_column_and_repeating_events_take_instances() -> None:
    study = load_template("ai-diagnostic")
    item = next(name for _, _, name, spec in study.iter_items() if spec.type is ItemType.INTEGER)
    form = study.form_of(item)
    text = f"record_id,{item}\nS1,12\n"
    [record] = read_wide_csv(study, io.StringIO(text), file="x.csv")
    assert (record.event, record.form, record.values) == (
        next(iter(study.events)),
        form,
        {item: "12"},
    )

    cart = load_template("cart-lbcl")
    text = (
        "record_id,redcap_event_name,redcap_repeat_instance,max_temp\n"
        "S1,crs_daily_arm_1,3,38.2\nS1,crs_daily_arm_2,4,38.9\n"
    )
    records = list(read_wide_csv(cart, io.StringIO(text), file="x.csv"))
    assert [(r.event, r.event_instance, r.values) for r in records] == [
        ("crs_daily", 3, {"max_temp": "38.2"}),
        ("crs_daily", 4, {"max_temp": "38.9"}),
    ]


def test_long_format_rows_of_a_form_make_one_record() -> None:
    study = load_template("cart-lbcl")
    text = (
        "subject_id,site,event,event_instance,form,group_instance,item,value\n"
        "S1,SG01,crs_daily,2,crs_icans,,max_temp,38.5\n"
        "S1,SG01,crs_daily,2,crs_icans,,hypotension,0\n"
        "S1,SG01,crs_daily,2,crs_icans,,_complete,true\n"
        "S1,SG01,ae_log,,ae,2,ae_term,Fever\n"
        "S1,SG01,ae_log,,ae,1,ae_term,Nausea\n"
        "S1,SG01,ae_log,,ae,1,ae_serious_criteria,death|other_important\n"
    )
    first, second = read_long_csv(study, io.StringIO(text), file="long.csv")
    assert (first.event_instance, first.values, first.complete) == (
        2,
        {"max_temp": "38.5", "hypotension": "0"},
        True,
    )
    assert first.item_lines == {"forms.crs_icans.max_temp": 2, "forms.crs_icans.hypotension": 3}
    assert second.values == {
        "events": [
            {"ae_term": "Nausea", "ae_serious_criteria": "death|other_important"},
            {"ae_term": "Fever"},
        ]
    }
    assert not second.complete
    assert second.item_lines["forms.ae.events[1].ae_serious_criteria"] == 7


def test_odm_lines_point_at_form_and_item_elements() -> None:
    data = synthesize("glucose-iso15197", subjects=1, site="SG01", seed=2)
    text = odm_text(data.study, data.entries)
    lines = text.splitlines()
    records = list(read_odm_clinical(data.study, io.BytesIO(text.encode()), file="c.xml"))
    for record in records:
        assert f'FormOID="F.{record.form}"' in lines[record.line - 1]
        for path, line in record.item_lines.items():
            item = path.rsplit(".", 1)[-1]
            if "[" in item:  # a group instance: its ItemGroupData
                assert "<ItemGroupData" in lines[line - 1]
            else:
                assert f'ItemOID="I.{item}"' in lines[line - 1]


def test_odm_group_instances_without_a_repeat_key_are_numbered_in_order() -> None:
    study = load_template("cart-lbcl")
    text = odm(
        '<SubjectData SubjectKey="S1"><StudyEventData StudyEventOID="SE.ae_log">',
        '<FormData FormOID="F.ae">',
        '<ItemGroupData ItemGroupOID="IG.ae.events"><ItemData ItemOID="I.ae_term" Value="A"/>',
        "</ItemGroupData>",
        '<ItemGroupData ItemGroupOID="IG.ae.events"><ItemData ItemOID="I.ae_term" Value="B"/>',
        '<ItemData ItemOID="I.ae_grade" IsNull="Yes"/></ItemGroupData>',
        "</FormData></StudyEventData></SubjectData>",
    )
    [record] = read_odm_clinical(study, io.BytesIO(text.encode()), file="c.xml")
    assert record.values == {"events": [{"ae_term": "A"}, {"ae_term": "B"}]}
    assert record.site is None


@pytest.mark.parametrize(
    ("status", "complete"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("false", False), ("", False)],
)
def test_the_long_status_row_says_whether_the_form_is_complete(status: str, complete: bool) -> None:
    study = load_template("cart-lbcl")
    text = (
        "subject_id,site,event,event_instance,form,group_instance,item,value\n"
        "S1,SG01,screening,1,consent,0,consent_date,2024-01-01\n"
        f"S1,SG01,screening,1,consent,,_complete,{status}\n"
    )
    [record] = read_long_csv(study, io.StringIO(text), file="long.csv")
    assert (record.values, record.complete) == ({"consent_date": "2024-01-01"}, complete)


def status_odm(*forms: tuple[str, str]) -> str:
    """One subject's screening forms, each FormData with the given consortia:Complete text
    ("-" for no attribute)."""
    body = ['<SubjectData SubjectKey="S1">', '<StudyEventData StudyEventOID="SE.screening">']
    for form, status in forms:
        attribute = "" if status == "-" else f" consortia:Complete={quoteattr(status)}"
        body.append(f'<FormData FormOID="F.{form}"{attribute}>')
        body.append(f'<ItemGroupData ItemGroupOID="IG.{form}.main">')
        item = {"consent": "consent_version", "eligibility": "histology"}.get(form, "age")
        body.append(f'<ItemData ItemOID="I.{item}" Value="1"/></ItemGroupData></FormData>')
    body.append("</StudyEventData></SubjectData>")
    text = odm(*body)
    return text.replace("<ODM ", f'<ODM xmlns:consortia="{CONSORTIA_NS}" ', 1)


def test_odm_form_status_yes_and_no_are_read_and_without_it_a_form_is_not_complete() -> None:
    study = load_template("cart-lbcl")
    text = status_odm(("consent", "Yes"), ("eligibility", "No"), ("demographics", "-"))
    records = read_odm_clinical(study, io.BytesIO(text.encode()), file="c.xml")
    assert [(r.form, r.complete) for r in records] == [
        ("consent", True),
        ("eligibility", False),
        ("demographics", False),
    ]
    # a form given twice is complete only when no FormData of it says No
    for twice, complete in ((("Yes", "-"), True), (("Yes", "No"), False), (("No", "Yes"), False)):
        text = status_odm(*(("consent", status) for status in twice))
        [record] = read_odm_clinical(study, io.BytesIO(text.encode()), file="c.xml")
        assert record.complete is complete, twice


@pytest.mark.parametrize("status", ["Done", "yes", "true", ""])
def test_an_unknown_odm_form_status_is_a_problem_at_its_form_data(status: str) -> None:
    study = load_template("cart-lbcl")
    text = status_odm(("consent", "Yes"), ("eligibility", status))
    found = problems_of(
        lambda: list(read_odm_clinical(study, io.BytesIO(text.encode()), file="c.xml"))
    )
    assert 'FormOID="F.eligibility"' in text.splitlines()[7]
    assert found == [
        f"c.xml:8:1: FormData/@consortia:Complete: {status!r} is not a form status: "
        "Yes (complete) or No"
    ]


def test_our_odm_export_of_form_statuses_reads_back() -> None:
    study = load_template("cart-lbcl")
    values = [
        ClinicalValue("S1", "SG01", "SE.screening", None, f"F.{form}", None, f"IG.{form}.main",
                      None, f"I.{item}", "1", form_complete=complete)
        for form, item, complete in (
            ("consent", "consent_version", True),
            ("eligibility", "histology", False),
            ("demographics", "age", None),
        )
    ]  # fmt: skip
    out = io.BytesIO()
    write_odm_clinical(
        values, out, study_oid="S.CART-LBCL", metadata_version_oid="MDV.1.0", file_oid="F",
        creation=datetime(2024, 5, 1, tzinfo=UTC),
    )  # fmt: skip
    records = read_odm_clinical(study, io.BytesIO(out.getvalue()), file="c.xml")
    assert [(r.form, r.complete) for r in records] == [
        ("consent", True),
        ("eligibility", False),
        ("demographics", False),
    ]


# ---------------------------------------------------------------- structural problems


def test_every_structural_problem_of_a_record_export_is_reported_with_line_and_column() -> None:
    study = load_template("cart-lbcl")
    header = (
        "record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,"
        "redcap_data_access_group,ae_term,ae_grade,ae_serious_criteria___bogus,"
        "ae_serious_criteria___death,colour,age,max_temp,ae_complete,age"
    )
    rows = [
        "S1,ae_log_arm_1,ae,1,,Fever,2,,1,,,,2,",  # fine (unknown columns aside)
        "S1,nowhere_arm_1,,,,,,,,,,,,",  # unknown event
        ",screening_arm_1,,,,,,,,,,,,",  # no subject
        "S2,ae_log_arm_1,ae,two,,Fever,,,,,,,,",  # not an instance number
        "S3,screening_arm_1,,,,,,,,,60,,,",  # fine
        "S4,screening_arm_1,,2,,,,,,,61,,,",  # screening does not repeat
        "S5,ae_log_arm_1,fever_log,1,,,,,,,,,,",  # unknown instrument
        "S6,ae_log_arm_1,,,,Fever,,,,,,,,",  # ae_term outside its instrument row
        "S7,screening_arm_1,,,,,,,,,,37.5,,",  # crs_icans is not collected at screening
        "S8,ae_log_arm_1,ae,1,xx99,,,,2,,,,3,",  # unknown site, odd checkbox and status
    ]
    text = "\n".join([header, *rows]) + "\n"
    found = problems_of(lambda: list(read_wide_csv(study, io.StringIO(text), file="ae.csv")))
    events = ", ".join(redcap_names(study).events.values())
    assert found == [
        "ae.csv:1:8: columns.ae_serious_criteria___bogus: 'bogus' is not a code of "
        "ae_serious_criteria: death, life_threatening, hospitalisation, disability, "
        "congenital_anomaly, other_important",
        "ae.csv:1:10: columns.colour: not an item, checkbox (<item>___<code>) or "
        "<form>_complete column of this study",
        "ae.csv:1:14: columns.age: the column appears twice",
        f"ae.csv:3:2: row.redcap_event_name: 'nowhere_arm_1' is not an event of this study; "
        f"events: {events}",
        "ae.csv:4:1: row.record_id: the row has no record id",
        "ae.csv:5:4: row.redcap_repeat_instance: 'two' is not an instance number (1, 2, …)",
        "ae.csv:7:4: row.redcap_repeat_instance: event screening neither repeats nor is "
        "unscheduled",
        "ae.csv:8:3: row.redcap_repeat_instrument: 'fever_log' is not a form of this study",
        "ae.csv:9:6: row.ae_term: ae_term is in the repeating group events: give it on a row "
        "whose redcap_repeat_instrument is ae",
        "ae.csv:10:12: row.max_temp: form crs_icans is not collected at event screening; its "
        "forms: consent, eligibility, demographics",
        "ae.csv:11:5: row.redcap_data_access_group: 'xx99' is not a site of this study: SG01, SH01",
    ]


def test_cell_problems_of_a_good_row_are_reported_too() -> None:
    study = load_template("cart-lbcl")
    found = problems_of(
        lambda: wide(study, "S1,ae_log_arm_1,ae,1,,Fever,1,0,2,0,0,3", file="x.csv")
    )
    assert found == [
        "x.csv:2:9: row.ae_serious_criteria___death: '2' is not a checkbox value: 1 (ticked) or 0",
        "x.csv:2:12: row.ae_complete: '3' is not a form status: 0 incomplete, 1 unverified, "
        "2 complete",
    ]


def test_a_value_given_twice_with_different_text_is_a_problem() -> None:
    study = load_template("cart-lbcl")
    found = problems_of(
        lambda: wide(
            study,
            "S1,ae_log_arm_1,ae,1,,Fever,1,0,0,0,0,",
            "S1,ae_log_arm_1,ae,1,,Fever,2,0,0,0,0,",
        )
    )
    assert found == [
        "ae.csv:3:7: row.ae_grade: events[1].ae_grade is given twice: '1' (line 2) and '2'"
    ]


def test_a_record_export_without_event_column_or_record_id_is_refused() -> None:
    study = load_template("cart-lbcl")
    found = problems_of(
        lambda: list(read_wide_csv(study, io.StringIO("id,age\nS1,60\n"), file="x.csv"))
    )
    assert found == [
        "x.csv:1:1: columns.id: the first column is the record id: record_id or subject_id",
        "x.csv:1:1: columns.redcap_event_name: the study has 18 events: each row needs its event",
    ]
    assert problems_of(lambda: list(read_wide_csv(study, io.StringIO(""), file="x.csv"))) == [
        "x.csv:1:1: the file is empty; expected a header row"
    ]


def test_every_structural_problem_of_a_long_file_is_reported() -> None:
    study = load_template("cart-lbcl")
    rows = [
        "subject_id,site,event,event_instance,form,group_instance,item,value,note",
        "S1,SG01,screening,,consent,,consent_date,2024-01-01,",
        ",SG01,screening,,consent,,consent_date,2024-01-01,",
        "S1,SG01,week_2,,consent,,consent_date,2024-01-01,",
        "S1,SG01,screening,x,consent,,consent_date,2024-01-01,",
        "S1,SG01,screening,,consent,,ae_term,Fever,",
        "S1,SG01,screening,,consent,,colour,red,",
        "S1,SG01,screening,,ae,,ae_term,Fever,",
        "S1,SG01,ae_log,,ae,,ae_term,Fever,",
        "S1,SG01,ae_log,,ae,1,ae_term,Fever,",
        "S1,SG01,screening,,consent,2,consent_date,2024-01-01,",
        "S1,SG01,screening,,consent,,_complete,maybe,",
        "S1,SG01,screening,,consentt,,consent_date,2024-01-01,",
    ]
    text = "\n".join(rows) + "\n"
    found = problems_of(lambda: list(read_long_csv(study, io.StringIO(text), file="l.csv")))
    assert found[0].startswith("l.csv:1:9: columns.note: not a column of: subject_id, site")
    assert found[1:] == [
        "l.csv:3:1: row.subject_id: the row has no subject id",
        f"l.csv:4:3: row.event: 'week_2' is not an event of this study; events: "
        f"{', '.join(redcap_names(study).events.values())}",
        "l.csv:5:4: row.event_instance: 'x' is not an instance number (1, 2, …)",
        "l.csv:6:7: row.item: ae_term is an item of form ae, not consent",
        "l.csv:7:7: row.item: 'colour' is not an item of this study",
        "l.csv:8:5: row.form: form ae is not collected at event screening; its forms: "
        "consent, eligibility, demographics",
        "l.csv:8:6: row.group_instance: give the instance of repeating group events",
        "l.csv:9:6: row.group_instance: give the instance of repeating group events",
        "l.csv:11:6: row.group_instance: consent_date is not in a repeating group; leave it empty",
        "l.csv:12:8: row.value: 'maybe' is not a form status: 1/true complete, 0/false not",
        "l.csv:13:5: row.form: 'consentt' is not a form of this study",
    ]


def test_a_long_file_missing_columns_is_refused_at_once() -> None:
    study = load_template("cart-lbcl")
    found = problems_of(
        lambda: list(read_long_csv(study, io.StringIO("subject_id,event\n"), file="l.csv"))
    )
    assert found == ["l.csv:1:1: columns: missing columns: form, item, value"]


def odm(*body: str) -> str:
    return "\n".join(
        [
            f'<ODM xmlns="{ODM_NS}" FileType="Snapshot" FileOID="t" '
            'CreationDateTime="2024-01-01T00:00:00">',
            '<ClinicalData StudyOID="S.x" MetaDataVersionOID="MDV.1">',
            *body,
            "</ClinicalData>",
            "</ODM>",
        ]
    )


def test_every_structural_problem_of_an_odm_file_is_reported_with_its_line() -> None:
    study = load_template("cart-lbcl")
    text = odm(
        "<SubjectData>",  # 3: no SubjectKey
        "</SubjectData>",
        '<SubjectData SubjectKey="S1"><SiteRef LocationOID="XX"/>',  # 5: unknown site
        '<StudyEventData StudyEventOID="SE.week2"/>',  # 6: unknown event
        '<StudyEventData StudyEventOID="SE.screening" StudyEventRepeatKey="x"/>',  # 7
        '<StudyEventData StudyEventOID="SE.screening">',
        '<FormData FormOID="F.ae"/>',  # 9: not collected at screening
        '<FormData FormOID="F.nope"/>',  # 10: unknown form
        '<FormData FormOID="F.consent">',
        '<ItemGroupData ItemGroupOID="IG.ae.events"/>',  # 12: another form's group
        '<ItemGroupData ItemGroupOID="IG.consent.main">',
        '<ItemData ItemOID="I.colour" Value="red"/>',  # 14: unknown item
        '<ItemData ItemOID="I.age" Value="60"/>',  # 15: another group's item
        '<ItemDataString ItemOID="I.consent_date">2024-01-01</ItemDataString>',  # 16
        '<ItemData ItemOID="I.consent_date" Value="2024-01-01"/>',
        "</ItemGroupData></FormData></StudyEventData>",
        '<StudyEventData StudyEventOID="SE.ae_log"><FormData FormOID="F.ae">',
        '<ItemGroupData ItemGroupOID="IG.ae.events" ItemGroupRepeatKey="0"/>',  # 20
        "</FormData></StudyEventData>",
        "</SubjectData>",
    )
    found = problems_of(
        lambda: list(read_odm_clinical(study, io.BytesIO(text.encode()), file="c.xml"))
    )
    assert found == [
        "c.xml:3:1: SubjectData/@SubjectKey: SubjectData needs a SubjectKey",
        "c.xml:5:30: SiteRef/@LocationOID: 'XX' is not a site of this study: SG01, SH01",
        "c.xml:6:1: StudyEventData/@StudyEventOID: 'SE.week2' is not an event: "
        + ", ".join(f"SE.{name}" for name in study.events),
        "c.xml:7:1: StudyEventData/@StudyEventRepeatKey: 'x' is not an instance number (1, 2, …)",
        "c.xml:9:1: FormData/@FormOID: form ae is not collected at event screening; its forms: "
        "consent, eligibility, demographics",
        "c.xml:10:1: FormData/@FormOID: 'F.nope' is not a form; forms here: F.consent, "
        "F.eligibility, F.demographics",
        "c.xml:12:1: ItemGroupData/@ItemGroupOID: 'IG.ae.events' is not a group of F.consent: "
        "IG.consent.main",
        "c.xml:14:1: ItemData/@ItemOID: 'I.colour' is not an item of this study",
        "c.xml:15:1: ItemData/@ItemOID: I.age belongs to IG.demographics.main, not IG.consent.main",
        "c.xml:16:1: ItemDataString: ItemDataString is not read; write ItemData with a Value "
        "attribute",
        "c.xml:20:1: ItemGroupData/@ItemGroupRepeatKey: '0' is not an instance number (1, 2, …)",
    ]


def test_problems_are_capped_and_the_rest_counted() -> None:
    study = load_template("cart-lbcl")
    text = "subject_id,event,form,item,value\n" + "S1,screening,consent,colour,red\n" * 250
    with pytest.raises(InterchangeError) as caught:
        list(read_long_csv(study, io.StringIO(text), file="l.csv"))
    problems = caught.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[0] == Problem(
        "row.item", "'colour' is not an item of this study", "l.csv", 2, 4
    )
    assert problems[-1] == Problem("", "… and 50 more problems", "l.csv")


def test_records_stop_at_the_first_problem_and_the_error_comes_at_the_end() -> None:
    study = load_template("cart-lbcl")
    text = (
        "subject_id,event,form,item,value\n"
        "S1,screening,consent,consent_date,2024-01-01\n"
        "S2,screening,consent,consent_date,2024-01-02\n"
        "S3,screening,consent,colour,red\n"
        "S4,screening,consent,consent_date,2024-01-03\n"
    )
    records = read_long_csv(study, io.StringIO(text), file="l.csv")
    assert next(records).subject_id == "S1"
    with pytest.raises(InterchangeError):
        next(records)  # S2 was complete before the problem, but nothing more is acted upon


# --------------------------------------------------------------------- hostile files

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE ODM [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><ClinicalData>&lol9;</ClinicalData></ODM>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE ODM [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><ClinicalData>
<SubjectData SubjectKey="&secret;"/></ClinicalData></ODM>
"""
PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE ODM SYSTEM "http://example.invalid/odm.dtd">
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"/>
"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY])
def test_hostile_xml_is_refused_before_any_entity_is_read(text: str) -> None:
    study = load_template("cart-lbcl")
    found = problems_of(
        lambda: list(read_odm_clinical(study, io.BytesIO(text.encode()), file="h.xml"))
    )
    assert len(found) == 1
    assert found[0].startswith("h.xml:2:")
    assert "a DOCTYPE (document type declaration) is not allowed in an ODM file" in found[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<ODM", "h.xml:1:1: not well-formed XML: unclosed token"),
        (
            "<odm/>",
            "h.xml:1:1: the root element is <odm> in no namespace; an ODM file has <ODM> in "
            f"the namespace {ODM_NS}",
        ),
        (
            f'<ODM xmlns="{ODM_NS}">\n<ClinicalData>&secret;</ClinicalData></ODM>',
            "h.xml:2:15: not well-formed XML: undefined entity",
        ),
        (
            f'<ODM xmlns="{ODM_NS}"/>',
            "h.xml:1:1: ODM: the file has no ClinicalData, so there are no data to import",
        ),
    ],
)
def test_broken_xml_is_refused_with_its_line(text: str, message: str) -> None:
    study = load_template("cart-lbcl")
    found = problems_of(
        lambda: list(read_odm_clinical(study, io.BytesIO(text.encode()), file="h.xml"))
    )
    assert found == [message]


class CountingStream(io.BytesIO):
    """Remembers how many bytes have been read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


def test_odm_is_read_incrementally() -> None:
    data = synthesize("glucose-iso15197", subjects=40, site="SG01", seed=5)
    text = odm_text(data.study, data.entries).encode()
    copies = 3 * CHUNK // len(text) + 2
    head, _, tail = text.partition(b"  </ClinicalData>")
    body = head.split(b'MDV.1">', 1)[1]
    big = head + body * copies + b"  </ClinicalData>" + tail
    assert len(big) > 3 * CHUNK
    stream = CountingStream(big)
    source: BinaryIO = stream
    records = read_odm_clinical(data.study, source, file="big.xml")
    first = next(records)
    assert first.subject_id == data.entries[0].subject_id
    assert stream.taken <= CHUNK
    assert sum(1 for _ in records) + 1 == len(expected(data)) * (copies + 1)


# ------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("\ufeffrecord_id,redcap_event_name,age\nS1,screening_arm_1,60\n", "csv"),
        ("subject_id,site,event,age\n", "csv"),
        (",".join(LONG_COLUMNS) + "\n", "csv-long"),
        ("\ufeffSubject_ID,Event,Form,Item,Value\n", "csv-long"),
        (f'\n<?xml version="1.0"?>\n<ODM xmlns="{ODM_NS}"/>', "odm"),
    ],
)
def test_sniff_format_tells_the_formats_apart(text: str, kind: str, tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text(text, encoding="utf-8")
    assert sniff_format(path) == kind


def test_sniff_format_refuses_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"\n \n")
    assert problems_of(lambda: sniff_format(path)) == [f"{path}:1:1: the file is empty"]


# ---------------------------------------------------------------------- REDCap names


def test_redcap_names_give_unique_event_names_and_checkbox_columns() -> None:
    names = redcap_names(load_template("cart-lbcl"))
    assert names.events["screening"] == "screening_arm_1"
    assert names.fields["ae_grade"] == "ae_grade"
    assert names.forms["crs_icans"] == "crs_icans"
    assert len(set(names.events.values())) == len(names.events)
    assert all(len(unique.removesuffix("_arm_1")) <= 18 for unique in names.events.values())
    assert checkbox_column("symptoms", "Neg-1") == "symptoms___neg_1"


def test_an_event_name_over_18_characters_is_shortened_as_redcap_does() -> None:
    study = load_template("glucose-iso15197")
    long_event = study.model_copy(
        update={
            "events": {
                "screening_and_baseline_visit": study.events["screening"],
                "test_session": study.events["test_session"],
            }
        }
    )
    names = redcap_names(long_event)
    assert names.events["screening_and_baseline_visit"] == "screening_and_base_arm_1"
    text = "record_id,redcap_event_name,age\nS1,screening_and_base_arm_1,60\n"
    [record] = read_wide_csv(long_event, io.StringIO(text), file="x.csv")
    assert record.event == "screening_and_baseline_visit"


@pytest.mark.parametrize(
    "module",
    [clinical_data, clinical_records, redcap_import, redcap_naming],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_hold(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
