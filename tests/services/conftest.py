"""Fixtures for service tests: a migrated database on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

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


#: ``refuse_event(engine, action)``: a context in which the database refuses to store an
#: audit event ``action`` (a trigger on ``audit_event``), to force a failure after the
#: change that event describes, in the same transaction, on either database.
RefuseEvent = Callable[[sa.Engine, str], AbstractContextManager[None]]


@contextmanager
def _refused_event(engine: sa.Engine, action: str) -> Iterator[None]:
    """While inside, the database refuses to store an audit event ``action``."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as connection:
        if sqlite:
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_event BEFORE INSERT ON audit_event "
                f"WHEN NEW.action = '{action}' "
                "BEGIN SELECT RAISE(ABORT, 'audit event refused by the test'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit event refused by the test'; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_event BEFORE INSERT ON audit_event FOR EACH ROW "
                f"WHEN (NEW.action = '{action}') EXECUTE FUNCTION refuse_event()"
            )
    try:
        yield
    finally:
        with engine.begin() as connection:
            if sqlite:
                connection.exec_driver_sql("DROP TRIGGER refuse_event")
            else:
                connection.exec_driver_sql("DROP TRIGGER refuse_event ON audit_event")
                connection.exec_driver_sql("DROP FUNCTION refuse_event()")


@pytest.fixture
def refuse_event() -> RefuseEvent:
    return _refused_event
