"""Fixtures for the pages: a fresh node per test, with one signed-up person.

``site`` serves the app in-process to httpx. ``node_url``, ``chromium`` and ``page`` are
for the real-browser tests: the app served by uvicorn on a loopback port in a thread,
driven by Debian's Chromium (``/usr/bin/chromium``, which ``scripts/test_chromium.py
ensure`` installs) through playwright's sync API.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
from anyio.from_thread import start_blocking_portal
from argon2 import PasswordHasher
from sqlalchemy import Engine
from web_client import EMAIL, PASSWORD, SECRET, Site

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.config import Settings
from consortia.services import users
from consortia.storage.db import make_engine
from processes import served_in_thread

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = Path("/usr/bin/chromium")
# The machine has no internet: without these Chromium stalls on its background services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_TIMEOUT_MS = 60_000  # a page on a machine whose cores are all busy


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters: these tests are about pages, not about hashing cost."""
    monkeypatch.setattr(
        "consortia.auth.passwords._HASHER",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


def _settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, environment="test", secret_key=SECRET)


def _with_ana(database_url: str) -> Engine:
    """An engine on the migrated database, with Ana: coordinator of CART01 at SG01 and
    monitor of ORTHO at every site."""
    engine = make_engine(database_url)
    operator = users.cli_operator()
    users.create_user(engine, operator, email=EMAIL, name="Ana <Lim>", password=PASSWORD)
    users.grant_role(
        engine, operator, email=EMAIL, study="CART01", site="SG01", role=Role.COORDINATOR
    )
    users.grant_role(engine, operator, email=EMAIL, study="ORTHO", site="*", role=Role.MONITOR)
    return engine


@pytest.fixture
def site(migrated_database_url: str) -> Iterator[Site]:
    """A running node on a fresh database, with Ana: coordinator of CART01 at SG01."""
    settings = _settings(migrated_database_url)
    engine = _with_ana(migrated_database_url)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        portal = stack.enter_context(start_blocking_portal())
        app = create_app(settings)
        stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        running = Site(app, portal, engine, [])
        yield running
        for browser in running.browsers:
            browser.close()


@pytest.fixture
def node_url(tmp_path: Path, migrated_sqlite: Callable[[Path], str]) -> Iterator[str]:
    """The base URL of a real node: uvicorn on a free loopback port, in a thread, on a fresh
    SQLite database with Ana (as in ``site``).

    The listening socket is bound here and handed to uvicorn, so no other process can take
    the port in between. Chromium treats ``http://127.0.0.1`` as a secure context, so it
    keeps the node's ``Secure`` session cookie without TLS.
    """
    database_url = migrated_sqlite(tmp_path / "node.db")
    _with_ana(database_url).dispose()
    with served_in_thread(create_app(_settings(database_url)), what="the node") as url:
        yield url


def _chromium_unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(
            f"{reason}: CI must run the browser tests (`make test` runs "
            "scripts/test_chromium.py ensure, and installs the test extra)",
            pytrace=False,
        )
    pytest.skip(f"{reason}; `python scripts/test_chromium.py ensure` installs it as root")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Headless Chromium, one per test module (each test gets its own context)."""
    if not CHROMIUM.is_file():
        _chromium_unavailable(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _chromium_unavailable("the playwright package is not installed (the test extra has it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=60_000,
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_context(chromium: Browser, node_url: str) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) whose relative URLs go to ``node_url``."""
    context = chromium.new_context(base_url=node_url, locale="en-US")
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    context.set_default_navigation_timeout(BROWSER_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser_context: BrowserContext) -> Page:
    """A tab in ``browser_context``."""
    return browser_context.new_page()
