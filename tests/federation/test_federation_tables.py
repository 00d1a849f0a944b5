"""Tables a node exposes: CSV files loaded column-wise with declared or inferred types,
precise ``file:line`` errors, identifier columns left out."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from consortia.exceptions import InterchangeError
from consortia.federation.tables import ColumnType, TableSpec, load_table, read_table


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_declared_columns_load_into_typed_numpy_arrays_and_others_are_left_out(
    tmp_path: Path,
) -> None:
    write(
        tmp_path / "cart.csv",
        "mrn,age,weight,arm,responded,infusion,notes\n"
        "M1,54,70.5,car_t,yes,2024-03-01,x\n"
        "M2,,81.25,soc,no,,y\n",
    )
    spec = TableSpec(
        file=Path("cart.csv"),
        columns={
            "age": "integer",
            "weight": "decimal",
            "arm": "text",
            "responded": "boolean",
            "infusion": "date",
        },
        identifiers=["mrn"],
    )
    table = load_table("cart_efficacy", spec, base_dir=tmp_path)
    assert table.name == "cart_efficacy"
    assert table.n_rows == 2
    assert list(table.columns) == ["age", "weight", "arm", "responded", "infusion"]
    np.testing.assert_array_equal(table.column("age"), [54.0, np.nan])
    np.testing.assert_array_equal(table.column("weight"), [70.5, 81.25])
    assert table.column("arm").tolist() == ["car_t", "soc"]
    np.testing.assert_array_equal(table.column("responded"), [1.0, 0.0])
    assert table.column("infusion").dtype == np.dtype("datetime64[D]")
    assert np.isnat(table.column("infusion")[1])
    assert table.numeric("infusion")[0] == (
        np.datetime64("2024-03-01") - np.datetime64("1970-01-01")
    ).astype(int)


def test_types_are_inferred_when_not_declared_and_the_table_is_named_after_the_file(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "trial.csv", "n,x,flag,day,site\n1,1.5,true,2024-01-02,A\n2,NA,false,,B\n"
    )
    table = read_table(path)
    assert table.name == "trial"
    assert {column: kind.value for column, kind in table.types.items()} == {
        "n": "integer",
        "x": "decimal",
        "flag": "boolean",
        "day": "date",
        "site": "text",
    }


def test_bad_values_are_all_reported_with_file_line_column_and_expected_type(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "t.csv", "age,visit\n54,2024-01-01\nfifty,2024-13-01\n6.5,soon\n")
    with pytest.raises(InterchangeError) as error:
        read_table(path, columns={"age": "integer", "visit": "date"})
    messages = [str(problem) for problem in error.value.problems]
    assert messages == [
        f"{path}:3:0: t.age: expected integer, got 'fifty'",
        f"{path}:4:0: t.age: expected integer, got '6.5'",
        f"{path}:3:0: t.visit: expected a valid date (month must be in 1..12), got '2024-13-01'",
        f"{path}:4:0: t.visit: expected date as YYYY-MM-DD, got 'soon'",
    ]


def test_a_declared_column_missing_from_the_header_and_a_short_row_are_reported(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "t.csv", "age,arm\n54,A\n61\n")
    with pytest.raises(InterchangeError) as error:
        read_table(path, columns={"age": ColumnType.INTEGER, "dose": ColumnType.DECIMAL})
    messages = [str(problem) for problem in error.value.problems]
    assert (
        f"{path}:1:0: t.dose: declared column is missing from the header ['age', 'arm']" in messages
    )
    assert f"{path}:3:0: t: has 1 fields but the header has 2" in messages


def test_parquet_needs_pyarrow_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pyarrow is a test dependency: hide it, as on a node installed without [parquet]
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InterchangeError, match="needs the pyarrow package"):
        read_table(tmp_path / "t.parquet")


def test_an_unknown_file_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InterchangeError, match=r"unknown table format '\.xlsx'"):
        read_table(tmp_path / "t.xlsx")
