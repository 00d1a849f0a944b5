"""Importing a REDCap data dictionary as a study (how fields map: see
:mod:`consortia.standards.redcap_dictionary`).

:func:`import_redcap` turns a dictionary into a :class:`~consortia.domain.study.Study` checked
like any study file. What REDCap has and a study lacks (the record identifier field,
descriptive and sql fields, display details) is reported as warnings, each with its CSV line;
branching logic and calculations are translated by :mod:`consortia.standards.redcap_logic`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from consortia.domain.study import NUMERIC_TYPES, DerivedType, ItemType, Study
from consortia.domain.study_yaml import load_study_text
from consortia.exceptions import ExpressionError, InterchangeError, Problem, StudyDefinitionError
from consortia.standards.redcap_dictionary import (
    FIELD_TYPES,
    FORCE_TAG,
    ITEM_TYPES,
    LONG_HEADERS,
    MAX_BYTES,
    MAXCHARS_TAG,
    PRECISION,
    TYPE_TAG,
    UNIT_TAG,
    VALIDATION_TYPES,
    ZH_WARNING,
    DictionaryRow,
    decode_dictionary,
    read_rows,
    refuse,
)
from consortia.standards.redcap_logic import logic_to_expression
from consortia.standards.redcap_naming import plain_name

__all__ = ["RedcapImport", "import_redcap", "import_redcap_text"]


@dataclass(frozen=True)
class RedcapImport:
    """A study read from a data dictionary and what could not be carried over."""

    study: Study
    warnings: tuple[Problem, ...]


# ---------------------------------------------------------------------------- import


def _label(text: str) -> dict[str, str]:
    return {"en": text, "zh": text}


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def _unit(annotation: str) -> str | None:
    match = UNIT_TAG.search(annotation)
    return None if match is None else match.group(1) or match.group(2) or None


@dataclass
class _Field:
    row: DictionaryRow
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

    def error(self, row: DictionaryRow, path: str, message: str) -> None:
        self.errors.append(Problem(path, message, self.file, row.line))

    def warn(self, row: DictionaryRow, path: str, message: str) -> None:
        self.warnings.append(Problem(path, message, self.file, row.line))

    def run(self, rows: list[DictionaryRow], study_id: str) -> RedcapImport:
        seen: dict[str, DictionaryRow] = {}
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
            raise refuse("the dictionary has no data fields", self.file, rows[0].line)
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
        warnings = [Problem("labels", ZH_WARNING, self.file, 0)]
        return RedcapImport(study, (*warnings, *sorted(self.warnings, key=lambda p: p.line)))

    def read_field(
        self, row: DictionaryRow, seen: dict[str, DictionaryRow], *, first: bool
    ) -> None:
        raw, form, kind = row["field_name"], row["form_name"], row["field_type"].lower()
        if not raw:
            self.error(row, "", f"the {LONG_HEADERS['field_name']} is empty")
            return
        name = plain_name(raw)
        earlier = seen.get(raw.lower()) or next(
            (other for other in seen.values() if plain_name(other["field_name"]) == name), None
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
            self.error(row, name, f"the {LONG_HEADERS['form_name']} is empty")
        if kind not in FIELD_TYPES:
            known = ", ".join(FIELD_TYPES)
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
        if plain_name(form) != form:
            self.warn(row, name, f"form name {form!r} is written {plain_name(form)!r} in the study")
        spec = _Field(row, name, plain_name(form), ITEM_TYPES.get(kind))
        if kind != "calc":
            self.read_item(spec, kind)
        elif not row["choices"]:
            self.error(row, name, f"calc field {raw!r} has no calculation")
        self.fields[raw.lower()] = spec

    def read_item(self, spec: _Field, kind: str) -> None:
        row, item, name = spec.row, spec.item, spec.name
        validation = row["validation"].lower()
        precision = PRECISION.match(validation)
        if kind == "text" and validation:
            if precision or validation in VALIDATION_TYPES:
                spec.item_type = VALIDATION_TYPES.get(validation, ItemType.DECIMAL)
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
        maxchars = MAXCHARS_TAG.search(annotation)
        if maxchars and spec.item_type is ItemType.TEXT and int(maxchars.group(1)) > 0:
            item["max_length"] = int(maxchars.group(1))
        if spec.item_type in (ItemType.CHOICE, ItemType.MULTICHOICE):
            item["code_list"] = self.read_choices(spec, kind)
        for key in ("required", "identifier"):
            flag = row[key].lower()
            if flag in ("y", "yes", "1"):
                item[key] = True
            elif flag not in ("", "n", "no", "0"):
                self.warn(
                    row, name, f"{LONG_HEADERS[key]} {row[key]!r} is read as no; write 'y' or ''"
                )
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
                self.error(row, spec.name, f"{LONG_HEADERS[key]} {text!r} is not a number")
        if kind == "slider":
            bounds = {"min": bounds.get("min", 0), "max": bounds.get("max", 100)}
        if bounds.get("min", 0) > bounds.get("max", float("inf")):
            self.error(row, spec.name, f"min {low} is greater than max {high}")
        elif bounds:
            hard = kind == "slider" or FORCE_TAG in annotation
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
        tag = TYPE_TAG.search(spec.row["annotation"])
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
        raise refuse(message, file, path="study.id")
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
    rows = read_rows(text, file, importer.warnings)
    if not rows:
        raise refuse("the dictionary has a header but no fields", file, 1)
    return importer.run(rows, _study_id(file, study_id))


def import_redcap(path: str | Path, *, study_id: str | None = None) -> RedcapImport:
    """Read a data dictionary CSV file (UTF-8, with or without a BOM).

    The study id is ``study_id`` or else the file name without its extension.
    """
    with open(path, "rb") as stream:
        data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise refuse(f"the file is over {MAX_BYTES // 2**20} MB", str(path))
    return import_redcap_text(decode_dictionary(data, str(path)), str(path), study_id)
