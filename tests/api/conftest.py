"""Fixtures for API tests: a fresh node per test, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from node_client import Node, running_node


@pytest.fixture
def node(migrated_database_url: str) -> Iterator[Node]:
    """A running node on a fresh, migrated database, with nobody in it yet."""
    with running_node(migrated_database_url) as running:
        yield running


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters: these tests are about rules, not about hashing cost."""
    monkeypatch.setattr(
        "consortia.auth.passwords._HASHER",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
