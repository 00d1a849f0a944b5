"""Shared fixtures: databases (SQLite always, PostgreSQL in CI and where available).

``database_url`` is an empty database, for the tests of migrations and of commands that
create their own schema. ``migrated_database_url`` is a database already at the newest
revision: a copy of a template migrated once per session and backend (a file copy on
SQLite; on PostgreSQL a ``CREATE DATABASE ... TEMPLATE`` copy that the test process empties
and reuses for its next test, tests/database_pool.py), so a test does not pay for the
migrations it does not test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from database_pool import PostgresPool, unique_database_name
from scheduling import longest_first

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _postgres_url() -> str | None:
    explicit = os.environ.get("CONSORTIA_TEST_POSTGRES_URL")
    if explicit:
        return explicit
    script = ROOT / "scripts" / "test_postgres.py"
    ensure = subprocess.run([sys.executable, str(script), "ensure"], capture_output=True, text=True)
    if ensure.returncode != 0:
        if IN_CI:
            pytest.fail(f"PostgreSQL could not be started in CI:\n{ensure.stdout}{ensure.stderr}")
        return None
    url = subprocess.run(
        [sys.executable, str(script), "url"], capture_output=True, text=True, check=True
    ).stdout.strip()
    probe = sa.create_engine(url)
    try:
        with probe.connect() as connection:
            connection.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable in CI at {url}: {exc}")
        return None
    finally:
        probe.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = _postgres_url()
    if url is None:
        pytest.skip("PostgreSQL is not installed here (CI installs and starts it)")
    return url


@contextmanager
def postgres_database(server: str, prefix: str) -> Iterator[str]:
    """A new, empty database on ``server``; dropped after."""
    name = unique_database_name(prefix)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()  # also: no connection may stay open on a PostgreSQL template


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, once per session (copy it, never open it)."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    _migrate(f"sqlite:///{path}")
    # the last connection closed has checkpointed the WAL into the file: one file to copy
    assert not Path(f"{path}-wal").exists()
    return path


@pytest.fixture
def migrated_sqlite(sqlite_template: Path) -> Callable[[Path], str]:
    """Copy the migrated SQLite template to a path and return its URL (a test's other node)."""

    def copy(path: Path) -> str:
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"

    return copy


@pytest.fixture(scope="session")
def postgres_template(postgres_server_url: str) -> Iterator[str]:
    """The name of a PostgreSQL database migrated to the newest revision, once per session."""
    with postgres_database(postgres_server_url, "tpl") as url:
        _migrate(url)
        yield url.rsplit("/", 1)[1]


@pytest.fixture(scope="session")
def postgres_pool(postgres_server_url: str, postgres_template: str) -> Iterator[PostgresPool]:
    """This test process's migrated copies of the template, emptied and reused per test."""
    pool = PostgresPool(postgres_server_url, postgres_template)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    with postgres_database(request.getfixturevalue("postgres_server_url"), "t") as url:
        yield url


@pytest.fixture(params=BACKENDS)
def migrated_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database at the newest revision for one test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("migrated_sqlite")(tmp_path / "test.db")
        return
    pool: PostgresPool = request.getfixturevalue("postgres_pool")
    url = pool.take()
    try:
        yield url
    finally:
        pool.give_back(url)


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like ``database_url``, but one database for a whole module (seeded once, read often)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('module-db') / 'node.db'}"
        return
    with postgres_database(request.getfixturevalue("postgres_server_url"), "m") as url:
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that asks for both an empty and a migrated database: the two are
    parametrized apart, so it would run on every pairing of backends (SQLite with PostgreSQL).
    Then order the files for the test processes: the long ones first (tests/scheduling.py)."""
    both = [
        item.nodeid
        for item in items
        if {"database_url", "migrated_database_url"} <= set(getattr(item, "fixturenames", ()))
    ]
    if both:
        raise pytest.UsageError(
            "these tests ask for both database_url and migrated_database_url (directly or "
            "through fixtures); take one of them:\n  " + "\n  ".join(both)
        )
    items[:] = longest_first(items)
