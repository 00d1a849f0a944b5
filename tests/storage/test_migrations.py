"""Migrations build the schema the code expects, from empty and from the previous revision."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from consortia.storage import tables
from consortia.storage.audit import append_event, audit_event, verify_trail
from consortia.storage.db import make_engine
from consortia.storage.migrations import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)

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


def _a_query_with_its_thread(engine: sa.Engine) -> int:
    """A subject, its form and one query on it with one message; the query's id."""
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    with engine.begin() as connection:

        def add(table: sa.Table, **values: object) -> int:
            key = connection.execute(table.insert().values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

        subject_pk = add(
            tables.subject,
            study="S",
            site="A",
            subject_id="A-1",
            created_at=now,
            created_by="x@a.example",
        )
        event_pk = add(
            tables.event_instance, subject_pk=subject_pk, event="v", instance=1, created_at=now
        )
        form_pk = add(
            tables.form_instance,
            event_pk=event_pk,
            subject_pk=subject_pk,
            form="f",
            status="complete",
            version=1,
            study_version=1,
            updated_at=now,
            updated_by="x@a.example",
        )
        query_pk = add(
            tables.data_query,
            form_pk=form_pk,
            subject_pk=subject_pk,
            item="",
            group_instance=0,
            status="open",
            origin="manual",
            text="why?",
            opened_at=now,
            opened_by="x@a.example",
            updated_at=now,
        )
        add(tables.query_message, query_pk=query_pk, action="open", text="why?", at=now, by="x")
    return query_pk


def _query_columns(engine: sa.Engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("data_query")}


def test_the_query_assignee_migrates_up_and_down_and_keeps_every_query_and_thread(
    engine: sa.Engine,
) -> None:
    upgrade(engine, "0011")
    query_pk = _a_query_with_its_thread(engine)
    upgrade(engine)
    assert _schema_differences(engine) == []
    with engine.begin() as connection:
        connection.execute(tables.data_query.update().values(assigned_to="co@a.example"))
        assigned = sa.select(tables.data_query.c.id).where(
            tables.data_query.c.assigned_to == "co@a.example"
        )
        assert connection.execute(assigned).scalars().all() == [query_pk]
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0011")
    assert current_revision(engine) == "0011"
    assert "assigned_to" not in _query_columns(engine)
    indexes = {index["name"] for index in sa.inspect(engine).get_indexes("data_query")}
    assert "ix_data_query_assigned_to" not in indexes
    with engine.connect() as connection:
        count = sa.select(sa.func.count())
        assert connection.execute(count.select_from(tables.query_message)).scalar_one() == 1
        assert connection.execute(count.select_from(tables.data_query)).scalar_one() == 1
    upgrade(engine)
    assert _schema_differences(engine) == []
    with engine.connect() as connection:
        row = connection.execute(sa.select(tables.data_query.c.assigned_to)).one()
    assert row.assigned_to is None
