"""The main pages as assistive technology meets them in Chromium, in English and Chinese:
every form control has an accessible name, each page has its landmarks, one level-1
heading and the language of its words, its text stands out from its background (WCAG AA),
and a hard error on a form is announced and tied to its input.

The checks (tests/web/accessibility_checks.py) read Playwright's accessibility tree and the
styles Chromium computed; a planted page shows they report what they are meant to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from accessibility_checks import (
    contrast_failures,
    open_disclosures,
    page_problems,
    unnamed_controls,
)
from sqlalchemy import Engine
from test_review_pages import ADMIN, ELIGIBILITY, REVIEWER, STUDY, SUBJECT
from web_client import EMAIL, sign_in_page

from consortia.domain.templates import template_text
from consortia.services import data_entry, queries, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.db import make_engine
from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROLES = ("coordinator", "monitor", "investigator", "data_manager")
SUBJECT_PATH = f"/studies/{STUDY}/subjects/{SUBJECT}"
ELIGIBILITY_FORM = f"{SUBJECT_PATH}/events/screening/forms/eligibility"
DEMOGRAPHICS_FORM = f"{SUBJECT_PATH}/events/screening/forms/demographics"
PAGES = (
    "/",
    f"/studies/{STUDY}/subjects",
    f"/studies/{STUDY}/dashboard",
    SUBJECT_PATH,
    ELIGIBILITY_FORM,
    DEMOGRAPHICS_FORM,
    f"/studies/{STUDY}/queries",
    f"/studies/{STUDY}/sdv",
    f"/studies/{STUDY}/sign",
    f"{ELIGIBILITY_FORM}/history",
    f"{ELIGIBILITY_FORM}/items/ecog/history",
    f"{SUBJECT_PATH}/history",
)
"""Home, the subject list, the record-status dashboard, a subject, a filled form with an
open query and a blank one, the three worklists, and the histories of a form, an item and
a subject."""


@pytest.fixture
def study_engine(node_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The database ``node_url`` serves: the CAR-T study; Ana its coordinator, monitor,
    investigator and data manager at SG01; a subject whose eligibility form is complete
    (so it waits for verification and signature) and carries an open query."""
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
        for role in ROLES:
            users.grant_role(
                engine, users.cli_operator(), email=EMAIL, study=STUDY, site="SG01", role=role
            )
        subjects.enrol_subject(
            engine,
            ADMIN,
            STUDY,
            SubjectInput(subject_id=SUBJECT, site="SG01", screening_date=date(2025, 1, 6)),
        )
        data_entry.save_form(
            engine,
            ADMIN,
            STUDY,
            SUBJECT,
            "screening",
            "eligibility",
            data_entry.FormSave(version=0, values=ELIGIBILITY, complete=True),
        )
        queries.open_query(
            engine, REVIEWER, STUDY, SUBJECT, "screening", "eligibility", "ecog", "ECOG 2?"
        )
        yield engine
    finally:
        engine.dispose()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_main_pages_name_their_controls_have_landmarks_and_enough_contrast(
    page: Page, node_url: str, study_engine: Engine, language: str
) -> None:
    problems: list[str] = []
    page.goto(f"/login?lang={language}")
    problems += page_problems(page, language, navigation=False)
    sign_in_page(page, node_url, lang=language)
    for path in PAGES:
        response = page.goto(path)
        assert response is not None
        assert response.ok, (path, response.status)
        problems += page_problems(page, language)
        if open_disclosures(page):
            problems += [f"folded forms open: {p}" for p in page_problems(page, language)]
    # the bar's two menus, opened: the study switcher and the user's menu with sign-out
    for menu in ("#study-switcher", "#user-menu"):
        page.locator(f"{menu} summary").click()
        page.locator(f"{menu} .menu").wait_for()
        problems += [f"{menu} open: {problem}" for problem in page_problems(page, language)]
        page.locator(f"{menu} summary").click()
    # a sign-in refused: its message and the inputs it marks
    page.context.clear_cookies()
    page.goto(f"/login?lang={language}")
    page.get_by_role("button", name=CATALOGUES[language]["login.submit"]).click()
    page.get_by_role("alert").or_(page.locator(".error")).first.wait_for()
    problems += page_problems(page, language, navigation=False)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_hard_error_is_announced_and_tied_to_its_input(
    page: Page, node_url: str, study_engine: Engine, language: str
) -> None:
    words = CATALOGUES[language]
    sign_in_page(page, node_url, lang=language)
    page.goto(DEMOGRAPHICS_FORM)
    age = page.locator("#i-age")
    # while typing: the live check marks the input and says the error in a live region
    age.fill("150")
    message = page.locator("#i-age-error")
    message.wait_for()
    assert "150" in message.inner_text()
    _assert_announced_and_tied(page, "i-age")
    assert not page_problems(page, language)
    # on saving: the page the node draws marks the input and announces the error
    page.get_by_role("button", name=words["form.save"]).click()
    page.locator("#refused").wait_for()
    assert "150" in page.locator("#i-age-error").inner_text()
    _assert_announced_and_tied(page, "i-age")
    assert not page_problems(page, language)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_refused_sign_in_and_enrolment_fields_are_announced_and_tied(
    page: Page, node_url: str, study_engine: Engine, language: str
) -> None:
    words = CATALOGUES[language]
    page.goto(f"/login?lang={language}")
    page.get_by_role("button", name=words["login.submit"]).click()  # nothing typed
    page.locator("#email-error").wait_for()
    _assert_announced_and_tied(page, "email")
    _assert_announced_and_tied(page, "password")
    assert not page_problems(page, language, navigation=False)
    sign_in_page(page, node_url, lang=language)
    page.goto(f"/studies/{STUDY}/subjects")
    page.get_by_label(words["subjects.subject"], exact=True).fill("SG01-0002")
    page.get_by_label(words["subjects.screening_date"]).fill("9999-12-31")  # off the calendar
    page.get_by_role("button", name=words["subjects.enrol_submit"]).click()
    page.locator("#screening_date-error").wait_for()
    _assert_announced_and_tied(page, "screening_date")
    assert not page_problems(page, language)


def _assert_announced_and_tied(page: Page, input_id: str) -> None:
    """The input is marked invalid and described by its error (its accessible description,
    as Chromium computes it), and the error's words are in a region a screen reader
    announces (role=alert or status, or aria-live)."""
    from playwright.sync_api import expect  # imported here: without playwright, tests skip

    control = page.locator(f"#{input_id}")
    assert control.get_attribute("aria-invalid") == "true"
    error_id = f"{input_id}-error"
    assert error_id in (control.get_attribute("aria-describedby") or "").split()
    error = page.locator(f"#{error_id}").inner_text().strip()
    assert error
    expect(control).to_have_accessible_description(re.compile(re.escape(error)), timeout=1000)
    # the live check writes the message and the status region in the same step
    regions = page.locator("[role=alert], [role=status], [aria-live=polite], [aria-live=assertive]")
    said = regions.all_text_contents()
    assert any(error in text for text in said), (error, said)


PLANTED = """<!doctype html>
<html lang="en"><head><title>Planted</title></head>
<body>
<header><a href="/">Home</a></header>
<main>
<h1>Planted: a page</h1>
<p id="pale">Too pale to read</p>
<p id="dark">Dark enough to read</p>
<p id="large">Large enough to be paler</p>
<p id="small">Too small to be as pale</p>
<div id="bar"><a id="current" href="/">On a lighter band</a></div>
<input id="hint" aria-label="Hinted" placeholder="A pale hint">
<label for="named">Named</label><input id="named">
<input id="nameless">
<button id="icon"></button>
</main>
</body></html>"""
PLANTED_STYLE = """
#pale, #hint::placeholder { color: #aaaaaa; }
#large, #small { color: #888888; }
#large { font-size: 24px; }
#bar { background: #0b5394; }
#current { color: #ffffff; background: rgba(255, 255, 255, .25); }
"""
"""A page with a paragraph of #aaa on white (2.32:1), #888 (3.54:1) in large text (enough)
and in body text (not), white text on a translucent white band over the brand blue (4.31:1,
what the bar's current link was), a pale placeholder, a bare input, an empty button and no
navigation landmark: each check must report its own problems and nothing else."""


def test_the_checks_report_low_contrast_unnamed_controls_and_missing_landmarks(
    page: Page,
) -> None:
    page.set_content(PLANTED)
    page.add_style_tag(content=PLANTED_STYLE)  # set_content: no CSP
    failures = contrast_failures(page)
    assert [(f["selector"], f["text"], f["ratio"]) for f in failures] == [
        ("#pale", "Too pale to read", 2.32),
        ("#small", "Too small to be as pale", 3.54),
        ("#current", "On a lighter band", 4.31),  # white over white at 25% over #0b5394
        ("#hint", "A pale hint", 2.32),
    ]
    assert failures[0]["color"] == "rgb(170, 170, 170)"
    assert failures[0]["background"] == "rgb(255, 255, 255)"
    assert unnamed_controls(page) == ["textbox", "button"]
    problems = page_problems(page, "zh")
    assert any("no named navigation landmark" in p for p in problems)
    assert any("<html lang='en'>, not zh" in p for p in problems)
    assert len(problems) == 8  # two controls, navigation, language, four contrasts
