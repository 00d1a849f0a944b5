"""Fixtures for the pages: a fresh node per test, with one signed-up person."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from anyio.from_thread import start_blocking_portal
from argon2 import PasswordHasher
from web_client import EMAIL, PASSWORD, SECRET, Site

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.config import Settings
from consortia.services import users
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters: these tests are about pages, not about hashing cost."""
    monkeypatch.setattr(
        "consortia.auth.passwords._HASHER",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


@pytest.fixture
def site(database_url: str) -> Iterator[Site]:
    """A running node on a fresh database, with Ana: coordinator of CART01 at SG01."""
    settings = Settings(
        database_url=database_url,
        environment="test",
        secret_key=SECRET,
    )
    engine = make_engine(database_url)
    upgrade(engine)
    operator = users.cli_operator()
    users.create_user(engine, operator, email=EMAIL, name="Ana <Lim>", password=PASSWORD)
    users.grant_role(
        engine, operator, email=EMAIL, study="CART01", site="SG01", role=Role.COORDINATOR
    )
    users.grant_role(engine, operator, email=EMAIL, study="ORTHO", site="*", role=Role.MONITOR)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        portal = stack.enter_context(start_blocking_portal())
        app = create_app(settings)
        stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        running = Site(app, portal, engine, [])
        yield running
        for browser in running.browsers:
            browser.close()
