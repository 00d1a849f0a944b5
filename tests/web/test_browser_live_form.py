"""The live form in Chromium: a conditional item appears and disappears as values change,
a hard error and a soft warning show beside their item as the person types, a hidden item
is neither required nor sent, errors are announced, and the keyboard alone fills a form.

The CAR-T study's demographics form asks "Positive pregnancy test" only when
``sex == 'F' and age < 55``; age has a hard range of 18–100 and a soft one of 18–80.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import Engine
from test_review_pages import ADMIN, STUDY
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
SUBJECT = "SG01-0007"
FORM = f"/studies/{STUDY}/subjects/{SUBJECT}/events/screening/forms/demographics"


@pytest.fixture
def study_engine(node_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The database ``node_url`` serves: the CAR-T study, Ana its coordinator at SG01, and
    one subject there."""
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
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
        yield engine
    finally:
        engine.dispose()


def _open_form(page: Page, node_url: str, lang: str = "en") -> None:
    sign_in_page(page, node_url, lang=lang)
    page.goto(FORM)


def test_the_pregnancy_item_follows_sex_and_age_as_they_are_typed(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    _open_form(page, node_url)
    pregnant = page.locator("[data-item='pregnant']")
    assert pregnant.is_hidden()  # no sex yet: the show_if is false
    assert page.locator("#i-pregnant").is_disabled()
    page.get_by_label("Sex").select_option("F")
    page.get_by_label("Age at consent").fill("40")
    pregnant.wait_for(state="visible")
    assert page.locator("#i-pregnant").is_enabled()
    # an 85-year-old is not asked, and the item is not required
    page.get_by_label("Age at consent").fill("85")
    pregnant.wait_for(state="hidden")
    page.get_by_label("Age at consent").fill("40")
    pregnant.wait_for(state="visible")
    page.get_by_label("Sex").select_option("M")
    pregnant.wait_for(state="hidden")


def test_hard_errors_and_soft_warnings_show_beside_their_item_while_typing(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    _open_form(page, node_url)
    age = page.get_by_label("Age at consent")
    age.fill("150")
    error = page.locator("#i-age-error")
    error.wait_for()
    assert error.inner_text() == "150 is outside 18–100"
    assert age.get_attribute("aria-invalid") == "true"
    assert age.get_attribute("aria-describedby") == "i-age-error"
    # announced to a screen reader through the form's status region
    status = page.locator("#live-status")
    assert status.get_attribute("role") == "status"
    assert "Age at consent: 150 is outside 18–100" in status.inner_text()
    age.fill("85")  # within the hard range, outside the soft one: a warning, not an error
    error.wait_for(state="detached")
    warning = page.locator("#i-age-warning")
    warning.wait_for()
    assert "80" in warning.inner_text()
    assert age.get_attribute("aria-invalid") is None
    age.fill("60")
    warning.wait_for(state="detached")
    page.wait_for_function(
        "t => document.getElementById('live-status').textContent === t",
        arg=EN["form.live_no_problems"],
    )


def test_a_hidden_item_is_not_sent_so_its_old_value_goes_on_saving(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    _open_form(page, node_url)
    page.get_by_label("Sex").select_option("F")
    page.get_by_label("Age at consent").fill("40")
    page.locator("[data-item='pregnant']").wait_for(state="visible")
    page.get_by_label("Positive pregnancy test").select_option("0")
    page.get_by_role("button", name=EN["form.save"]).click()
    page.locator("#saved").wait_for()
    # the page is drawn by the server with the item shown, its value kept
    assert page.locator("#i-pregnant").input_value() == "0"
    # she is 60, not 40: the question no longer applies, and the save does not refuse
    page.get_by_label("Age at consent").fill("60")
    page.locator("[data-item='pregnant']").wait_for(state="hidden")
    page.get_by_label(EN["form.reason"]).fill("Age corrected from the consent form")
    page.get_by_role("button", name=EN["form.save"]).click()
    page.locator("#saved").wait_for()
    assert page.locator("[data-item='pregnant']").is_hidden()  # hidden as the server draws it
    view = data_entry.read_form(study_engine, ADMIN, STUDY, SUBJECT, "screening", "demographics")
    assert view.values.get("age") in (60, "60")
    assert "pregnant" not in view.values


def test_the_keyboard_alone_fills_and_saves_a_form(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    _open_form(page, node_url)
    keys = page.keyboard
    tab_to(page, "i-initials")
    keys.type("AT")
    tab_to(page, "i-age")  # through the date of birth's day, month and year, left empty
    keys.type("42")
    keys.press("Tab")
    assert page.evaluate("document.activeElement.id") == "i-sex"
    keys.press("ArrowDown")  # the first code after the empty choice: Female
    page.locator("[data-item='pregnant']").wait_for(state="visible")
    keys.press("Tab")
    assert page.evaluate("document.activeElement.id") == "i-pregnant"
    keys.press("ArrowDown")
    keys.press("ArrowDown")  # yes, then no
    tab_to(page, "save")
    keys.press("Enter")
    page.locator("#saved").wait_for()
    view = data_entry.read_form(study_engine, ADMIN, STUDY, SUBJECT, "screening", "demographics")
    assert view.values["initials"] == "AT"
    assert view.values["sex"] == "F"
    assert view.values["pregnant"] in (False, "0", "false")


def tab_to(page: Page, target: str, most: int = 40) -> None:
    """Press Tab until the element with id ``target`` has the focus (at most ``most``)."""
    for _ in range(most):
        if page.evaluate("document.activeElement.id") == target:
            return
        page.keyboard.press("Tab")
    pytest.fail(f"{most} presses of Tab did not reach #{target}")


def test_the_live_form_speaks_chinese(page: Page, node_url: str, study_engine: Engine) -> None:
    _open_form(page, node_url, lang="zh")
    page.get_by_label("签署知情同意时年龄").fill("45")
    page.wait_for_function(
        "t => document.getElementById('live-status').textContent === t",
        arg=ZH["form.live_no_problems"],
    )


def test_the_check_is_for_signed_in_same_origin_posts_with_the_token(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    with httpx.Client(base_url=node_url) as client:
        anonymous = client.post(FORM + "/check", data={"age": "40"})
    assert anonymous.status_code == 401
    assert anonymous.json() == {"status": 401}
    _open_form(page, node_url)  # signed in: the page's requests carry the session cookie
    token = page.locator("#entry input[name='csrf_token']").input_value()
    forged = page.request.post(FORM + "/check", form={"age": "40"})
    assert forged.status == 403
    answer = page.request.post(
        FORM + "/check",
        form={"csrf_token": token, "sex": "F", "age": "50", "weight_kg": "300"},
    )
    assert answer.status == 200
    assert answer.json() == {
        "hidden": [],
        "missing": ["pregnant"],  # shown for a woman of 50, required, still empty
        "errors": {"weight_kg": "300 is outside 25–250"},
        "warnings": {},
        "general": [],
    }
    older = page.request.post(FORM + "/check", form={"csrf_token": token, "sex": "F", "age": "85"})
    assert older.json()["hidden"] == ["pregnant"]
    assert older.json()["missing"] == []
    assert older.json()["warnings"] == {"age": older.json()["warnings"]["age"]}
    # nothing was saved: a check is not a save
    view = data_entry.read_form(study_engine, ADMIN, STUDY, SUBJECT, "screening", "demographics")
    assert view.version == 0
