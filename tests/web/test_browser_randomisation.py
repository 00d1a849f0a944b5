"""Randomising in a real browser: Chromium signs in at a member node (served by uvicorn)
whose hub is a real app, randomises a subject from its page, sees the allocation code and
not the arm, then unblinds it in an emergency with a reason and sees the arm."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from web_client import EMAIL, PASSWORD

from consortia.auth.principal import Role
from consortia.services import users
from consortia.web.i18n import CATALOGUES
from processes import served_in_thread
from randomisation_network import STUDY, Network, audit_actions, network, ready_subject

if TYPE_CHECKING:
    from playwright.sync_api import Browser

EN = CATALOGUES["en"]
ZH = CATALOGUES["zh"]


@pytest.fixture
def served(migrated_sqlite: Callable[[Path], str], tmp_path: Path) -> Iterator[tuple[Network, str]]:
    hub_url = migrated_sqlite(tmp_path / "hub.sqlite")
    with network(hub_url, migrated_sqlite, tmp_path, members=("sgh",)) as net:
        sgh = net.members["sgh"]
        operator = users.cli_operator()
        users.create_user(sgh.engine, operator, email=EMAIL, name="Ana", password=PASSWORD)
        for role in (Role.COORDINATOR, Role.INVESTIGATOR):
            users.grant_role(sgh.engine, operator, email=EMAIL, study=STUDY, site="SG01", role=role)
        ready_subject(sgh, "SG01-001", "SG01")
        net.connect("sgh")
        # no lifespan: the member's federation background work (witnessing its peers) is
        # not what this test is about
        try:
            with served_in_thread(sgh.app, lifespan="off") as url:
                yield net, url
        finally:
            sgh.app.state.password_work.shutdown()


def test_a_subject_is_randomised_from_its_page_blind_then_unblinded_with_a_reason(
    chromium: Browser, served: tuple[Network, str]
) -> None:
    net, url = served
    context = chromium.new_context(base_url=url, locale="en-US")
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label(EN["login.email"]).fill(EMAIL)
        page.get_by_label(EN["login.password"]).fill(PASSWORD)
        page.get_by_role("button", name=EN["login.submit"]).click()
        page.wait_for_url(f"{url}/")
        page.goto(f"/studies/{STUDY}/subjects/SG01-001")
        page.locator("#subject-randomisation").click()
        page.wait_for_url(f"{url}/studies/{STUDY}/subjects/SG01-001/randomisation")
        assert page.locator("#not-randomised").is_visible()
        page.get_by_role("button", name=EN["rand.randomise"]).click()
        page.wait_for_selector("#allocation-code")
        assert page.locator("#allocation-number").inner_text() == "1"
        assert page.locator("#allocation-code").inner_text() in ("A", "B")
        assert page.locator("#allocation-arm").count() == 0
        assert page.locator("#blinded").inner_text() == EN["rand.blinded"]
        for arm in ("car_t", "soc"):
            assert arm not in page.content()
        page.get_by_label(EN["rand.reason"]).fill("grade 4 CRS: the physician needs the arm")
        page.get_by_role("button", name=EN["rand.unblind"]).click()
        page.wait_for_selector("#allocation-arm")
        assert page.locator("#allocation-arm").inner_text() in ("car_t", "soc")
        assert page.locator("#unblinded").is_visible()
        page.goto(f"/studies/{STUDY}/subjects/SG01-001/randomisation?lang=zh")
        assert ZH["rand.title"] in page.content()
    finally:
        context.close()
    actions = audit_actions(net.members["sgh"].engine, STUDY)
    assert ("subject.randomise", f"{STUDY}/SG01-001", None) in actions
    assert (
        "subject.unblind",
        f"{STUDY}/SG01-001",
        "grade 4 CRS: the physician needs the arm",
    ) in actions
