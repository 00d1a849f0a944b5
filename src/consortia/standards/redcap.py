"""REDCap data dictionaries: import one as a study, export a study as one.

A REDCap data dictionary is a CSV file with 18 columns (see REFERENCE.md); one row per field.
:func:`import_redcap` turns it into a :class:`~consortia.domain.study.Study` checked like any
study file, and :func:`export_redcap` writes a study back. What one side has and the other
lacks is reported as warnings, each with the CSV line (import) or the study path (export).

How fields map::

    text (+ validation)   text, date, datetime, time, integer, decimal (number_Ndp: precision N)
    notes                 text
    dropdown, radio       choice; a code list named after the field (an identical one is reused)
    checkbox              multichoice
    yesno, truefalse      boolean (exported as yesno)
    slider                integer, range 0-100 (or the given min/max)
    file                  file
    calc                  derived variable (exported on a last form, ``derived_variables``)
    descriptive, sql      not imported (warning)

REDCap's Text Validation Min/Max are soft: a value outside asks for confirmation, unless
the field's annotation has ``@FORCE-MINMAX``. So min/max become ``soft_range``, or ``range``
with ``@FORCE-MINMAX``; export writes ``range`` with ``@FORCE-MINMAX`` (and drops a
``soft_range`` next to it, with a warning). ``@MAXCHARS=N`` is ``max_length``. A unit, and a
derived variable's type, travel in the annotation as ``@CONSORTIA-UNIT="kg"`` and
``@CONSORTIA-TYPE=integer``, which REDCap keeps as text.

The first field of a REDCap project is its record identifier; Consortia keys subjects
itself, so import skips that field (warning) and export writes a ``record_id`` field first.
Section headers, custom alignment, question numbers and matrix groups are display details
with no study equivalent and are not imported. Branching logic and calculations are
translated by :mod:`consortia.standards.redcap_logic`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from consortia.domain.study import NUMERIC_TYPES, DerivedType, Item, ItemType, Study
from consortia.domain.study_yaml import load_study_text
from consortia.domain.yamlsource import YamlDocument
from consortia.exceptions import ExpressionError, InterchangeError, Problem, StudyDefinitionError
from consortia.standards.redcap_logic import expression_to_logic, logic_to_expression

__all__ = [
    "COLUMNS",
    "RedcapExport",
    "RedcapImport",
    "RedcapNames",
    "checkbox_column",
    "export_redcap",
    "export_redcap_file",
    "import_redcap",
    "import_redcap_text",
    "redcap_names",
]

MAX_BYTES: Final = 20 * 1024 * 1024
_VALIDATION: Final = "text_validation_type_or_show_slider_number"

# (key, header in REDCap's downloads, header in its API and some exports)
COLUMNS: Final = (
    ("field_name", "Variable / Field Name", "field_name"),
    ("form_name", "Form Name", "form_name"),
    ("section_header", "Section Header", "section_header"),
    ("field_type", "Field Type", "field_type"),
    ("field_label", "Field Label", "field_label"),
    ("choices", "Choices, Calculations, OR Slider Labels", "select_choices_or_calculations"),
    ("field_note", "Field Note", "field_note"),
    ("validation", "Text Validation Type OR Show Slider Number", _VALIDATION),
    ("min", "Text Validation Min", "text_validation_min"),
    ("max", "Text Validation Max", "text_validation_max"),
    ("identifier", "Identifier?", "identifier"),
    ("branching_logic", "Branching Logic (Show field only if...)", "branching_logic"),
    ("required", "Required Field?", "required_field"),
    ("alignment", "Custom Alignment", "custom_alignment"),
    ("question_number", "Question Number (surveys only)", "question_number"),
    ("matrix_group", "Matrix Group Name", "matrix_group_name"),
    ("matrix_ranking", "Matrix Ranking?", "matrix_ranking"),
    ("annotation", "Field Annotation", "field_annotation"),
)
_REQUIRED_COLUMNS: Final = ("field_name", "form_name", "field_type", "field_label")
_LONG: Final = {key: long for key, long, _ in COLUMNS}
_HEADERS: Final = {
    re.sub(r"[^a-z0-9]", "", header.lower()): key
    for key, long, short in COLUMNS
    for header in (long, short)
}
_PLAIN_TEXT: Final = (
    "email phone phone_australia zipcode postalcode_canada postalcode_uk postalcode_germany "
    "postalcode_french alpha_only ssn vmrn mrn_10d mrn_generic"
)
_VALIDATION_TYPES: Final = {
    **dict.fromkeys(["date_ymd", "date_dmy", "date_mdy"], ItemType.DATE),
    **dict.fromkeys(
        [f"datetime{s}_{o}" for s in ("", "_seconds") for o in ("ymd", "dmy", "mdy")],
        ItemType.DATETIME,
    ),
    **dict.fromkeys(("time", "time_hh_mm_ss"), ItemType.TIME),
    **dict.fromkeys(("number", "number_comma_decimal"), ItemType.DECIMAL),
    **dict.fromkeys(_PLAIN_TEXT.split(), ItemType.TEXT),
    "integer": ItemType.INTEGER,
}
_ITEM_TYPES: Final = {
    **dict.fromkeys(("text", "notes"), ItemType.TEXT),
    **dict.fromkeys(("yesno", "truefalse"), ItemType.BOOLEAN),
    **dict.fromkeys(("dropdown", "radio"), ItemType.CHOICE),
    "checkbox": ItemType.MULTICHOICE,
    "slider": ItemType.INTEGER,
    "file": ItemType.FILE,
}
_FIELD_TYPES: Final = (*_ITEM_TYPES, "calc", "descriptive", "sql")
_PRECISION: Final = re.compile(r"^number_(\d)dp(?:_comma_decimal)?$")
_UNIT_TAG: Final = re.compile(r"""@CONSORTIA-UNIT=(?:"([^"]*)"|'([^']*)')""")
_TYPE_TAG: Final = re.compile(r"@CONSORTIA-TYPE=([a-z]+)")
_MAXCHARS_TAG: Final = re.compile(r"@MAXCHARS\s*=\s*(\d+)")
_FORCE_TAG: Final = "@FORCE-MINMAX"
_ZH_WARNING: Final = (
    "REDCap has no Chinese text: every zh label and help text is a copy of the English one "
    "and needs translation"
)


@dataclass(frozen=True)
class RedcapImport:
    """A study read from a data dictionary and what could not be carried over."""

    study: Study
    warnings: tuple[Problem, ...]


@dataclass(frozen=True)
class RedcapExport:
    """A data dictionary as CSV text and what the study had that REDCap cannot hold."""

    text: str
    warnings: tuple[Problem, ...]


def _refuse(message: str, file: str, line: int = 0, path: str = "") -> InterchangeError:
    return InterchangeError([Problem(path, message, file, line)])


# ---------------------------------------------------------------------------- reading


def _decode(data: bytes, file: str) -> str:
    """UTF-8 (a BOM is fine); every undecodable byte is reported with its line and byte."""
    problems: list[Problem] = []
    start = 0
    while len(problems) < 20:
        try:
            data[start:].decode("utf-8")
            break
        except UnicodeDecodeError as error:
            offset = start + error.start
            column = offset - data.rfind(b"\n", 0, offset)
            message = (
                f"byte 0x{data[offset]:02X} (byte {column} of the line, offset {offset}) is "
                "not UTF-8; save the file as 'CSV UTF-8'"
            )
            problems.append(Problem("", message, file, data.count(b"\n", 0, offset) + 1))
            start += error.end
    if problems:
        raise InterchangeError(problems)
    return data.decode("utf-8-sig")


@dataclass
class _Row:
    line: int
    cells: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.cells.get(key, "").strip()


def _records(text: str, file: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, cells) for each non-blank CSV record."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    end = 0
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            hint = " (a quoted value is never closed)" if "end of data" in str(error) else ""
            message = f"cannot read the CSV record starting here: {error}{hint}"
            raise _refuse(message, file, start) from None
        end = reader.line_num
        if any(cell.strip() for cell in cells):
            yield start, cells


def _column(header: str) -> str | None:
    return _HEADERS.get(re.sub(r"[^a-z0-9]", "", header.lower()))


def _rows(text: str, file: str, warnings: list[Problem]) -> list[_Row]:
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise _refuse("the file is empty; expected a REDCap data dictionary", file, 1)
    first_line = text.lstrip("\r\n").splitlines()[0]
    found = {
        d: sum(map(bool, map(_column, next(csv.reader([first_line], delimiter=d))))) for d in ",;\t"
    }
    for delimiter, name in ((";", "semicolons"), ("\t", "tabs")):
        if found[delimiter] > max(1, found[","]):
            raise _refuse(
                f"the columns are separated by {name}; use comma-separated values "
                "(in Excel: Save As 'CSV UTF-8 (Comma delimited)')",
                file,
                1,
            )
    records = _records(text, file)
    header_line, header = next(records)
    problems: list[Problem] = []

    def problem(message: str, line: int = header_line) -> None:
        problems.append(Problem("", message, file, line))

    keys: list[str | None] = []
    for cell in header:
        key = _column(cell)
        if key is None and cell.strip():
            warning = f"column {cell.strip()!r} is not a data dictionary column; ignored"
            warnings.append(Problem("", warning, file, header_line))
        elif key is not None and key in keys:
            problem(f"column {cell.strip()!r} appears twice")
        keys.append(key)
    missing = ", ".join(repr(_LONG[key]) for key in _REQUIRED_COLUMNS if key not in keys)
    if missing:
        problem(f"missing columns: {missing}; the header needs REDCap's 18 columns")
    rows: list[_Row] = []
    for line, cells in records:
        if any(cell.strip() for cell in cells[len(keys) :]):
            problem(f"the record has {len(cells)} values; the header has {len(keys)}", line)
        rows.append(_Row(line, {k: c for k, c in zip(keys, cells, strict=False) if k}))
    if problems:
        raise InterchangeError(problems)
    return rows


# ---------------------------------------------------------------------------- import


def _name(raw: str) -> str:
    """A REDCap name as a study name: lowercase letters, digits and _, a letter first."""
    name = re.sub(r"[^a-z0-9_]", "_", raw.strip().lower())
    return (name if re.match(r"[a-z]", name) else f"f_{name}")[:64]


def _label(text: str) -> dict[str, str]:
    return {"en": text, "zh": text}


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def _unit(annotation: str) -> str | None:
    match = _UNIT_TAG.search(annotation)
    return None if match is None else match.group(1) or match.group(2) or None


@dataclass
class _Field:
    row: _Row
    name: str
    form: str
    item_type: ItemType | None  # None: a calc field (a derived variable)
    item: dict[str, Any] = field(default_factory=dict)


class _Importer:
    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.fields: dict[str, _Field] = {}  # by REDCap name
        self.code_lists: dict[str, list[dict[str, Any]]] = {}
        self.lines: dict[str, int] = {}  # study name of each field -> its line

    def error(self, row: _Row, path: str, message: str) -> None:
        self.errors.append(Problem(path, message, self.file, row.line))

    def warn(self, row: _Row, path: str, message: str) -> None:
        self.warnings.append(Problem(path, message, self.file, row.line))

    def run(self, rows: list[_Row], study_id: str) -> RedcapImport:
        seen: dict[str, _Row] = {}
        for index, row in enumerate(rows):
            self.read_field(row, seen, first=index == 0)
        if self.errors:
            raise InterchangeError(sorted(self.errors, key=lambda p: p.line))
        translator = {key: (spec.name, self.kind(spec)) for key, spec in self.fields.items()}
        derived = self.read_calcs(translator)
        forms: dict[str, dict[str, Any]] = {}
        last_form = ""
        for spec in self.fields.values():
            if spec.form in forms and spec.form != last_form:
                message = f"form {spec.form!r} continues after {last_form!r}; kept together"
                self.warn(spec.row, spec.name, message)
            forms.setdefault(spec.form, {})
            last_form = spec.form
            if spec.item_type is not None:
                self.read_logic(spec, translator)
                forms[spec.form][spec.name] = spec.item
        forms = {name: items for name, items in forms.items() if items}
        if not forms:
            raise _refuse("the dictionary has no data fields", self.file, rows[0].line)
        document = {
            "study": {
                "id": study_id,
                "title": _label(study_id),
                "phase": "n/a",
                "sponsor": "unknown",
                "version": "1",
            },
            "code_lists": self.code_lists,
            "events": {
                "baseline": {
                    "label": {"en": "Baseline", "zh": "基线"},
                    "day": 0,
                    "forms": list(forms),
                }
            },
            "forms": {
                name: {
                    "label": _label(name.replace("_", " ").capitalize()),
                    "groups": {"main": {"items": items}},
                }
                for name, items in forms.items()
            },
            "derived": derived,
        }
        study = self.check(document)
        warnings = [Problem("labels", _ZH_WARNING, self.file, 0)]
        return RedcapImport(study, (*warnings, *sorted(self.warnings, key=lambda p: p.line)))

    def read_field(self, row: _Row, seen: dict[str, _Row], *, first: bool) -> None:
        raw, form, kind = row["field_name"], row["form_name"], row["field_type"].lower()
        if not raw:
            self.error(row, "", f"the {_LONG['field_name']} is empty")
            return
        name = _name(raw)
        earlier = seen.get(raw.lower()) or next(
            (other for other in seen.values() if _name(other["field_name"]) == name), None
        )
        if earlier is not None:
            where = f"lines {earlier.line} and {row.line}"
            self.error(row, name, f"field {raw!r} is defined twice: {where}")
            return
        seen[raw.lower()] = row
        self.lines[name] = row.line
        if name != raw:
            self.warn(row, name, f"field name {raw!r} is written {name!r} in the study")
        if not form:
            self.error(row, name, f"the {_LONG['form_name']} is empty")
        if kind not in _FIELD_TYPES:
            known = ", ".join(_FIELD_TYPES)
            self.error(row, name, f"unknown field type {row['field_type']!r}; known: {known}")
            return
        if row["section_header"]:
            self.warn(row, name, "the section header is display text; not imported")
        if first and kind == "text":
            self.warn(
                row,
                name,
                f"{raw!r} is the REDCap record identifier (the first field); "
                "Consortia identifies subjects itself, so it is not imported",
            )
            return
        if kind in ("descriptive", "sql"):
            self.warn(row, name, f"{kind} field {raw!r} has no study equivalent; not imported")
            return
        if not form:
            return
        if _name(form) != form:
            self.warn(row, name, f"form name {form!r} is written {_name(form)!r} in the study")
        spec = _Field(row, name, _name(form), _ITEM_TYPES.get(kind))
        if kind != "calc":
            self.read_item(spec, kind)
        elif not row["choices"]:
            self.error(row, name, f"calc field {raw!r} has no calculation")
        self.fields[raw.lower()] = spec

    def read_item(self, spec: _Field, kind: str) -> None:
        row, item, name = spec.row, spec.item, spec.name
        validation = row["validation"].lower()
        precision = _PRECISION.match(validation)
        if kind == "text" and validation:
            if precision or validation in _VALIDATION_TYPES:
                spec.item_type = _VALIDATION_TYPES.get(validation, ItemType.DECIMAL)
            else:
                self.warn(row, name, f"unknown text validation {validation!r}; imported as text")
        assert spec.item_type is not None
        if not row["field_label"]:
            self.warn(row, name, "the field label is empty; the field name is used")
        item.update(type=spec.item_type.value, label=_label(row["field_label"] or name))
        if precision and spec.item_type is ItemType.DECIMAL:
            item["precision"] = int(precision.group(1))
        annotation = row["annotation"]
        if _unit(annotation):
            item["unit"] = _unit(annotation)
        self.read_range(spec, kind, annotation)
        maxchars = _MAXCHARS_TAG.search(annotation)
        if maxchars and spec.item_type is ItemType.TEXT and int(maxchars.group(1)) > 0:
            item["max_length"] = int(maxchars.group(1))
        if spec.item_type in (ItemType.CHOICE, ItemType.MULTICHOICE):
            item["code_list"] = self.read_choices(spec, kind)
        for key in ("required", "identifier"):
            flag = row[key].lower()
            if flag in ("y", "yes", "1"):
                item[key] = True
            elif flag not in ("", "n", "no", "0"):
                self.warn(row, name, f"{_LONG[key]} {row[key]!r} is read as no; write 'y' or ''")
        if row["field_note"]:
            item["help"] = _label(row["field_note"])

    def read_range(self, spec: _Field, kind: str, annotation: str) -> None:
        row, low, high = spec.row, spec.row["min"], spec.row["max"]
        if spec.item_type not in NUMERIC_TYPES:
            if low or high:
                self.warn(row, spec.name, f"min/max of a {spec.item_type} field are not kept")
            return
        bounds: dict[str, float | int] = {}
        for key, text in (("min", low), ("max", high)):
            try:
                bounds |= {key: _number(text)} if text else {}
            except ValueError:
                self.error(row, spec.name, f"{_LONG[key]} {text!r} is not a number")
        if kind == "slider":
            bounds = {"min": bounds.get("min", 0), "max": bounds.get("max", 100)}
        if bounds.get("min", 0) > bounds.get("max", float("inf")):
            self.error(row, spec.name, f"min {low} is greater than max {high}")
        elif bounds:
            hard = kind == "slider" or _FORCE_TAG in annotation
            spec.item["range" if hard else "soft_range"] = bounds

    def read_choices(self, spec: _Field, kind: str) -> str:
        row, entries = spec.row, list[dict[str, Any]]()
        for number, choice in enumerate(row["choices"].split("|"), start=1):
            code, comma, label = (part.strip() for part in choice.partition(","))
            if not choice.strip():
                continue
            if not comma or not code or not label:
                self.error(
                    row,
                    spec.name,
                    f"choice {number} {choice.strip()!r} is not 'code, "
                    "label'; write choices as '1, Yes | 2, No'",
                )
            elif len(code) > 64 or any(entry["code"] == code for entry in entries):
                problem = "is over 64 characters" if len(code) > 64 else "appears twice"
                self.error(row, spec.name, f"choice code {code[:64]!r} {problem}")
            else:
                entries.append({"code": code, "label": _label(" ".join(label.split()))})
        if not row["choices"]:
            self.error(row, spec.name, f"a {kind} field needs choices, as in '1, Yes | 2, No'")
        for name, existing in self.code_lists.items():
            if existing == entries:
                return name
        self.code_lists[spec.name] = entries
        return spec.name

    @staticmethod
    def kind(spec: _Field) -> ItemType:
        if spec.item_type is not None:
            return spec.item_type
        tag = _TYPE_TAG.search(spec.row["annotation"])
        known = {kind.value for kind in DerivedType}
        return ItemType(tag.group(1)) if tag and tag.group(1) in known else ItemType.DECIMAL

    def read_logic(self, spec: _Field, translator: dict[str, tuple[str, ItemType]]) -> None:
        logic = spec.row["branching_logic"]
        if not logic:
            return
        try:
            spec.item["show_if"] = logic_to_expression(logic, translator)
        except ExpressionError as error:
            where = f" (character {error.column})" if error.column else ""
            self.warn(
                spec.row,
                spec.name,
                f"branching logic not translated: {error.message}"
                f"{where}; the field always shows and its help keeps the logic",
            )
            note = f"REDCap branching logic: {logic}"
            old = spec.item.get("help", {}).get("en")
            spec.item["help"] = _label(f"{old}\n{note}" if old else note)

    def read_calcs(self, translator: dict[str, tuple[str, ItemType]]) -> dict[str, Any]:
        """Calc fields as derived variables; one that cannot be translated is left out, and
        so, in turn, is every calc field that uses it (``translator`` loses them all)."""
        calcs = {key: spec for key, spec in self.fields.items() if spec.item_type is None}
        failures: dict[str, str] = {}
        while True:
            failed_before, expressions = len(failures), dict[str, str]()
            for key, spec in calcs.items():
                if key in failures:
                    continue
                try:
                    expressions[key] = logic_to_expression(spec.row["choices"], translator)
                except ExpressionError as error:
                    failures[key] = error.message
                    del translator[key]
            if len(failures) == failed_before:
                break
        derived: dict[str, Any] = {}
        for key, spec in calcs.items():
            row = spec.row
            if key in failures:
                message = f"calculation not translated: {failures[key]}; not imported"
                self.warn(row, spec.name, message)
                continue
            if row["branching_logic"]:
                self.warn(row, spec.name, "branching logic of a calc field is not imported")
            label = _label(row["field_label"] or spec.name)
            kind = self.kind(spec).value
            derived[spec.name] = {"expression": expressions[key], "type": kind, "label": label}
            if _unit(row["annotation"]):
                derived[spec.name]["unit"] = _unit(row["annotation"])
        return derived

    def check(self, document: dict[str, Any]) -> Study:
        """Load the document as a study file is loaded, so every study check runs."""
        text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
        try:
            return load_study_text(text, self.file)
        except StudyDefinitionError as error:
            problems = []
            for problem in error.problems:  # point at the CSV line of the field concerned
                names = [part for part in problem.path.split(".") if part in self.lines]
                line = self.lines[names[-1]] if names else 0
                problems.append(Problem(problem.path, problem.message, self.file, line))
            raise InterchangeError(problems) from None


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # the study loader refuses anchors and aliases


def _study_id(file: str, study_id: str | None) -> str:
    if study_id is None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(file).stem).strip("_.-")[:64]
        return stem or "redcap_import"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", study_id):
        message = f"study id {study_id!r}: use 1-64 letters, digits, '_', '.' or '-'"
        raise _refuse(message, file, path="study.id")
    return study_id


def import_redcap_text(
    text: str, file: str = "<input>", study_id: str | None = None
) -> RedcapImport:
    """Read a data dictionary from text; raise InterchangeError listing every problem.

    >>> result = import_redcap_text(
    ...     "field_name,form_name,field_type,field_label\\n"
    ...     "record_id,demo,text,Record ID\\nage,demo,text,Age\\n", "trial.csv")
    >>> result.study.summary()
    'trial v1: 1 forms, 1 items, 1 events, 0 sites, 0 arms, 0 derived variables, 0 analyses'
    """
    importer = _Importer(file)
    rows = _rows(text, file, importer.warnings)
    if not rows:
        raise _refuse("the dictionary has a header but no fields", file, 1)
    return importer.run(rows, _study_id(file, study_id))


def import_redcap(path: str | Path, *, study_id: str | None = None) -> RedcapImport:
    """Read a data dictionary CSV file (UTF-8, with or without a BOM).

    The study id is ``study_id`` or else the file name without its extension.
    """
    with open(path, "rb") as stream:
        data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise _refuse(f"the file is over {MAX_BYTES // 2**20} MB", str(path))
    return import_redcap_text(_decode(data, str(path)), str(path), study_id)


# ---------------------------------------------------------------------------- names


@dataclass(frozen=True, slots=True)
class RedcapNames:
    """The names a study has in REDCap, as :func:`export_redcap` writes them.

    ``fields``: item or derived variable -> field name; ``forms``: form -> instrument name;
    ``events``: event -> unique event name in arm 1 (REDCap derives those from the event
    names a project defines; see :func:`redcap_names`); ``derived_form``: the instrument
    holding the derived variables (calc fields).
    """

    record_id: str
    fields: Mapping[str, str]
    forms: Mapping[str, str]
    events: Mapping[str, str]
    derived_form: str


def _unique(names: Iterable[str], shorten: Callable[[str], str]) -> dict[str, str]:
    """Each name shortened, made unique with ``_2``, ``_3`` when two would collide."""
    result: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        redcap, suffix = shorten(name), 1
        while redcap in taken:
            suffix += 1
            redcap = f"{shorten(name)[:60]}_{suffix}"
        result[name] = redcap
        taken.add(redcap)
    return result


def _event_stem(name: str) -> str:
    """REDCap's stem of a unique event name: lowercase, at most 18 characters, no '_' last."""
    return re.sub(r"[^a-z0-9_]", "", name.strip().lower().replace(" ", "_"))[:18].rstrip("_")


def redcap_names(study: Study) -> RedcapNames:
    """The study's names in REDCap: lowercase, unique; ``record_id`` first.

    Unique event names follow REDCap's rule for an event named like the study's event:
    lowercase, at most 18 characters, then ``_arm_1``. Two events equal in their first 18
    characters are numbered here (``_2``); REDCap may name such a pair differently.

    >>> from consortia.domain.templates import load_template
    >>> names = redcap_names(load_template("cart-lbcl"))
    >>> names.record_id, names.forms["ae"], names.events["end_of_study"]
    ('record_id', 'ae', 'end_of_study_arm_1')
    """
    fields = _unique([*(name for _, _, name, _ in study.iter_items()), *study.derived], _name)
    forms = _unique(study.forms, _name)
    derived_form = "derived_variables"
    while derived_form in forms.values():
        derived_form += "_"
    stems = _unique(study.events, _event_stem)
    return RedcapNames(
        record_id="redcap_record_id" if "record_id" in fields.values() else "record_id",
        fields=fields,
        forms=forms,
        events={event: f"{stem}_arm_1" for event, stem in stems.items()},
        derived_form=derived_form,
    )


def checkbox_column(field_name: str, code: str) -> str:
    """The record-export column of one checkbox option: ``<field>___<code>``, the code in
    lowercase with characters other than letters, digits and ``_`` written as ``_``.

    >>> checkbox_column("ae_serious_criteria", "Life-threatening")
    'ae_serious_criteria___life_threatening'
    """
    return f"{field_name}___{re.sub(r'[^a-z0-9_]', '_', code.lower())}"


# ---------------------------------------------------------------------------- export

_TEXT_VALIDATION: Final = {
    ItemType.DATE: "date_ymd",
    ItemType.DATETIME: "datetime_ymd",
    ItemType.TIME: "time",
    ItemType.INTEGER: "integer",
    ItemType.DECIMAL: "number",
}
_FIELD_TYPE: Final = {
    ItemType.BOOLEAN: "yesno",
    ItemType.CHOICE: "radio",
    ItemType.MULTICHOICE: "checkbox",
    ItemType.FILE: "file",
}


def _unit_tag(unit: str) -> str:
    quote = "'" if '"' in unit else '"'
    return f"@CONSORTIA-UNIT={quote}{unit}{quote}"


def _row(name: str, form: str, kind: str, label: str, **cells: str) -> list[str]:
    values = {"field_name": name, "form_name": form, "field_type": kind, "field_label": label}
    return [{**values, **cells}.get(key, "") for key, _, _ in COLUMNS]


class _Exporter:
    def __init__(self, study: Study, source: YamlDocument | None = None) -> None:
        self.study = study
        self.source = source
        self.warnings: list[Problem] = []
        self.redcap = redcap_names(study)
        item_paths = {
            name: f"forms.{form}.groups.{group}.items.{name}"
            for form, group, name, _ in study.iter_items()
        }
        item_paths |= {name: f"derived.{name}" for name in study.derived}
        self.names = self.renamed(self.redcap.fields, item_paths)
        self.types = {name: item.type for _, _, name, item in study.iter_items()}
        self.types |= {name: ItemType(d.type.value) for name, d in study.derived.items()}

    def warn(self, path: str, message: str, *, at: str = "") -> None:
        """A warning about ``path``, placed at its line in the source (or at ``at``'s)."""
        if self.source is None:
            self.warnings.append(Problem(path, message))
            return
        line, column = self.source.locate(at or path)
        self.warnings.append(Problem(path, message, self.source.file, line, column))

    def renamed(self, names: Mapping[str, str], paths: Mapping[str, str]) -> Mapping[str, str]:
        for name, redcap in names.items():
            if redcap != name:
                self.warn(paths[name], f"written as {redcap!r}: REDCap names are lowercase")
        return names

    def rows(self) -> list[list[str]]:
        study = self.study
        forms = self.renamed(self.redcap.forms, {name: f"forms.{name}" for name in study.forms})
        record_id = self.redcap.record_id
        rows = [_row(record_id, next(iter(forms.values()), "form"), "text", "Record ID")]
        for form_name, form in study.forms.items():
            for group_name, group in form.groups.items():
                path = f"forms.{form_name}.groups.{group_name}"
                if group.repeating:
                    self.warn(
                        path,
                        "REDCap has no repeating groups (make the instrument "
                        "repeating in REDCap); its items are written once",
                    )
                for index, (name, item) in enumerate(group.items.items()):
                    header = group.label.en if group.label and index == 0 else ""
                    item_path = f"{path}.items.{name}"
                    rows.append(self.item_row(item_path, name, item, forms[form_name], header))
            if form.checks:
                names = ", ".join(check.name for check in form.checks)
                self.warn(
                    f"forms.{form_name}.checks",
                    "edit checks are not part of a data "
                    f"dictionary (use REDCap data quality rules); not written: {names}",
                )
        derived_form = self.redcap.derived_form
        for name, derived in study.derived.items():
            path = f"derived.{name}"
            try:
                calculation = expression_to_logic(
                    derived.expression, self.types, self.names, condition=False
                )
            except ExpressionError as error:
                self.warn(path, f"not written: {error.message}")
                continue
            tags = [f"@CONSORTIA-TYPE={derived.type}"] if derived.type != "decimal" else []
            if derived.type in (DerivedType.TEXT, DerivedType.DATE):
                self.warn(
                    path,
                    f"REDCap calc fields are numeric; this {derived.type} variable "
                    "is written as one, marked @CONSORTIA-TYPE",
                )
            tags += [_unit_tag(derived.unit)] if derived.unit else []
            cells = {"choices": calculation, "annotation": " ".join(tags)}
            rows.append(_row(self.names[name], derived_form, "calc", derived.label.en, **cells))
        self.dropped()
        return rows

    def item_row(self, path: str, name: str, item: Item, form: str, header: str) -> list[str]:
        cells = {"section_header": header, "validation": _TEXT_VALIDATION.get(item.type, "")}
        tags: list[str] = []
        if item.type is ItemType.DECIMAL and item.precision is not None:
            if 1 <= item.precision <= 4:
                cells["validation"] = f"number_{item.precision}dp"
            else:
                self.warn(f"{path}.precision", "REDCap offers 1 to 4 decimals; written as number")
        bounds = item.range or item.soft_range
        if item.range is not None:
            tags.append(_FORCE_TAG)
            if item.soft_range is not None:
                self.warn(
                    f"{path}.soft_range",
                    "REDCap has one min/max per field: the range is "
                    "written with @FORCE-MINMAX, the soft range is dropped",
                )
        for key in ("min", "max"):
            value = getattr(bounds, key) if bounds else None
            if value is not None:
                cells[key] = str(int(value)) if value == int(value) else repr(value)
        tags += [f"@MAXCHARS={item.max_length}"] if item.max_length else []
        tags += [_unit_tag(item.unit)] if item.unit else []
        if item.code_list is not None:
            cells["choices"] = self.choices(item.code_list)
        if item.show_if is not None:
            try:
                cells["branching_logic"] = expression_to_logic(item.show_if, self.types, self.names)
            except ExpressionError as error:
                self.warn(f"{path}.show_if", f"not written: {error.message}")
        cells |= {"required": "y" if item.required else "", "annotation": " ".join(tags)}
        cells |= {"identifier": "y" if item.identifier else ""}
        cells |= {"field_note": item.help.en if item.help else ""}
        kind = _FIELD_TYPE.get(item.type, "text")
        return _row(self.names[name], form, kind, item.label.en, **cells)

    def choices(self, code_list: str) -> str:
        entries = self.study.code_lists[code_list]
        for entry in entries:
            if any(char in entry.code for char in ",|") or "|" in entry.label.en:
                self.warn(
                    f"code_lists.{code_list}",
                    f"code {entry.code!r}: REDCap choices "
                    "cannot hold ',' in a code or '|' anywhere",
                )
        return " | ".join(f"{entry.code}, {entry.label.en}" for entry in entries)

    def dropped(self) -> None:
        study = self.study
        events = list(study.events.values())
        if not (len(events) == 1 and list(events[0].forms) == list(study.forms)):
            self.warn(
                "events",
                f"{len(events)} events not written: a data dictionary has no "
                "events (define them in REDCap's project setup)",
            )
        for key in ("sites", "arms", "randomisation", "analysis_plan"):
            if getattr(study, key):
                self.warn(key, "not part of a data dictionary; not written")
        # (where, text): the warning is placed at the first text that has Chinese
        texts = [("study.title", study.study.title)]
        texts += [(f"forms.{name}.label", form.label) for name, form in study.forms.items()]
        for form, group, name, item in study.iter_items():
            path = f"forms.{form}.groups.{group}.items.{name}"
            texts += [(f"{path}.label", item.label)]
            texts += [(f"{path}.help", item.help)] if item.help else []
        texts += [
            (f"code_lists.{name}[{index}].label", entry.label)
            for name, entries in study.code_lists.items()
            for index, entry in enumerate(entries)
        ]
        texts += [(f"derived.{name}.label", d.label) for name, d in study.derived.items()]
        chinese = next((where for where, text in texts if text.zh != text.en), None)
        if chinese is not None:
            self.warn(
                "labels",
                "Chinese (zh) text not written: a data dictionary has one language",
                at=chinese,
            )


def export_redcap(study: Study, source: YamlDocument | None = None) -> RedcapExport:
    """Write a study as a REDCap data dictionary (CSV text, CRLF line ends, no BOM).

    ``warnings`` lists what REDCap cannot hold: events, repeating groups, edit checks,
    Chinese text, a soft range next to a hard one, expressions with no REDCap equivalent.
    Given the ``source`` the study was read from, each names its file and line.

    >>> from consortia.domain.study_yaml import load_study
    >>> result = export_redcap(load_study("examples/cart-tour.yaml"))  # doctest: +SKIP
    >>> result.text.splitlines()[1]  # doctest: +SKIP
    'record_id,consent,,text,Record ID,,,,,,,,,,,,,'
    """
    exporter = _Exporter(study, source)
    rows = exporter.rows()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([long for _, long, _ in COLUMNS])
    writer.writerows(rows)
    return RedcapExport(buffer.getvalue(), tuple(exporter.warnings))


def export_redcap_file(study: Study, path: str | Path) -> tuple[Problem, ...]:
    """Write the dictionary to ``path`` with a UTF-8 BOM, as REDCap's own downloads have;
    return the warnings of :func:`export_redcap`."""
    result = export_redcap(study)
    with open(path, "w", encoding="utf-8-sig", newline="") as stream:
        stream.write(result.text)
    return result.warnings
