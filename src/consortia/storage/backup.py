"""Consistent copies of a live node's database, and putting one back into an empty database.

* SQLite: :func:`snapshot_sqlite` copies the file with SQLite's online backup API in one
  step (``pages=-1``). One step runs inside one read transaction of the source: in WAL
  mode that is a snapshot, so writers go on while it copies, and since there is no second
  step the copy never restarts because of them. The copy is then switched out of WAL mode
  (one self-contained file) and read for its heads, through its own engine, so the heads
  are exactly those of the copied pages.
* PostgreSQL: :func:`dump_postgres` opens a ``REPEATABLE READ`` transaction, exports its
  snapshot (``pg_export_snapshot()``), reads the heads in it, and runs ``pg_dump
  --snapshot`` on that same snapshot while the transaction stays open: the heads and the
  dump are the one state. :func:`restore_postgres` runs ``pg_restore`` in one transaction.

``pg_dump`` and ``pg_restore`` are found as the test server's binaries are: the newest
``/usr/lib/postgresql/*/bin`` first (Debian's layout, where ``pg_dump`` must be at least as
new as the server), else ``PATH``. The password never appears on a command line: it goes
to the tools in ``PGPASSWORD``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL, make_url

from consortia.exceptions import ConsortiaError
from consortia.storage.audit import ChainReport, verify_trail
from consortia.storage.replay import compare_state
from consortia.storage.witness import ChainHead, trail_heads

__all__ = [
    "BackupError",
    "DatabaseState",
    "database_is_empty",
    "digest",
    "dump_postgres",
    "empty_postgres",
    "pg_tool",
    "read_state",
    "restore_postgres",
    "restore_sqlite",
    "snapshot_sqlite",
    "sqlite_file",
]

_CHUNK: Final = 1 << 20


class BackupError(ConsortiaError):
    """A backup cannot be taken, or a backup is refused on restore (and nothing changed)."""


@dataclass(frozen=True, slots=True)
class DatabaseState:
    """What a backup records of its database: schema revision, chain heads, chain check."""

    revision: str | None
    heads: tuple[ChainHead, ...]
    report: ChainReport
    #: where the tables differ from a replay of the trail (checked on restore only)
    differences: tuple[str, ...] = ()


def read_state(connection: Connection) -> DatabaseState:
    """The revision, every chain's head and the verified trail, read in ``connection``'s
    transaction (so in its snapshot)."""
    revision = MigrationContext.configure(connection).get_current_revision()
    heads = tuple(trail_heads(connection))
    return DatabaseState(revision, heads, verify_trail(connection))


def digest(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, read in 1 MiB chunks."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def sqlite_file(url: str) -> Path:
    """The database file of a ``sqlite:///PATH`` URL (refusing an in-memory database)."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


@contextmanager
def _plain_engine(path: Path) -> Iterator[Engine]:
    """An engine on a copy, without the node's PRAGMAs (which would put it in WAL mode)."""
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def snapshot_sqlite(source: Path, target: Path) -> DatabaseState:
    """Copy the live SQLite database ``source`` to the new file ``target`` (mode 0600) in
    one consistent step, and return the copy's state."""
    if not source.is_file():
        raise BackupError(f"{source}: the node's SQLite database does not exist")
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(descriptor)
    # the backup only reads the source: it never takes the node's writer lock
    with sqlite3.connect(source, timeout=30) as live, sqlite3.connect(target) as copy:
        live.backup(copy, pages=-1)  # one step: one read snapshot, never restarted
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    live.close()
    copy.close()
    with _plain_engine(target) as engine, engine.connect() as connection:
        return read_state(connection)


def restore_sqlite(backup: Path, target: Path) -> DatabaseState:
    """Copy a backup's database to ``target`` (a new file, 0600) and return its state."""
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out, backup.open("rb") as source:
        shutil.copyfileobj(source, out, _CHUNK)
        out.flush()
        os.fsync(out.fileno())
    with _plain_engine(target) as engine:
        with engine.connect() as connection:
            state = read_state(connection)
        return _with_replay(state, engine)


def _with_replay(state: DatabaseState, engine: Engine) -> DatabaseState:
    """``state`` with the differences between the tables and a replay of the trail
    (``consortia audit verify --state``), when the trail itself verified."""
    if not state.report.ok:
        return state
    found = tuple(str(difference) for difference in compare_state(engine))
    return replace(state, differences=found)


def database_is_empty(engine: Engine) -> bool:
    """True when the database holds no table (a new, never migrated database)."""
    return not sa.inspect(engine).get_table_names()


def pg_tool(name: str) -> Path:
    """The newest ``pg_dump`` / ``pg_restore`` on this machine."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: _version_key(Path(path).parent.parent.name),
        reverse=True,
    )
    if found:
        return Path(found[0])
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise BackupError(
        f"{name} is not installed; install the PostgreSQL client tools "
        "(Debian: apt-get install postgresql-client)"
    )


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for ``url`` without its password, and the environment that carries it."""
    parsed: URL = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        detail = lines[0] if lines else f"exit status {done.returncode}"
        raise BackupError(f"{what} failed: {detail}")


def dump_postgres(engine: Engine, url: str, target: Path) -> DatabaseState:
    """``pg_dump --format=custom`` of the database to ``target`` (0600), and the state read
    in the very snapshot the dump was taken from."""
    uri, env = _libpq(url)
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            connection.execute(sa.text("SET TRANSACTION READ ONLY"))
            snapshot = connection.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            state = read_state(connection)
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(descriptor)
            _run(
                [
                    str(pg_tool("pg_dump")),
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--snapshot={snapshot}",
                    f"--file={target}",
                    f"--dbname={uri}",
                ],
                env,
                "pg_dump",
            )
    return state


def restore_postgres(engine: Engine, url: str, dump: Path) -> DatabaseState:
    """``pg_restore`` a dump into the (empty) database in one transaction; its state."""
    uri, env = _libpq(url)
    _run(
        [
            str(pg_tool("pg_restore")),
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            f"--dbname={uri}",
            str(dump),
        ],
        env,
        "pg_restore",
    )
    with engine.connect() as connection, connection.begin():
        state = read_state(connection)
    return _with_replay(state, engine)


def empty_postgres(engine: Engine) -> None:
    """Drop everything a refused restore put into a database that was empty before it."""
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
