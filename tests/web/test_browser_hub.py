"""The hub's pages in a real browser: Chromium against a hub served by uvicorn on loopback.

The hub holds two members, a published study with what each member said, and a
Kaplan–Meier analysis whose result is the real federated result over two nodes' files.
A person signs in, finds the consortium from the home page, each of its pages (members,
studies, analyses) from the hub's navigation, opens the analysis from its link and sees
the members with their rows, the result table and the plot; then uses every other link
the hub's pages offer (the language switch, back to the analyses, the overview). Expected
words come from the i18n catalogue.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn
from argon2 import PasswordHasher

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.config import Settings
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.federation.hub import fingerprint
from consortia.federation.local import analyze_local
from consortia.federation.signing import generate_key, public_key_b64, save_key
from consortia.services import hub_analyses, hub_studies, users
from consortia.services.common import cli_operator
from consortia.services.hub import HubIdentity
from consortia.storage.db import make_engine
from consortia.storage.hub import HubRepository, MemberRecord
from consortia.web.i18n import CATALOGUES
from processes import stop_thread, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

EN, ZH = CATALOGUES["en"], CATALOGUES["zh"]
ADMIN = "admin@hub.example"
PASSWORD = "correct horse battery staple"
PLAN = {
    "kind": "kaplan_meier",
    "table": "cart_efficacy",
    "time": "pfs_days",
    "event": "pfs_event",
    "group": "arm",
}
MEMBERS = {"sgh": ("Merlion General (fictional)", "SG", "push"), "shh": ("Huangpu (fictional)", "CN", "pull")}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _members(engine: object) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:  # type: ignore[attr-defined]
        for name, (institution, country, transport) in MEMBERS.items():
            key = public_key_b64(generate_key())
            HubRepository(connection).add_member(
                MemberRecord(
                    *(name, institution, country, f"http://{name}.test", transport, key),
                    *(fingerprint(key), "active", "test", "1", now, now, None),
                )
            )


@pytest.fixture
def hub(
    tmp_path: Path, migrated_sqlite: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """A hub on loopback with its administrator, two members, a study and an analysis;
    its URL and the analysis's id."""
    monkeypatch.setattr(
        "consortia.auth.passwords._HASHER",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    url = migrated_sqlite(tmp_path / "hub.db")
    engine = make_engine(url)
    operator = users.cli_operator()
    users.create_user(engine, operator, email=ADMIN, name="Hub admin", password=PASSWORD)
    users.grant_role(engine, operator, email=ADMIN, study="*", site="*", role=Role.NODE_ADMIN)
    key = generate_key()
    save_key(key, tmp_path / "hub.pem")
    port = free_port()
    identity = HubIdentity("hub", f"http://127.0.0.1:{port}", key)
    _members(engine)
    sites = {"SG01": "sgh", "SH01": "shh"}
    record, _, _ = hub_studies.publish_study(
        engine, cli_operator(), identity, template_text("cart-lbcl"), sites, file="cart.yaml"
    )
    for member, status in (("sgh", "pending"), ("shh", "accepted")):
        hub_studies.record_delivery(engine, record.study, record.sha256, member, status, "")
    files = {}
    for site, name in sites.items():
        (tmp_path / name).mkdir()
        data = synthesize("cart-lbcl", subjects=60, site=site, seed=3)
        files[name] = data.write_analysis_csv(tmp_path / name / "cart_efficacy.csv")
    with ThreadPoolExecutor(1) as pool:  # playwright's event loop runs in this thread
        result = pool.submit(analyze_local, PLAN, files).result().to_dict()
    analysis = hub_analyses.start_analysis(
        engine,
        operator,
        study="CART-LBCL",
        plan="pfs_km",
        request=PLAN,
        transport={"sgh": "push", "shh": "pull"},
    )
    hub_analyses.finish_analysis(engine, operator, analysis, result=result, error=None)
    engine.dispose()
    settings = Settings(
        database_url=url,
        environment="test",
        secret_key="a test secret of at least thirty-two characters",
        node_name="hub",
        node_url=identity.url,
        node_dir=tmp_path,
        node={"key_file": "hub.pem", "role": "hub", "consortium": "CAR-T consortium"},
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn to serve the hub")
        yield identity.url, analysis
    finally:
        stop_thread(thread, lambda: setattr(server, "should_exit", True), what="the hub")


@pytest.fixture
def hub_page(chromium: Browser, hub: tuple[str, str]) -> Iterator[Page]:
    context = chromium.new_context(base_url=hub[0], locale="en-US")
    context.set_default_timeout(60_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _rows(page: Page, table: str) -> list[list[str]]:
    rows = page.locator(f"table#{table} tbody tr")
    return [
        [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]


def test_a_hub_administrator_finds_the_consortium_and_an_analysiss_result(
    hub_page: Page, hub: tuple[str, str]
) -> None:
    page, (url, analysis) = hub_page, hub
    page.goto("/")
    page.get_by_label(EN["login.email"]).fill(ADMIN)
    page.get_by_label(EN["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=EN["login.submit"]).click()
    page.wait_for_url(f"{url}/")
    page.get_by_role("link", name=EN["home.hub_link"]).click()
    page.wait_for_url(f"{url}/hub")
    assert "CAR-T consortium" in page.locator("h1").inner_text()
    nav = page.get_by_role("navigation", name=EN["hub.nav"])

    nav.get_by_role("link", name=EN["hub.members"]).click()
    page.wait_for_url(f"{url}/hub/members")
    members = _rows(page, "members")
    assert [(row[0], row[3], row[5]) for row in members] == [
        ("sgh", "push", "active"),
        ("shh", "pull", "active"),
    ]
    assert page.locator("table#studies").count() == 0  # this page shows the members only

    nav.get_by_role("link", name=EN["hub.studies"]).click()
    page.wait_for_url(f"{url}/hub/studies")
    [study] = _rows(page, "studies")
    assert study[0] == "CART-LBCL"
    assert study[2] == "SG01: sgh, SH01: shh"
    assert study[3] == "sgh: pending, shh: accepted"

    nav.get_by_role("link", name=EN["hub.analyses"]).click()
    page.wait_for_url(f"{url}/hub/analyses")
    [row] = _rows(page, "analyses")
    assert row[:5] == [analysis, "CART-LBCL", "pfs_km", "kaplan_meier", "done"]
    page.get_by_role("link", name=analysis).click()
    page.wait_for_url(f"{url}/hub/analyses/{analysis}")
    assert page.locator("#completeness").inner_text() == EN["hub.complete"]
    assert _rows(page, "nodes") == [["sgh", "60"], ["shh", "60"]]
    groups = _rows(page, "result")
    assert sorted(row[0] for row in groups) == ["car_t", "soc"]
    assert sum(int(row[1]) for row in groups) == 120
    plot = page.locator("img#plot")
    assert plot.get_attribute("alt") == EN["hub.plot"]
    plot.scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('img#plot').complete")
    assert plot.evaluate("image => image.naturalWidth") > 300  # the PNG was drawn and loaded

    page.get_by_role("link", name=EN["lang.switch"]).click()
    page.wait_for_url(f"{url}/hub/analyses/{analysis}?lang=zh")
    assert page.locator("#completeness").inner_text() == ZH["hub.complete"]
    assert page.locator("img#plot").get_attribute("alt") == ZH["hub.plot"]
    page.get_by_role("link", name=ZH["hub.back"]).click()
    page.wait_for_url(f"{url}/hub/analyses")
    assert ZH["hub.analyses"] in page.locator("main").inner_text()
    page.get_by_role("navigation", name=ZH["hub.nav"]).get_by_role(
        "link", name=ZH["hub.overview"]
    ).click()
    page.wait_for_url(f"{url}/hub")
    for table in ("members", "studies", "analyses"):
        assert page.locator(f"table#{table}").count() == 1
