"""The database fixtures: a migrated copy per test, a template nobody writes to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from consortia.services import users
from consortia.storage import tables
from consortia.storage.audit import append_event, audit_event
from consortia.storage.db import is_sqlite, make_engine
from consortia.storage.migrations import current_revision, head_revision
from database_pool import PostgresPool


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


def _append_setup_event(url: str) -> None:
    engine = make_engine(url)
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
    _append_setup_event(migrated_database_url)
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
    _append_setup_event(first)
    assert (_events(first), _events(second)) == (1, 0)


@pytest.fixture
def pool(postgres_server_url: str, postgres_template: str) -> Iterator[PostgresPool]:
    """A pool of its own, so these tests never hand a broken copy to another test."""
    own = PostgresPool(postgres_server_url, postgres_template)
    try:
        yield own
    finally:
        own.close()


@pytest.mark.postgres
def test_a_reused_postgresql_copy_is_as_empty_as_a_fresh_one(pool: PostgresPool) -> None:
    url = pool.take()
    _append_setup_event(url)
    engine = make_engine(url)
    try:  # rows that other tables' foreign keys point at
        users.create_user(
            engine, users.cli_operator(), email="a@x.example", name="A", password=None
        )
        users.grant_role(
            engine, users.cli_operator(), email="a@x.example", study="S", site="*", role="monitor"
        )
    finally:
        engine.dispose()
    left_open = make_engine(url)  # a test that forgets to dispose of its engine
    left_open.connect()
    try:
        pool.give_back(url)
        again = pool.take()
        assert again == url
        assert (pool.created, pool.reused) == (1, 1)
        assert _events(again) == 0
        _append_setup_event(again)  # the identity starts again at 1, as in a fresh copy
        engine = make_engine(again)
        try:
            with engine.connect() as connection:
                ids = connection.execute(sa.select(audit_event.c.id)).scalars().all()
        finally:
            engine.dispose()
        assert ids == [1]
    finally:
        left_open.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "change",
    [
        "ALTER TABLE audit_event DISABLE TRIGGER USER",
        "CREATE TABLE stray (id integer)",
        "ALTER TABLE subject ADD COLUMN stray text",
        "DROP INDEX ix_subject_study_site",
        "UPDATE alembic_version SET version_num = 'elsewhere'",
    ],
)
def test_a_postgresql_copy_whose_schema_a_test_changed_is_dropped_not_reused(
    pool: PostgresPool, change: str
) -> None:
    url = pool.take()
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(change)
    finally:
        engine.dispose()
    pool.give_back(url)
    assert pool.take() != url
    assert pool.created == 2
