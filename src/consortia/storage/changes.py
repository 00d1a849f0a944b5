"""Telling waiting requests that the database changed, without polling tables.

A hub's pull queue lives in its database, so that every server process of the hub (and
``consortia analyze`` in another process) sees the same tasks. A member's long poll and
the lead's waiting send must learn when a task or a reply arrives; rather than querying the
task table every few milliseconds, they watch a change feed:

* PostgreSQL: ``LISTEN`` on :data:`CHANNEL` over a connection of its own; a writer calls
  :func:`announce_change` in its transaction, and the notification is delivered when (and
  only if) the transaction commits;
* SQLite: ``PRAGMA data_version`` on a read-only connection of its own, a counter that
  changes whenever another connection commits (read from the shared WAL index: no table
  is read); an in-memory database (one shared connection) reports a change on every check.

A feed holds no state that another process would need: it only says "look again".
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, text

__all__ = ["CHANNEL", "ChangeFeed", "announce_change", "change_feed"]

CHANNEL = "consortia_hub_tasks"


class ChangeFeed(Protocol):
    """A database's change signal, opened while someone waits."""

    def open(self) -> None:
        """Start watching (changes committed after this are reported)."""
        ...

    def fileno(self) -> int | None:
        """A socket readable when a change may have come (None: check on a timer)."""
        ...

    def changed(self) -> bool:
        """True if a change was committed since the last call (or since :meth:`open`)."""
        ...

    def close(self) -> None:
        """Stop watching and release the feed's connection."""
        ...


def announce_change(connection: Connection) -> None:
    """Tell other processes' feeds, when this transaction commits, that the queue changed
    (PostgreSQL ``NOTIFY``; SQLite's counter changes by itself)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class _SqliteFeed:
    def __init__(self, database: str) -> None:
        self.database = database
        self._connection: sqlite3.Connection | None = None
        self._version = -1

    def open(self) -> None:
        if self.database in ("", ":memory:"):
            return
        self._connection = sqlite3.connect(
            self.database, isolation_level=None, check_same_thread=False
        )
        self._connection.execute("PRAGMA query_only=ON")
        self._version = self._read()

    def _read(self) -> int:
        assert self._connection is not None
        row = self._connection.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def fileno(self) -> int | None:
        return None

    def changed(self) -> bool:
        if self._connection is None:  # in memory: one connection, no counter to read
            return True
        version = self._read()
        if version == self._version:
            return False
        self._version = version
        return True

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _PostgresFeed:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._connection: Any = None

    def open(self) -> None:
        import psycopg  # the postgres extra; only a PostgreSQL hub gets here

        self._connection = psycopg.connect(self.conninfo, autocommit=True)
        self._connection.execute(f"LISTEN {CHANNEL}")

    def fileno(self) -> int | None:
        return None if self._connection is None else int(self._connection.fileno())

    def changed(self) -> bool:
        if self._connection is None:
            return False
        pgconn = self._connection.pgconn
        pgconn.consume_input()
        found = False
        while pgconn.notifies() is not None:
            found = True
        return found

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def change_feed(engine: Engine) -> ChangeFeed:
    """The change feed of ``engine``'s database (SQLite or PostgreSQL)."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return _PostgresFeed(url.set(drivername="postgresql").render_as_string(False))
    return _SqliteFeed(url.database or "")
