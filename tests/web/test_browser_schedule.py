"""A coordinator moves a subject's schedule in a real browser: from the subject's page, the
new day 0 and a reason; leaving the reason out is refused beside the form, and the event
table shows the new target dates after the move."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine
from test_review_pages import ADMIN, STUDY
from web_client import EMAIL, PASSWORD

from consortia.domain.templates import template_text
from consortia.services import history, schedule, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.db import make_engine
from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Page

SUBJECT = "SG01-0001"


@pytest.fixture
def study_engine(node_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The database ``node_url`` serves: the CAR-T study, Ana its coordinator at SG01, one
    subject there."""
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


def _targets(engine: Engine) -> dict[str, date | None]:
    return {e.ref: e.target_date for e in schedule.list_events(engine, ADMIN, STUDY, SUBJECT)}


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_coordinator_moves_a_schedule_with_a_reason(
    page: Page, node_url: str, study_engine: Engine, language: str
) -> None:
    words = CATALOGUES[language]
    page.goto(f"/?lang={language}")
    page.get_by_label(words["login.email"]).fill(EMAIL)
    page.get_by_label(words["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=words["login.submit"]).click()
    page.wait_for_url(f"{node_url}/")
    page.get_by_role("link", name=STUDY).click()
    page.get_by_role("link", name=SUBJECT).click()
    before = _targets(study_engine)
    anchor = subjects.get_subject(study_engine, ADMIN, STUDY, SUBJECT).anchor_date
    assert anchor is not None
    later = anchor + timedelta(days=14)
    page.get_by_text(words["schedule.move"], exact=True).first.click()  # open the disclosure
    day0 = page.get_by_label(words["schedule.anchor"])
    assert day0.input_value() == anchor.isoformat()
    day0.fill(later.isoformat())
    # the reason is required: a reason of spaces reaches the node, which refuses it
    page.get_by_label(words["schedule.reason"]).fill("   ")
    page.get_by_role("button", name=words["schedule.submit"]).click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.inner_text() == words["schedule.reason_needed"]
    assert _targets(study_engine) == before
    page.get_by_label(words["schedule.reason"]).fill("Infusion postponed two weeks")
    page.get_by_role("button", name=words["schedule.submit"]).click()
    page.get_by_role("status").wait_for()
    assert page.get_by_role("status").inner_text() == words["schedule.moved"]
    after = _targets(study_engine)
    moved = [ref for ref, target in before.items() if target is not None]
    assert moved
    for ref in moved:
        target = before[ref]
        assert target is not None
        assert after[ref] == target + timedelta(days=14)
        assert (target + timedelta(days=14)).isoformat() in page.locator("#events").inner_text()
    reasons = [
        event.reason
        for event in history.subject_history(study_engine, ADMIN, STUDY, SUBJECT)
        if event.action == "schedule.reanchor"
    ]
    assert reasons == ["Infusion postponed two weeks"]
