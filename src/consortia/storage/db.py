"""Database engines: SQLite (embedded default) and PostgreSQL (production).

SQLite runs in WAL mode with foreign keys on, and write transactions start with
``BEGIN IMMEDIATE`` so two writers never deadlock on a lock upgrade. Writers queue for a
lock before they begin: a thread lock within the process and, for a database file, an
advisory lock on ``PATH-writer.lock`` across processes (server workers, a CLI import), so
a waiting writer is woken as soon as the last one finishes instead of polling in SQLite's
busy handler with growing sleeps. PostgreSQL is used as it comes. The same code and the
same tests run on both.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
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


def read_only(connection: Connection) -> Connection:
    """``connection`` set to read only: its transactions never wait for, nor block, a writer.

    On SQLite a deferred ``BEGIN`` (a WAL snapshot) instead of ``BEGIN IMMEDIATE`` and the
    writer lock; on PostgreSQL ``BEGIN READ ONLY``, so a write in it fails at once.
    """
    options: dict[str, Any] = {READ_ONLY: True}
    if connection.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    return connection.execution_options(**options)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url`` with the settings Consortia relies on.

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
        return create_engine(parsed, echo=echo, pool_pre_ping=True)
    raise ConfigurationError(
        f"database {backend!r} is not supported; use sqlite:///PATH or postgresql://..."
    )


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
