"""The node's database as the operator handles it: open it, migrate it, check its schema.

The commands (``consortia db``, ``init``, ``serve``) and the demo reach the database only
through these use cases, never through ``storage`` directly (tests/test_layers.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from consortia.exceptions import ConfigurationError
from consortia.storage import migrations
from consortia.storage.db import is_sqlite, make_engine

__all__ = [
    "current_revision",
    "head_revision",
    "is_sqlite_url",
    "migrate",
    "open_database",
    "opened_database",
    "require_current_schema",
]


def open_database(url: str) -> Engine:
    """An engine for the database at ``url`` (SQLite pragmas and locks set up); the caller
    disposes of it."""
    return make_engine(url)


@contextmanager
def opened_database(url: str) -> Iterator[Engine]:
    """:func:`open_database`, disposed of afterwards."""
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest schema revision the code knows."""
    return migrations.head_revision()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for a database never migrated."""
    return migrations.current_revision(engine)


def migrate(engine: Engine) -> tuple[str | None, str | None]:
    """Migrate the database to the newest schema, in one transaction: (before, after)."""
    before = migrations.current_revision(engine)
    migrations.upgrade(engine)
    return before, migrations.current_revision(engine)


def require_current_schema(engine: Engine) -> None:
    """Refuse to serve a database that is not at the newest revision, saying what to run."""
    current, head = migrations.current_revision(engine), migrations.head_revision()
    if current != head:
        raise ConfigurationError(
            f"the database is at revision {current or 'empty'}, the code needs "
            f"{head}: run `consortia db upgrade` first"
        )


def is_sqlite_url(url: str) -> bool:
    """Whether ``url`` names a SQLite database (served by one process only)."""
    return is_sqlite(url)
