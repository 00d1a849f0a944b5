"""Signing several forms at once from the signature worklist, in-process on both databases:
the list shows the investigator's signable forms at their sites, one post signs the ticked
ones with the password entered once (one signature and one audit event each), and every
refusal (no CSRF token, a wrong password, no meaning, nothing ticked, a form changed
meanwhile, another site's form, a role that does not sign) signs none."""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest
from test_review_pages import ADMIN, ELIGIBILITY, REVIEWER, STUDY
from web_client import PASSWORD, Browser, Site

from consortia.domain.templates import template_text
from consortia.services import data_entry, form_states, history, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.web.i18n import CATALOGUES

EN, ZH = CATALOGUES["en"], CATALOGUES["zh"]
SIGNER = "ivy@sg.example"
FIRST, SECOND, OTHER = "SG01-0001", "SG01-0002", "SH01-0001"
WORKLIST = f"/studies/{STUDY}/sign"


@pytest.fixture
def sign_site(site: Site) -> Site:
    """The CAR-T study with a complete eligibility form for two subjects at SG01 (the second
    verified) and one at SH01; Ivy is investigator at SG01."""
    studies.load_definition(site.engine, ADMIN, template_text("cart-lbcl"))
    for subject_id in (FIRST, SECOND, OTHER):
        subjects.enrol_subject(
            site.engine,
            ADMIN,
            STUDY,
            SubjectInput(
                subject_id=subject_id, site=subject_id[:4], screening_date=date(2025, 1, 6)
            ),
        )
        data_entry.save_form(
            site.engine,
            ADMIN,
            STUDY,
            subject_id,
            "screening",
            "eligibility",
            data_entry.FormSave(version=0, values=ELIGIBILITY, complete=True),
        )
    form_states.verify_form(site.engine, REVIEWER, (STUDY, SECOND, "screening", "eligibility"), 1)
    operator = users.cli_operator()
    users.create_user(site.engine, operator, email=SIGNER, name="Ivy Tan", password=PASSWORD)
    users.grant_role(
        site.engine, operator, email=SIGNER, study=STUDY, site="SG01", role="investigator"
    )
    return site


def _signed_in(site: Site, email: str = SIGNER) -> Browser:
    browser = site.browser()
    answer = browser.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return browser


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def _ticks(page: httpx.Response) -> dict[str, str]:
    """The worklist's checkboxes: subject → (field name, value)."""
    found = re.findall(r'name="(form\.\d+)" value="([^"]+)"', page.text)
    return {value.split("/")[0]: f"{name}={value}" for name, value in found}


def _states(site: Site) -> dict[str, str]:
    return {
        subject_id: data_entry.read_form(
            site.engine, ADMIN, STUDY, subject_id, "screening", "eligibility"
        ).state
        for subject_id in (FIRST, SECOND, OTHER)
    }


def _signatures(site: Site, subject_id: str) -> int:
    events = history.form_history(site.engine, ADMIN, STUDY, subject_id, "screening", "eligibility")
    return sum(event.action == "form.sign" for event in events)


def _post(browser: Browser, page: httpx.Response, *fields: str, **named: str) -> httpx.Response:
    body = "&".join([*fields, *(f"{key}={value}" for key, value in named.items())])
    return browser.post(
        WORKLIST,
        content=body.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def test_an_investigator_signs_two_forms_with_the_password_once(sign_site: Site) -> None:
    browser = _signed_in(sign_site)
    listing = browser.get(f"/studies/{STUDY}/subjects")
    assert f'href="{WORKLIST}"' in listing.text  # the bar leads to it
    page = browser.get(WORKLIST)
    assert page.status_code == 200, page.text
    ticks = _ticks(page)
    assert set(ticks) == {FIRST, SECOND}  # complete and verified at SG01; not SH01's
    signed = _post(
        browser,
        page,
        ticks[FIRST],
        ticks[SECOND],
        csrf_token=_csrf(page),
        meaning="review",
        password=PASSWORD,
    )
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == f"{WORKLIST}?signed=2"
    assert _states(sign_site) == {FIRST: "signed", SECOND: "signed", OTHER: "complete"}
    for subject_id in (FIRST, SECOND):
        record = data_entry.read_form(
            sign_site.engine, ADMIN, STUDY, subject_id, "screening", "eligibility"
        ).record
        assert record is not None
        assert (record.signed_by, record.signed_name) == (SIGNER, "Ivy Tan")
        assert record.signature_meaning == (f"review: {form_states.SIGNATURE_MEANINGS['review']}")
        assert _signatures(sign_site, subject_id) == 1
    after = browser.get(signed.headers["location"])
    assert 'id="signed"' in after.text
    assert 'id="nothing-to-sign"' in after.text  # nothing left to sign


def test_a_wrong_password_signs_none(sign_site: Site) -> None:
    browser = _signed_in(sign_site)
    page = browser.get(WORKLIST)
    ticks = _ticks(page)
    refused = _post(
        browser,
        page,
        ticks[FIRST],
        ticks[SECOND],
        csrf_token=_csrf(page),
        meaning="review",
        password="not-the-password",
    )
    assert refused.status_code == 401
    assert EN["sign.password_refused"] in refused.text
    assert 'value="review" selected' in refused.text  # the choice is kept to try again
    assert _states(sign_site) == {FIRST: "complete", SECOND: "verified", OTHER: "complete"}
    assert _signatures(sign_site, FIRST) == _signatures(sign_site, SECOND) == 0


def test_refusals_sign_nothing(sign_site: Site) -> None:
    browser = _signed_in(sign_site)
    page = browser.get(WORKLIST)
    ticks, token = _ticks(page), _csrf(page)
    unchanged = {FIRST: "complete", SECOND: "verified", OTHER: "complete"}
    # no CSRF token
    forged = _post(browser, page, ticks[FIRST], meaning="review", password=PASSWORD)
    assert forged.status_code == 403
    # nothing ticked; no meaning; a meaning not offered
    nothing = _post(browser, page, csrf_token=token, meaning="review", password=PASSWORD)
    assert nothing.status_code == 422
    assert EN["sign.none_ticked"] in nothing.text
    for meaning in ("", "whatever"):
        bad = _post(
            browser, page, ticks[FIRST], csrf_token=token, meaning=meaning, password=PASSWORD
        )
        assert bad.status_code == 422
        assert EN["sign.bad_meaning"] in bad.text
    # a malformed tick
    assert _post(browser, page, "form.1=nonsense", csrf_token=token).status_code == 400
    # a form saved again after the list was read: the whole series is refused
    data_entry.save_form(
        sign_site.engine,
        ADMIN,
        STUDY,
        FIRST,
        "screening",
        "eligibility",
        data_entry.FormSave(
            version=1, values={**ELIGIBILITY, "ecog": 2}, complete=True, reason="Source says 2"
        ),
    )
    stale = _post(
        browser,
        page,
        ticks[SECOND],
        ticks[FIRST],
        csrf_token=token,
        meaning="approval",
        password=PASSWORD,
    )
    assert stale.status_code == 409
    assert EN["sign.conflict"] in stale.text
    assert f"form eligibility of {FIRST} at screening is at version 2, not 1" in stale.text
    assert _states(sign_site) == unchanged  # the second form, valid, was not signed either
    # another site's form, named by hand: not found, nothing signed
    other = _post(
        browser,
        page,
        ticks[SECOND],
        f"form.9={OTHER}/screening/eligibility/1",
        csrf_token=token,
        meaning="approval",
        password=PASSWORD,
    )
    assert other.status_code == 404
    assert _states(sign_site) == unchanged
    assert sum(_signatures(sign_site, subject_id) for subject_id in unchanged) == 0


def test_only_investigators_have_the_worklist(sign_site: Site) -> None:
    operator = users.cli_operator()
    users.create_user(
        sign_site.engine, operator, email="cat@sg.example", name="Cat", password=PASSWORD
    )
    users.grant_role(
        sign_site.engine,
        operator,
        email="cat@sg.example",
        study=STUDY,
        site="SG01",
        role="coordinator",
    )
    coordinator = _signed_in(sign_site, "cat@sg.example")
    listing = coordinator.get(f"/studies/{STUDY}/subjects")
    assert f'href="{WORKLIST}"' not in listing.text
    assert coordinator.get(WORKLIST).status_code == 403
    page = coordinator.get(f"/studies/{STUDY}/subjects")
    refused = _post(
        coordinator,
        page,
        f"form.1={FIRST}/screening/eligibility/1",
        csrf_token=_csrf(page),
        meaning="review",
        password=PASSWORD,
    )
    assert refused.status_code == 403
    assert _states(sign_site)[FIRST] == "complete"


def test_the_worklist_in_chinese(sign_site: Site) -> None:
    browser = _signed_in(sign_site)
    page = browser.get(f"{WORKLIST}?lang=zh")
    assert page.status_code == 200
    for key in ("sign.title", "sign.submit", "sign.meaning_review", "nav.sign"):
        assert ZH[key] in page.text
    assert EN["sign.submit"] not in page.text
    # the visit by its label in the page's language, not by its name in the study file
    assert "<td>筛选</td>" in page.text
    assert "<td>screening</td>" not in page.text
    assert "<td>Screening</td>" in browser.get(f"{WORKLIST}?lang=en").text
