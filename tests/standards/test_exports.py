"""Streaming exports: every writer round-trips through an independent reader (the csv module,
pyarrow.parquet, pandas.read_sas, lxml with the official ODM XSD), refuses bad input naming
the row and column, and streams in constant memory."""

from __future__ import annotations

import copy
import csv
import io
import math
import sys
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]

from consortia.domain.study import ItemType, Study
from consortia.domain.templates import load_template
from consortia.exceptions import ConfigurationError, InterchangeError
from consortia.standards import xpt
from consortia.standards.exports import Column, ColumnType, write_csv, write_parquet, write_xpt
from consortia.standards.odm import EXTENDED_SCHEMA, ODM_NS, SCHEMA, export_odm
from consortia.standards.odm_clinical_writer import AuditStamp, ClinicalValue, write_odm_clinical
from consortia.standards.odm_xml import CONSORTIA_NS

NS = {"odm": ODM_NS}
WHEN = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
PLUS_8 = timezone(timedelta(hours=8))

COLUMNS = [
    Column("usubjid", ColumnType.TEXT, "Unique subject identifier", length=40),
    Column("age", ColumnType.INTEGER, "Age (years)"),
    Column("weight", ColumnType.DECIMAL, "Weight (kg)"),
    Column("brthdt", ColumnType.DATE, "Date of birth"),
    Column("randdtm", ColumnType.DATETIME, "Randomisation date and time"),
    Column("dosetm", ColumnType.TIME, "Time of dose"),
    Column("pregnt", ColumnType.BOOLEAN, "Pregnant"),
]
ROWS: list[tuple[object, ...]] = [
    (
        "CART-001",
        54,
        72.5,
        date(1970, 3, 1),
        datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
        time(8, 15),
        False,
    ),
    (
        "CART-002 李雷",
        -3,
        0.0,
        date(1959, 12, 31),
        datetime(1960, 1, 1, tzinfo=UTC),
        time(0, 0),
        True,
    ),
    (
        'comma, "quote"\nand a new line',
        2**53,
        Decimal("1E-7"),
        date(1960, 1, 1),
        datetime(2024, 5, 2, 1, 30, 15, 500_000, tzinfo=PLUS_8),  # 2024-05-01T17:30:15.5Z
        time(23, 59, 59, 500_000),
        None,
    ),
    ('=HYPERLINK("http://evil")', 0, float("nan"), None, None, None, True),
    (None, None, None, None, None, None, None),
    ("CART-006", 7, -1234567.125, date(2099, 12, 31), WHEN, time(12, 0, 0, 250_000), False),
]
# What every reader should give back (datetimes in UTC, NaN as missing, Decimal as float)
EXPECTED: list[tuple[object, ...]] = [
    ROWS[0],
    ROWS[1],
    (
        ROWS[2][0],
        2**53,
        1e-7,
        date(1960, 1, 1),
        datetime(2024, 5, 1, 17, 30, 15, 500_000, tzinfo=UTC),
        time(23, 59, 59, 500_000),
        None,
    ),
    (ROWS[3][0], 0, None, None, None, None, True),
    ROWS[4],
    ROWS[5],
]


class _Discard(io.RawIOBase):
    """A write-only file that keeps nothing, only counts (so the output costs no memory)."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.size += len(data)
        return len(data)


def _xpt(columns: Sequence[Column], rows: Any, out: BinaryIO) -> int:
    return write_xpt(columns, rows, out, dataset="ADSL", created=WHEN)


WRITERS: dict[str, Callable[[Sequence[Column], Any, BinaryIO], int]] = {
    "csv": write_csv,
    "parquet": write_parquet,
    "xpt": _xpt,
}


# --- CSV -------------------------------------------------------------------------------------


def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_round_trips_every_type_with_iso_dates_and_redcap_booleans() -> None:
    out = io.BytesIO()
    assert write_csv(COLUMNS, iter(ROWS), out) == len(ROWS)
    data = out.getvalue()
    assert not data.startswith(b"\xef\xbb\xbf")
    table = _csv_rows(data)
    assert table[0] == [column.name for column in COLUMNS]
    assert table[1:] == [
        ["CART-001", "54", "72.5", "1970-03-01", "2024-05-01T09:30:00+00:00", "08:15:00", "0"],
        ["CART-002 李雷", "-3", "0.0", "1959-12-31", "1960-01-01T00:00:00+00:00", "00:00:00", "1"],
        [
            'comma, "quote"\nand a new line',
            "9007199254740992",
            "0.0000001",
            "1960-01-01",
            "2024-05-01T17:30:15.500000+00:00",
            "23:59:59.500000",
            "",
        ],
        ['\'=HYPERLINK("http://evil")', "0", "", "", "", "", "1"],
        ["", "", "", "", "", "", ""],
        [
            "CART-006",
            "7",
            "-1234567.125",
            "2099-12-31",
            "2024-05-01T09:30:00+00:00",
            "12:00:00.250000",
            "0",
        ],
    ]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_prefixes_text_a_spreadsheet_would_run_as_a_formula(start: str) -> None:
    columns = [Column("note", ColumnType.TEXT), Column("n", ColumnType.INTEGER)]
    out = io.BytesIO()
    write_csv(columns, [(f"{start}1+1", -5), ("safe =1", -5)], out)
    assert _csv_rows(out.getvalue())[1:] == [[f"'{start}1+1", "-5"], ["safe =1", "-5"]]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1e-7, "0.0000001"),
        (1e22, "10000000000000000000000"),
        (-2.5e-10, "-0.00000000025"),
        (0.1, "0.1"),
        (1 / 3, "0.3333333333333333"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0.000001"), "-0.000001"),
        (Decimal("12.50"), "12.50"),
        (7, "7"),
    ],
)
def test_csv_writes_decimals_without_an_exponent_and_exactly(value: object, shown: str) -> None:
    out = io.BytesIO()
    write_csv([Column("x", ColumnType.DECIMAL)], [(value,)], out)
    cell = _csv_rows(out.getvalue())[1][0]
    assert cell == shown
    assert "e" not in cell.lower()
    assert (
        Decimal(cell) == Decimal(str(value)) if isinstance(value, Decimal) else float(cell) == value
    )


# --- Parquet ---------------------------------------------------------------------------------


def test_parquet_round_trips_every_type_with_arrow_types_and_labels() -> None:
    out = io.BytesIO()
    assert write_parquet(COLUMNS, iter(ROWS), out) == len(ROWS)
    table = pq.read_table(io.BytesIO(out.getvalue()))
    assert [field.type for field in table.schema] == [
        pa.string(),
        pa.int64(),
        pa.float64(),
        pa.date32(),
        pa.timestamp("us", tz="UTC"),
        pa.time64("us"),
        pa.bool_(),
    ]
    assert [field.metadata[b"label"].decode() for field in table.schema] == [
        column.label for column in COLUMNS
    ]
    assert [tuple(row.values()) for row in table.to_pylist()] == EXPECTED
    assert table.column("weight").null_count == 2  # None and NaN


def test_parquet_writes_one_row_group_per_batch() -> None:
    out = io.BytesIO()
    rows = ((f"S{i}", i) for i in range(10))
    columns = [Column("id", ColumnType.TEXT), Column("n", ColumnType.INTEGER)]
    assert write_parquet(columns, rows, out, batch_rows=4) == 10
    parquet = pq.ParquetFile(io.BytesIO(out.getvalue()))
    assert [parquet.metadata.row_group(i).num_rows for i in range(3)] == [4, 4, 2]
    assert parquet.read().column("n").to_pylist() == list(range(10))
    with pytest.raises(ValueError, match="batch_rows"):
        write_parquet(columns, [], io.BytesIO(), batch_rows=0)


def test_parquet_without_rows_is_a_valid_file_with_the_schema() -> None:
    out = io.BytesIO()
    assert write_parquet(COLUMNS, [], out) == 0
    table = pq.read_table(io.BytesIO(out.getvalue()))
    assert table.num_rows == 0
    assert table.column_names == [column.name for column in COLUMNS]


def test_parquet_without_pyarrow_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = io.BytesIO()
    with pytest.raises(ConfigurationError, match=r"pip install 'consortia\[parquet\]'"):
        write_parquet(COLUMNS, ROWS, out)
    assert out.getvalue() == b""


# --- XPT: IBM floating point -----------------------------------------------------------------


def _from_ibm(data: bytes) -> float:
    """An independent decoder, exact with fractions: sign, excess-64 base-16 exponent,
    56-bit fraction."""
    sign = -1 if data[0] & 0x80 else 1
    fraction = Fraction(int.from_bytes(data[1:], "big"), 1 << 56)
    return float(sign * fraction * Fraction(16) ** ((data[0] & 0x7F) - 64))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0000000000000000"),
        (-0.0, "0000000000000000"),
        (1.0, "4110000000000000"),
        (-1.0, "c110000000000000"),
        (0.1, "401999999999999a"),
        (100.0, "4264000000000000"),
        (-118.625, "c276a00000000000"),  # the classic IBM example (C276A000 in single precision)
        (123456789.0, "4775bcd150000000"),
        (2.0**53, "4e20000000000000"),
        (xpt.SMALLEST, "0010000000000000"),
        (xpt.LARGEST, "7ffffffffffffff8"),
        (-xpt.LARGEST, "fffffffffffffff8"),
    ],
)
def test_ibm_floats_have_the_published_bit_patterns(value: float, expected: str) -> None:
    assert xpt.ibm_float(value).hex() == expected


@pytest.mark.parametrize("value", [xpt.SMALLEST / 2, 1e-80, 5e-324, -1e-300])
def test_magnitudes_below_the_ibm_range_are_written_as_zero(value: float) -> None:
    assert xpt.ibm_float(value) == bytes(8)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e76, -1e76, 16.0**63])
def test_values_ibm_cannot_hold_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="IBM float"):
        xpt.ibm_float(value)


@given(
    st.floats(min_value=-xpt.LARGEST, max_value=xpt.LARGEST).filter(
        lambda x: x == 0 or abs(x) >= xpt.SMALLEST
    )
)
def test_every_double_in_the_ibm_range_converts_exactly(value: float) -> None:
    assert _from_ibm(xpt.ibm_float(value)) == value


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_integers_up_to_2_to_the_53_convert_exactly(value: int) -> None:
    assert _from_ibm(xpt.ibm_float(float(value))) == value


# --- XPT: files ------------------------------------------------------------------------------


def _pandas_number(value: float) -> float:
    # pandas decodes IBM zero (eight zero bytes, which is what SAS writes) as 16**-65:
    # https://github.com/pandas-dev/pandas/issues/50670
    return 0.0 if value == xpt.SMALLEST else value


def _sas_number(value: object) -> float:
    if value is None:
        return math.nan
    if isinstance(value, datetime):
        return (value - datetime(1960, 1, 1, tzinfo=UTC)).total_seconds()
    if isinstance(value, date):
        return float((value - date(1960, 1, 1)).days)
    if isinstance(value, time):
        return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    return float(value)  # type: ignore[arg-type]


def test_xpt_round_trips_through_pandas_read_sas_value_by_value(tmp_path: Path) -> None:
    path = tmp_path / "adsl.xpt"
    with path.open("wb") as out:
        assert write_xpt(COLUMNS, iter(ROWS), out, dataset="adsl", label="Subject level") == 6
    frame = pd.read_sas(path, format="xport", encoding="utf-8")
    assert list(frame.columns) == [column.name.upper() for column in COLUMNS]
    assert len(frame) == len(EXPECTED)
    for index, expected in enumerate(EXPECTED):
        got = frame.iloc[index].tolist()
        assert got[0] == (expected[0] or ""), index
        for column, want, have in zip(COLUMNS[1:], expected[1:], got[1:], strict=True):
            if want is None:
                assert math.isnan(have), (index, column.name)
            else:
                assert _pandas_number(have) == _sas_number(want), (index, column.name)
    # the SAS numbers mean the right days and instants
    assert pd.to_datetime(frame["BRTHDT"][0], unit="D", origin="1960-01-01").date() == date(
        1970, 3, 1
    )
    assert datetime(1960, 1, 1, tzinfo=UTC) + timedelta(seconds=frame["RANDDTM"][2]) == (
        datetime(2024, 5, 1, 17, 30, 15, 500_000, tzinfo=UTC)
    )


def test_xpt_headers_carry_names_labels_formats_and_the_data_set(tmp_path: Path) -> None:
    path = tmp_path / "adsl.xpt"
    with path.open("wb") as out:
        write_xpt(COLUMNS, ROWS, out, dataset="adsl", label="Subject level", created=WHEN)
    data = path.read_bytes()
    assert len(data) % 80 == 0
    assert data[:80] == b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!" + b"0" * 30 + b"  "
    assert data[80:104] == b"SAS     SAS     SASLIB  "
    assert data[144:160] == b"01MAY24:09:30:00"
    assert b"0007" + b"0" * 20 in data  # the NAMESTR header's variable count
    with pd.read_sas(path, format="xport", iterator=True) as reader:
        fields = reader.fields
        assert reader.member_info["set_name"] == "ADSL"
        assert reader.member_info["label"] == "Subject level"
        assert reader.file_info["created"] == datetime(2024, 5, 1, 9, 30)
    assert [f["name"] for f in fields] == [c.name.upper().encode() for c in COLUMNS]
    assert [f["label"].decode() for f in fields] == [c.label for c in COLUMNS]
    assert [(f["ntype"], f["field_length"]) for f in fields] == [("char", 40)] + [
        ("numeric", 8)
    ] * 6
    assert [(f["nform"], f["nfl"]) for f in fields] == [
        (b"", 0),
        (b"", 0),
        (b"", 0),
        (b"DATE", 9),
        (b"DATETIME", 20),
        (b"TIME", 8),
        (b"", 0),
    ]
    assert [f["npos"] for f in fields] == [0, 40, 48, 56, 64, 72, 80]
    observations = data.index(b"HEADER RECORD*******OBS     HEADER RECORD") + 80
    third_row = observations + 2 * 88
    assert data[third_row + 80 : third_row + 88] == xpt.MISSING  # PREGNT is None
    assert data[observations : observations + 8] == b"CART-001"


def test_xpt_edge_numbers_read_back_through_pandas(tmp_path: Path) -> None:
    values = [0.0, -0.0, 1.0, -1.0, 0.1, -118.625, 1e-78, 1e75, -1e75, 2.0**53, 123456789.0]
    path = tmp_path / "edge.xpt"
    with path.open("wb") as out:
        write_xpt([Column("x", ColumnType.DECIMAL)], [(v,) for v in values], out, dataset="E")
    frame = pd.read_sas(path, format="xport")
    assert [_pandas_number(v) for v in frame["X"]] == values


def test_xpt_refuses_bad_names_and_labels_all_at_once_naming_each_column() -> None:
    columns = [
        Column("subject_id", ColumnType.TEXT),  # 10 characters
        Column("1abc", ColumnType.INTEGER),
        Column("age", ColumnType.INTEGER),
        Column("AGE", ColumnType.DECIMAL),
        Column("wt", ColumnType.DECIMAL, label="x" * 41),
        Column("ht", ColumnType.DECIMAL, label="身高"),
        Column("notes", ColumnType.TEXT, length=201),
    ]
    out = io.BytesIO()
    with pytest.raises(InterchangeError) as caught:
        write_xpt(columns, [], out, dataset="ad-sl", label="é")
    problems = {problem.path: problem.message for problem in caught.value.problems}
    assert set(problems) == {
        "dataset",
        "label",
        "columns[0] (subject_id)",
        "columns[1] (1abc)",
        "columns[3] (AGE)",
        "columns[4] (wt)",
        "columns[5] (ht)",
        "columns[6] (notes)",
    }
    assert "SAS version 5 name" in problems["columns[0] (subject_id)"]
    assert "used twice" in problems["columns[3] (AGE)"]
    assert "41 characters" in problems["columns[4] (wt)"]
    assert "ASCII" in problems["columns[5] (ht)"]
    assert "200" in problems["columns[6] (notes)"]
    assert out.getvalue() == b""


def test_xpt_text_longer_than_its_column_is_refused_naming_row_and_column() -> None:
    columns = [Column("id", ColumnType.TEXT, length=20)]
    rows = [("S-001",), ("李" * 7,)]  # 7 characters, 21 bytes of UTF-8
    with pytest.raises(InterchangeError) as caught:
        write_xpt(columns, rows, io.BytesIO(), dataset="DM")
    [problem] = caught.value.problems
    assert problem.path == "rows[2].id"
    assert "21 bytes" in problem.message
    assert "20" in problem.message


def test_xpt_refuses_a_number_beyond_the_ibm_range_naming_row_and_column() -> None:
    with pytest.raises(InterchangeError) as caught:
        write_xpt([Column("x", ColumnType.DECIMAL)], [(1.0,), (1e300,)], io.BytesIO(), dataset="D")
    assert caught.value.problems[0].path == "rows[2].x"
    assert "IBM float range" in caught.value.problems[0].message


def test_xpt_is_reproducible_with_a_given_creation_time() -> None:
    first, second = io.BytesIO(), io.BytesIO()
    _xpt(COLUMNS, ROWS, first)
    _xpt(COLUMNS, ROWS, second)
    assert first.getvalue() == second.getvalue()


# --- bad rows, for every row writer ----------------------------------------------------------


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (Column("weight", ColumnType.DECIMAL), "12,5", "str '12,5' is not a decimal"),
        (Column("weight", ColumnType.DECIMAL), math.inf, "not a finite number"),
        (Column("age", ColumnType.INTEGER), True, "bool 'True' is not an integer"),
        (Column("age", ColumnType.INTEGER), 2**63, "64-bit"),
        (Column("brthdt", ColumnType.DATE), WHEN, "is not a date"),
        (Column("randdtm", ColumnType.DATETIME), datetime(2024, 1, 1), "has no time zone"),
        (Column("dosetm", ColumnType.TIME), time(8, tzinfo=UTC), "has a time zone"),
        (Column("pregnt", ColumnType.BOOLEAN), 1, "int '1' is not a boolean"),
        (Column("usubjid", ColumnType.TEXT), 42, "int '42' is not text"),
    ],
)
def test_a_bad_value_is_refused_naming_its_row_and_column(
    writer: str, column: Column, value: object, message: str
) -> None:
    columns = [Column("n", ColumnType.INTEGER), column]
    rows = [(1, None), (2, value)]
    with pytest.raises(InterchangeError) as caught:
        WRITERS[writer](columns, iter(rows), io.BytesIO())
    [problem] = caught.value.problems
    assert problem.path == f"rows[2].{column.name}"
    assert message in problem.message


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_row_of_the_wrong_length_is_refused_naming_it(writer: str) -> None:
    with pytest.raises(InterchangeError, match=r"rows\[3\]: the row has 2 values for 7 columns"):
        WRITERS[writer](COLUMNS, [*ROWS[:2], ROWS[0][:2]], io.BytesIO())


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_bad_columns_are_refused_together_before_anything_is_written(writer: str) -> None:
    columns = [
        Column("a", ColumnType.TEXT),
        Column("a", ColumnType.INTEGER),
        Column("", ColumnType.DECIMAL),
        Column("b", ColumnType.TEXT, length=0),
    ]
    out = io.BytesIO()
    with pytest.raises(InterchangeError) as caught:
        WRITERS[writer](columns, ROWS, out)
    messages = [str(problem) for problem in caught.value.problems]
    assert any("columns[1]" in m and "used twice" in m for m in messages)
    assert any("columns[2]" in m and "no name" in m for m in messages)
    assert any("columns[3]" in m and "at least 1" in m for m in messages)
    assert out.getvalue() == b""
    with pytest.raises(InterchangeError, match="at least one column"):
        WRITERS[writer]([], [], io.BytesIO())


# --- ODM ClinicalData ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA), parser))


def _parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml, etree.XMLParser(no_network=True, resolve_entities=False))


def _assert_valid(schema: etree.XMLSchema, document: etree._Element) -> None:
    assert schema.validate(document), "\n".join(str(e) for e in schema.error_log)


def _odm(records: Sequence[ClinicalValue] | Iterator[ClinicalValue]) -> bytes:
    out = io.BytesIO()
    write_odm_clinical(
        records, out, study_oid="S.T", metadata_version_oid="MDV.1", file_oid="T.1", creation=WHEN
    )
    return out.getvalue()


def _value(
    subject: str,
    item: str,
    value: str | None,
    *,
    event: str = "SE.visit",
    event_repeat: str | None = None,
    group: str = "IG.labs.values",
    group_repeat: str | None = None,
    site: str | None = "LOC.SG01",
    **extra: Any,
) -> ClinicalValue:
    return ClinicalValue(
        subject,
        site,
        event,
        event_repeat,
        "F.labs",
        None,
        group,
        group_repeat,
        item,
        value,
        **extra,
    )


_SAMPLES = {
    ItemType.TEXT: 'free text & <more> "quoted"\nsecond line 第二行',
    ItemType.INTEGER: "3",
    ItemType.DECIMAL: "72.5",
    ItemType.DATE: "2024-05-01",
    ItemType.DATETIME: "2024-05-01T09:30:00+00:00",
    ItemType.TIME: "09:30:00",
    ItemType.BOOLEAN: "1",
    ItemType.FILE: "files/scan.pdf",
}


def _study_values(study: Study, units: dict[str, str]) -> Iterator[ClinicalValue]:
    """Two subjects with a value (some null, some audited) for every item of every form of
    every event, two repeats of repeating events and groups, sorted as the writer needs."""
    for subject, site in (("CART-001", "SG01"), ("CART-002", "SH01")):
        for event_name, event in study.events.items():
            for event_repeat in ("1", "2") if event.repeating else (None,):
                for form_name in event.forms:
                    for group_name, group in study.forms[form_name].groups.items():
                        for group_repeat in ("1", "2") if group.repeating else (None,):
                            for index, (item_name, item) in enumerate(group.items.items()):
                                if item.code_list:
                                    sample = study.code_lists[item.code_list][0].code
                                else:
                                    sample = _SAMPLES[item.type]
                                audit = AuditStamp(
                                    "USR.monitor", f"LOC.{site}", WHEN, "Corrected typo", "db:1"
                                )
                                yield ClinicalValue(
                                    subject,
                                    f"LOC.{site}",
                                    f"SE.{event_name}",
                                    event_repeat,
                                    f"F.{form_name}",
                                    None,
                                    f"IG.{form_name}.{group_name}",
                                    group_repeat,
                                    f"I.{item_name}",
                                    None if index % 4 == 3 else sample,
                                    audit=audit if index == 0 else None,
                                    unit_oid=units[item.unit] if item.unit else None,
                                )


def test_clinical_data_for_a_template_study_is_valid_odm_alone_and_with_its_metadata(
    schema: etree.XMLSchema,
) -> None:
    study = load_template("cart-lbcl")
    metadata = _parse(export_odm(study, creation_datetime=WHEN))
    units = {
        unit.findtext("odm:Symbol/odm:TranslatedText", namespaces=NS): unit.get("OID")
        for unit in metadata.iterfind(".//odm:MeasurementUnit", NS)
    }
    study_oid = metadata.find("odm:Study", NS).get("OID")
    version_oid = metadata.find(".//odm:MetaDataVersion", NS).get("OID")
    records = list(_study_values(study, units))
    out = io.BytesIO()
    count = write_odm_clinical(
        iter(records),
        out,
        study_oid=study_oid,
        metadata_version_oid=version_oid,
        file_oid="CART-LBCL.data.1",
        creation=WHEN,
    )
    assert count == len(records) > 200
    clinical = _parse(out.getvalue())
    _assert_valid(schema, clinical)  # an ODM file with only ClinicalData is valid on its own

    # every reference resolves in the metadata export
    defined = {
        (element.tag.split("}")[1], element.get("OID"))
        for element in metadata.iter()
        if element.get("OID")
    }
    for tag, attribute, definition in [
        ("StudyEventData", "StudyEventOID", "StudyEventDef"),
        ("FormData", "FormOID", "FormDef"),
        ("ItemGroupData", "ItemGroupOID", "ItemGroupDef"),
        ("ItemData", "ItemOID", "ItemDef"),
        ("MeasurementUnitRef", "MeasurementUnitOID", "MeasurementUnit"),
    ]:
        used = {e.get(attribute) for e in clinical.iterfind(f".//odm:{tag}", NS)}
        assert used
        assert {(definition, oid) for oid in used} <= defined, tag
    data = clinical.find("odm:ClinicalData", NS)
    assert (data.get("StudyOID"), data.get("MetaDataVersionOID")) == (study_oid, version_oid)

    # together with the metadata it is one valid Snapshot
    metadata.append(copy.deepcopy(data))
    _assert_valid(schema, metadata)

    # every value comes back under its keys
    found = {}
    for item in clinical.iterfind(".//odm:ItemData", NS):
        group = item.getparent()
        form = group.getparent()
        event = form.getparent()
        subject = event.getparent()
        key = (
            subject.get("SubjectKey"),
            event.get("StudyEventOID"),
            event.get("StudyEventRepeatKey"),
            form.get("FormOID"),
            group.get("ItemGroupOID"),
            group.get("ItemGroupRepeatKey"),
            item.get("ItemOID"),
        )
        assert (item.get("Value") is None) == (item.get("IsNull") == "Yes")
        found[key] = item.get("Value")
    assert found == {
        (
            r.subject_key,
            r.event_oid,
            r.event_repeat_key,
            r.form_oid,
            r.group_oid,
            r.group_repeat_key,
            r.item_oid,
        ): r.value
        for r in records
    }
    assert len(clinical.findall(".//odm:SubjectData", NS)) == 2
    assert [s.get("LocationOID") for s in clinical.iterfind(".//odm:SiteRef", NS)] == [
        "LOC.SG01",
        "LOC.SH01",
    ]
    audits = clinical.findall(".//odm:AuditRecord", NS)
    assert audits
    assert audits[0].findtext("odm:ReasonForChange", namespaces=NS) == "Corrected typo"


def test_clinical_data_opens_and_closes_elements_as_the_keys_change(
    schema: etree.XMLSchema,
) -> None:
    records = [
        _value("001", "I.hb", "12.5", event_repeat="1", group_repeat="1"),
        _value("001", "I.lab_date", "2024-05-01", event_repeat="1", group_repeat="1"),
        _value("001", "I.hb", None, event_repeat="1", group_repeat="2"),
        _value("001", "I.hb", "11", event_repeat="2", group_repeat="1"),
        _value("002", "I.hb", "9.8", site=None, event_repeat="1", group_repeat="1"),
    ]
    root = _parse(_odm(records))
    _assert_valid(schema, root)
    subjects = root.findall(".//odm:SubjectData", NS)
    assert [s.get("SubjectKey") for s in subjects] == ["001", "002"]
    assert [len(s.findall("odm:SiteRef", NS)) for s in subjects] == [1, 0]
    events = subjects[0].findall("odm:StudyEventData", NS)
    assert [e.get("StudyEventRepeatKey") for e in events] == ["1", "2"]
    groups = events[0].findall("odm:FormData/odm:ItemGroupData", NS)
    assert [g.get("ItemGroupRepeatKey") for g in groups] == ["1", "2"]
    assert [i.get("ItemOID") for i in groups[0]] == ["I.hb", "I.lab_date"]
    null = groups[1][0]
    assert null.get("IsNull") == "Yes"
    assert "Value" not in null.attrib
    assert root.get("FileType") == "Snapshot"
    assert root.get("ODMVersion") == "1.3.2"
    assert root.get("CreationDateTime") == "2024-05-01T09:30:00+00:00"


def test_clinical_values_keep_every_character_xml_can_hold(schema: etree.XMLSchema) -> None:
    awkward = "quote \" apostrophe ' <tag> & amp;\ttab\r\nnew line 中文 \U0001f600"
    root = _parse(_odm([_value("a&b <c>", "I.note", awkward, unit_oid="MU.1")]))
    _assert_valid(schema, root)
    item = root.find(".//odm:ItemData", NS)
    assert item.get("Value") == awkward
    assert item.find("odm:MeasurementUnitRef", NS).get("MeasurementUnitOID") == "MU.1"
    assert root.find(".//odm:SubjectData", NS).get("SubjectKey") == "a&b <c>"


@pytest.mark.parametrize(
    ("records", "path", "message"),
    [
        (
            [
                _value("001", "I.hb", "1", event="SE.a"),
                _value("001", "I.hb", "1", event="SE.b"),
                _value("001", "I.hb", "1", event="SE.a"),
            ],
            "records[3].event_oid",
            "StudyEventData SE.a appears again after other data",
        ),
        (
            [
                _value("001", "I.hb", "1", group_repeat="1"),
                _value("001", "I.hb", "1", group_repeat="2"),
                _value("001", "I.hb", "1", group_repeat="1"),
            ],
            "records[3].group_oid",
            "ItemGroupData IG.labs.values repeat 1 appears again",
        ),
        (
            [_value("001", "I.hb", "1"), _value("001", "I.hb", "2")],
            "records[2].item_oid",
            "I.hb appears twice in the same item group",
        ),
        (
            [_value("001", "I.hb", "1"), _value("001", "I.wt", "2", site="LOC.SH01")],
            "records[2].site_oid",
            "'LOC.SH01' differs from the subject's earlier 'LOC.SG01'",
        ),
        (
            [_value("001", "I.hb", "bell \x07")],
            "records[1].value",
            "cannot be written in XML",
        ),
        (
            [_value("001", "I.hb", "1", event_repeat="")],
            "records[1].event_repeat_key",
            "must not be empty",
        ),
        (
            [_value("", "I.hb", "1")],
            "records[1].subject_key",
            "must not be empty",
        ),
        (
            [_value("001", "I.hb", "1", audit=AuditStamp("U", "L", datetime(2024, 1, 1)))],
            "records[1].audit.at",
            "needs a time zone",
        ),
    ],
)
def test_clinical_records_out_of_order_or_unwritable_are_refused_naming_the_record(
    records: list[ClinicalValue], path: str, message: str
) -> None:
    with pytest.raises(InterchangeError) as caught:
        _odm(records)
    [problem] = caught.value.problems
    assert problem.path == path
    assert message in problem.message


# ODM's rule for vendor extensions: a file with them is valid against the schema extended by
# redefinition (as OpenClinica extends it), and removing them leaves a valid ODM file. The
# extended schema ships with the package, for receivers of our files.
@pytest.fixture(scope="module")
def extended_schema() -> etree.XMLSchema:
    """The official XSD with ``FormData/@consortia:Complete`` added by redefinition."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(EXTENDED_SCHEMA), parser))


def test_form_statuses_go_on_form_data_as_our_extension_attribute(
    schema: etree.XMLSchema, extended_schema: etree.XMLSchema
) -> None:
    records = [
        _value("001", "I.hb", "12.5", event="SE.a", form_complete=True),
        _value("001", "I.wt", "70", event="SE.a", form_complete=True),
        _value("001", "I.hb", "11", event="SE.b", form_complete=False),
        _value("002", "I.hb", "9.8", event="SE.a"),  # no status: no attribute
    ]
    xml = _odm(records)
    assert f'xmlns:consortia="{CONSORTIA_NS}"'.encode() in xml
    root = _parse(xml)
    status = f"{{{CONSORTIA_NS}}}Complete"
    assert [form.get(status) for form in root.iterfind(".//odm:FormData", NS)] == [
        "Yes",
        "No",
        None,
    ]
    _assert_valid(extended_schema, root)
    assert not schema.validate(root)  # the official XSD alone has no room for it
    for form in root.iterfind(".//odm:FormData", NS):
        form.attrib.pop(status, None)
    _assert_valid(schema, root)  # without the extension, plain valid ODM
    spoiled = _parse(xml.replace(b'consortia:Complete="No"', b'consortia:Complete="Maybe"'))
    assert not extended_schema.validate(spoiled)
    shipped = etree.parse(str(EXTENDED_SCHEMA.parent / "consortia-odm-extension.xsd"))
    assert shipped.getroot().get("targetNamespace") == CONSORTIA_NS


def test_records_of_one_form_that_disagree_on_its_status_are_refused() -> None:
    records = [
        _value("001", "I.hb", "1", form_complete=True),
        _value("001", "I.wt", "2", form_complete=False),
    ]
    with pytest.raises(InterchangeError) as caught:
        _odm(records)
    [problem] = caught.value.problems
    assert problem.path == "records[2].form_complete"
    assert problem.message == "False differs from the form's earlier True"


def test_an_odm_file_needs_an_aware_creation_time() -> None:
    with pytest.raises(InterchangeError, match="time zone"):
        write_odm_clinical(
            [],
            io.BytesIO(),
            study_oid="S",
            metadata_version_oid="M",
            file_oid="F",
            creation=datetime(2024, 1, 1),
        )


def test_an_empty_clinical_data_is_still_a_valid_file(schema: etree.XMLSchema) -> None:
    _assert_valid(schema, _parse(_odm([])))


# --- constant memory -------------------------------------------------------------------------

MEMORY_ROWS = 300_000
MEMORY_BOUND = 20_000_000
"""Peak traced memory allowed while streaming MEMORY_ROWS rows. Materialising a third of those
rows as tuples already takes more (see the control test below); a streaming writer holds one
row, a 64 KiB buffer and, for Parquet, one batch of 65,536 rows (about 8 MB)."""

MEMORY_COLUMNS = [
    Column("usubjid", ColumnType.TEXT, length=12),
    Column("seq", ColumnType.INTEGER),
    Column("aval", ColumnType.DECIMAL),
    Column("adt", ColumnType.DATE),
    Column("adtm", ColumnType.DATETIME),
    Column("flag", ColumnType.BOOLEAN),
]


def _many_rows(count: int) -> Iterator[tuple[object, ...]]:
    start = date(2020, 1, 1)
    for index in range(count):
        yield (
            f"CART-{index:07d}",
            index * 1000,
            index * 0.5 if index % 10 else None,
            start + timedelta(days=index % 3000),
            WHEN + timedelta(seconds=index),
            index % 2 == 0,
        )


def _peak(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_memory_bound_would_catch_rows_being_materialised() -> None:
    assert _peak(lambda: list(_many_rows(MEMORY_ROWS // 3))) > MEMORY_BOUND


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["csv", "parquet"])
def test_300000_rows_stream_through_in_constant_memory(writer: str) -> None:
    # pyarrow is imported above: its import alone allocates some 30 MB of Python objects
    previous_pool = pa.default_memory_pool()
    arrow_pool = pa.proxy_memory_pool(previous_pool)  # Arrow's buffers are not traced
    pa.set_memory_pool(arrow_pool)
    out = _Discard()
    counted: list[int] = []
    try:
        peak = _peak(
            lambda: counted.append(WRITERS[writer](MEMORY_COLUMNS, _many_rows(MEMORY_ROWS), out))
        )
    finally:
        pa.set_memory_pool(previous_pool)
    assert counted == [MEMORY_ROWS]
    assert out.size > 5_000_000  # the rows really were written
    assert peak < MEMORY_BOUND, f"peak traced memory {peak / 1e6:.1f} MB"
    assert arrow_pool.max_memory() < MEMORY_BOUND, (
        f"Arrow peak {arrow_pool.max_memory() / 1e6:.1f} MB"
    )
