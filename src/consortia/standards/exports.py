"""Streaming writers for clinical data: CSV, Parquet, SAS XPORT and ODM 1.3.2 ClinicalData.

Every writer takes its rows (or values) from an iterator and writes them as they come, so an
export of millions of values needs constant memory: nothing holds more than one row, one
Parquet batch, one ODM element path and a 64 KiB output buffer. Each returns the number of
rows (values for ODM) written, and leaves ``out`` open.

Row values are Python objects, checked against their :class:`Column`'s type:

===========  ==============================  ========  ========================  ============
type         accepted                        CSV       Parquet                   XPT
===========  ==============================  ========  ========================  ============
text         str                             as is¹    string                    char (UTF-8)
integer      int (not bool), 64-bit          digits    int64                     numeric
decimal      int, float, Decimal             plain²    float64³                  numeric
date         date (not datetime)             ISO 8601  date32                    DATE9.
datetime     timezone-aware datetime         ISO, UTC  timestamp[us, UTC]        DATETIME20.
time         time without time zone          ISO 8601  time64[us]                TIME8.
boolean      bool                            1 / 0     bool                      numeric 1 / 0
===========  ==============================  ========  ========================  ============

``None`` is missing everywhere (an empty CSV cell, an Arrow null, SAS's ``.`` or blanks), and
so is a float or Decimal NaN; infinities are refused. Datetimes are converted to UTC.

¹ Formula injection: spreadsheet programs run a cell starting with ``=``, ``+``, ``-``, ``@``,
  a tab or a carriage return as a formula, so such text is written with a leading ``'``
  (OWASP's advice). Only text columns are touched: numbers are never prefixed, but a text
  ``-5`` is written ``'-5``.
² Decimals are written without an exponent (``1e-07`` → ``0.0000001``), floats with the
  shortest digits that read back as the same float.
³ Parquet stores decimals as float64, not as Arrow decimal128, because the data come as
  Python floats and a decimal type needs one precision and scale for the whole column.

A bad value raises :class:`~consortia.exceptions.InterchangeError` whose problem names the
row (1-based) and column, e.g. ``rows[12].hb: str '12,5' is not a decimal``. What was
written before it stays written: write to a temporary file and move it into place.
"""

from __future__ import annotations

import csv
import math
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

import numpy as np

from consortia import __version__
from consortia.exceptions import ConfigurationError, InterchangeError, Problem
from consortia.standards import xpt
from consortia.standards.odm_xml import CONSORTIA_NS, ODM_NS, SOURCE_SYSTEM

DEFAULT_TEXT_LENGTH = 200
"""The XPT width of a text column without a ``length``."""

_BUFFER_BYTES = 1 << 16


class ColumnType(StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    TIME = "time"
    BOOLEAN = "boolean"


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an export: ``length`` is the XPT width of text (bytes, at most 200)."""

    name: str
    type: ColumnType
    label: str = ""
    length: int | None = None


# --- checking values -------------------------------------------------------------------------


class _BadValue(ValueError):
    pass


# per column type: the Python types accepted, those refused among them, and the wording
_ACCEPTED: dict[ColumnType, tuple[type | tuple[type, ...], tuple[type, ...], str]] = {
    ColumnType.TEXT: (str, (), "text"),
    ColumnType.INTEGER: (int, (bool,), "an integer"),
    ColumnType.DECIMAL: ((int, float, Decimal), (bool,), "a decimal"),
    ColumnType.DATE: (date, (datetime,), "a date"),
    ColumnType.DATETIME: (datetime, (), "a datetime"),
    ColumnType.TIME: (time, (), "a time"),
    ColumnType.BOOLEAN: (bool, (), "a boolean"),
}


def _normalised(kind: ColumnType, value: Any) -> Any:
    """``value`` checked against ``kind``: NaN becomes None, datetimes UTC."""
    accepted, refused, wording = _ACCEPTED[kind]
    if not isinstance(value, accepted) or isinstance(value, refused):
        raise _BadValue(f"{type(value).__name__} {str(value)[:40]!r} is not {wording}")
    if isinstance(value, float | Decimal):
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise _BadValue(f"{value} is not a finite number")
    elif isinstance(value, int) and not -(1 << 63) <= value < (1 << 63):
        raise _BadValue(f"{value} is outside the 64-bit integer range")
    elif isinstance(value, datetime):
        if value.utcoffset() is None:
            raise _BadValue(f"datetime {value.isoformat()!r} has no time zone")
        return value.astimezone(UTC)
    elif isinstance(value, time) and value.tzinfo is not None:
        raise _BadValue(f"time {value.isoformat()!r} has a time zone; give it in local time")
    return value


def _cell_error(number: int, column: Column, message: str) -> InterchangeError:
    return InterchangeError([Problem(f"rows[{number}].{column.name}", message)])


def _column_problems(columns: Sequence[Column]) -> list[Problem]:
    if not columns:
        return [Problem("columns", "an export needs at least one column")]
    problems = []
    seen: set[str] = set()
    for index, column in enumerate(columns):
        path = f"columns[{index}]"
        if not column.name:
            problems.append(Problem(path, "the column has no name"))
        elif column.name in seen:
            problems.append(Problem(path, f"column name {column.name!r} is used twice"))
        seen.add(column.name)
        if not isinstance(column.type, ColumnType):
            options = ", ".join(ColumnType)
            problems.append(Problem(path, f"type {column.type!r} is not one of {options}"))
        if column.length is not None and column.length < 1:
            problems.append(Problem(path, f"length {column.length} must be at least 1"))
    return problems


def _checked_rows(
    columns: Sequence[Column], rows: Iterable[Sequence[object]]
) -> Iterator[tuple[int, list[Any]]]:
    """(1-based row number, values) with each value checked and normalised; None if missing.

    The columns are checked at once, before the caller writes anything.
    """
    problems = _column_problems(columns)
    if problems:
        raise InterchangeError(problems)
    return _checked(columns, rows)


def _checked(
    columns: Sequence[Column], rows: Iterable[Sequence[object]]
) -> Iterator[tuple[int, list[Any]]]:
    width = len(columns)
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            message = f"the row has {len(row)} values for {width} columns"
            raise InterchangeError([Problem(f"rows[{number}]", message)])
        values: list[Any] = []
        for column, value in zip(columns, row, strict=True):
            try:
                values.append(None if value is None else _normalised(column.type, value))
            except _BadValue as bad:
                raise _cell_error(number, column, str(bad)) from None
        yield number, values


class _Sink:
    """Collects small writes and passes them to ``out`` about 64 KiB at a time."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, text: str) -> None:  # the file protocol csv.writer needs
        self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= _BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.out.write(b"".join(self.parts))
            self.parts.clear()
            self.size = 0
        self.out.flush()


# --- CSV -------------------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value: Any) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else str(value)


def _csv_decimal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    shown = repr(value) if isinstance(value, float) else str(value)
    if "e" in shown or "E" in shown:
        shown = format(Decimal(shown), "f")
    return shown


_CSV_FORMATS: dict[ColumnType, Callable[[Any], str]] = {
    ColumnType.TEXT: _csv_text,
    ColumnType.INTEGER: str,
    ColumnType.DECIMAL: _csv_decimal,
    ColumnType.DATE: date.isoformat,
    ColumnType.DATETIME: datetime.isoformat,
    ColumnType.TIME: time.isoformat,
    ColumnType.BOOLEAN: lambda value: "1" if value else "0",
}


def write_csv(columns: Sequence[Column], rows: Iterable[Sequence[object]], out: BinaryIO) -> int:
    """Write a header of column names and ``rows`` as UTF-8 CSV (RFC 4180, no BOM).

    Missing values are empty cells, booleans ``1``/``0`` as REDCap writes them, dates and
    times ISO 8601, datetimes ISO 8601 in UTC (``2024-05-01T09:30:00+00:00``); text that a
    spreadsheet would run as a formula gets a leading ``'`` (see the module docstring).

    >>> import io
    >>> out = io.BytesIO()
    >>> write_csv([Column("id", ColumnType.TEXT), Column("ok", ColumnType.BOOLEAN)],
    ...           [("=1+1", True), ("b", None)], out)
    2
    >>> out.getvalue()
    b"id,ok\\r\\n'=1+1,1\\r\\nb,\\r\\n"
    """
    checked = _checked_rows(columns, rows)
    formats = [_CSV_FORMATS[column.type] for column in columns]
    sink = _Sink(out)
    writer = csv.writer(sink, lineterminator="\r\n")
    writer.writerow([column.name for column in columns])
    count = 0
    for _, values in checked:
        writer.writerow(
            [
                "" if value is None else show(value)
                for show, value in zip(formats, values, strict=True)
            ]
        )
        count += 1
    sink.flush()
    return count


# --- Parquet ---------------------------------------------------------------------------------

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIX_DAY = date(1970, 1, 1).toordinal()
_MICROSECOND = timedelta(microseconds=1)


def _microseconds_of_day(value: time) -> int:
    return (value.hour * 3600 + value.minute * 60 + value.second) * 1_000_000 + value.microsecond


# How a non-text column is kept until its batch is written: array typecode, numpy dtype and
# the conversion to Arrow's storage number. Machine numbers rather than Python objects keep
# a batch of 65,536 rows at about half a megabyte per column.
_ARROW_STORAGE: dict[ColumnType, tuple[str, type[np.generic], Callable[[Any], int | float]]] = {
    ColumnType.INTEGER: ("q", np.int64, int),
    ColumnType.DECIMAL: ("d", np.float64, float),
    ColumnType.DATE: ("i", np.int32, lambda value: value.toordinal() - _UNIX_DAY),
    ColumnType.DATETIME: ("q", np.int64, lambda value: (value - _UNIX_EPOCH) // _MICROSECOND),
    ColumnType.TIME: ("q", np.int64, _microseconds_of_day),
    ColumnType.BOOLEAN: ("b", np.bool_, int),
}


class _ArrowBuffer:
    """One column's values for the next record batch."""

    def __init__(self, kind: ColumnType, arrow_type: Any) -> None:
        self.arrow_type = arrow_type
        self.text = kind is ColumnType.TEXT
        self.typecode, self.dtype, self.convert = _ARROW_STORAGE.get(kind, ("q", np.int64, int))
        self.reset()

    def reset(self) -> None:
        # new containers, not cleared ones: the last batch's arrays may still view the old
        self.strings: list[str | None] = []
        self.numbers: array[Any] = array(self.typecode)
        self.nulls = bytearray()

    def append(self, value: Any) -> None:
        if self.text:
            self.strings.append(value)
        elif value is None:
            self.numbers.append(0)
            self.nulls.append(1)
        else:
            self.numbers.append(self.convert(value))
            self.nulls.append(0)

    def to_arrow(self, pa: Any) -> Any:
        if self.text:
            result = pa.array(self.strings, type=self.arrow_type)
        else:
            result = pa.array(
                np.frombuffer(self.numbers, dtype=self.dtype),
                mask=np.frombuffer(self.nulls, dtype=np.bool_),
                type=self.arrow_type,
            )
        self.reset()
        return result


def write_parquet(
    columns: Sequence[Column],
    rows: Iterable[Sequence[object]],
    out: BinaryIO,
    *,
    batch_rows: int = 65_536,
) -> int:
    """Write ``rows`` as Parquet, one record batch (row group) every ``batch_rows`` rows.

    Needs pyarrow (``pip install 'consortia[parquet]'``). Column labels are kept as the
    field metadata ``label``; decimals are float64 (see the module docstring).

    >>> import io
    >>> write_parquet([Column("hb", ColumnType.DECIMAL)], [(12.5,), (None,)], io.BytesIO())
    2
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as missing:
        raise ConfigurationError(
            "Parquet export needs pyarrow; install it with: pip install 'consortia[parquet]'"
        ) from missing
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    checked = _checked_rows(columns, rows)
    arrow_types = {
        ColumnType.TEXT: pa.string(),
        ColumnType.INTEGER: pa.int64(),
        ColumnType.DECIMAL: pa.float64(),
        ColumnType.DATE: pa.date32(),
        ColumnType.DATETIME: pa.timestamp("us", tz="UTC"),
        ColumnType.TIME: pa.time64("us"),
        ColumnType.BOOLEAN: pa.bool_(),
    }
    schema = pa.schema(
        [
            pa.field(
                column.name,
                arrow_types[column.type],
                metadata={"label": column.label} if column.label else None,
            )
            for column in columns
        ]
    )
    buffers = [_ArrowBuffer(column.type, arrow_types[column.type]) for column in columns]
    count = 0
    pending = 0
    with pq.ParquetWriter(out, schema) as writer:
        for _, values in checked:
            for buffer, value in zip(buffers, values, strict=True):
                buffer.append(value)
            count += 1
            pending += 1
            if pending == batch_rows:
                arrays = [buffer.to_arrow(pa) for buffer in buffers]
                writer.write_batch(pa.record_batch(arrays, schema=schema))
                pending = 0
        if pending:
            arrays = [buffer.to_arrow(pa) for buffer in buffers]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
    out.flush()
    return count


# --- SAS XPORT -------------------------------------------------------------------------------

# XPT has text and numbers; dates, datetimes and times are numbers with a format
_XPT_KINDS = {ColumnType.TEXT, ColumnType.DATE, ColumnType.DATETIME, ColumnType.TIME}


def write_xpt(
    columns: Sequence[Column],
    rows: Iterable[Sequence[object]],
    out: BinaryIO,
    *,
    dataset: str,
    label: str = "",
    created: datetime | None = None,
) -> int:
    """Write ``rows`` as member ``dataset`` of a SAS transport (XPORT) version 5 file.

    Names are upper-cased and must be SAS version 5 names (1–8 letters, digits or ``_``,
    starting with a letter); labels printable ASCII of at most 40 characters; every such
    problem is reported at once. Text is UTF-8 in a fixed width (``Column.length``, default
    200 bytes): longer text raises rather than being cut, and trailing blanks are lost as in
    any SAS data set (missing text is blank). Numbers are IBM doubles; dates, datetimes and
    times are SAS date, datetime (UTC) and time numbers with formats DATE9., DATETIME20. and
    TIME8.; booleans are 1 / 0. ``created`` (default: now) is stamped in the headers.

    >>> import io
    >>> write_xpt([Column("usubjid", ColumnType.TEXT, length=12)], [("S-001",)],
    ...           io.BytesIO(), dataset="DM")
    1
    """
    variables = [
        xpt.Variable(
            column.name,
            column.label,
            column.type.value if column.type in _XPT_KINDS else "number",
            column.length or DEFAULT_TEXT_LENGTH,
        )
        for column in columns
    ]
    problems = _column_problems(columns) + xpt.problems(dataset, label, variables)
    if problems:
        raise InterchangeError(problems)
    sink = _Sink(out)
    moment = (created or datetime.now(UTC)).astimezone(UTC)
    count = xpt.write(
        sink.write_bytes, dataset, label, variables, _checked_rows(columns, rows), moment
    )
    sink.flush()
    return count


# --- ODM ClinicalData ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditStamp:
    """Who changed a value, where and when: an ODM ``AuditRecord``.

    ``user_oid`` and ``location_oid`` refer to ``User`` and ``Location`` in AdminData.
    """

    user_oid: str
    location_oid: str
    at: datetime
    reason: str | None = None
    source_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClinicalValue:
    """One item value of one subject, with the keys of every element that holds it.

    OIDs follow :mod:`consortia.standards.odm_export` (``SE.<event>``, ``F.<form>``,
    ``IG.<form>.<group>``, ``I.<item>``); ``value`` is the ODM text of the value, None for a
    null. ``unit_oid`` names a ``MeasurementUnit`` (``MU.<n>``) when the value has one.
    ``form_complete`` is the status of the form holding the value, written as our extension
    attribute ``FormData/@consortia:Complete`` (``Yes`` / ``No``); None writes no status.
    """

    subject_key: str
    site_oid: str | None
    event_oid: str
    event_repeat_key: str | None
    form_oid: str
    form_repeat_key: str | None
    group_oid: str
    group_repeat_key: str | None
    item_oid: str
    value: str | None
    audit: AuditStamp | None = None
    unit_oid: str | None = None
    form_complete: bool | None = None


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
# each element that holds item data, with the attributes (and ClinicalValue fields) of its key
_LEVELS = (
    ("SubjectData", (("SubjectKey", "subject_key"),)),
    (
        "StudyEventData",
        (("StudyEventOID", "event_oid"), ("StudyEventRepeatKey", "event_repeat_key")),
    ),
    ("FormData", (("FormOID", "form_oid"), ("FormRepeatKey", "form_repeat_key"))),
    ("ItemGroupData", (("ItemGroupOID", "group_oid"), ("ItemGroupRepeatKey", "group_repeat_key"))),
)


class _OdmWriter:
    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.number = 0
        self.where = ""
        self.open: list[tuple[str | None, ...]] = []  # the keys of the open elements
        self.seen: list[set[tuple[str | None, ...]]] = [set(), set(), set(), set()]
        self.site: str | None = None
        self.form_complete: bool | None = None

    def fail(self, field: str, message: str) -> InterchangeError:
        return InterchangeError([Problem(f"{self.where}{field}", message)])

    def text(self, value: str, field: str) -> str:
        if bad := _NOT_XML.search(value):
            raise self.fail(field, f"character {bad.group()!r} cannot be written in XML")
        return escape(value)

    def attribute(self, name: str, value: str, field: str) -> str:
        self.text(value, field)
        return f' {name}="{escape(value, _ATTRIBUTE_ENTITIES)}"'

    def oid(self, name: str, value: str | None, field: str) -> str:
        if value is None:
            return ""
        if not value:
            raise self.fail(field, "must not be empty (use None for no repeat key)")
        return self.attribute(name, value, field)

    def add(self, record: ClinicalValue) -> None:
        self.number += 1
        self.where = f"records[{self.number}]."
        keys = [tuple(getattr(record, field) for _, field in key) for _, key in _LEVELS]
        depth = 0
        while depth < len(self.open) and self.open[depth] == keys[depth]:
            depth += 1
        if depth > 0 and record.site_oid != self.site:
            message = f"{record.site_oid!r} differs from the subject's earlier {self.site!r}"
            raise self.fail("site_oid", message)
        if depth > 2 and record.form_complete != self.form_complete:
            message = f"{record.form_complete} differs from the form's earlier {self.form_complete}"
            raise self.fail("form_complete", message)
        self.close(depth)
        for level in range(depth, 4):
            self.start(level, keys[level], record)
        self.item(record)

    def start(self, level: int, key: tuple[str | None, ...], record: ClinicalValue) -> None:
        element, attributes = _LEVELS[level]
        if level > 0:
            if key in self.seen[level - 1]:
                shown = " repeat ".join(part for part in key if part is not None)
                message = (
                    f"{element} {shown} appears again after other data: records must arrive "
                    "sorted by subject, event, form and group"
                )
                raise self.fail(attributes[0][1], message)
            self.seen[level - 1].add(key)
        self.seen[level].clear()
        indent = "  " * (level + 2)
        written = "".join(
            self.oid(name, part, field) for (name, field), part in zip(attributes, key, strict=True)
        )
        if level == 2:
            self.form_complete = record.form_complete
            if record.form_complete is not None:
                written += f' consortia:Complete="{"Yes" if record.form_complete else "No"}"'
        self.sink.write(f"{indent}<{element}{written}>\n")
        if level == 0:
            self.site = record.site_oid
            if record.site_oid is not None:
                site = self.oid("LocationOID", record.site_oid, "site_oid")
                self.sink.write(f"{indent}  <SiteRef{site}/>\n")
        self.open.append(key)

    def close(self, depth: int) -> None:
        while len(self.open) > depth:
            self.open.pop()
            level = len(self.open)
            self.sink.write(f"{'  ' * (level + 2)}</{_LEVELS[level][0]}>\n")

    def item(self, record: ClinicalValue) -> None:
        if (record.item_oid,) in self.seen[3]:
            message = f"{record.item_oid} appears twice in the same item group"
            raise self.fail("item_oid", message)
        self.seen[3].add((record.item_oid,))
        indent = "  " * 6
        start = f"{indent}<ItemData{self.oid('ItemOID', record.item_oid, 'item_oid')}"
        if record.value is None:
            start += ' IsNull="Yes"'
        else:
            start += self.attribute("Value", record.value, "value")
        children = []
        if (audit := record.audit) is not None:
            if audit.at.utcoffset() is None:
                raise self.fail("audit.at", "the audit time needs a time zone")
            children += [
                f"{indent}  <AuditRecord>",
                f"{indent}    <UserRef{self.oid('UserOID', audit.user_oid, 'audit.user_oid')}/>",
                f"{indent}    <LocationRef"
                f"{self.oid('LocationOID', audit.location_oid, 'audit.location_oid')}/>",
                f"{indent}    <DateTimeStamp>{audit.at.isoformat()}</DateTimeStamp>",
            ]
            for tag, text, field in (
                ("ReasonForChange", audit.reason, "audit.reason"),
                ("SourceID", audit.source_id, "audit.source_id"),
            ):
                if text is not None:
                    children.append(f"{indent}    <{tag}>{self.text(text, field)}</{tag}>")
            children.append(f"{indent}  </AuditRecord>")
        if record.unit_oid is not None:
            unit = self.oid("MeasurementUnitOID", record.unit_oid, "unit_oid")
            children.append(f"{indent}  <MeasurementUnitRef{unit}/>")
        if children:
            self.sink.write(start + ">\n" + "\n".join(children) + f"\n{indent}</ItemData>\n")
        else:
            self.sink.write(start + "/>\n")


def write_odm_clinical(
    records: Iterable[ClinicalValue],
    out: BinaryIO,
    *,
    study_oid: str,
    metadata_version_oid: str,
    file_oid: str,
    creation: datetime,
) -> int:
    """Write ``records`` as an ODM 1.3.2 Snapshot holding one ``ClinicalData``.

    Records must arrive sorted (grouped) by subject, event, form and item group: the writer
    opens and closes ``SubjectData``, ``StudyEventData``, ``FormData`` and ``ItemGroupData``
    as the keys change, holding only the open path. A group, form or event that appears again
    after its element was closed raises :class:`InterchangeError`, as does an item twice in
    one group; a subject that reappears is not detected (that would need memory growing with
    the subjects). A subject's ``SiteRef`` comes from its records' ``site_oid``, which must
    agree, as must the ``form_complete`` of one form's records. A None value is written
    ``IsNull="Yes"`` without ``Value``, as ODM 1.3.2 allows. Without form statuses the file is
    valid against the ODM 1.3.2 XSD on its own; with them, against the XSD extended with our
    attribute (ODM's vendor extension rule: removing the extension leaves valid ODM).

    >>> import io
    >>> when = datetime(2024, 5, 1, tzinfo=UTC)
    >>> value = ClinicalValue("001", "SITE.SG01", "SE.screening", None, "F.demo", None,
    ...                       "IG.demo.main", None, "I.age", "54")
    >>> write_odm_clinical([value], io.BytesIO(), study_oid="S.X", metadata_version_oid="MDV.1",
    ...                    file_oid="X.1", creation=when)
    1
    """
    if creation.utcoffset() is None:
        raise InterchangeError([Problem("creation", "the creation time needs a time zone")])
    sink = _Sink(out)
    writer = _OdmWriter(sink)
    root = writer.oid("FileOID", file_oid, "file_oid")
    clinical = writer.oid("StudyOID", study_oid, "study_oid") + writer.oid(
        "MetaDataVersionOID", metadata_version_oid, "metadata_version_oid"
    )
    sink.write(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ODM xmlns="{ODM_NS}" xmlns:consortia="{CONSORTIA_NS}" FileType="Snapshot"{root}'
        f' CreationDateTime="{creation.isoformat()}"'
        f' ODMVersion="1.3.2" SourceSystem="{SOURCE_SYSTEM}" SourceSystemVersion="{__version__}">\n'
        f"  <ClinicalData{clinical}>\n"
    )
    for record in records:
        writer.add(record)
    writer.close(0)
    sink.write("  </ClinicalData>\n</ODM>\n")
    sink.flush()
    return writer.number
