"""The record-status dashboard in Chromium: found in the bar, read by icon and label,
filtered, paged, and a way into each form."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine
from test_review_pages import ADMIN, ELIGIBILITY, STUDY
from web_client import EMAIL, sign_in_page

from consortia.domain.templates import template_text
from consortia.services import data_entry, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.db import make_engine
from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Page

EN = CATALOGUES["en"]
ZH = CATALOGUES["zh"]


@pytest.fixture
def study_engine(node_url: str, tmp_path: Path) -> Iterator[Engine]:
    """Ana coordinates CAR-LBCL at SG01: SG01-0001 has a complete eligibility form,
    SG01-0002 one in progress, SG01-0003 nothing yet; SH01-0001 is at the other site."""
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
        users.grant_role(
            engine, users.cli_operator(), email=EMAIL, study=STUDY, site="SG01", role="coordinator"
        )
        for subject_id in ("SG01-0001", "SG01-0002", "SG01-0003", "SH01-0001"):
            subjects.enrol_subject(
                engine,
                ADMIN,
                STUDY,
                SubjectInput(subject_id, subject_id[:4], screening_date=date(2025, 1, 6)),
            )
        for subject_id, complete in (("SG01-0001", True), ("SG01-0002", False)):
            save = data_entry.FormSave(version=0, values=ELIGIBILITY, complete=complete)
            data_entry.save_form(engine, ADMIN, STUDY, subject_id, "screening", "eligibility", save)
        yield engine
    finally:
        engine.dispose()


def _open_dashboard(page: Page, node_url: str, lang: str = "en") -> None:
    catalogue = CATALOGUES[lang]
    sign_in_page(page, node_url, lang=lang)
    page.get_by_role("link", name=STUDY).click()
    bar = page.get_by_role("navigation", name=catalogue["nav.label"])
    bar.get_by_role("link", name=catalogue["nav.dashboard"]).click()
    page.wait_for_url(f"{node_url}/studies/{STUDY}/dashboard")


def test_a_coordinator_reads_each_forms_state_and_opens_a_form_from_its_icon(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    _open_dashboard(page, node_url)
    grid = page.locator("#dashboard")
    subjects_shown = grid.locator("tbody th[scope=row]").all_inner_texts()
    assert subjects_shown == ["SG01-0001", "SG01-0002", "SG01-0003"]  # not the other site's
    first = grid.locator("tbody tr").nth(0)
    complete = first.get_by_role("link", name="Eligibility: complete")
    assert complete.get_attribute("class") == "state state-complete"
    second = grid.locator("tbody tr").nth(1)
    assert second.get_by_role("link", name="Eligibility: in progress").count() == 1
    third = grid.locator("tbody tr").nth(2)
    assert third.get_by_role("link", name="Eligibility: not started").count() == 1
    # the state's colour comes from the stylesheet
    colour = complete.evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(11, 79, 138)"
    assert page.locator("#shown").inner_text() == "Subjects 1–3 of 3"
    # filter: subjects with a form in progress
    page.get_by_label(EN["dashboard.state"]).select_option("in_progress")
    page.get_by_role("button", name=EN["review.filter"]).click()
    page.wait_for_url("**state=in_progress**")
    assert grid.locator("tbody th[scope=row]").all_inner_texts() == ["SG01-0002"]
    grid.get_by_role("link", name="Eligibility: in progress").click()
    page.wait_for_url("**/subjects/SG01-0002/events/screening/forms/eligibility")
    assert page.locator("#form-state").inner_text() == EN["state.in_progress"]


def test_the_dashboard_speaks_chinese(page: Page, node_url: str, study_engine: Engine) -> None:
    _open_dashboard(page, node_url, lang="zh")
    assert page.locator("h1").inner_text().startswith(ZH["dashboard.title"])
    legend = page.locator("#legend").inner_text()
    for state in ("not_started", "in_progress", "complete", "verified", "signed", "locked"):
        assert ZH[f"state.{state}"] in legend
    assert page.locator("#shown").inner_text() == "第 1–3 名受试者，共 3 名"


def test_a_filter_the_study_does_not_have_gets_a_message_not_a_trace(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    _open_dashboard(page, node_url)
    response = page.goto(f"/studies/{STUDY}/dashboard?state=lost")
    assert response is not None
    assert response.status == 422
    assert "state: 'lost' is not a state" in page.locator("main").inner_text()
