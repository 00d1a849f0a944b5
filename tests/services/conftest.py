"""Fixtures for service tests: a migrated database on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from consortia.storage.db import make_engine


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(migrated_database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters: these tests are about rules, not about hashing cost."""
    monkeypatch.setattr(
        "consortia.auth.passwords._HASHER",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
