"""Data entry in a real browser: Chromium signs in, finds the subject, fills a form and saves.

test_capture.py checks the pages' HTML in-process; this checks what a coordinator gets:
the inputs the browser renders (a list of codes, yes/no, a text box), what it posts for
them, the redirect after the save, and a refused value marked beside its item.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine
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


@pytest.fixture
def study_engine(node_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The database ``node_url`` serves, with the CAR-T study loaded and Ana its
    coordinator at SG01."""
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
        users.grant_role(
            engine, users.cli_operator(), email=EMAIL, study=STUDY, site="SG01", role="coordinator"
        )
        yield engine
    finally:
        engine.dispose()


def test_a_coordinator_fills_in_a_form_and_saves_it(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    engine = study_engine
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


def test_a_coordinator_enrols_a_subject_with_the_form_on_the_subjects_page(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    page.goto("/")
    _sign_in(page)
    page.wait_for_url(f"{node_url}/")
    page.get_by_role("link", name=STUDY).click()
    page.wait_for_url(f"{node_url}/studies/{STUDY}/subjects")
    assert page.title() == f"{EN['subjects.title']} · {STUDY} · {EN['app.name']}"
    assert page.locator("#no-subjects").is_visible()
    # the form as a person finds it: by its heading, its labels and its button
    assert page.get_by_role("heading", name=EN["subjects.enrol"]).is_visible()
    page.get_by_label(EN["subjects.subject"], exact=True).fill("SG01-0002")
    page.get_by_label(EN["home.site"], exact=True).select_option("SG01")
    page.get_by_label(EN["subjects.initials"]).fill("QX")
    page.get_by_label(EN["subjects.screening_date"]).fill("9999-12-31")
    page.get_by_role("button", name=EN["subjects.enrol_submit"]).click()
    # a date that puts the schedule off the calendar: refused beside the field, typing kept
    refusal = page.locator("#screening_date-error")
    refusal.wait_for()
    assert refusal.inner_text() == "9999-12-31 puts day 0, 35 days later, after 9999-12-31"
    date_input = page.get_by_label(EN["subjects.screening_date"])
    assert date_input.get_attribute("aria-describedby") == "screening_date-error"
    assert date_input.input_value() == "9999-12-31"
    assert page.get_by_label(EN["subjects.subject"], exact=True).input_value() == "SG01-0002"
    below = date_input.bounding_box()
    beside = refusal.bounding_box()
    assert below is not None
    assert beside is not None
    assert 0 <= beside["y"] - (below["y"] + below["height"]) < 40  # right under the input
    date_input.fill("2025-03-03")
    page.get_by_role("button", name=EN["subjects.enrol_submit"]).click()
    page.wait_for_url(f"{node_url}/studies/{STUDY}/subjects/SG01-0002")
    assert page.locator("h1").inner_text() == "SG01-0002"
    assert page.locator("#subject-status").inner_text() == EN["state.screening"]
    page.get_by_role("link", name=EN["subject.back"]).click()
    page.wait_for_url(f"{node_url}/studies/{STUDY}/subjects")
    assert page.locator("#subjects tbody tr").all_inner_texts() == [
        f"SG01-0002\tSG01\t{EN['state.screening']}"
    ]
    record = subjects.get_subject(study_engine, ADMIN, STUDY, "SG01-0002")
    assert (record.site, record.initials, record.status) == ("SG01", "QX", "screening")


@pytest.mark.parametrize("width", [1280, 1024])
def test_the_adverse_event_table_fits_the_window_and_scrolls_in_its_own_box(
    page: Page, node_url: str, study_engine: Engine, width: int
) -> None:
    """A laptop (1,280 px) and a tablet (1,024 px): the page never scrolls sideways; the
    repeating group's table, wider than the window, scrolls inside its own box."""
    subjects.enrol_subject(
        study_engine,
        ADMIN,
        STUDY,
        SubjectInput(subject_id=SUBJECT, site="SG01", screening_date=date(2025, 1, 6)),
    )
    page.set_viewport_size({"width": width, "height": 800})
    page.goto("/login")
    _sign_in(page)
    page.wait_for_url(f"{node_url}/")
    page.goto(f"/studies/{STUDY}/subjects/{SUBJECT}/events/ae_log/forms/ae")
    table = page.locator("#group-events")
    table.wait_for()
    assert page.evaluate("window.innerWidth") == width
    # the page itself does not overflow the window
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = page.locator(".group-scroll").filter(has=table)
    assert box.count() == 1
    sizes = box.evaluate(
        "e => ({scroll: e.scrollWidth, client: e.clientWidth, right: e.getBoundingClientRect().right,"
        " overflow: getComputedStyle(e).overflowX, table: e.querySelector('table').scrollWidth})"
    )
    assert sizes["right"] <= width
    assert sizes["overflow"] == "auto"
    assert sizes["table"] > sizes["client"]  # the table is wider than its box ...
    assert sizes["scroll"] > sizes["client"]  # ... which scrolls to show all of it
    # the last column can be reached: scrolling the box brings it into view, and it is
    # reachable from the keyboard
    assert box.get_attribute("tabindex") == "0"
    box.evaluate("e => e.scrollLeft = e.scrollWidth")
    last = page.locator("#group-events thead th").last
    right = last.evaluate("e => e.getBoundingClientRect().right")
    assert right <= width
    # the inputs stay usable: a term typed in the first row is saved
    page.locator('[name="events[1].ae_term"]').fill("Anaemia")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
