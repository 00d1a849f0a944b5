"""A REDCap data dictionary: its 18 columns, field types and annotation tags, and reading one.

A REDCap data dictionary is a CSV file with 18 columns (see REFERENCE.md); one row per field.
:func:`~consortia.standards.redcap_import.import_redcap` turns it into a
:class:`~consortia.domain.study.Study` checked like any study file, and
:func:`~consortia.standards.redcap_export.export_redcap` writes a study back. What one side has
and the other lacks is reported as warnings, each with the CSV line (import) or the study path
(export).

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

This module reads the CSV into rows (:mod:`consortia.standards.redcap_import` makes a study
of them); :mod:`consortia.standards.redcap_export` writes one, with the names of
:mod:`consortia.standards.redcap_naming`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from consortia.domain.study import ItemType
from consortia.exceptions import InterchangeError, Problem

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
LONG_HEADERS: Final = {key: long for key, long, _ in COLUMNS}
_HEADERS: Final = {
    re.sub(r"[^a-z0-9]", "", header.lower()): key
    for key, long, short in COLUMNS
    for header in (long, short)
}
_PLAIN_TEXT: Final = (
    "email phone phone_australia zipcode postalcode_canada postalcode_uk postalcode_germany "
    "postalcode_french alpha_only ssn vmrn mrn_10d mrn_generic"
)
VALIDATION_TYPES: Final = {
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
ITEM_TYPES: Final = {
    **dict.fromkeys(("text", "notes"), ItemType.TEXT),
    **dict.fromkeys(("yesno", "truefalse"), ItemType.BOOLEAN),
    **dict.fromkeys(("dropdown", "radio"), ItemType.CHOICE),
    "checkbox": ItemType.MULTICHOICE,
    "slider": ItemType.INTEGER,
    "file": ItemType.FILE,
}
FIELD_TYPES: Final = (*ITEM_TYPES, "calc", "descriptive", "sql")
PRECISION: Final = re.compile(r"^number_(\d)dp(?:_comma_decimal)?$")
UNIT_TAG: Final = re.compile(r"""@CONSORTIA-UNIT=(?:"([^"]*)"|'([^']*)')""")
TYPE_TAG: Final = re.compile(r"@CONSORTIA-TYPE=([a-z]+)")
MAXCHARS_TAG: Final = re.compile(r"@MAXCHARS\s*=\s*(\d+)")
FORCE_TAG: Final = "@FORCE-MINMAX"
ZH_WARNING: Final = (
    "REDCap has no Chinese text: every zh label and help text is a copy of the English one "
    "and needs translation"
)


def refuse(message: str, file: str, line: int = 0, path: str = "") -> InterchangeError:
    """The error refusing a dictionary file: one problem at ``file:line`` (and ``path``)."""
    return InterchangeError([Problem(path, message, file, line)])


def decode_dictionary(data: bytes, file: str) -> str:
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
class DictionaryRow:
    """One field of the dictionary: the line its record starts on and its cells by column key."""

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
            raise refuse(message, file, start) from None
        end = reader.line_num
        if any(cell.strip() for cell in cells):
            yield start, cells


def _column(header: str) -> str | None:
    return _HEADERS.get(re.sub(r"[^a-z0-9]", "", header.lower()))


def read_rows(text: str, file: str, warnings: list[Problem]) -> list[DictionaryRow]:
    """The fields of a dictionary's CSV text, one row each with its line; unknown columns are
    added to ``warnings``, and a file that is no dictionary raises InterchangeError."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise refuse("the file is empty; expected a REDCap data dictionary", file, 1)
    first_line = text.lstrip("\r\n").splitlines()[0]
    found = {
        d: sum(map(bool, map(_column, next(csv.reader([first_line], delimiter=d))))) for d in ",;\t"
    }
    for delimiter, name in ((";", "semicolons"), ("\t", "tabs")):
        if found[delimiter] > max(1, found[","]):
            raise refuse(
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
    missing = ", ".join(repr(LONG_HEADERS[key]) for key in _REQUIRED_COLUMNS if key not in keys)
    if missing:
        problem(f"missing columns: {missing}; the header needs REDCap's 18 columns")
    rows: list[DictionaryRow] = []
    for line, cells in records:
        if any(cell.strip() for cell in cells[len(keys) :]):
            problem(f"the record has {len(cells)} values; the header has {len(keys)}", line)
        rows.append(DictionaryRow(line, {k: c for k, c in zip(keys, cells, strict=False) if k}))
    if problems:
        raise InterchangeError(problems)
    return rows
