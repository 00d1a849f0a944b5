"""The review pages in a real browser, used as they are offered: a monitor works through the
SDV worklist, a data manager filters the queries and closes one, and an item's history is
opened from its link on the form."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine
from test_review_pages import ADMIN, ELIGIBILITY, REVIEWER, STUDY, SUBJECT
from web_client import EMAIL, PASSWORD, sign_in_page

from consortia.domain.templates import template_text
from consortia.services import data_entry, queries, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.db import make_engine
from consortia.storage.queries import QueryFilter
from consortia.web.i18n import CATALOGUES

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

EN = CATALOGUES["en"]


@pytest.fixture
def study_engine(node_url: str, tmp_path: Path) -> Iterator[Engine]:
    """The database ``node_url`` serves: the CAR-T study, Ana its coordinator at SG01, a
    subject at SG01 whose eligibility form is complete (ECOG 1, then 2 with a reason)."""
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
        for version, ecog, reason in ((0, 1, None), (1, 2, "Source note says ECOG 2")):
            data_entry.save_form(
                engine,
                ADMIN,
                STUDY,
                SUBJECT,
                "screening",
                "eligibility",
                data_entry.FormSave(
                    version=version,
                    values={**ELIGIBILITY, "ecog": ecog},
                    complete=True,
                    reason=reason,
                ),
            )
        yield engine
    finally:
        engine.dispose()


def _person(engine: Engine, email: str, role: str) -> str:
    operator = users.cli_operator()
    users.create_user(engine, operator, email=email, name=email.split("@")[0], password=PASSWORD)
    users.grant_role(engine, operator, email=email, study=STUDY, site="SG01", role=role)
    return email


def _sign_in(page: Page, node_url: str, email: str) -> None:
    page.goto("/")
    page.get_by_label(EN["login.email"]).fill(email)
    page.get_by_label(EN["login.password"]).fill(PASSWORD)
    page.get_by_role("button", name=EN["login.submit"]).click()
    page.wait_for_url(f"{node_url}/")
    page.get_by_role("link", name=STUDY).click()


def _nav(page: Page, key: str) -> Locator:
    """A link of the navigation bar, found by its label as a person reads it."""
    return page.get_by_role("navigation", name=EN["nav.label"]).get_by_role("link", name=EN[key])


def test_a_monitor_verifies_a_form_from_the_sdv_worklist(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    _sign_in(page, node_url, _person(study_engine, "mo@sg.example", "monitor"))
    _nav(page, "nav.sdv").click()
    worklist = page.locator("#sdv")
    assert SUBJECT in worklist.inner_text()
    worklist.get_by_role("link", name="Eligibility").click()
    page.get_by_role("button", name=EN["form.step_verify"]).click()
    page.locator("#done").wait_for()
    assert page.locator("#form-state").inner_text() == EN["state.verified"]
    page.get_by_role("link", name=EN["form.back"]).click()
    page.get_by_role("link", name=EN["subject.back"]).click()
    _nav(page, "nav.sdv").click()
    page.locator("#no-forms").wait_for()
    assert page.locator("#sdv").count() == 0


def test_a_data_manager_filters_the_queries_and_closes_one_after_correction(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    where = (STUDY, SUBJECT, "screening", "eligibility")
    ecog = queries.open_query(study_engine, REVIEWER, *where, "ecog", "ECOG 2 in the note?")
    histology = queries.open_query(
        study_engine, REVIEWER, *where, "histology", "Which pathology report?"
    )
    # the coordinator corrected ECOG (the fixture's second save) and answers
    queries.answer_query(study_engine, ADMIN, STUDY, ecog.record.id, "Corrected to 2")
    _sign_in(page, node_url, _person(study_engine, "dee@sg.example", "data_manager"))
    _nav(page, "nav.queries").click()
    everything = page.locator("#queries tbody tr")
    everything.first.wait_for()
    assert everything.count() >= 2  # with any the system opened on saving
    page.get_by_label(EN["review.status"]).select_option("answered")
    page.get_by_role("button", name=EN["review.filter"]).click()
    page.wait_for_url("**status=answered**")
    rows = page.locator("#queries tbody tr")
    assert rows.count() == 1
    assert "Corrected" not in rows.inner_text()  # the opening text is shown
    assert "ECOG 2 in the note?" in rows.inner_text()
    rows.get_by_role("link", name=str(ecog.record.id)).click()
    query = page.locator(f"#query-{ecog.record.id}")
    query.get_by_label(EN["queries.message"]).fill("Checked against the source")
    query.get_by_role("button", name=EN["queries.step_close"]).click()
    page.locator("#done").wait_for()
    closed = queries.get_query(study_engine, REVIEWER, STUDY, ecog.record.id).record
    assert closed.status == "closed"
    assert closed.messages[-1].text == "Checked against the source"
    still = queries.list_queries(
        study_engine, REVIEWER, STUDY, QueryFilter(status="open"), limit=10
    )
    assert histology.record.id in {view.record.id for view in still}
    assert ecog.record.id not in {view.record.id for view in still}


def test_an_items_history_opens_from_its_link_on_the_form(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    _sign_in(page, node_url, EMAIL)
    page.get_by_role("link", name=SUBJECT).click()
    page.get_by_role("link", name="Eligibility").first.click()
    page.locator("#history-ecog").click()
    page.locator("#item-history").wait_for()
    last = page.locator("#item-history tbody tr").last
    assert last.locator(".before").inner_text() == "1"
    assert last.locator(".after").inner_text() == "2"
    assert last.locator(".reason").inner_text() == "Source note says ECOG 2"
    assert ADMIN.email in last.inner_text()


def test_a_data_manager_assigns_a_query_to_the_coordinator_who_finds_it_assigned_to_her(
    page: Page, node_url: str, study_engine: Engine
) -> None:
    where = (STUDY, SUBJECT, "screening", "eligibility")
    ecog = queries.open_query(study_engine, REVIEWER, *where, "ecog", "ECOG 2 in the note?")
    queries.open_query(study_engine, REVIEWER, *where, "histology", "Which pathology report?")
    _sign_in(page, node_url, _person(study_engine, "dee@sg.example", "data_manager"))
    page.get_by_role("link", name=SUBJECT).click()
    page.get_by_role("link", name="Eligibility").first.click()
    query = page.locator(f"#query-{ecog.record.id}")
    assert query.locator(f"#assignee-{ecog.record.id}").inner_text() == EN["queries.unassigned"]
    query.get_by_label(EN["queries.assign_to"], exact=True).select_option(value=EMAIL)
    query.get_by_role("button", name=EN["queries.step_assign"]).click()
    page.locator("#done").wait_for()
    assert page.locator("#done").inner_text() == EN["form.done_assign"]
    assert page.locator(f"#assignee-{ecog.record.id}").inner_text() == EMAIL
    page.locator("#user-menu summary").click()  # the menu under the person's name
    page.get_by_role("button", name=EN["logout.submit"]).click()
    page.wait_for_url("**/login**")
    # the coordinator signs in and narrows the study's queries to hers
    sign_in_page(page, node_url, EMAIL)
    page.get_by_role("link", name=STUDY).click()
    _nav(page, "nav.queries").click()
    page.locator("#queries tbody tr").first.wait_for()
    assert page.locator("#queries tbody tr").count() >= 2
    page.get_by_label(EN["review.assignee"], exact=True).select_option(
        label=EN["review.assigned_to_me"]
    )
    page.get_by_role("button", name=EN["review.filter"]).click()
    page.wait_for_url("**assignee=me**")
    rows = page.locator("#queries tbody tr")
    assert rows.count() == 1
    assert "ECOG 2 in the note?" in rows.inner_text()
    assert rows.locator(".assignee").inner_text() == EMAIL
    rows.get_by_role("link", name=str(ecog.record.id)).click()
    page.locator(f"#query-{ecog.record.id}").wait_for()
    assert page.locator(f"#assignee-{ecog.record.id}").inner_text() == EMAIL
