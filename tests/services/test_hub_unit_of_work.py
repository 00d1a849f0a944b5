"""The hub's use cases go through the unit of work: its reads never queue for the writer.

At a hub on SQLite a member's join, a delivery answer or an allocation holds the writer
lock for its transaction; listing the members, the studies, the analyses or the offers,
and the agreement checks before a publication or an analysis, read a snapshot instead of
waiting behind it (and cannot write: they are read-only units of work).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Role
from consortia.services import centre_enforcement, hub, hub_analyses, hub_studies
from consortia.services.common import cli_operator
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from consortia.storage.tables import app_user


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _reads(engine: sa.Engine) -> dict[str, Callable[[], object]]:
    operator = cli_operator(*Role)  # a node administrator, among every other role
    return {
        "list_members": lambda: hub.list_members(engine, operator),
        "list_studies": lambda: hub_studies.list_studies(engine, operator),
        "list_offers": lambda: hub_studies.list_offers(engine, operator),
        "list_analyses": lambda: hub_analyses.list_analyses(engine, operator),
        "study_members": lambda: hub_analyses.study_members(engine, "CART01"),
        "check_site_agreements": lambda: centre_enforcement.check_site_agreements(
            engine, "CART01", {"SG01": "sgh"}
        ),
        "check_analysis_agreements": lambda: centre_enforcement.check_analysis_agreements(
            engine, "CART01", ["sgh"]
        ),
    }


@pytest.mark.parametrize("read", sorted(_reads(sa.create_engine("sqlite://"))))
def test_a_hub_read_does_not_wait_for_the_writer_lock_while_a_write_is_open(
    sqlite_engine: sa.Engine, read: str
) -> None:
    finished = threading.Event()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            _reads(sqlite_engine)[read]()
        except BaseException as error:  # reported below
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
