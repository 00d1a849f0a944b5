"""Bulk writes for imports: explicit ids, and rows straight to the driver where it is faster.

SQLite gets tuples through ``exec_driver_sql`` (values that need a bind processor bound
first with :func:`bound`); PostgreSQL gets ``COPY`` for item values and SQLAlchemy for the
rest. Everything runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.domain.file_check import ValueToWrite

__all__ = ["BATCH", "bound", "insert_rows", "insert_values", "reserve_ids"]

#: Rows per statement or COPY.
BATCH = 20_000


def reserve_ids(connection: Connection, table: sa.Table, count: int) -> list[int]:
    """``count`` fresh primary keys of ``table`` for rows inserted with explicit ids."""
    if count == 0:
        return []
    if connection.dialect.name == "postgresql":
        sequence = f"{table.name}_id_seq"
        rows = connection.execute(
            sa.text(f"SELECT nextval('{sequence}') FROM generate_series(1, :n)"), {"n": count}
        )
        return [int(row[0]) for row in rows]
    # SQLite: the write transaction (BEGIN IMMEDIATE) holds the database
    start = int(connection.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0)
    return list(range(start + 1, start + count + 1))


_VALUE_COLUMNS = ("form_pk", "item", "group_instance", "value_text", "value_num")


def insert_values(
    connection: Connection,
    rows: list[ValueToWrite],
    form_ids: list[int],
) -> None:
    """Insert item_value rows (by form index) in the caller's transaction, the fastest way
    each driver has."""
    columns = ", ".join(_VALUE_COLUMNS)
    postgresql = connection.dialect.name == "postgresql"
    # SQLite reserves consecutive ids: a form's id is its index plus the first, added by SQL
    offset = form_ids[0] if form_ids and form_ids[-1] - form_ids[0] == len(form_ids) - 1 else None
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        if postgresql:
            driver = connection.connection.driver_connection
            assert driver is not None
            with (
                driver.cursor() as cursor,
                cursor.copy(f"COPY item_value ({columns}) FROM STDIN") as copy,
            ):
                for index, item, number, text, num in batch:
                    copy.write_row((form_ids[index], item, number, text, num))
        elif offset is not None:
            sql = f"INSERT INTO item_value ({columns}) VALUES (? + {offset:d}, ?, ?, ?, ?)"
            connection.exec_driver_sql(sql, batch)
        else:  # pragma: no cover - SQLite reserves consecutive ids
            sql = f"INSERT INTO item_value ({columns}) VALUES (?, ?, ?, ?, ?)"
            connection.exec_driver_sql(sql, [(form_ids[row[0]], *row[1:]) for row in batch])


def insert_rows(
    connection: Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert rows given as tuples of ``columns``: on SQLite straight to the driver (values
    that need a bind processor, such as datetimes, are bound already: :func:`bound`),
    elsewhere through SQLAlchemy."""
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        if connection.dialect.paramstyle == "qmark":
            markers = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({markers})"
            connection.exec_driver_sql(sql, batch)
        else:
            connection.execute(
                table.insert(), [dict(zip(columns, row, strict=True)) for row in batch]
            )


def bound(connection: Connection, column: sa.Column[Any], value: object) -> object:
    """``value`` as the driver gets it for ``column`` where :func:`insert_rows` skips
    SQLAlchemy (SQLite); elsewhere unchanged."""
    if connection.dialect.paramstyle != "qmark":
        return value
    process = column.type.bind_processor(connection.dialect)
    return value if process is None else process(value)
