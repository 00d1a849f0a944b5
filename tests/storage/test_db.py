from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from consortia.exceptions import ConfigurationError
from consortia.storage.db import READ_ONLY, make_engine
from processes import READ_SECONDS, STOP_SECONDS, read_line, started, wait_until


def test_a_transaction_commits_and_rolls_back_on_both_databases(database_url: str) -> None:
    engine = make_engine(database_url)
    metadata = sa.MetaData()
    table = sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True))
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"id": 1}, {"id": 2}])
    with pytest.raises(RuntimeError), engine.begin() as connection:
        connection.execute(table.insert(), [{"id": 3}])
        raise RuntimeError("crash in the middle of a write")
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 2
    engine.dispose()


def test_sqlite_enforces_foreign_keys_and_uses_wal(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/fk.db")
    metadata = sa.MetaData()
    parent = sa.Table("parent", metadata, sa.Column("id", sa.Integer, primary_key=True))
    child = sa.Table(
        "child",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.ForeignKey(parent.c.id), nullable=False),
    )
    metadata.create_all(engine)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(child.insert(), [{"id": 1, "parent_id": 42}])
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_concurrent_sqlite_writers_are_serialised_not_deadlocked(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/w.db")
    metadata = sa.MetaData()
    counter = sa.Table(
        "counter",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(counter.insert(), [{"id": 1, "n": 0}])
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(20):
                with engine.begin() as connection:
                    n = connection.execute(sa.select(counter.c.n)).scalar_one()
                    connection.execute(counter.update().values(n=n + 1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as connection:
        assert connection.execute(sa.select(counter.c.n)).scalar_one() == 80
    engine.dispose()


def test_an_unknown_database_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ConfigurationError, match="not supported"):
        make_engine("mysql://localhost/x")


def test_a_long_read_on_sqlite_neither_waits_for_nor_blocks_a_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        connection.execute(sa.text("INSERT INTO t VALUES (1)"))
    written = threading.Event()

    def write() -> None:
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO t VALUES (2)"))
        written.set()

    with engine.connect().execution_options(**{READ_ONLY: True}) as reader:
        assert reader.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1
        writer = threading.Thread(target=write)
        writer.start()
        assert written.wait(READ_SECONDS), "the writer waited for the reader"
        writer.join()
        # the reader keeps its snapshot
        assert reader.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM t")).scalar() == 2
    engine.dispose()


def test_a_connection_dropped_mid_transaction_does_not_stall_the_next_writer(
    tmp_path: Path,
) -> None:
    import gc
    import warnings

    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))

    def abandon() -> None:
        connection = engine.connect()
        connection.begin()
        connection.execute(sa.text("INSERT INTO t VALUES (1)"))  # never committed nor closed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy warns about the abandoned connection
        abandon()
        gc.collect()
    written = threading.Event()

    def write() -> None:
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO t VALUES (2)"))
        written.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert written.wait(READ_SECONDS), "the in-process writer lock was never released"
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT x FROM t")).scalars().all() == [2]
    engine.dispose()


def _lock_is_free(path: Path) -> bool:
    """Whether another open file (as another process would have) can take the writer lock."""
    with path.open("ab") as other:
        try:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
        return True


def test_a_sqlite_write_transaction_holds_the_cross_process_writer_lock(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    lock = tmp_path / "node.db-writer.lock"
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        assert not _lock_is_free(lock)
    assert _lock_is_free(lock)
    with pytest.raises(RuntimeError), engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        raise RuntimeError("rolled back")
    assert _lock_is_free(lock)
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
        assert _lock_is_free(lock)  # readers never take it
    engine.dispose()


def test_the_writer_lock_is_let_go_only_once_the_transaction_has_ended(tmp_path: Path) -> None:
    """Had the lock gone before SQLite's COMMIT (SQLAlchemy's commit event comes first), the
    next writer would meet a locked database and SQLite's busy handler would sleep while
    holding the lock. A listener added after the engine's own runs where that release was:
    there the database must already be free to write for another connection, without
    waiting, on commit and on rollback alike."""
    path = tmp_path / "node.db"
    engine = make_engine(f"sqlite:///{path}")
    lock = tmp_path / "node.db-writer.lock"
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    seen: list[tuple[str, bool, bool]] = []

    def probe(kind: str) -> Callable[[sa.Connection], None]:
        def check(_connection: sa.Connection) -> None:
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                free = True
            except sqlite3.OperationalError:  # database is locked
                free = False
            finally:
                other.close()
            seen.append((kind, free, _lock_is_free(lock)))

        return check

    sa.event.listen(engine, "commit", probe("commit"))
    sa.event.listen(engine, "rollback", probe("rollback"))
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (2)")
        raise RuntimeError("rolled back")
    assert seen == [("commit", True, True), ("rollback", True, True)]
    with engine.connect() as connection:  # and the driver's own commit did not undo ours
        assert connection.exec_driver_sql("SELECT x FROM t").scalars().all() == [1]
    engine.dispose()


def test_a_commit_that_fails_is_an_sqlalchemy_error_keeps_nothing_and_frees_the_lock(
    tmp_path: Path,
) -> None:
    """The engine issues SQLite's COMMIT itself (see above): when it fails — here a deferred
    foreign key left dangling — the caller gets SQLAlchemy's IntegrityError, nothing of the
    transaction stays, and the writer lock is free for the next writer."""
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    lock = tmp_path / "node.db-writer.lock"
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("CREATE TABLE c (p_id INTEGER REFERENCES p (id))")
    with pytest.raises(sa.exc.IntegrityError, match="FOREIGN KEY"), engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        connection.exec_driver_sql("INSERT INTO c VALUES (42)")  # fails only at COMMIT
    assert _lock_is_free(lock)
    with engine.begin() as connection:  # the next writer goes ahead
        connection.exec_driver_sql("INSERT INTO p VALUES (1)")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM c").scalar() == 0
        assert connection.exec_driver_sql("SELECT id FROM p").scalars().all() == [1]
    engine.dispose()


WRITER = """
import sys, time
from consortia.storage.db import make_engine
engine = make_engine(sys.argv[1])
print("ready", flush=True)
with engine.begin() as connection:
    print(f"began {time.time()}", flush=True)
    connection.exec_driver_sql("INSERT INTO t VALUES (2)")
"""


def _waiting_for_a_file_lock(pid: int) -> bool:
    """Whether ``pid`` is blocked on a file lock: a ``->`` line of /proc/locks (Linux)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[5] == str(pid):
            return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
def test_a_writer_in_another_process_waits_for_the_lock_and_then_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with contextlib.ExitStack() as stack:
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
            child = stack.enter_context(
                started([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, bufsize=0)
            )
            assert read_line(child, child.stdout, what="the child to start") == b"ready\n"
            wait_until(
                lambda: _waiting_for_a_file_lock(child.pid),
                what="the child to wait for the writer lock",
                process=child,
            )
            released = time.time()
        out = read_line(child, child.stdout, what="the child to begin its write")
        assert child.wait(STOP_SECONDS) == 0
    began = float(out.split()[-1])
    assert began >= released  # it began its write only after this one committed
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all() == [1, 2]
    engine.dispose()


def hold_connections_at_once(engine: sa.Engine, threads: int, rounds: int) -> None:
    """``threads`` threads each hold a connection at the same moment, and all return it
    before the next of ``rounds`` (requests come in waves)."""
    together = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(rounds):
                with engine.connect() as connection:
                    connection.execute(sa.text("select 1"))
                    together.wait(timeout=30)
                together.wait(timeout=30)
        except BaseException as error:
            failures.append(error)
            together.abort()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not failures, failures


@pytest.mark.postgres
def test_a_postgresql_pool_sized_to_the_threads_never_connects_again(
    postgres_server_url: str,
) -> None:
    # SQLAlchemy's default pool keeps 5: the connections beyond are closed when returned,
    # so 12 busy threads would open 7 connections again on every wave (33 here)
    engine = make_engine(postgres_server_url, pool_size=12)
    connects: list[object] = []
    sa.event.listen(engine.pool, "connect", lambda *_: connects.append(1))
    try:
        hold_connections_at_once(engine, threads=12, rounds=4)
    finally:
        engine.dispose()
    assert len(connects) == 12


@pytest.mark.postgres
def test_an_idle_postgresql_connection_the_server_dropped_is_replaced_unseen(
    postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(postgres_server_url)
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            pid = connection.execute(sa.text("select pg_backend_pid()")).scalar()
        with admin.connect() as connection:
            connection.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": pid})
        # the connection has now been idle "long enough" (no test waits 5 s)
        monkeypatch.setattr("consortia.storage.db.PING_AFTER_IDLE_SECONDS", 0.0, raising=False)
        with engine.connect() as connection:
            assert connection.execute(sa.text("select pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.postgres
def test_statement_reads_on_postgresql_send_no_begin_and_leave_the_connection_transactional(
    postgres_server_url: str,
) -> None:
    from consortia.storage.db import statement_reads

    engine = make_engine(postgres_server_url, pool_size=1)
    try:
        with statement_reads(engine.connect()) as connection:
            assert connection.execute(sa.text("select 1")).scalar() == 1
            driver = connection.connection.driver_connection
            assert driver is not None
            assert driver.autocommit  # set by SQLAlchemy's isolation_level="AUTOCOMMIT"
            assert driver.info.transaction_status.name == "IDLE"
        with engine.connect() as connection:  # the same pooled connection, as usual again
            assert not connection.connection.driver_connection.autocommit  # type: ignore[union-attr]
            connection.execute(sa.text("create temporary table t (id int)"))
            connection.execute(sa.text("insert into t values (1)"))
            connection.rollback()
            assert connection.execute(sa.text("select to_regclass('pg_temp.t')")).scalar() is None
    finally:
        engine.dispose()


def test_statement_reads_on_sqlite_share_one_snapshot_that_cannot_write(tmp_path: Path) -> None:
    from consortia.storage.db import statement_reads

    engine = make_engine(f"sqlite:///{tmp_path / 'reads.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("create table t (id integer)"))
        with statement_reads(engine.connect()) as connection:
            assert connection.execute(sa.text("select count(*) from t")).scalar() == 0
            with engine.begin() as writer:  # a writer meanwhile is not seen, nor waited for
                writer.execute(sa.text("insert into t values (1)"))
            assert connection.execute(sa.text("select count(*) from t")).scalar() == 0
            with pytest.raises(sa.exc.OperationalError, match="readonly"):
                connection.execute(sa.text("insert into t values (2)"))
    finally:
        engine.dispose()
