"""The centre's pages served in-process: only the hub's administrators see them or post to
them, a post needs the session's CSRF token, a bad day in a form is shown as a refusal,
and a node that is not a hub has no centre."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from web_client import EMAIL, PASSWORD, SECRET, Browser, Site

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.config import Settings
from consortia.federation.signing import generate_key, save_key
from consortia.services import centre, users
from consortia.services.common import cli_operator
from consortia.storage.db import make_engine
from consortia.web.i18n import CATALOGUES

ADMIN = "admin@hub.example"
PAGES = ("/centre", "/centre/projects", "/centre/ideas", "/centre/people")


@pytest.fixture
def hub_site(migrated_database_url: str, tmp_path: Path) -> Iterator[Site]:
    engine = make_engine(migrated_database_url)
    operator = users.cli_operator()
    users.create_user(engine, operator, email=ADMIN, name="Hub admin", password=PASSWORD)
    users.grant_role(engine, operator, email=ADMIN, study="*", site="*", role=Role.NODE_ADMIN)
    users.create_user(engine, operator, email=EMAIL, name="Ana", password=PASSWORD)
    users.grant_role(engine, operator, email=EMAIL, study="CART", site="*", role=Role.STATISTICIAN)
    save_key(generate_key(), tmp_path / "hub.pem")
    settings = Settings(
        database_url=migrated_database_url,
        environment="test",
        secret_key=SECRET,
        node_name="hub",
        node_dir=tmp_path,
        node={"key_file": "hub.pem", "role": "hub", "consortium": "Consortium"},
    )
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        portal = stack.enter_context(start_blocking_portal())
        app = create_app(settings)
        stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        running = Site(app, portal, engine, [])
        yield running
        for browser in running.browsers:
            browser.close()


def signed_in(site: Site, email: str) -> Browser:
    browser = site.browser()
    assert browser.post("/login", data={"email": email, "password": PASSWORD}).status_code == 303
    return browser


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_centre_pages_in_both_languages(hub_site: Site, lang: str) -> None:
    words = CATALOGUES[lang]
    admin = signed_in(hub_site, ADMIN)
    assert 'href="/centre"' in admin.get(f"/?lang={lang}").text
    for path, title in zip(
        PAGES,
        ("centre.nav_overview", "centre.nav_projects", "centre.nav_ideas", "centre.nav_people"),
        strict=True,
    ):
        page = admin.get(f"{path}?lang={lang}")
        assert page.status_code == 200
        assert f"<title>{words[title]} · " in page.text
        assert words["centre.title"] in page.text
    assert words["centre.expiring_note"] in admin.get("/centre").text


def test_a_bad_day_is_shown_as_a_refusal_and_nothing_is_kept(hub_site: Site) -> None:
    admin = signed_in(hub_site, ADMIN)
    token = _token(admin.get("/centre").text)
    posted = admin.post(
        "/centre/actions/agreements",
        data={
            "csrf_token": token,
            "code": "A",
            "title": "T",
            "kind": "mou",
            "starts_on": "2026-02-30",
            "parties": "SGH",
        },
    )
    assert posted.status_code == 422
    assert "starts_on: &#39;2026-02-30&#39; is not a day: write YYYY-MM-DD" in posted.text
    assert centre.list_agreements(hub_site.engine, cli_operator()) == []


def test_the_centre_pages_are_for_the_hubs_administrators(hub_site: Site) -> None:
    assert hub_site.browser().get("/centre").headers["location"] == "/login"
    ana = signed_in(hub_site, EMAIL)
    assert 'href="/centre"' not in ana.get("/").text
    for path in PAGES:
        assert ana.get(path).status_code == 403
    ana_token = _token(ana.get("/").text)  # her session's token, from the sign-out form
    refused = ana.post(
        "/centre/actions/partners",
        data={
            "csrf_token": ana_token,
            "code": "X",
            "name": "X",
            "kind": "hospital",
            "country": "SG",
        },
    )
    assert refused.status_code == 403
    admin = signed_in(hub_site, ADMIN)
    no_token = admin.post(
        "/centre/actions/partners",
        data={"code": "X", "name": "X", "kind": "hospital", "country": "SG"},
    )
    assert no_token.status_code == 403
    assert admin.get("/centre/nowhere").status_code == 404
    assert centre.list_partners(hub_site.engine, cli_operator()) == []
