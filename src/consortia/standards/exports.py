"""Streaming writers for clinical data tables: CSV, Parquet and SAS XPORT.

Every writer takes its rows from an iterator and writes them as they come, so an export of
millions of values needs constant memory: nothing holds more than one row, one Parquet batch
and a 64 KiB output buffer (:class:`BufferedSink`, shared with the ODM ClinicalData writer of
:mod:`consortia.standards.odm_clinical_writer`). Each returns the number of rows written, and
leaves ``out`` open.

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
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, BinaryIO

import numpy as np

from consortia.exceptions import ConfigurationError, InterchangeError, Problem
from consortia.standards import xpt

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


class BufferedSink:
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
    sink = BufferedSink(out)
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
    sink = BufferedSink(out)
    moment = (created or datetime.now(UTC)).astimezone(UTC)
    count = xpt.write(
        sink.write_bytes, dataset, label, variables, _checked_rows(columns, rows), moment
    )
    sink.flush()
    return count
