"""A form page is a thin client of the services: few transactions, no audit event that
nobody's eyes caused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from web_client import EMAIL, PASSWORD, Browser, Site

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.services import studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.audit import iter_events

STUDY = "CART-LBCL"
SUBJECT = "SG01-0001"
FORM = f"/studies/{STUDY}/subjects/{SUBJECT}/events/screening/forms/demographics"
ADMIN = Principal(
    1,
    "admin@sg.example",
    "Admin",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR)),
)
DEMOGRAPHICS = {
    "initials": "AL",
    "birth_date": "1961-04-02",
    "hospital_number": "H123",
    "age": "63",
    "sex": "M",
}


@pytest.fixture
def browser(site: Site) -> Browser:
    studies.load_definition(site.engine, ADMIN, template_text("cart-lbcl"))
    users.grant_role(
        site.engine, users.cli_operator(), email=EMAIL, study=STUDY, site="SG01", role="coordinator"
    )
    subjects.enrol_subject(
        site.engine, ADMIN, STUDY, SubjectInput(SUBJECT, "SG01", screening_date=date(2025, 1, 6))
    )
    browser = site.browser()
    assert browser.post("/login", data={"email": EMAIL, "password": PASSWORD}).status_code == 303
    return browser


@contextmanager
def _transactions(engine: sa.Engine) -> Iterator[list[str]]:
    """Each transaction begun on ``engine`` meanwhile, ``read`` or ``write``."""
    begun: list[str] = []

    def on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get("consortia_read_only")
        begun.append("read" if read_only else "write")

    sa.event.listen(engine, "begin", on_begin)
    try:
        yield begun
    finally:
        sa.event.remove(engine, "begin", on_begin)


def _identifier_reads(site: Site) -> int:
    with site.engine.connect() as connection:
        return sum(e.action == "identifier.read" for e in iter_events(connection, chain=STUDY))


def _save(browser: Browser, fields: dict[str, str]) -> str:
    """Save the form from its page; the page the redirect leads to."""
    page = browser.get(FORM)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    version = re.search(r'name="version" value="(\d+)"', page.text)
    assert csrf is not None, page.text
    assert version is not None, page.text
    data = {"csrf_token": csrf.group(1), "version": version.group(1), **fields}
    answer = browser.post(FORM, data=data)
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def test_a_save_from_the_page_and_its_redirect_take_few_transactions_and_audit_one_read(
    site: Site, browser: Browser
) -> None:
    _save(browser, DEMOGRAPHICS)  # the form now holds identifier values
    before = _identifier_reads(site)
    page = browser.get(FORM)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    assert _identifier_reads(site) == before + 1  # the page showed them: one access event
    data = {
        "csrf_token": csrf.group(1),
        "version": "1",
        **DEMOGRAPHICS,
        "age": "64",
        "reason": "transcription error",
    }
    with _transactions(site.app.state.engine) as begun:
        answer = browser.post(FORM, data=data)
        assert answer.status_code == 303, answer.text
        shown = browser.get(answer.headers["location"])
    assert shown.status_code == 200
    assert 'value="64"' in shown.text
    # the save shows nothing, so only the page after the redirect reads identifiers
    assert _identifier_reads(site) == before + 2
    # writes: the save, and the identifier.read of the page it leads to (a signed-in
    # session is checked read-only); reads: the session twice, the study for the posted
    # fields, the save worked out in a snapshot, and the whole form page in one
    assert begun.count("write") == 2, begun
    assert len(begun) <= 7, begun
