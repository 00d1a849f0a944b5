"""Migrations build the schema the code expects, from empty and from the previous revision."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from consortia.storage import tables
from consortia.storage.audit import append_event, audit_event, verify_trail
from consortia.storage.db import make_engine
from consortia.storage.migrations import current_revision, head_revision, upgrade

PREVIOUS = "0003"


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    engine = make_engine(database_url)
    yield engine  # type: ignore[misc]
    engine.dispose()


def _schema_differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, tables.metadata))


def test_upgrading_an_empty_database_builds_exactly_the_tables_the_code_declares(
    engine: sa.Engine,
) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _schema_differences(engine) == []


def test_upgrading_from_the_previous_revision_keeps_the_audit_trail_intact(
    engine: sa.Engine,
) -> None:
    upgrade(engine, PREVIOUS)
    assert current_revision(engine) == PREVIOUS
    with engine.begin() as connection:
        append_event(
            connection, "node", actor="cli:root", action="setup", entity_type="node", entity_id="n"
        )
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _schema_differences(engine) == []
    with engine.connect() as connection:
        report = verify_trail(connection)
    assert report.ok
    assert report.events == 1


def test_upgrading_twice_changes_nothing(engine: sa.Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_the_migrated_audit_trail_refuses_updates_and_deletes(engine: sa.Engine) -> None:
    upgrade(engine)
    with engine.begin() as connection:
        append_event(
            connection, "node", actor="cli:root", action="setup", entity_type="node", entity_id="n"
        )
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(audit_event.update().values(reason="rewritten"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(audit_event.delete())
