"""The pages' design as a person meets it in Chromium: the navigation bar, the study
switcher, the user's menu, the stylesheet under the Content-Security-Policy, a laptop's and a
tablet's width, the keyboard, Chinese, and print."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import Engine
from test_review_pages import ADMIN, STUDY
from web_client import EMAIL, PASSWORD, sign_in_page

from consortia.domain.templates import template_text
from consortia.services import studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.db import make_engine
from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.usefixtures("study_engine")

EN = CATALOGUES["en"]
ZH = CATALOGUES["zh"]
SUBJECT = "SG01-0001"
BRAND = "rgb(11, 83, 148)"  # --brand in the stylesheet


@pytest.fixture
def study_engine(node_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The database ``node_url`` serves: the CAR-T study and one subject at SG01; Ana is
    its coordinator there (and, from the node fixture, coordinator of CART01 and monitor
    of ORTHO, two studies the node does not hold)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
        operator = users.cli_operator()
        users.grant_role(
            engine, operator, email=EMAIL, study=STUDY, site="SG01", role="coordinator"
        )
        subjects.enrol_subject(
            engine,
            ADMIN,
            STUDY,
            SubjectInput(subject_id=SUBJECT, site="SG01", screening_date=date(2025, 1, 6)),
        )
        yield engine
    finally:
        engine.dispose()


def _bar(page: Page, lang: str = "en") -> Locator:
    return page.get_by_role("navigation", name=CATALOGUES[lang]["nav.label"])


def _labels(bar: Locator) -> list[str]:
    return [text.strip() for text in bar.get_by_role("link").all_inner_texts()]


def test_the_bar_leads_a_coordinator_into_a_study_and_through_it(page: Page, node_url: str) -> None:
    page.goto("/login")
    # the stylesheet is applied although the CSP allows no inline style
    assert page.locator("header.top").evaluate("e => getComputedStyle(e).backgroundColor") == BRAND
    sign_in_page(page, node_url)
    assert _labels(_bar(page)) == [EN["nav.home"]]  # no study chosen yet
    assert _bar(page).get_by_role("link", name=EN["nav.home"]).get_attribute("aria-current") == (
        "page"
    )
    # the study switcher lists the studies of Ana's roles
    page.get_by_text(f"{EN['nav.study']}: {EN['nav.choose_study']}").click()
    switcher = page.locator("#study-switcher .menu")
    assert switcher.get_by_role("link").all_inner_texts() == ["CART-LBCL", "CART01", "ORTHO"]
    switcher.get_by_role("link", name=STUDY).click()
    page.wait_for_url(f"{node_url}/studies/{STUDY}/subjects")
    # a coordinator reads subjects and queries; verification is the monitor's
    assert _labels(_bar(page)) == [
        EN["nav.home"],
        EN["nav.subjects"],
        EN["nav.dashboard"],
        EN["nav.queries"],
    ]
    subjects_link = _bar(page).get_by_role("link", name=EN["nav.subjects"])
    assert subjects_link.get_attribute("aria-current") == "page"
    assert page.locator("#study-switcher summary").inner_text().endswith(STUDY)
    # a subject's page keeps the study's links, Subjects still the current section
    page.get_by_role("link", name=SUBJECT).click()
    page.wait_for_url(f"**/subjects/{SUBJECT}")
    assert subjects_link.get_attribute("aria-current") == "page"
    _bar(page).get_by_role("link", name=EN["nav.queries"]).click()
    page.wait_for_url(f"{node_url}/studies/{STUDY}/queries")
    queries_link = _bar(page).get_by_role("link", name=EN["nav.queries"])
    assert queries_link.get_attribute("aria-current") == "page"
    # the user's menu, under Ana's name, shows her address and signs her out
    page.locator("#user-menu summary").click()
    assert page.locator("#user-menu .menu").inner_text().startswith(EMAIL)
    page.get_by_role("button", name=EN["logout.submit"]).click()
    page.wait_for_url(f"{node_url}/login")
    assert _bar(page).count() == 0


def test_a_monitor_sees_the_verification_worklist_in_the_bar(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    operator = users.cli_operator()
    users.create_user(study_engine, operator, email="mo@sg.example", name="Mo", password=PASSWORD)
    users.grant_role(
        study_engine, operator, email="mo@sg.example", study=STUDY, site="SG01", role="monitor"
    )
    sign_in_page(page, node_url, "mo@sg.example")
    page.goto(f"/studies/{STUDY}/subjects")
    assert EN["nav.sdv"] in _labels(_bar(page))
    _bar(page).get_by_role("link", name=EN["nav.sdv"]).click()
    page.wait_for_url(f"{node_url}/studies/{STUDY}/sdv")


@pytest.mark.parametrize("width", [1280, 1024])
def test_the_main_pages_fit_a_laptop_and_a_tablet(page: Page, node_url: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    sign_in_page(page, node_url)
    for path in ("/", f"/studies/{STUDY}/subjects", f"/studies/{STUDY}/subjects/{SUBJECT}"):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, width, overflow)
        # the bar stays on screen and every link in it can be clicked
        for link in _bar(page).get_by_role("link").all():
            box = link.bounding_box()
            assert box is not None
            assert box["x"] + box["width"] <= width, (path, width)


def test_the_keyboard_skips_the_bar_to_the_content(page: Page, node_url: str) -> None:
    sign_in_page(page, node_url)
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == EN["nav.skip"]
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_the_bar_speaks_chinese(page: Page, node_url: str) -> None:
    sign_in_page(page, node_url, lang="zh")
    page.goto(f"/studies/{STUDY}/subjects")
    assert _labels(_bar(page, "zh")) == [
        ZH["nav.home"],
        ZH["nav.subjects"],
        ZH["nav.dashboard"],
        ZH["nav.queries"],
    ]
    header = page.locator("header.top").inner_text()
    for word in ("Home", "Subjects", "Dashboard", "Queries", "Study"):
        assert word not in header


def test_a_printed_page_has_no_bar(page: Page, node_url: str) -> None:
    sign_in_page(page, node_url)
    page.goto(f"/studies/{STUDY}/subjects/{SUBJECT}")
    assert page.locator("header.top").is_visible()
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    assert page.locator("main h1").is_visible()


def test_the_stylesheet_is_served_cacheable_and_revalidated(node_url: str) -> None:
    with httpx.Client(base_url=node_url) as client:
        login = client.get("/login")
        assert "style-src 'self';" in login.headers["content-security-policy"]
        assert "unsafe-inline" not in login.headers["content-security-policy"]
        href = login.text.split('<link rel="stylesheet" href="', 1)[1].split('"', 1)[0]
        sheet = client.get(href)
        assert sheet.status_code == 200
        assert sheet.headers["content-type"] == "text/css; charset=utf-8"
        assert "immutable" in sheet.headers["cache-control"]
        assert href.endswith(sheet.headers["etag"].strip('"'))
        again = client.get(href, headers={"if-none-match": sheet.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""


def test_chinese_is_drawn_with_glyphs_not_boxes(page: Page, node_url: str) -> None:
    """A machine without a Chinese font draws every character as the same empty box: two
    different characters drawn in the pages' font must give two different pictures."""
    page.goto("/login?lang=zh")
    pictures = page.evaluate(
        """() => {
            const font = getComputedStyle(document.body).fontFamily;
            return ["研", "究", "\\u{E000}"].map(ch => {
                const canvas = document.createElement("canvas");
                canvas.width = 40; canvas.height = 40;
                const pen = canvas.getContext("2d");
                pen.font = "32px " + font;
                pen.fillText(ch, 2, 32);
                return canvas.toDataURL();
            });
        }"""
    )
    research, study, unassigned = pictures
    assert research != study  # two glyphs, not one box twice
    assert unassigned not in (research, study)  # the box a missing glyph gets is not used
