"""An investigator signs several forms at once in a real browser: from the bar's
signature worklist, ticking forms by their labels, choosing the meaning and entering the
password once; a mistyped password signs none and says so."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine
from test_review_pages import ADMIN, ELIGIBILITY, STUDY
from web_client import PASSWORD

from consortia.domain.templates import template_text
from consortia.services import data_entry, history, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.db import make_engine
from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

SIGNER = "ivy@sg.example"
SUBJECTS = ("SG01-0001", "SG01-0002", "SG01-0003")


@pytest.fixture
def study_engine(node_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The database ``node_url`` serves: the CAR-T study with three complete eligibility
    forms at SG01, and Ivy, its investigator there."""
    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
        for subject_id in SUBJECTS:
            subjects.enrol_subject(
                engine,
                ADMIN,
                STUDY,
                SubjectInput(subject_id=subject_id, site="SG01", screening_date=date(2025, 1, 6)),
            )
            data_entry.save_form(
                engine,
                ADMIN,
                STUDY,
                subject_id,
                "screening",
                "eligibility",
                data_entry.FormSave(version=0, values=ELIGIBILITY, complete=True),
            )
        operator = users.cli_operator()
        users.create_user(engine, operator, email=SIGNER, name="Ivy Tan", password=PASSWORD)
        users.grant_role(
            engine, operator, email=SIGNER, study=STUDY, site="SG01", role="investigator"
        )
        yield engine
    finally:
        engine.dispose()


def _state(engine: Engine, subject_id: str) -> str:
    view = data_entry.read_form(engine, ADMIN, STUDY, subject_id, "screening", "eligibility")
    return view.state


@pytest.mark.parametrize("language", ["en", "zh"])
def test_an_investigator_signs_several_forms_at_once(
    page: Page, node_url: str, study_engine: Engine, language: str
) -> None:
    words = CATALOGUES[language]
    page.goto(f"/?lang={language}")
    page.get_by_label(words["login.email"]).fill(SIGNER)
    page.get_by_label(words["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=words["login.submit"]).click()
    page.wait_for_url(f"{node_url}/")
    page.get_by_role("link", name=STUDY).click()
    bar = page.get_by_role("navigation", name=words["nav.label"])
    bar.get_by_role("link", name=words["nav.sign"]).click()
    page.get_by_role("heading", name=words["sign.title"]).wait_for()

    def tick(subject_id: str) -> Locator:  # each checkbox is named by its form and subject
        return page.get_by_role("checkbox", name=re.compile(re.escape(subject_id)))

    first, second, third = SUBJECTS
    tick(first).check()
    tick(third).check()
    meaning = words["sign.meaning_approval"]
    page.get_by_label(words["form.meaning"]).select_option(label=meaning)
    # a mistyped password: nothing signed, said beside the form, the ticks kept
    page.get_by_label(words["form.password"]).fill("not-my-password")
    page.get_by_role("button", name=words["sign.submit"]).click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == words["sign.password_refused"]
    assert [_state(study_engine, subject_id) for subject_id in SUBJECTS] == ["complete"] * 3
    assert tick(first).is_checked()
    assert tick(third).is_checked()
    assert not tick(second).is_checked()
    # the password again, once, for both forms
    page.get_by_label(words["form.password"]).fill(PASSWORD)
    page.get_by_role("button", name=words["sign.submit"]).click()
    page.get_by_role("status").wait_for()
    assert page.get_by_role("status").inner_text() == words["sign.signed"].format(count=2)
    assert [_state(study_engine, subject_id) for subject_id in SUBJECTS] == [
        "signed",
        "complete",
        "signed",
    ]
    for subject_id in (first, third):
        events = history.form_history(
            study_engine, ADMIN, STUDY, subject_id, "screening", "eligibility"
        )
        assert [event.action for event in events].count("form.sign") == 1
    # what is left to sign is the second form alone
    left = page.locator("#to-sign tbody tr")
    assert left.count() == 1
    assert second in left.inner_text()
