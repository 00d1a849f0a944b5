"""The database fixtures: a migrated copy per test, a template nobody writes to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from consortia.storage import tables
from consortia.storage.audit import append_event, audit_event
from consortia.storage.db import is_sqlite, make_engine
from consortia.storage.migrations import current_revision, head_revision


def _events(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            count = sa.select(sa.func.count()).select_from(audit_event)
            return int(connection.execute(count).scalar_one())
    finally:
        engine.dispose()  # a PostgreSQL template must have no connection when it is copied


def _template_url(request: pytest.FixtureRequest, url: str) -> str:
    if is_sqlite(url):
        return f"sqlite:///{request.getfixturevalue('sqlite_template')}"
    return url.rsplit("/", 1)[0] + "/" + request.getfixturevalue("postgres_template")


def test_a_migrated_database_is_at_the_newest_revision_with_the_declared_tables(
    migrated_database_url: str,
) -> None:
    engine = make_engine(migrated_database_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert list(compare_metadata(context, tables.metadata)) == []
    finally:
        engine.dispose()
    assert _events(migrated_database_url) == 0


def test_a_write_to_the_copy_leaves_the_template_as_migrated(
    migrated_database_url: str, request: pytest.FixtureRequest
) -> None:
    template = _template_url(request, migrated_database_url)
    assert template != migrated_database_url
    engine = make_engine(migrated_database_url)
    try:
        with engine.begin() as connection:
            append_event(
                connection,
                "node",
                actor="cli:root",
                action="setup",
                entity_type="node",
                entity_id="n",
            )
    finally:
        engine.dispose()
    assert _events(migrated_database_url) == 1
    assert _events(template) == 0


def test_the_empty_database_stays_empty(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_each_sqlite_copy_is_its_own_file(
    migrated_sqlite: Callable[[Path], str], tmp_path: Path
) -> None:
    first, second = migrated_sqlite(tmp_path / "a.db"), migrated_sqlite(tmp_path / "b.db")
    engine = make_engine(first)
    try:
        with engine.begin() as connection:
            append_event(
                connection,
                "node",
                actor="cli:root",
                action="setup",
                entity_type="node",
                entity_id="n",
            )
    finally:
        engine.dispose()
    assert (_events(first), _events(second)) == (1, 0)
