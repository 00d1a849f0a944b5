"""Data entry in a real browser: Chromium signs in, finds the subject, fills a form and saves.

test_capture.py checks the pages' HTML in-process; this checks what a coordinator gets:
the inputs the browser renders (a list of codes, yes/no, a text box), what it posts for
them, the redirect after the save, and a refused value marked beside its item.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from test_browser_pages import _sign_in
from test_capture import ADMIN, STUDY, SUBJECT
from web_client import EMAIL

from consortia.domain.templates import template_text
from consortia.services import data_entry, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.db import make_engine
from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Page

EN = CATALOGUES["en"]


def test_a_coordinator_fills_in_a_form_and_saves_it(
    page: Page, node_url: str, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")  # the database node_url serves
    try:
        studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
        users.grant_role(
            engine, users.cli_operator(), email=EMAIL, study=STUDY, site="SG01", role="coordinator"
        )
        subjects.enrol_subject(
            engine,
            ADMIN,
            STUDY,
            SubjectInput(subject_id=SUBJECT, site="SG01", screening_date=date(2025, 1, 6)),
        )
        page.goto("/")
        _sign_in(page)
        page.wait_for_url(f"{node_url}/")
        page.get_by_role("link", name=STUDY).click()
        page.get_by_role("link", name=SUBJECT).click()
        page.get_by_role("link", name="Eligibility").first.click()
        assert page.locator("#form-state").inner_text() == EN["state.not_started"]

        page.locator("#i-histology").select_option("dlbcl_nos")
        page.locator("#i-disease_status").select_option("primary_refractory")
        page.locator("#i-prior_lines").fill("2")
        page.locator("#i-ecog").fill("7")  # outside 0-5: refused
        page.locator("#i-eligible").select_option("1")
        page.get_by_label(EN["form.complete"]).check()
        page.get_by_role("button", name=EN["form.save"]).click()
        page.locator("#refused").wait_for()
        assert page.locator("#i-ecog-error").inner_text() == "7 is outside 0–5"
        assert page.locator("#i-ecog").input_value() == "7"
        assert page.locator("#i-histology").input_value() == "dlbcl_nos"  # kept

        page.locator("#i-ecog").fill("1")
        page.get_by_role("button", name=EN["form.save"]).click()
        page.locator("#saved").wait_for()
        assert page.url.endswith("?saved=1")
        assert page.locator("#form-state").inner_text() == EN["state.complete"]
        assert page.locator("#i-eligible").input_value() == "1"

        stored = data_entry.read_form(engine, ADMIN, STUDY, SUBJECT, "screening", "eligibility")
        assert (stored.version, stored.state) == (1, "complete")
        assert stored.values == {
            "histology": "dlbcl_nos",
            "disease_status": "primary_refractory",
            "prior_lines": "2",
            "ecog": "1",
            "eligible": "1",
        }
    finally:
        engine.dispose()
