"""The hub's pages: the consortium (members, studies, analyses) and an analysis's result,
in English and Chinese, for the hub's administrators only."""

from __future__ import annotations

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
from consortia.services import hub as hub_service
from consortia.services import hub_analyses, users
from consortia.services.hub import HubIdentity
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from consortia.web.i18n import CATALOGUES

ADMIN = "admin@hub.example"
RESULT = {
    "kind": "kaplan_meier",
    "exact": True,
    "complete": False,
    "nodes": [{"name": "sgh", "n": 120}],
    "missing_nodes": ["nuh"],
    "refusals": [{"node": "shh", "rule": "min_cell_count", "message": "a count of 3 < 5"}],
    "estimates": {"kind": "kaplan_meier", "n": 120},
}


@pytest.fixture
def hub_site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    engine = make_engine(database_url)
    upgrade(engine)
    operator = users.cli_operator()
    users.create_user(engine, operator, email=ADMIN, name="Hub admin", password=PASSWORD)
    users.grant_role(engine, operator, email=ADMIN, study="*", site="*", role=Role.NODE_ADMIN)
    users.create_user(engine, operator, email=EMAIL, name="Ana", password=PASSWORD)
    users.grant_role(engine, operator, email=EMAIL, study="CART", site="*", role=Role.STATISTICIAN)
    key = generate_key()
    save_key(key, tmp_path / "hub.pem")
    settings = Settings(
        database_url=database_url,
        environment="test",
        secret_key=SECRET,
        node_name="hub",
        node_dir=tmp_path,
        node={"key_file": "hub.pem", "role": "hub", "consortium": "CAR-T consortium"},
    )
    hub_service.create_invitation(engine, operator, HubIdentity("hub", "http://h", key), "sgh")
    analysis = hub_analyses.start_analysis(
        engine,
        operator,
        study="CART-LBCL",
        plan="pfs_km",
        request={"kind": "kaplan_meier", "table": "cart_efficacy"},
        transport={"sgh": "push", "shh": "pull"},
    )
    hub_analyses.finish_analysis(engine, operator, analysis, result=RESULT, error=None)
    with ExitStack() as stack:
        stack.callback(engine.dispose)
        portal = stack.enter_context(start_blocking_portal())
        app = create_app(settings)
        stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        running = Site(app, portal, engine, [])
        running.analysis = analysis  # type: ignore[attr-defined]
        yield running
        for browser in running.browsers:
            browser.close()


def signed_in(site: Site, email: str) -> Browser:
    browser = site.browser()
    assert browser.post("/login", data={"email": email, "password": PASSWORD}).status_code == 303
    return browser


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_consortium_and_an_analysis_in_both_languages(hub_site: Site, lang: str) -> None:
    words = CATALOGUES[lang]
    browser = signed_in(hub_site, ADMIN)
    home = browser.get(f"/?lang={lang}").text
    assert 'href="/hub"' in home
    page = browser.get(f"/hub?lang={lang}").text
    for key in ("hub.title", "hub.members", "hub.studies", "hub.analyses"):
        assert words[key] in page
    assert 'id="none-members"' in page
    assert "CAR-T consortium" in page
    analysis = hub_site.analysis  # type: ignore[attr-defined]
    assert f'href="/hub/analyses/{analysis}"' in page
    detail = browser.get(f"/hub/analyses/{analysis}?lang={lang}").text
    assert words["hub.incomplete"] in detail
    assert "<td>sgh</td><td>120</td>" in detail
    assert "<code>min_cell_count</code>" in detail
    assert words["hub.missing"] in detail
    assert "nuh" in detail


def test_the_hub_pages_are_for_its_administrators(hub_site: Site) -> None:
    assert hub_site.browser().get("/hub").headers["location"] == "/login"
    ana = signed_in(hub_site, EMAIL)
    assert ana.get("/hub").status_code == 403
    assert 'href="/hub"' not in ana.get("/").text
    analysis = hub_site.analysis  # type: ignore[attr-defined]
    assert ana.get(f"/hub/analyses/{analysis}").status_code == 403
    admin = signed_in(hub_site, ADMIN)
    assert admin.get("/hub/analyses/00ff").status_code == 404
