"""SAS transport (XPORT) version 5 records: the file format the FDA accepts for submissions.

This module knows the bytes of the format; :func:`consortia.standards.exports.write_xpt`
streams rows through it. The layout follows SAS technical paper TS-140 ("The record layout
of a data set in SAS transport (XPORT) format"):

* a library header (3 records of 80 bytes) and a member header (4 records), then a NAMESTR
  header giving the number of variables, one NAMESTR of 140 bytes per variable written back
  to back and blank-padded to a multiple of 80, then the OBS header record;
* observations packed back to back (no separators), the whole blank-padded to a multiple of
  80 at the end;
* numbers as 8-byte IBM System/370 hexadecimal floating point (:func:`ibm_float`), a missing
  number as ``.`` followed by seven zero bytes (:data:`MISSING`); text blank-padded to its
  variable's fixed length.

>>> ibm_float(1.0).hex()
'4110000000000000'
>>> ibm_float(-118.625).hex()
'c276a00000000000'
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from consortia.exceptions import InterchangeError, Problem

RECORD = 80
NAMESTR_LENGTH = 140
MAX_TEXT_LENGTH = 200
"""The longest text variable version 5 allows (bytes)."""
MAX_LABEL_LENGTH = 40
MAX_VARIABLES = 9999

MISSING = b"." + bytes(7)
"""SAS's ordinary missing value ``.`` in transport files."""

SAS_EPOCH = datetime(1960, 1, 1, tzinfo=UTC)
SAS_EPOCH_DATE = date(1960, 1, 1)

SMALLEST = 16.0**-65
"""The smallest normalised IBM double; magnitudes below it are written as 0."""
LARGEST = math.nextafter(16.0**63, 0.0)
"""The largest double below 16**63 (about 7.2e75); larger magnitudes cannot be written."""

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,7}")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_NAMESTR = struct.Struct(">hhhh8s40s8shhh2s8shhl52s")
_VERSION = "9.4"  # the SAS release whose readers the files are written for
_SYSTEM = "Python"


def _header(name: str, numbers: str = "0" * 30) -> bytes:
    return f"HEADER RECORD*******{name:<8}HEADER RECORD!!!!!!!{numbers}  ".encode("ascii")


def ibm_float(value: float) -> bytes:
    """``value`` as a big-endian 8-byte IBM System/370 double.

    IBM doubles are sign, a 7-bit base-16 exponent in excess 64 and a 56-bit fraction with a
    non-zero leading hex digit. An IEEE double's 53-bit significand always fits, so every
    value in range converts exactly. ``-0.0`` becomes ``0``; magnitudes below
    :data:`SMALLEST` become ``0`` (SAS cannot hold them either); ``inf`` and ``nan`` or
    magnitudes above :data:`LARGEST` raise ``ValueError``.

    >>> ibm_float(0.1).hex()
    '401999999999999a'
    >>> ibm_float(0.0) == bytes(8)
    True
    """
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be written as an IBM float")
    if value == 0:
        return bytes(8)
    fraction, exponent = math.frexp(abs(value))  # |value| = fraction * 2**exponent
    significand = int(fraction * (1 << 53))  # exact: 2**52 <= significand < 2**53
    # |value| = significand * 2**(exponent - 53) = ibm_fraction * 2**-56 * 16**power
    power = -(-exponent // 4)  # ceil(exponent / 4), so the shift below is 0..3
    if power < -64:  # below SMALLEST
        return bytes(8)
    if power > 63:
        raise ValueError(f"{value} is beyond the IBM float range (about ±7.2e75)")
    ibm_fraction = significand << (exponent + 3 - 4 * power)
    sign = 0x80 if value < 0 else 0
    return bytes([sign | (power + 64)]) + ibm_fraction.to_bytes(7, "big")


def sas_date(value: date) -> int:
    """Days since 1960-01-01, SAS's date number."""
    return (value - SAS_EPOCH_DATE).days


def sas_datetime(value: datetime) -> float:
    """Seconds since 1960-01-01T00:00:00 UTC (``value`` must be timezone-aware)."""
    delta = value - SAS_EPOCH
    return delta.days * 86_400 + delta.seconds + delta.microseconds / 1_000_000


def sas_time(value: time) -> float:
    """Seconds since midnight, SAS's time number."""
    return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1_000_000


_FORMATS = {"date": ("DATE", 9), "datetime": ("DATETIME", 20), "time": ("TIME", 8)}


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable of a transport data set.

    ``kind`` is ``text`` (``length`` bytes wide) or a number: ``number``, ``date``,
    ``datetime`` or ``time`` (the last three written with DATE9., DATETIME20. and TIME8.).
    ``name`` is written upper-cased.
    """

    name: str
    label: str
    kind: str
    length: int = 8

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a version 5 variable or data set name, or None if it can."""
    if not _NAME.fullmatch(name):
        return (
            f"{name!r} is not a SAS version 5 name: 1–8 ASCII letters, digits or _, "
            "starting with a letter"
        )
    return None


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a version 5 label, or None if it can."""
    if not label.isascii() or not label.isprintable():
        return f"label {label!r} must be printable ASCII"
    if len(label) > MAX_LABEL_LENGTH:
        return f"label {label!r} has {len(label)} characters; at most {MAX_LABEL_LENGTH} fit"
    return None


def _stamp(moment: datetime) -> str:
    """The 16-character ``ddMMMyy:hh:mm:ss`` of the headers, independent of the locale."""
    return (
        f"{moment.day:02d}{_MONTHS[moment.month - 1]}{moment.year % 100:02d}:"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def _text(value: str, width: int) -> bytes:
    return value.encode("ascii").ljust(width, b" ")[:width]


def header(dataset: str, label: str, variables: Sequence[Variable], created: datetime) -> bytes:
    """Every record before the first observation, for one member ``dataset``.

    Names and labels must already be checked with :func:`problems`.
    """
    stamp = _stamp(created)
    made_by = f"{_VERSION:<8}{_SYSTEM:<8}{'':24}{stamp}"
    records = [
        _header("LIBRARY"),
        _text(f"{'SAS':<8}{'SAS':<8}{'SASLIB':<8}{made_by}", RECORD),
        _text(stamp, RECORD),
        _header("MEMBER", f"{'0' * 17}16{'0' * 8}{NAMESTR_LENGTH}"),
        _header("DSCRPTR"),
        _text(f"{'SAS':<8}{dataset.upper():<8}{'SASDATA':<8}{made_by}", RECORD),
        _text(f"{stamp}{'':16}{label:<40}{'':8}", RECORD),
        _header("NAMESTR", f"{'0' * 6}{len(variables):04d}{'0' * 20}"),
    ]
    namestrs = bytearray()
    position = 0
    for number, variable in enumerate(variables, start=1):
        form, width = _FORMATS.get(variable.kind, ("", 0))
        length = variable.length if variable.kind == "text" else 8
        namestrs += _NAMESTR.pack(
            1 if variable.numeric else 2,
            0,
            length,
            number,
            _text(variable.name.upper(), 8),
            _text(variable.label, 40),
            _text(form, 8),
            width,
            0,
            0,
            b"\0\0",
            _text("", 8),
            0,
            0,
            position,
            bytes(52),
        )
        position += length
    records.append(bytes(namestrs) + padding(len(namestrs)))
    records.append(_header("OBS"))
    return b"".join(records)


def padding(size: int) -> bytes:
    """The blanks that bring ``size`` bytes up to a multiple of 80."""
    return b" " * (-size % RECORD)


def problems(dataset: str, label: str, variables: Sequence[Variable]) -> list[Problem]:
    """Every reason the data set cannot be written in version 5, with the variable's index."""
    found = []
    if problem := name_problem(dataset):
        found.append(Problem("dataset", problem))
    if problem := label_problem(label):
        found.append(Problem("label", problem))
    if len(variables) > MAX_VARIABLES:
        found.append(Problem("columns", f"{len(variables)} columns; at most {MAX_VARIABLES} fit"))
    seen: set[str] = set()
    for index, variable in enumerate(variables):
        path = f"columns[{index}] ({variable.name})"
        if problem := name_problem(variable.name):
            found.append(Problem(path, problem))
        elif variable.name.upper() in seen:
            message = f"{variable.name.upper()!r} is used twice once upper-cased"
            found.append(Problem(path, message))
        seen.add(variable.name.upper())
        if problem := label_problem(variable.label):
            found.append(Problem(path, problem))
        if variable.kind == "text" and not 1 <= variable.length <= MAX_TEXT_LENGTH:
            message = (
                f"length {variable.length} is not within the 1–{MAX_TEXT_LENGTH} bytes XPT allows"
            )
            found.append(Problem(path, message))
        if variable.kind not in ("text", "number", *_FORMATS):
            found.append(Problem(path, f"unknown kind {variable.kind!r}"))
    return found


def _number(variable: Variable, value: Any) -> bytes:
    if variable.kind == "date":
        return ibm_float(sas_date(value))
    if variable.kind == "datetime":
        return ibm_float(sas_datetime(value))
    if variable.kind == "time":
        return ibm_float(sas_time(value))
    return ibm_float(float(value))


def write(
    write_bytes: Callable[[bytes], object],
    dataset: str,
    label: str,
    variables: Sequence[Variable],
    rows: Iterable[tuple[int, Sequence[Any]]],
    created: datetime,
) -> int:
    """Write the whole file through ``write_bytes``, one observation per (number, values) row.

    Values are None (missing: ``.`` for numbers, blanks for text), str for text, a number,
    date, datetime (timezone-aware) or time for the numeric kinds. Text longer than its
    variable or a number out of the IBM range raises :class:`InterchangeError` naming the row
    and variable. Returns the number of observations.
    """
    write_bytes(header(dataset, label, variables, created))
    count = 0
    size = 0
    for number, values in rows:
        record = []
        for variable, value in zip(variables, values, strict=True):
            try:
                if not variable.numeric:
                    data = b"" if value is None else value.encode("utf-8")
                    if len(data) > variable.length:
                        raise ValueError(
                            f"text of {len(data)} bytes is longer than the column's "
                            f"{variable.length}; give the column a larger length"
                        )
                    record.append(data.ljust(variable.length, b" "))
                else:
                    record.append(MISSING if value is None else _number(variable, value))
            except ValueError as error:
                path = f"rows[{number}].{variable.name}"
                raise InterchangeError([Problem(path, str(error))]) from None
        observation = b"".join(record)
        write_bytes(observation)
        size += len(observation)
        count += 1
    write_bytes(padding(size))
    return count
