"""Reading clinical data files for bulk import: a stream of one :class:`FileFormRecord` per form.

``csv`` (:func:`read_wide_csv`): a REDCap record export (raw values) of a study set up from
our dictionary (:func:`~consortia.standards.redcap_naming.redcap_names`): the record id first
(``record_id`` or ``subject_id``); ``redcap_event_name`` (unique or plain event names; not
needed for a one-event study), ``redcap_repeat_instrument``, ``redcap_repeat_instance``,
``redcap_data_access_group`` or ``site``; items, checkboxes ``<item>___<code>`` (1 ticked)
and ``<form>_complete`` (2 complete). A row is one subject's event; it gives a record per
form with a value or a status of 1 or 2. A repeating-instrument row is one instance of the
form's repeating group(s), gathered into the form's record in instance order; without an
instrument, the instance is that of a repeating or unscheduled event. Calc fields,
``<form>_timestamp`` and ``redcap_survey_identifier`` are skipped.

``csv-long`` (:func:`read_long_csv`): one value a row, columns :data:`LONG_COLUMNS` (site,
event_instance and group_instance may be empty; items of repeating groups need
group_instance); the item ``_complete`` gives the form status: 1, true or yes complete; 0,
false, no or empty not (any case); anything else is a problem. Our long export writes it.

``odm`` (:func:`read_odm_clinical`): ODM 1.3.2 ClinicalData with our OIDs, read in constant
memory (:mod:`consortia.standards.odm_clinical`). :func:`sniff_format` tells them apart.

``values`` are raw text shaped as :func:`~consortia.domain.validation.validate_form` takes
them (multichoice codes joined by ``|``); ``item_lines`` maps its paths (and group instances,
``forms.<form>.<group>[n]``) to lines, for ``file:line: path: message`` later
(:meth:`FileFormRecord.line_of`). Values are not checked here. Structural problems (unknown
column, event, form, item, OID, code or site; a form not collected at its event; a bad
instance; no subject; one item given two values) are collected over the whole file and
raised as one :class:`~consortia.exceptions.InterchangeError` (at most
:data:`MAX_PROBLEMS`, then a count) when it ends. Records are yielded as read until the
first problem, so a caller imports in a transaction it rolls back on the error. A subject's
event is gathered while its rows are consecutive; given again later, it makes new records.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Final, Literal, TextIO

from consortia.domain.parsing import character_problem
from consortia.domain.study import ItemType, Study
from consortia.exceptions import InterchangeError, Problem
from consortia.standards.clinical_records import (
    MAX_PROBLEMS,
    FileFormRecord,
    FormValues,
    ProblemLog,
    RecordAssembler,
    Slot,
    StudyLayout,
    whole,
)
from consortia.standards.odm_clinical import read_clinical_data
from consortia.standards.redcap_naming import checkbox_column

__all__ = [
    "COMPLETE_ITEM",
    "LONG_COLUMNS",
    "MAX_PROBLEMS",
    "FileFormRecord",
    "read_long_csv",
    "read_odm_clinical",
    "read_wide_csv",
    "sniff_format",
]

LONG_COLUMNS: Final = ("subject_id", "site", "event", "event_instance", "form",
                       "group_instance", "item", "value")  # fmt: skip
COMPLETE_ITEM: Final = "_complete"
"""The long format's item that carries the form status."""

_LONG_REQUIRED: Final = ("subject_id", "event", "form", "item", "value")
_CONTEXT: Final = ("subject_id", "site", "event", "event_instance", "form")
_RECORD_IDS: Final = ("record_id", "subject_id", "redcap_record_id")
_EVENT: Final = "redcap_event_name"
_INSTRUMENT: Final = "redcap_repeat_instrument"
_INSTANCE: Final = "redcap_repeat_instance"
_DAG: Final = "redcap_data_access_group"
_TRUE_WORDS: Final = frozenset({"1", "true", "yes"})
_FALSE_WORDS: Final = frozenset({"", "0", "false", "no"})


# ------------------------------------------------------------------------ CSV


class _CsvReader:
    """The loop both CSV formats share: a header, then rows, each read by ``read_row``."""

    empty = "the file is empty; expected a header row"

    def __init__(self, study: Study, file: str) -> None:
        self.layout = StudyLayout(study)
        self.problems = ProblemLog(file)
        self.assembler = RecordAssembler(file)
        self.index: dict[str, int] = {}  # column name -> position, for the columns read by name
        self.width = 0
        self.line, self.row = 0, list[str]()
        self.found: list[tuple[str, str, int]] = []  # the row's problems: path, message, column

    def read(self, stream: TextIO) -> Iterator[FileFormRecord]:
        rows = self.rows(stream)
        first = next(rows, None)
        if first is None:
            self.problems.fail("", self.empty, 1)
        self.line, self.row = first
        self.width = len(self.row)
        self.header()
        for self.line, self.row in rows:
            if len(self.row) < self.width:
                self.row += [""] * (self.width - len(self.row))
            elif len(self.row) > self.width and any(self.row[self.width :]):
                message = f"the row has {len(self.row)} values; the header has {self.width}"
                self.found.append(("row", message, self.width + 1))
            records = self.read_row()
            for path, message, column in self.found:
                self.problems.add(path, message, self.line, column)
            self.found.clear()
            if records and not self.problems.count:
                yield from records
        records = self.assembler.finish()
        self.problems.check()
        yield from records

    def rows(self, stream: TextIO) -> Iterator[tuple[int, list[str]]]:
        """(first line, cells) of each CSV record that is not blank."""
        reader = csv.reader(stream, strict=True)
        end = 0
        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                self.problems.fail("", f"cannot read the CSV record starting here: {error}", start)
            except UnicodeDecodeError as error:
                message = f"the text is not UTF-8 ({error.reason}); save it as 'CSV UTF-8'"
                self.problems.fail("", message, start)
            end = reader.line_num
            if any(cells):
                yield start, cells

    def header(self) -> None:
        raise NotImplementedError

    def read_row(self) -> list[FileFormRecord]:
        """Put the row's values into the assembler, its problems into ``found``; return the
        records it completed."""
        raise NotImplementedError

    def cell(self, name: str) -> str:
        position = self.index.get(name, -1)
        return self.row[position].strip() if 0 <= position < len(self.row) else ""

    def problem(self, name: str, message: str, column: int = 0) -> None:
        self.found.append((f"row.{name}", message, column or self.index.get(name, 0) + 1))

    def event(self, name: str) -> str | None:
        raw = self.cell(name)
        event = self.layout.event(raw) if raw else None
        if event is None:
            what = f"{raw!r} is not an event of this study" if raw else "no event"
            self.problem(name, f"{what}; events: {', '.join(self.layout.names.events.values())}")
        return event

    def instance(self, name: str, event: str | None) -> int | None:
        """The event instance in column ``name`` (1 when empty)."""
        raw = self.cell(name)
        instance = whole(raw) if raw else 1
        if instance is None:
            self.problem(name, f"{raw!r} is not an instance number (1, 2, …)")
        elif raw and instance > 1 and event and event not in self.layout.repeats:
            self.problem(name, f"event {event} neither repeats nor is unscheduled")
        return instance

    def site(self, name: str) -> str | None:
        site, message = self.layout.site(self.cell(name))
        if message:
            self.problem(name, message)
        return site


_VALUE, _CHECKBOX, _COMPLETE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Column:
    kind: int
    form: str
    slot: Slot | None
    code: str  # of a checkbox
    header: str
    position: int


class _WideReader(_CsvReader):
    """A REDCap record export; each column's meaning is worked out once, from the header."""

    def header(self) -> None:
        layout, names, study = self.layout, self.layout.names, self.layout.study
        fields = {redcap: layout.slots[item] for item, redcap in names.fields.items()
                  if item in layout.slots} | layout.slots  # fmt: skip
        boxes: dict[str, tuple[Slot, str]] = {}
        for name, slot in fields.items():
            for code in slot.codes if slot.kind is ItemType.MULTICHOICE else ():
                boxes[checkbox_column(name, code)] = boxes[f"{name}___{code}"] = (slot, code)
        complete = {f"{name}_complete": form for name, form in layout.forms.items()}
        skipped = {*names.fields.values(), *study.derived, f"{names.derived_form}_complete"}
        skipped = skipped - set(fields) | {f"{name}_timestamp" for name in layout.forms}
        self.columns: list[_Column | None] = []
        self.record_id = self.row[0].strip().lstrip("\ufeff") or "record_id"
        seen: set[str] = set()
        for position, raw in enumerate(self.row, 1):
            name = raw.strip().lstrip("\ufeff")
            key = name if name in fields or name in boxes else name.lower()
            column, message = None, "" if name else "the column has no name"
            if position == 1:
                if key not in _RECORD_IDS:
                    message = "the first column is the record id: record_id or subject_id"
            elif key in seen or message:
                message = message or "the column appears twice"
            elif key in (_EVENT, _INSTRUMENT, _INSTANCE, _DAG, "site") and key not in fields:
                self.index[key] = position - 1
            elif key in fields:
                column = _Column(_VALUE, fields[key].form, fields[key], "", name, position)
            elif key in boxes:
                slot, code = boxes[key]
                column = _Column(_CHECKBOX, slot.form, slot, code, name, position)
            elif key in complete:
                column = _Column(_COMPLETE, complete[key], None, "", name, position)
            elif key not in skipped and key != "redcap_survey_identifier":
                message = self.unknown(key, fields)
            if message:
                self.problems.add(f"columns.{name}", message, self.line, position)
            seen.add(key)
            self.columns.append(column)
        if _EVENT not in self.index and len(study.events) > 1:
            message = f"the study has {len(study.events)} events: each row needs its event"
            self.problems.add(f"columns.{_EVENT}", message, self.line)
        self.site_column = _DAG if _DAG in self.index else "site"
        self.only_event = next(iter(study.events)) if len(study.events) == 1 else None

    @staticmethod
    def unknown(name: str, fields: Mapping[str, Slot]) -> str:
        base, boxed, code = name.partition("___")
        slot = fields.get(base) if boxed else None
        if slot is not None and slot.kind is ItemType.MULTICHOICE:
            return f"{code!r} is not a code of {base}: {', '.join(slot.codes)}"
        if slot is not None:
            return f"{base} is a {slot.kind.value} item, not a checkbox (multichoice) item"
        return "not an item, checkbox (<item>___<code>) or <form>_complete column of this study"

    def read_row(self) -> list[FileFormRecord]:
        layout, row, line = self.layout, self.row, self.line
        subject = row[0].strip()
        if not subject:
            self.problem(self.record_id, "the row has no record id", 1)
        elif bad := character_problem(subject):
            self.problem(self.record_id, bad, 1)
        # a one-event study's export may leave the event column out
        event = self.event(_EVENT) if _EVENT in self.index else self.only_event
        raw_instrument = self.cell(_INSTRUMENT)
        instrument = layout.forms.get(raw_instrument) if raw_instrument else None
        if raw_instrument and instrument is None:
            self.problem(_INSTRUMENT, f"{raw_instrument!r} is not a form of this study")
        elif instrument is not None and not layout.repeating_groups[instrument]:
            self.problem(_INSTRUMENT, f"form {instrument} has no repeating group to repeat")
        instance = self.instance(_INSTANCE, None if instrument else event)
        if instrument is not None and not self.cell(_INSTANCE):
            self.problem(_INSTANCE, f"a row of repeating instrument {instrument} needs one")
        site = self.site(self.site_column)
        if self.found or event is None or instance is None:
            return []
        records = self.assembler.start(subject, event, 1 if instrument else instance)
        group_instance = instance if instrument else 1
        ticks: dict[Slot, list[str]] = {}
        put, forms = self.assembler.put, self.assembler.forms
        # compress() skips the empty cells, most of a wide row, without a Python step each
        for column, value in compress(zip(self.columns, row, strict=False), row):
            if column is None or value.isspace() or (value == "0" and column.kind != _VALUE):
                continue  # not data, an unticked box, or a form without status
            message = layout.form_problem(column.form, event)
            if not message and column.slot is not None:
                message = _instrument_problem(column.slot, instrument)
            if not message and column.kind == _CHECKBOX and value != "1":
                message = f"{value!r} is not a checkbox value: 1 (ticked) or 0"
            if not message and column.kind == _COMPLETE and value not in ("1", "2"):
                message = f"{value!r} is not a form status: 0 incomplete, 1 unverified, 2 complete"
            if message:
                self.problem(column.header, message, column.position)
                continue
            entry = forms.get(column.form) or self.assembler.form(column.form, line, site)
            if column.kind == _COMPLETE:  # complete when each of its rows says so
                entry.complete = value == "2" and entry.complete is not False
            elif column.kind == _CHECKBOX:
                assert column.slot is not None
                ticks.setdefault(column.slot, []).append(column.code)
            else:
                assert column.slot is not None
                conflict = put(entry, column.slot, group_instance, value, line)
                if conflict:
                    self.problem(column.header, conflict, column.position)
        for slot, codes in ticks.items():
            chosen = "|".join(code for code in slot.codes if code in codes)
            conflict = put(forms[slot.form], slot, group_instance, chosen, line)
            if conflict:
                self.problem(slot.item, conflict, 1)
        return records


def _instrument_problem(slot: Slot, instrument: str | None) -> str:
    if instrument is None and slot.repeating:
        return (
            f"{slot.item} is in the repeating group {slot.group}: give it on a row whose "
            f"{_INSTRUMENT} is {slot.form}"
        )
    if instrument is not None and slot.form != instrument:
        return f"{slot.item} is an item of form {slot.form}, not of this row's {instrument}"
    return ""


def read_wide_csv(study: Study, stream: TextIO, *, file: str) -> Iterator[FileFormRecord]:
    """Read a REDCap record export (raw values) as form records; see the module docstring.

    Open the file with ``encoding="utf-8-sig", newline=""``.

    >>> import io
    >>> from consortia.domain.templates import load_template
    >>> text = ("record_id,redcap_event_name,redcap_data_access_group,age,sex,"
    ...         "demographics_complete\\nSG01-0001,screening_arm_1,sg01,57,F,2\\n")
    >>> [record] = read_wide_csv(load_template("glucose-iso15197"), io.StringIO(text),
    ...                          file="export.csv")
    >>> record.form, record.site, record.values, record.complete, record.line
    ('demographics', 'SG01', {'age': '57', 'sex': 'F'}, True, 2)
    """
    return _WideReader(study, file).read(stream)


class _LongReader(_CsvReader):
    """Our long format: one value a row."""

    empty = "the file is empty; expected the header " + ",".join(LONG_COLUMNS)

    def header(self) -> None:
        for position, raw in enumerate(self.row, 1):
            name = raw.strip().lstrip("\ufeff").lower()
            message = "" if name in LONG_COLUMNS else f"not a column of: {', '.join(LONG_COLUMNS)}"
            if name in self.index:
                message = "the column appears twice"
            if message:
                self.problems.add(f"columns.{raw.strip()}", message, self.line, position)
            self.index.setdefault(name, position - 1)
        missing = [name for name in _LONG_REQUIRED if name not in self.index]
        if missing:
            self.problems.fail("columns", f"missing columns: {', '.join(missing)}", self.line)

        # consecutive rows mostly differ in item and value only: the rest is read once a run
        self.context_of = itemgetter(*(self.index.get(name, 0) for name in _CONTEXT))
        self.at_item, self.at_value = self.index["item"], self.index["value"]
        self.at_group = self.index.get("group_instance")
        self.context: object = None
        self.context_problems: list[tuple[str, str, int]] = []
        self.form: str | None = None
        self.entry = FormValues("", 0, None)

    def read_row(self) -> list[FileFormRecord]:
        records: list[FileFormRecord] = []
        context = self.context_of(self.row)
        if context != self.context:
            self.context, self.form, mark = context, None, len(self.found)
            resolved = self.resolve()
            self.context_problems = self.found[mark:]
            if resolved is not None and not self.context_problems:
                subject, event, instance, self.form, site = resolved
                records = self.assembler.start(subject, event, instance)
                self.entry = self.assembler.form(self.form, self.line, site)
        else:
            self.found += self.context_problems
        row, slot, form, problem = self.row, None, self.form, self.problem
        item, value = row[self.at_item].strip(), row[self.at_value]  # value as written
        at_group, group_instance = self.at_group, 1
        raw_group = "" if at_group is None else row[at_group].strip()
        if item == COMPLETE_ITEM:
            status = value.strip().lower()
            if status not in _TRUE_WORDS | _FALSE_WORDS:
                problem("value", f"{status!r} is not a form status: 1/true complete, 0/false not")
        elif (slot := self.layout.slots.get(item)) is None:
            problem("item", f"{item!r} is not an item of this study" if item else "no item")
        elif form is not None and slot.form != form:
            problem("item", f"{item} is an item of form {slot.form}, not {form}")
        elif slot.repeating:
            group_instance = whole(raw_group) or 0
            if not group_instance:
                what = f"{raw_group!r} is not" if raw_group else "give"
                problem("group_instance", f"{what} the instance of repeating group {slot.group}")
        elif raw_group not in ("", "0", "1"):  # 0: how our long export writes it
            problem("group_instance", f"{item} is not in a repeating group; leave it empty")
        if self.found or form is None:
            return records
        if slot is None:
            self.entry.complete = value.strip().lower() in _TRUE_WORDS
        elif value and not value.isspace():
            conflict = self.assembler.put(self.entry, slot, group_instance, value, self.line)
            if conflict:
                problem("value", conflict)
        return records

    def resolve(self) -> tuple[str, str, int, str, str | None] | None:
        """(subject, event, event instance, form, site) of the row, or None."""
        subject, raw_form = self.cell("subject_id"), self.cell("form")
        if not subject:
            self.problem("subject_id", "the row has no subject id")
        elif bad := character_problem(subject):
            self.problem("subject_id", bad)
        event = self.event("event")
        instance = self.instance("event_instance", event)
        form = self.layout.forms.get(raw_form)
        if form is None:
            self.problem("form", f"{raw_form!r} is not a form of this study")
        elif event is not None and self.layout.form_problem(form, event):
            self.problem("form", self.layout.form_problem(form, event))
        site = self.site("site")
        if event is None or instance is None or form is None:
            return None
        return subject, event, instance, form, site


def read_long_csv(study: Study, stream: TextIO, *, file: str) -> Iterator[FileFormRecord]:
    """Read our long format (one value a row; see the module docstring) as form records.

    >>> import io
    >>> from consortia.domain.templates import load_template
    >>> text = ("subject_id,site,event,event_instance,form,group_instance,item,value\\n"
    ...         "SG01-0001,SG01,test_session,,glucose_readings,2,sample_time,09:30\\n"
    ...         "SG01-0001,SG01,test_session,,glucose_readings,,_complete,1\\n")
    >>> [record] = read_long_csv(load_template("glucose-iso15197"), io.StringIO(text),
    ...                          file="long.csv")
    >>> record.values, record.complete, record.line_of("forms.glucose_readings.readings[1]")
    ({'readings': [{'sample_time': '09:30'}]}, True, 2)
    """
    return _LongReader(study, file).read(stream)


# ------------------------------------------------------------------------ ODM, sniffing


def read_odm_clinical(study: Study, source: BinaryIO, *, file: str) -> Iterator[FileFormRecord]:
    """Read ODM 1.3.2 ClinicalData as form records, incrementally and in constant memory.

    DOCTYPEs (so entity expansion and external entities) are refused. See
    :mod:`consortia.standards.odm_clinical` for the mapping and the form status rule.
    """
    return read_clinical_data(study, source, file=file)


def sniff_format(path: Path) -> Literal["csv", "csv-long", "odm"]:
    """Which reader a file needs: ``odm`` for XML, ``csv-long`` for our long format's
    header, ``csv`` for anything else (a record export). An empty file raises
    :class:`~consortia.exceptions.InterchangeError`.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "long.csv").write_text("subject_id,event,form,item,value\\n")
    >>> sniff_format(folder / "long.csv")
    'csv-long'
    """
    with open(path, "rb") as stream:
        start = stream.read(8192)
    text = start.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if not text:
        raise InterchangeError([Problem("", "the file is empty", str(path), 1, 1)])
    if text.startswith("<"):
        return "odm"
    header = next(csv.reader([text.splitlines()[0]]), [])
    names = {cell.strip().lower() for cell in header}
    return "csv-long" if set(_LONG_REQUIRED) <= names else "csv"
