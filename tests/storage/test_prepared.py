"""``Prepared``: statements run on the driver's cursor give what ``Connection.execute`` gives."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from consortia.storage.db import READ_ONLY, make_engine
from consortia.storage.prepared import Prepared, pipelined
from consortia.storage.tables import UTCDateTime

metadata = sa.MetaData()
thing = sa.Table(
    "thing",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False, unique=True),
    sa.Column("born", sa.Date, nullable=True),
    sa.Column("seen_at", UTCDateTime, nullable=True),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("status", sa.String(10), nullable=False),
)
with_default = sa.Table(
    "with_default",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("made", sa.String(30), default=lambda: "now"),
)

BY_STATUS = Prepared(
    sa.select(thing.c.id, thing.c.name, thing.c.born, thing.c.seen_at, thing.c.active)
    .add_columns(thing.c.score.label("points"))
    .where(thing.c.status == sa.bindparam("status"), thing.c.name != "hidden")
    .order_by(thing.c.id)
)
INSERT = Prepared(thing.insert())
RENAME = Prepared(thing.update().where(thing.c.id == sa.bindparam("where_id")))
DELETE = Prepared(thing.delete().where(thing.c.status == sa.bindparam("where_status")))
ROWS = [
    {
        "id": 1,
        "name": "ann",
        "born": date(1970, 1, 2),
        "seen_at": datetime(2026, 11, 23, 9, 30, 1, 250, tzinfo=UTC),
        "active": True,
        "score": 1.5,
        "status": "new",
    },
    {
        "id": 2,
        "name": "bob",
        "born": None,
        "seen_at": None,
        "active": False,
        "score": None,
        "status": "new",
    },
    {
        "id": 3,
        "name": "hidden",
        "born": None,
        "seen_at": None,
        "active": True,
        "score": 0.0,
        "status": "new",
    },
]


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def _through_sqlalchemy(connection: sa.Connection, status: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in connection.execute(BY_STATUS.statement, {"status": status})]


def test_rows_equal_what_sqlalchemy_returns_with_types_converted(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        assert INSERT.run(connection, ROWS) == 3
    with engine.connect() as connection:
        rows = BY_STATUS.all(connection, {"status": "new"})
        assert [tuple(row) for row in rows] == _through_sqlalchemy(connection, "new")
        first = rows[0]
        # the literal 'hidden' in the statement is bound from the statement itself
        assert [row.name for row in rows] == ["ann", "bob"]
        assert first.born == date(1970, 1, 2)
        assert first.seen_at == datetime(2026, 11, 23, 9, 30, 1, 250, tzinfo=UTC)
        assert (first.active, rows[1].active) == (True, False)
        assert isinstance(first.active, bool)
        assert (first.points, rows[1].points) == (1.5, None)
        assert first[1] == "ann"
        assert BY_STATUS.first(connection, {"status": "none"}) is None
        assert BY_STATUS.all(connection, {"status": "none"}) == []


def test_one_refuses_no_row_and_two_rows(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        INSERT.run(connection, ROWS)
    with engine.connect() as connection:
        with pytest.raises(sa.exc.NoResultFound):
            BY_STATUS.one(connection, {"status": "none"})
        with pytest.raises(sa.exc.MultipleResultsFound):
            BY_STATUS.one(connection, {"status": "new"})


def test_updates_compile_for_the_columns_given_and_count_rows(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        INSERT.run(connection, ROWS)
        assert RENAME.run(connection, {"where_id": 1, "name": "anna"}) == 1
        assert RENAME.run(connection, {"where_id": 2, "status": "old", "score": 2.0}) == 1
        assert RENAME.run(connection, {"where_id": 99, "name": "nobody"}) == 0
        assert RENAME.run(connection, []) == 0
        changed = RENAME.run(
            connection,
            [{"where_id": 1, "active": False}, {"where_id": 3, "active": False}],
        )
        assert changed in (2, -1)  # drivers may not count an executemany
    with engine.connect() as connection:
        got = {row.id: row for row in connection.execute(sa.select(thing))}
    assert (got[1].name, got[1].status, got[1].active) == ("anna", "new", False)
    assert (got[2].name, got[2].status, got[2].score) == ("bob", "old", 2.0)
    assert got[3].active is False


def test_a_rolled_back_transaction_keeps_nothing(engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as connection:
        INSERT.run(connection, ROWS[:1])
        raise RuntimeError("stop")
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(thing)).scalar() == 0
        # outside a transaction, a statement begins one as Connection.execute would
        INSERT.run(connection, ROWS[:1])
        assert connection.in_transaction()
        connection.rollback()
        assert BY_STATUS.all(connection, {"status": "new"}) == []
        INSERT.run(connection, ROWS[:1])
        connection.commit()
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        assert [row.name for row in BY_STATUS.all(connection, {"status": "new"})] == ["ann"]


def test_database_errors_are_raised_as_sqlalchemy_raises_them(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        INSERT.run(connection, ROWS[:1])
    with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as connection:
        INSERT.run(connection, {**ROWS[1], "name": "ann"})  # the name is unique
    assert "thing" in str(caught.value)
    with engine.begin() as connection:  # the failed transaction changed nothing
        assert DELETE.run(connection, {"where_status": "new"}) == 1


def test_what_it_cannot_run_is_refused_not_run_wrongly(engine: sa.Engine) -> None:
    expanding = Prepared(sa.select(thing.c.id).where(thing.c.name.in_(sa.bindparam("names"))))
    python_default = Prepared(with_default.insert())
    mixed = Prepared(thing.update().where(thing.c.id == sa.bindparam("where_id")))
    with engine.begin() as connection:
        INSERT.run(connection, ROWS)
        with pytest.raises(ValueError, match="expanded"):
            expanding.all(connection, {"names": ["ann"]})
        with pytest.raises(ValueError, match="defaults"):
            python_default.run(connection, {"id": 1})
        with pytest.raises(ValueError, match="same keys"):
            mixed.run(connection, [{"where_id": 1, "name": "x"}, {"where_id": 2, "status": "y"}])
        with pytest.raises(sa.exc.ArgumentError, match="status"):
            BY_STATUS.all(connection, {})
    with engine.connect() as connection:
        assert [r.name for r in BY_STATUS.all(connection, {"status": "new"})] == ["ann", "bob"]


def test_a_read_alone_needs_no_transaction_and_waits_for_no_writer(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        INSERT.run(connection, ROWS)
    with engine.begin() as writer:  # holds the write lock (SQLite) / a row lock (PostgreSQL)
        RENAME.run(writer, {"where_id": 1, "name": "not yet"})
        rows = BY_STATUS.all_alone(engine, {"status": "new"})
        assert [row.name for row in rows] == ["ann", "bob"]  # the committed state
    with engine.connect() as connection:
        assert [tuple(r) for r in rows] != _through_sqlalchemy(connection, "new")
        assert [r.name for r in BY_STATUS.all_alone(engine, {"status": "new"})] == [
            "not yet",
            "bob",
        ]
    pool = engine.pool
    assert isinstance(pool, sa.pool.QueuePool)
    assert pool.checkedout() == 0  # every connection went back


def test_statements_sent_together_give_what_each_gives_alone(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        INSERT.run(connection, ROWS)
        alone = [tuple(row) for row in BY_STATUS.all(connection, {"status": "new"})]
        with pipelined(connection):
            renamed = RENAME.send_run(connection, {"where_id": 1, "name": "anna"})
            missed = RENAME.send_run(connection, {"where_id": 99, "name": "nobody"})
            nothing = RENAME.send_run(connection, [])
            read = BY_STATUS.send(connection, {"status": "new"})
            none = BY_STATUS.send(connection, {"status": "none"})
        assert (renamed.rowcount, missed.rowcount, nothing.rowcount) == (1, 0, 0)
        # the read sent after the update sees it, as in one transaction it must
        assert [tuple(row) for row in read.rows()] == [
            (alone[0][0], "anna", *alone[0][2:]),
            alone[1],
        ]
        assert none.first() is None


def test_an_error_in_statements_sent_together_is_sqlalchemy_s_and_keeps_nothing(
    engine: sa.Engine,
) -> None:
    with engine.begin() as connection:
        INSERT.run(connection, ROWS[:1])
    with (
        pytest.raises(sa.exc.IntegrityError),
        engine.begin() as connection,
        pipelined(connection),
    ):
        RENAME.send_run(connection, {"where_id": 1, "status": "old"})
        INSERT.send_run(connection, {**ROWS[1], "name": "ann"})  # the name is unique
    with engine.connect() as connection:
        assert [row.name for row in BY_STATUS.all(connection, {"status": "new"})] == ["ann"]


@pytest.mark.postgres
def test_statements_sent_together_cost_postgresql_one_round_trip(engine: sa.Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("round trips are PostgreSQL's")
    from psycopg import pq

    with engine.begin() as connection:
        INSERT.run(connection, ROWS)
    with engine.connect() as connection, tempfile.TemporaryFile("w+") as trace:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        pgconn = connection.connection.driver_connection.pgconn  # type: ignore[union-attr]
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        with pipelined(connection):
            sent = [BY_STATUS.send(connection, {"status": status}) for status in ("new", "x")]
        pgconn.untrace()
        trace.seek(0)
        round_trips = sum("\tReadyForQuery\t" in line for line in trace)
    assert [len(one.rows()) for one in sent] == [2, 0]
    assert round_trips == 1
