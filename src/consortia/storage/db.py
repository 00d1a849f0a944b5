"""Database engines: SQLite (embedded default) and PostgreSQL (production).

SQLite runs in WAL mode with foreign keys on, and write transactions start with
``BEGIN IMMEDIATE`` so two writers never deadlock on a lock upgrade. Writers queue for a
lock before they begin: a thread lock within the process and, for a database file, an
advisory lock on ``PATH-writer.lock`` across processes (server workers, a CLI import), so
a waiting writer is woken as soon as the last one finishes instead of polling in SQLite's
busy handler with growing sleeps. The same code and the same tests run on both.

On PostgreSQL every statement is a round trip to the server, and under load each round
trip waits for the server's process and then for this one to be scheduled again, so the
engine spends none it does not need: the pool keeps as many connections as the process
has threads that use them (``pool_size``; connections beyond it are closed when returned,
so a busy process would connect again and again), and a connection is pinged before use
only when it has lain unused for :data:`PING_AFTER_IDLE_SECONDS` (a ping on every checkout
is three round trips of an API save's ~27). Short reads run without a transaction
(:func:`statement_reads`), and statements that do not wait for each other's answers are
sent together (:func:`consortia.storage.prepared.pipelined`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.pool import QueuePool, StaticPool

from consortia.exceptions import ConfigurationError

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

#: Execution option for a long read (``connection.execution_options(**{READ_ONLY: True})``):
#: on SQLite it begins a deferred transaction that never waits for, nor blocks, writers.
READ_ONLY: Final = "consortia_read_only"
_HOLDS_WRITER: Final = "consortia_holds_writer"
_READS_ONLY: Final = "consortia_reads_only"
#: A PostgreSQL connection returned to the pool longer ago than this is pinged before use
#: (a server restarted meanwhile is found then, and the pool connects again).
PING_AFTER_IDLE_SECONDS: Final = 5.0
#: PostgreSQL connections the pool keeps when no size is asked for (SQLAlchemy's default).
DEFAULT_POOL_SIZE: Final = 5
_RETURNED_AT: Final = "consortia_returned_at"


def read_only(connection: Connection) -> Connection:
    """``connection`` set to read only: its transactions never wait for, nor block, a writer.

    On SQLite a deferred ``BEGIN`` (a WAL snapshot) instead of ``BEGIN IMMEDIATE`` and the
    writer lock; on PostgreSQL ``BEGIN READ ONLY``, so a write in it fails at once.
    """
    options: dict[str, Any] = {READ_ONLY: True}
    if connection.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    return connection.execution_options(**options)


def statement_reads(connection: Connection) -> Connection:
    """``connection`` for a short read of a few statements, none of which writes.

    On PostgreSQL they run in autocommit (SQLAlchemy's ``isolation_level="AUTOCOMMIT"``),
    each on its own, without the BEGIN and ROLLBACK that would cost a round trip each:
    under READ COMMITTED every statement of a transaction sees a snapshot of its own
    anyway, so they see what they would have seen in one. On SQLite they share one
    snapshot (:func:`read_only`). SQLAlchemy sets the connection back to its default level
    when it returns to the pool. Not for reads that write, stream (a server-side cursor
    needs a transaction) or need one snapshot on PostgreSQL.
    """
    if connection.dialect.name == "postgresql":  # marked read-only as on SQLite, for readers
        return connection.execution_options(isolation_level="AUTOCOMMIT", **{READ_ONLY: True})
    return read_only(connection)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, echo: bool = False, pool_size: int | None = None) -> Engine:
    """Create an engine for ``url`` with the settings Consortia relies on.

    ``pool_size`` is how many PostgreSQL connections the pool keeps open: at least as many
    as the threads that use the engine at once (a server's ``server_threads``); up to 10
    more are opened in a burst and closed when returned.

    >>> engine = make_engine("sqlite://")
    >>> engine.dialect.name
    'sqlite'
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the url in it
        raise ConfigurationError(f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if memory:
            kwargs["poolclass"] = StaticPool
        else:  # opening a SQLite connection (and its PRAGMAs) costs more than a small save
            kwargs.update(poolclass=QueuePool, pool_size=8, max_overflow=56)
        engine = create_engine(url, echo=echo, **kwargs)
        # absolute now: a later change of working directory must not move the lock
        lock_path = None if memory else Path(f"{Path(str(parsed.database)).absolute()}-writer.lock")
        _configure_sqlite(engine, memory=memory, lock_path=lock_path)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(
            parsed, echo=echo, pool_size=pool_size or DEFAULT_POOL_SIZE, max_overflow=10
        )
        _ping_when_idle(engine)
        return engine
    raise ConfigurationError(
        f"database {backend!r} is not supported; use sqlite:///PATH or postgresql://..."
    )


def _ping_when_idle(engine: Engine) -> None:
    """Ping a connection on checkout only if it has been idle (SQLAlchemy's ``pool_pre_ping``
    pings on every checkout: a round trip, and a transaction's BEGIN, each time).

    A connection that fails its ping is discarded and the pool tries another (raising
    :class:`~sqlalchemy.exc.DisconnectionError` is how a checkout says so). A server that
    went away less than :data:`PING_AFTER_IDLE_SECONDS` after a connection's last use is
    found by the statement that meets it: that request fails, and SQLAlchemy then replaces
    every connection of the pool older than the failure.
    """

    @event.listens_for(engine.pool, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return
        dialect = engine.dialect
        try:
            dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()  # the ping's transaction; the caller begins its own
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise DisconnectionError(f"the database connection was lost: {error}") from error
            raise


class _WriterLock:
    """One SQLite writer at a time: a thread lock, then a file lock shared by processes.

    ``fcntl.flock`` waits in the kernel and the next waiter wakes when the lock is let go;
    the kernel drops it if its process dies. The lock file is opened for each write and
    closed after it, so nothing stays open between transactions; a child forked during
    one closes its copy at once (:meth:`forget_in_child`), so only the writing process
    ever holds the lock and it ends with that process, whatever became of its children.
    Where there is no ``fcntl`` (Windows) only the thread lock queues, and other
    processes meet SQLite's ``busy_timeout``.
    """

    def __init__(self, path: Path | None) -> None:
        self._thread = threading.Lock()
        self._path = path if _fcntl is not None else None
        self._file: IO[bytes] | None = None
        _LOCKS.add(self)

    def forget_in_child(self) -> None:
        """In a child forked while this lock was held: let go of the child's copy.

        The copy shares the parent's lock (``flock`` belongs to the open file, not to a
        process): a child that kept it, say a worker orphaned by ``kill -9`` of its
        parent, would hold every writer off for as long as it lived. Closing the copy
        leaves the parent's lock as it is.
        """
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()
        self._thread = threading.Lock()  # the parent's holder is not in this process

    def acquire(self) -> None:
        self._thread.acquire()
        if self._path is None:
            return
        try:
            handle = self._path.open("ab")
        except BaseException:
            self._thread.release()
            raise
        try:
            _fcntl.flock(handle.fileno(), _fcntl.LOCK_EX)
        except BaseException:
            handle.close()
            self._thread.release()
            raise
        self._file = handle

    def release(self) -> None:
        handle, self._file = self._file, None
        try:
            if handle is not None:
                handle.close()  # closing the file lets the lock go
        finally:
            self._thread.release()


_LOCKS: weakref.WeakSet[_WriterLock] = weakref.WeakSet()


def _forget_locks_in_child() -> None:
    for lock in list(_LOCKS):
        lock.forget_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def _driver_sql(connection: Any, sql: str) -> None:
    """``sql`` on the driver's connection (``exec_driver_sql`` costs 20x more, every request);
    a driver error raised as SQLAlchemy raises it."""
    try:
        connection.connection.driver_connection.execute(sql)
    except sqlite3.Error as error:
        raise DBAPIError.instance(sql, (), error, sqlite3.Error) from error


def _end(connection: Any, sql: str) -> None:
    """COMMIT or ROLLBACK on the driver's connection, if a transaction is open."""
    driver = connection.connection.driver_connection
    if driver.in_transaction:
        _driver_sql(connection, sql)


def _configure_sqlite(engine: Engine, *, memory: bool, lock_path: Path | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # One writer at a time: SQLite's own busy handler makes waiting writers sleep and retry
    # (unfairly, with growing sleeps); a lock wakes the next one at once.
    writer = _WriterLock(lock_path)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            # a WAL reader sees a snapshot and never blocks writers: exports stream this way.
            # query_only makes a write in it fail at once, as BEGIN READ ONLY does on
            # PostgreSQL, instead of waiting for the lock the reader never took.
            connection.info[_READS_ONLY] = True
            _driver_sql(connection, "PRAGMA query_only=ON")
            _driver_sql(connection, "BEGIN")
            return
        writer.acquire()
        connection.info[_HOLDS_WRITER] = True
        try:
            _driver_sql(connection, "BEGIN IMMEDIATE")
        except BaseException:
            connection.info.pop(_HOLDS_WRITER, None)
            writer.release()
            raise

    # SQLAlchemy's commit and rollback events come before the driver's COMMIT or ROLLBACK.
    # Letting the lock go there would let the next writer's BEGIN IMMEDIATE meet the
    # database still locked, and SQLite's busy handler sleep (1 ms, then longer) while
    # holding the lock everyone else queues on. So the writer ends its transaction here,
    # then lets the lock go; the driver's own commit() or rollback() that follows finds no
    # transaction open and does nothing.
    def _commit(connection: Any) -> None:
        if connection.info.pop(_READS_ONLY, False):
            _driver_sql(connection, "PRAGMA query_only=OFF")
        if connection.info.get(_HOLDS_WRITER):
            _end(connection, "COMMIT")  # on failure the lock stays held until the rollback
            connection.info.pop(_HOLDS_WRITER, None)
            writer.release()

    def _rollback(connection: Any) -> None:
        if connection.info.pop(_READS_ONLY, False):
            _driver_sql(connection, "PRAGMA query_only=OFF")
        if connection.info.get(_HOLDS_WRITER):
            try:
                _end(connection, "ROLLBACK")
            finally:
                connection.info.pop(_HOLDS_WRITER, None)
                writer.release()

    event.listen(engine, "commit", _commit)
    event.listen(engine, "rollback", _rollback)

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(_READS_ONLY, False) and dbapi_connection:
            dbapi_connection.execute("PRAGMA query_only=OFF")  # the next user may write
        # a connection dropped without commit or rollback (garbage collected) frees the lock
        if record is not None and record.info.pop(_HOLDS_WRITER, False):
            writer.release()
