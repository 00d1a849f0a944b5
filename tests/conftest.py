"""Shared fixtures: databases (SQLite always, PostgreSQL in CI and where available)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    server = request.getfixturevalue("postgres_server_url")
    name = f"t_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**9}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
