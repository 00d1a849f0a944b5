"""Analysis-ready tables a node exposes, loaded column-wise into numpy arrays.

A table is either a file the hospital brings (CSV; Parquet when ``pyarrow`` is
installed), declared in the node config as below, or built from the node's own captured
data (``edc: STUDY``, see :mod:`consortia.federation.edc_tables`)::

    tables:
      cart_efficacy:
        file: data/cart.csv
        columns: {pfs_days: integer, pfs_event: boolean, arm: text, dob: date}
        identifiers: [mrn]

Column types: ``integer``, ``decimal`` and ``boolean`` become ``float64`` arrays (``NaN``
missing, booleans 0/1), ``text`` an ``object`` array of ``str`` (``None`` missing), ``date``
a ``datetime64[D]`` array (``NaT`` missing). When ``columns`` is declared only those
columns enter the table; without it every column does, with its type inferred.
Identifier (PHI) columns never enter a table. Bad values are reported all at once as
``file:line: table.column: expected integer, got 'abc'``.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "trial.csv"
>>> _ = path.write_text("age,arm\\n54,A\\n61,\\n")
>>> table = read_table(path)
>>> table.name, {column: kind.value for column, kind in table.types.items()}, table.n_rows
('trial', {'age': 'integer', 'arm': 'text'}, 2)
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from consortia.exceptions import InterchangeError, Problem

__all__ = [
    "SUBJECT_KEY",
    "SUBJECT_SHIFT",
    "ColumnType",
    "Table",
    "TableSpec",
    "concat_tables",
    "empty_column",
    "infer_type",
    "load_table",
    "read_table",
]

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "."})
TRUE_TOKENS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TOKENS = frozenset({"false", "f", "no", "n", "0"})
MAX_PROBLEMS = 50
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

#: The name a request would use for a per-reading table's subject key: never a column,
#: refused by name (:mod:`consortia.federation.people`).
SUBJECT_KEY = "subject_key"
#: In a per-reading table a row key is its subject's internal key shifted by this many
#: bits (plus the reading's number within the subject): ``key >> SUBJECT_SHIFT`` is the
#: subject, so the release ledger can count the people behind a difference of row sets.
SUBJECT_SHIFT = 32


class ColumnType(StrEnum):
    """The type of one table column."""

    INTEGER = "integer"
    DECIMAL = "decimal"
    TEXT = "text"
    BOOLEAN = "boolean"
    DATE = "date"


class TableSpec(BaseModel):
    """A table declared in the node config: its file, column types and identifier columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Path
    columns: dict[str, ColumnType] | None = None
    identifiers: list[str] = []


@dataclass(frozen=True, eq=False)
class Table:
    """A table held column-wise: one numpy array per column, all of ``n_rows`` length.

    ``row_keys`` identify the rows for the node's release ledger (never released): the
    subjects' internal keys in an EDC table, the row numbers of a file (the default).
    ``dataset`` names what the rows are drawn from, so tables built from one study with
    different filters share one ledger (``edc:CART-LBCL``), as do tables declared over one
    file (``file:/abs/path.csv``); the default is ``table:NAME``.

    ``subject_key`` (a per-reading table only: one row per instance of a repeating group)
    gives each row an opaque number of its subject, the same for all of one subject's rows.
    It is not a column: no request can read it and nothing released carries it; it makes
    every minimum-count check count people (:meth:`people`), not rows. Such a table's
    ``row_keys`` carry the subject too (see ``SUBJECT_SHIFT``).
    """

    name: str
    columns: Mapping[str, npt.NDArray[Any]]
    types: Mapping[str, ColumnType]
    source: str = ""
    n_rows: int = field(default=0)
    row_keys: npt.NDArray[np.int64] | None = field(default=None, kw_only=True)
    dataset: str = field(default="", kw_only=True)
    subject_key: npt.NDArray[np.int64] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        lengths = {column.shape[0] for column in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"table {self.name}: columns differ in length {sorted(lengths)}")
        n_rows = lengths.pop() if lengths else 0
        object.__setattr__(self, "n_rows", n_rows)
        if self.row_keys is None:
            object.__setattr__(self, "row_keys", np.arange(n_rows, dtype=np.int64))
        elif self.row_keys.shape != (n_rows,):
            raise ValueError(f"table {self.name}: {self.row_keys.size} row keys for {n_rows} rows")
        if not self.dataset:
            object.__setattr__(self, "dataset", f"table:{self.name}")
        if self.subject_key is not None and self.subject_key.shape != (n_rows,):
            raise ValueError(
                f"table {self.name}: {self.subject_key.size} subject keys for {n_rows} rows"
            )

    @property
    def per_reading(self) -> bool:
        """Whether several rows may describe one person (the table has a subject key)."""
        return self.subject_key is not None

    def people(self, rows: npt.NDArray[np.bool_] | None = None) -> int:
        """How many people ``rows`` (a mask; every row when ``None``) describe: the
        distinct subjects of a per-reading table, else the number of rows.

        >>> table = Table("t", {"x": np.zeros(4)}, {"x": ColumnType.DECIMAL},
        ...               subject_key=np.array([0, 0, 0, 1]))
        >>> table.people(), table.people(np.array([True, True, False, False])), table.n_rows
        (2, 1, 4)
        """
        if self.subject_key is None:
            return self.n_rows if rows is None else int(np.count_nonzero(rows))
        chosen = self.subject_key if rows is None else self.subject_key[rows]
        return int(np.unique(chosen).size)

    def keys(self, rows: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
        """The sorted row keys of ``rows`` (a mask; every row when ``None``)."""
        keys = self.row_keys if self.row_keys is not None else np.arange(self.n_rows)
        chosen = keys if rows is None else keys[rows]
        return np.sort(np.asarray(chosen, dtype=np.int64))

    def __contains__(self, column: object) -> bool:
        return column in self.columns

    def column(self, name: str) -> npt.NDArray[Any]:
        """Return one column's array (``KeyError`` when the table has no such column)."""
        return self.columns[name]

    def numeric(self, name: str) -> npt.NDArray[np.float64]:
        """Return a column as floats: numbers and booleans as they are, dates as days
        since 1970-01-01; text that is not numeric raises ``ValueError``."""
        values = self.columns[name]
        kind = self.types[name]
        if kind is ColumnType.DATE:
            days = values.astype("datetime64[D]").astype(np.int64).astype(np.float64)
            days[np.isnat(values)] = np.nan
            return days
        if kind is ColumnType.TEXT:
            return np.array(
                [math.nan if value is None else float(value) for value in values], dtype=np.float64
            )
        return np.asarray(values, dtype=np.float64)


def concat_tables(tables: Sequence[Table], *, name: str | None = None) -> Table:
    """Stack tables with the same columns (the pooled reference in tests)."""
    if not tables:
        raise ValueError("no tables to concatenate")
    first = tables[0]
    for table in tables[1:]:
        if dict(table.types) != dict(first.types):
            raise ValueError(f"table {table.name}: columns differ from {first.name}")
    columns = {
        column: np.concatenate([table.columns[column] for table in tables])
        for column in first.columns
    }
    return Table(name or first.name, columns, dict(first.types), "+".join(t.source for t in tables))


# --------------------------------------------------------------------------- parsing


def _is_missing(text: str) -> bool:
    return text.strip().lower() in MISSING_TOKENS


def _parse(text: str, kind: ColumnType) -> Any:
    """Parse one non-missing cell; raise ``ValueError`` with what would be right."""
    value = text.strip()
    if kind is ColumnType.TEXT:
        return text
    if kind is ColumnType.INTEGER:
        if not _INTEGER.match(value):
            raise ValueError("expected integer")
        return float(int(value.split(".")[0]))
    if kind is ColumnType.DECIMAL:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("expected a finite decimal")
        return number
    if kind is ColumnType.BOOLEAN:
        lowered = value.lower()
        if lowered in TRUE_TOKENS:
            return 1.0
        if lowered in FALSE_TOKENS:
            return 0.0
        raise ValueError("expected boolean (true/false, yes/no, 1/0)")
    if not _DATE.match(value):
        raise ValueError("expected date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"expected a valid date ({exc})") from None


def _parses_as(texts: Iterable[str], kind: ColumnType) -> bool:
    try:
        for text in texts:
            _parse(text, kind)
    except ValueError:
        return False
    return True


def infer_type(texts: Sequence[str]) -> ColumnType:
    """Infer a column's type from its cells (missing cells are ignored).

    Integers win over decimals, ``0/1`` stay integers, ISO dates are dates, the rest text.

    >>> [infer_type(cells).value for cells in (["1", ""], ["1.5", "2"], ["yes", "no"], ["a"])]
    ['integer', 'decimal', 'boolean', 'text']
    """
    present = [text for text in texts if not _is_missing(text)]
    if not present:
        return ColumnType.TEXT
    for kind in (ColumnType.INTEGER, ColumnType.DECIMAL, ColumnType.BOOLEAN, ColumnType.DATE):
        if _parses_as(present, kind):
            return kind
    return ColumnType.TEXT


def empty_column(kind: ColumnType, size: int) -> npt.NDArray[Any]:
    """A column of ``size`` missing values of type ``kind`` (``None``, ``NaT`` or ``NaN``)."""
    if kind is ColumnType.TEXT:
        return np.full(size, None, dtype=object)
    if kind is ColumnType.DATE:
        return np.full(size, np.datetime64("NaT"), dtype="datetime64[D]")
    return np.full(size, np.nan, dtype=np.float64)


def _set(array: npt.NDArray[Any], index: int, value: Any, kind: ColumnType) -> None:
    array[index] = np.datetime64(value, "D") if kind is ColumnType.DATE else value


class _Problems:
    def __init__(self, table: str, file: str) -> None:
        self.table, self.file = table, file
        self.items: list[Problem] = []
        self.more = 0

    def add(self, column: str, message: str, line: int = 0) -> None:
        if len(self.items) >= MAX_PROBLEMS:
            self.more += 1
            return
        path = f"{self.table}.{column}" if column else self.table
        self.items.append(Problem(path, message, self.file, line))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        summary = "\n".join(str(problem) for problem in self.items)
        if self.more:
            summary += f"\n… and {self.more} more problems"
        raise InterchangeError(self.items, summary)


def _select_columns(
    header: Sequence[str],
    declared: Mapping[str, ColumnType] | None,
    excluded: set[str],
    problems: _Problems,
) -> list[str]:
    seen: set[str] = set()
    for column in header:
        if column in seen:
            problems.add(column, "the header names this column twice", 1)
        seen.add(column)
    if declared is None:
        return [column for column in header if column not in excluded]
    for column in declared:
        if column in excluded:
            problems.add(column, "is declared as an identifier and cannot be a table column", 1)
        elif column not in seen:
            problems.add(column, f"declared column is missing from the header {list(header)}", 1)
    return [column for column in declared if column in seen and column not in excluded]


def _read_csv(
    path: Path,
    name: str,
    declared: Mapping[str, ColumnType] | None,
    excluded: set[str],
) -> Table:
    problems = _Problems(name, str(path))
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [column.strip() for column in next(reader, [])]
            if not header:
                problems.add("", "the file is empty; the first line must name the columns", 1)
                problems.raise_if_any()
            wanted = _select_columns(header, declared, excluded, problems)
            positions = {column: header.index(column) for column in wanted}
            cells: dict[str, list[str]] = {column: [] for column in wanted}
            lines: list[int] = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    problems.add(
                        "",
                        f"has {len(row)} fields but the header has {len(header)}",
                        reader.line_num,
                    )
                    continue
                lines.append(reader.line_num)
                for column, position in positions.items():
                    cells[column].append(row[position])
    except OSError as exc:
        raise InterchangeError(
            [Problem(name, f"cannot read the file ({exc.strerror})", str(path))]
        ) from None
    except UnicodeDecodeError as exc:
        raise InterchangeError(
            [Problem(name, f"is not UTF-8 text ({exc.reason} at byte {exc.start})", str(path))]
        ) from None
    except csv.Error as exc:
        raise InterchangeError([Problem(name, f"is not valid CSV ({exc})", str(path))]) from None
    arrays: dict[str, npt.NDArray[Any]] = {}
    types: dict[str, ColumnType] = {}
    for column in wanted:
        kind = declared[column] if declared is not None else infer_type(cells[column])
        array = empty_column(kind, len(lines))
        for index, (text, line) in enumerate(zip(cells[column], lines, strict=True)):
            if kind is not ColumnType.TEXT and _is_missing(text):
                continue
            if kind is ColumnType.TEXT and text == "":
                continue
            try:
                _set(array, index, _parse(text, kind), kind)
            except ValueError as exc:
                problems.add(column, f"{exc}, got {text!r}", line)
        arrays[column], types[column] = array, kind
    problems.raise_if_any()
    return Table(name, arrays, types, str(path), dataset=_file_dataset(path))


def _file_dataset(path: Path) -> str:
    """The release ledger's name for a file's rows: one history per file, however many
    tables a node config declares over it."""
    return f"file:{path.resolve()}"


def _python_type(values: Sequence[Any]) -> ColumnType:
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, bool) for value in present):
        return ColumnType.BOOLEAN
    if present and all(isinstance(value, int) for value in present):
        return ColumnType.INTEGER
    if present and all(isinstance(value, int | float) for value in present):
        return ColumnType.DECIMAL
    if present and all(isinstance(value, date) for value in present):
        return ColumnType.DATE
    return ColumnType.TEXT


def _read_parquet(
    path: Path,
    name: str,
    declared: Mapping[str, ColumnType] | None,
    excluded: set[str],
) -> Table:
    try:
        import pyarrow.parquet as parquet  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise InterchangeError(
            [
                Problem(
                    name,
                    "reading Parquet needs the pyarrow package, which is not installed; "
                    "install pyarrow or convert the file to CSV",
                    str(path),
                )
            ]
        ) from None
    problems = _Problems(name, str(path))
    try:
        data: dict[str, list[Any]] = parquet.read_table(path).to_pydict()
    except (OSError, ValueError) as exc:
        raise InterchangeError([Problem(name, f"cannot read Parquet ({exc})", str(path))]) from None
    wanted = _select_columns(list(data), declared, excluded, problems)
    arrays: dict[str, npt.NDArray[Any]] = {}
    types: dict[str, ColumnType] = {}
    for column in wanted:
        values = data[column]
        kind = declared[column] if declared is not None else _python_type(values)
        array = empty_column(kind, len(values))
        for index, value in enumerate(values):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            try:
                parsed = value.isoformat() if isinstance(value, date) else str(value)
                _set(array, index, _parse(parsed, kind), kind)
            except ValueError as exc:
                problems.add(column, f"row {index + 1}: {exc}, got {value!r}")
        arrays[column], types[column] = array, kind
    problems.raise_if_any()
    return Table(name, arrays, types, str(path), dataset=_file_dataset(path))


def read_table(
    path: Path,
    *,
    name: str | None = None,
    columns: Mapping[str, ColumnType | str] | None = None,
    identifiers: Iterable[str] = (),
) -> Table:
    """Read a CSV (or Parquet) file into a :class:`Table` named ``name`` (default: the stem).

    ``columns`` declares the columns and their types (others are left out); without it,
    every column is read with an inferred type. ``identifiers`` are never read.
    """
    table_name = name or path.stem
    declared = None if columns is None else {k: ColumnType(v) for k, v in columns.items()}
    excluded = set(identifiers)
    if path.suffix.lower() in {".parquet", ".pq"}:
        return _read_parquet(path, table_name, declared, excluded)
    if path.suffix.lower() not in {".csv", ".txt"}:
        raise InterchangeError(
            [
                Problem(
                    table_name,
                    f"unknown table format {path.suffix!r}; use .csv or .parquet",
                    str(path),
                )
            ]
        )
    return _read_csv(path, table_name, declared, excluded)


def load_table(
    name: str, spec: TableSpec, *, base_dir: Path | None = None, identifiers: Iterable[str] = ()
) -> Table:
    """Load a table declared in the node config (relative files resolve against ``base_dir``).

    ``identifiers`` adds the policy's identifier columns to the spec's own.
    """
    path = spec.file if spec.file.is_absolute() or base_dir is None else base_dir / spec.file
    return read_table(
        path, name=name, columns=spec.columns, identifiers=[*spec.identifiers, *identifiers]
    )
