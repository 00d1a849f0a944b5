"""The form page refuses a character XML 1.0 cannot hold as the API does (same service):
shown beside its item, nothing saved."""

from __future__ import annotations

import re
from datetime import date

from web_client import EMAIL, PASSWORD, Site

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.services import data_entry, studies, subjects, users
from consortia.services.subjects import SubjectInput

STUDY = "CART-LBCL"
SUBJECT = "SG01-0001"
ADMIN = Principal(
    1,
    "admin@sg.example",
    "Admin",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR)),
)
AE = {
    "ae_term": "Anaemia",
    "ae_soc": "blood",
    "ae_ctcae_version": "5.0",
    "ae_onset": "2025-02-03",
    "ae_grade": "2",
    "ae_serious": "0",
    "ae_related": "possible",
}


def test_a_text_with_a_character_xml_cannot_hold_is_shown_beside_its_item_and_not_saved(
    site: Site,
) -> None:
    studies.load_definition(site.engine, ADMIN, template_text("cart-lbcl"))
    users.grant_role(
        site.engine, users.cli_operator(), email=EMAIL, study=STUDY, site="SG01", role="coordinator"
    )
    subjects.enrol_subject(
        site.engine, ADMIN, STUDY, SubjectInput(SUBJECT, "SG01", screening_date=date(2025, 1, 6))
    )
    browser = site.browser()
    assert browser.post("/login", data={"email": EMAIL, "password": PASSWORD}).status_code == 303
    ae = f"/studies/{STUDY}/subjects/{SUBJECT}/events/ae_log/forms/ae"
    page = browser.get(ae)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None, page.text
    fields = {f"events[1].{item}": value for item, value in AE.items()}
    fields |= {"events[1].ae_term": "Ana\x07emia", "csrf_token": token.group(1), "version": "0"}
    refused = browser.post(ae, data=fields)
    assert refused.status_code == 422
    error = re.search(
        r'<p class="error" id="i-events\[1\]\.ae_term-error">([^<]*)</p>', refused.text
    )
    assert error is not None, refused.text
    assert error.group(1) == (
        "character U+0007 is not allowed (XML 1.0 cannot hold it); tabs and newlines are allowed"
    )
    stored = data_entry.read_form(site.engine, ADMIN, STUDY, SUBJECT, "ae_log", "ae")
    assert (stored.version, stored.values) == (0, {})
