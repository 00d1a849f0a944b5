"""The unit of work: reads are read-only by default, writes carry their audit event."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.services import audit_trail, subjects, tokens, users
from consortia.services.common import cli_operator
from consortia.services.subjects import SubjectInput
from consortia.services.unit_of_work import ReadOnlyWorkError, reading, writing
from consortia.storage.audit import iter_events
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from consortia.storage.tables import app_user

COORDINATOR = Principal(
    3, "c@sg.example", "C", frozenset({Grant("CART01", "SG01", Role.COORDINATOR)})
)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _reads(engine: sa.Engine) -> dict[str, Callable[[], object]]:
    operator = cli_operator(*Role)  # every role, at every study and site
    return {
        "list_users": lambda: users.list_users(engine, operator),
        "list_grants": lambda: users.list_grants(engine, operator),
        "count_users": lambda: users.count_users(engine),
        "list_tokens": lambda: tokens.list_tokens(engine, operator),
        "node_audit_trail": lambda: audit_trail.node_audit_trail(engine, operator),
        "study_audit_trail": lambda: audit_trail.study_audit_trail(engine, operator, "CART01"),
        "count_subjects": lambda: subjects.count_subjects(engine, operator, "CART01"),
        "verify_trail": lambda: audit_trail.verify_trail(engine),
    }


@pytest.mark.parametrize("read", sorted(_reads(sa.create_engine("sqlite://"))))
def test_a_read_does_not_wait_for_the_writer_lock_while_a_write_is_open(
    sqlite_engine: sa.Engine, read: str
) -> None:
    subjects.enrol_subject(sqlite_engine, COORDINATOR, "CART01", SubjectInput("SG01-001", "SG01"))
    finished = threading.Event()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            _reads(sqlite_engine)[read]()
        except BaseException as error:  # reported by the test below
            failure.append(error)
        finally:
            finished.set()

    thread = threading.Thread(target=reader)
    with sqlite_engine.begin() as writer:  # BEGIN IMMEDIATE: the writer lock is held
        writer.execute(app_user.update().values(name=app_user.c.name))
        thread.start()
        read_while_writing = finished.wait(timeout=10)
    thread.join(timeout=60)  # a read that queued behind the writer ends once it commits
    assert not thread.is_alive()
    assert failure == []
    assert read_while_writing, f"{read} waited for the writer lock"


def test_a_read_only_unit_of_work_cannot_write(engine: sa.Engine) -> None:
    with reading(engine, cli_operator()) as work:
        with pytest.raises(ReadOnlyWorkError):
            work.audit("node.note", "node", "x")
        with pytest.raises(sa.exc.DBAPIError):  # the database refuses it, too
            work.connection.execute(
                app_user.insert().values(
                    email="x@sg.example", name="X", created_at=datetime.now(UTC)
                )
            )
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(app_user)).scalar() == 0
    # the connection goes back to the pool able to write again
    users.create_user(
        engine, cli_operator(), email="a@sg.example", name="A", password="a long password 1"
    )
    assert users.count_users(engine) == 1


def test_a_write_and_its_audit_event_commit_together_or_not_at_all(engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError), writing(engine, cli_operator()) as work:
        work.audit("node.note", "node", "kept?")
        raise RuntimeError("the change fails after its audit event")
    with writing(engine, cli_operator()) as work:
        work.audit("node.note", "node", "kept")
    with engine.connect() as connection:
        events = [(e.action, e.entity_id) for e in iter_events(connection, chain="node")]
    assert events == [("node.note", "kept")]
