"""The data-entry pages, in-process: subjects, a subject's events, a form to fill in and save.

Saving goes through the same service as the API, so these tests check what the page adds:
the inputs, the messages beside the items, post/redirect/get, and that the database holds
exactly what the page said.
"""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest
from web_client import EMAIL, PASSWORD, Browser, Site

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.services import data_entry, schedule, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.audit import verify_trail

STUDY = "CART-LBCL"
SUBJECT = "SG01-0001"
FORM = f"/studies/{STUDY}/subjects/{SUBJECT}/events/screening/forms/eligibility"
ADMIN = Principal(
    1,
    "admin@sg.example",
    "Admin",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR)),
)
VALID = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": "2",
    "ecog": "1",
    "ldh_elevated": "0",
    "eligible": "1",
}


ANAEMIA = {  # an adverse event as the AE form's repeating group holds it
    "ae_term": "Anaemia",
    "ae_soc": "blood",
    "ae_ctcae_version": "5.0",
    "ae_onset": "2025-02-03",
    "ae_grade": "2",
    "ae_serious": "0",
    "ae_related": "possible",
}
FEBRILE_NEUTROPENIA = {
    **ANAEMIA,
    "ae_term": "Febrile neutropenia",
    "ae_onset": "2025-02-01",
    "ae_grade": "3",
    "ae_serious": "1",
}


def _row(number: int, values: dict[str, str]) -> dict[str, str]:
    """An AE row's values as the form page names its inputs."""
    return {f"events[{number}].{item}": value for item, value in values.items()}


@pytest.fixture
def study_site(site: Site) -> Site:
    """The CAR-T study loaded, Ana its coordinator at SG01, a subject at SG01 and at SH01."""
    studies.load_definition(site.engine, ADMIN, template_text("cart-lbcl"))
    operator = users.cli_operator()
    users.grant_role(
        site.engine, operator, email=EMAIL, study=STUDY, site="SG01", role="coordinator"
    )
    for subject_id, where in ((SUBJECT, "SG01"), ("SH01-0001", "SH01")):
        subjects.enrol_subject(
            site.engine,
            ADMIN,
            STUDY,
            SubjectInput(subject_id=subject_id, site=where, screening_date=date(2025, 1, 6)),
        )
    return site


def _signed_in(site: Site, email: str = EMAIL) -> Browser:
    browser = site.browser()
    answer = browser.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return browser


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def _save(browser: Browser, fields: dict[str, str], **extra: str) -> httpx.Response:
    page = browser.get(FORM)
    assert page.status_code == 200, page.text
    version = re.search(r'name="version" value="(\d+)"', page.text)
    assert version is not None
    data = {"csrf_token": _csrf(page), "version": version.group(1), **fields, **extra}
    return browser.post(FORM, data=data)


def _person(site: Site, email: str, role: str) -> Browser:
    operator = users.cli_operator()
    users.create_user(
        site.engine, operator, email=email, name=email.split("@")[0], password=PASSWORD
    )
    users.grant_role(site.engine, operator, email=email, study=STUDY, site="SG01", role=role)
    return _signed_in(site, email)


def _stored(site: Site) -> data_entry.FormView:
    return data_entry.read_form(site.engine, ADMIN, STUDY, SUBJECT, "screening", "eligibility")


def test_home_links_the_study_and_the_list_shows_only_the_readers_sites(
    study_site: Site,
) -> None:
    browser = _signed_in(study_site)
    home = browser.get("/")
    assert f'href="/studies/{STUDY}/subjects"' in home.text
    listing = browser.get(f"/studies/{STUDY}/subjects")
    assert listing.status_code == 200
    assert f'href="/studies/{STUDY}/subjects/{SUBJECT}"' in listing.text
    assert "SH01-0001" not in listing.text  # another site's subject
    # another site's subject is not found, as in the API
    assert browser.get(f"/studies/{STUDY}/subjects/SH01-0001").status_code == 404
    assert browser.get("/studies/NOPE/subjects").status_code == 404


def test_the_subject_page_lists_events_with_their_forms_and_states(study_site: Site) -> None:
    browser = _signed_in(study_site)
    page = browser.get(f"/studies/{STUDY}/subjects/{SUBJECT}")
    assert page.status_code == 200
    assert 'id="subject-status">screening<' in page.text
    assert f'href="{FORM}">Eligibility' in page.text
    assert "not started" in page.text


def test_the_form_page_has_a_typed_input_per_item(study_site: Site) -> None:
    browser = _signed_in(study_site)
    page = browser.get(FORM)
    assert page.status_code == 200
    text = page.text
    assert 'id="form-state">not started<' in text
    assert 'name="version" value="0"' in text
    assert re.search(r'<select id="i-histology" name="histology"', text)
    assert '<option value="dlbcl_nos">' in text  # the study's code list
    assert re.search(
        r'<input id="i-ecog" name="ecog" value="" aria-label="[^"]+" type="text" inputmode="decimal"',
        text,
    )
    assert '<option value="1">Yes</option>' in text  # a boolean
    assert 'id="save"' in text
    zh = browser.get(FORM + "?lang=zh")
    assert "ECOG体能状态" in zh.text


def test_saving_a_form_stores_it_and_redirects_to_the_saved_form(study_site: Site) -> None:
    browser = _signed_in(study_site)
    answer = _save(browser, VALID, complete="1")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{FORM}?saved=1"
    stored = _stored(study_site)
    assert stored.version == 1
    assert stored.state == "complete"
    assert stored.values == {
        "histology": "dlbcl_nos",
        "disease_status": "primary_refractory",
        "prior_lines": "2",
        "ecog": "1",
        "ldh_elevated": "0",
        "eligible": "1",
    }
    shown = browser.get(answer.headers["location"])
    assert 'id="saved"' in shown.text
    assert 'id="form-state">complete<' in shown.text
    assert '<option value="dlbcl_nos" selected>' in shown.text
    assert 'id="i-ecog" name="ecog" value="1"' in shown.text
    assert 'id="complete" name="complete" value="1" checked' in shown.text
    # a reload of the saved page saves nothing again
    assert browser.get(answer.headers["location"]).status_code == 200
    assert _stored(study_site).version == 1
    with study_site.engine.connect() as connection:
        assert verify_trail(connection).ok


def test_a_hard_problem_saves_nothing_and_is_shown_beside_its_item(study_site: Site) -> None:
    browser = _signed_in(study_site)
    answer = _save(browser, {**VALID, "ecog": "6"})
    assert answer.status_code == 422
    assert 'id="refused"' in answer.text
    error = re.search(r'id="i-ecog-error">([^<]+)<', answer.text)
    assert error is not None
    assert error.group(1) == "6 is outside 0–5"
    assert 'id="i-ecog" name="ecog" value="6"' in answer.text  # what was typed stays
    assert _stored(study_site).version == 0  # nothing saved


def test_a_soft_problem_saves_and_opens_a_query(study_site: Site) -> None:
    browser = _signed_in(study_site)
    answer = _save(browser, {**VALID, "ecog": "3"})
    assert answer.status_code == 303
    shown = browser.get(answer.headers["location"])
    assert re.search(r'id="open-queries">[^<]*: 1<', shown.text)
    assert _stored(study_site).open_queries == 1


def test_changing_a_saved_value_needs_a_reason(study_site: Site) -> None:
    browser = _signed_in(study_site)
    assert _save(browser, VALID).status_code == 303
    refused = _save(browser, {**VALID, "prior_lines": "1"})
    assert refused.status_code == 422
    assert 'id="reason-error"' in refused.text
    assert _stored(study_site).values["prior_lines"] == "2"
    saved = _save(browser, {**VALID, "prior_lines": "1"}, reason="transcription error")
    assert saved.status_code == 303
    assert _stored(study_site).values["prior_lines"] == "1"
    assert _stored(study_site).version == 2
    too_long = _save(browser, {**VALID, "prior_lines": "2"}, reason="x" * 2001)
    assert too_long.status_code == 422
    assert _stored(study_site).version == 2


def test_a_stale_version_saves_nothing_and_shows_the_form_as_it_is_now(
    study_site: Site,
) -> None:
    browser = _signed_in(study_site)
    page = browser.get(FORM)  # opened at version 0 ...
    assert _save(browser, VALID).status_code == 303  # ... and saved meanwhile, elsewhere
    data = {"csrf_token": _csrf(page), "version": "0", **VALID, "ecog": "0"}
    answer = browser.post(FORM, data=data)
    assert answer.status_code == 409
    assert 'id="conflict"' in answer.text
    assert 'name="version" value="1"' in answer.text
    assert 'id="i-ecog" name="ecog" value="1"' in answer.text  # the stored value
    assert _stored(study_site).values["ecog"] == "1"


def test_saving_without_the_csrf_token_or_from_another_site_is_refused(
    study_site: Site,
) -> None:
    browser = _signed_in(study_site)
    no_token = browser.post(FORM, data={"version": "0", **VALID})
    assert no_token.status_code == 403
    page = browser.get(FORM)
    cross = browser.post(
        FORM,
        data={"csrf_token": _csrf(page), "version": "0", **VALID},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert _stored(study_site).version == 0
    signed_out = study_site.browser().get(FORM)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login"


def test_a_monitor_reads_the_form_but_cannot_save_it(study_site: Site) -> None:
    browser = _person(study_site, "mo@sg.example", "monitor")
    page = browser.get(FORM)
    assert page.status_code == 200
    assert 'id="read-only"' in page.text
    assert 'id="save"' not in page.text
    answer = browser.post(FORM, data={"csrf_token": _csrf(page), "version": "0", **VALID})
    assert answer.status_code == 403
    assert _stored(study_site).version == 0


def test_a_form_with_identifiers_hidden_from_the_reader_is_shown_without_them(
    study_site: Site,
) -> None:
    demographics = f"/studies/{STUDY}/subjects/{SUBJECT}/events/screening/forms/demographics"
    data_entry.save_form(
        study_site.engine,
        ADMIN,
        STUDY,
        SUBJECT,
        "screening",
        "demographics",
        data_entry.FormSave(version=0, values={"initials": "QX", "sex": "F", "age": 54}),
    )
    browser = _person(study_site, "dee@sg.example", "data_manager")
    page = browser.get(demographics)
    assert page.status_code == 200
    assert 'id="read-only"' in page.text
    assert "identifiers you may not see" in page.text
    assert 'name="initials" value=""' in page.text  # masked, not shown
    assert "QX" not in page.text
    assert 'name="age" value="54"' in page.text
    answer = browser.post(
        demographics, data={"csrf_token": _csrf(page), "version": "1", "age": "55"}
    )
    assert answer.status_code == 403
    stored = data_entry.read_form(
        study_site.engine, ADMIN, STUDY, SUBJECT, "screening", "demographics"
    )
    assert (stored.version, stored.values["initials"]) == (1, "QX")


def test_adverse_events_as_rows_of_a_repeating_group_with_ticked_codes(
    study_site: Site,
) -> None:
    browser = _signed_in(study_site)
    subject_page = browser.get(f"/studies/{STUDY}/subjects/{SUBJECT}")
    ae = f"/studies/{STUDY}/subjects/{SUBJECT}/events/ae_log/forms/ae"
    assert f'href="{ae}"' in subject_page.text  # an unscheduled event, recorded from here
    page = browser.get(ae)
    assert page.status_code == 200
    assert 'name="events[1].ae_term"' in page.text  # one empty row to start
    assert 'name="events[2].ae_term"' not in page.text
    fields = {
        **_row(1, FEBRILE_NEUTROPENIA),
        "events[1].ae_serious_criteria::hospitalisation": "1",
        "events[1].ae_serious_criteria::other_important": "1",
        **_row(2, ANAEMIA),
        "events[3].ae_term": "",  # the empty row at the end is not an event
        "csrf_token": _csrf(page),
        "version": "0",
    }
    answer = browser.post(ae, data=fields)
    assert answer.status_code == 303, answer.text
    stored = data_entry.read_form(study_site.engine, ADMIN, STUDY, SUBJECT, "ae_log", "ae")
    assert stored.values == {
        "events": [
            {**FEBRILE_NEUTROPENIA, "ae_serious_criteria": "hospitalisation|other_important"},
            ANAEMIA,
        ]
    }
    shown = browser.get(answer.headers["location"]).text
    assert 'name="events[3].ae_term" value=""' in shown  # two rows, and one for the next
    assert 'name="events[4].ae_term"' not in shown
    assert 'name="events[1].ae_serious_criteria::hospitalisation" value="1" checked' in shown
    assert 'name="events[1].ae_serious_criteria::death" value="1">' in shown
    # a hard problem in the second row is marked on that row's input
    page = browser.get(ae)
    fields |= {"csrf_token": _csrf(page), "version": "1", "events[2].ae_grade": "9"}
    refused = browser.post(ae, data=fields)
    assert refused.status_code == 422
    assert 'id="i-events[2].ae_grade-error"' in refused.text
    assert 'name="events[2].ae_grade" value="9"' in refused.text
    assert 'name="events[1].ae_serious_criteria::hospitalisation" value="1" checked' in (
        refused.text
    )


def _step(browser: Browser, step: str, **fields: str) -> httpx.Response:
    page = browser.get(FORM)
    assert f'id="step-{step}"' in page.text, page.text
    version = re.search(r'name="version" value="(\d+)"', page.text)
    assert version is not None
    data = {"csrf_token": _csrf(page), "version": version.group(1), "step": step, **fields}
    return browser.post(FORM + "/state", data=data)


def test_verify_sign_lock_and_unlock_from_the_form_page(study_site: Site) -> None:
    coordinator = _signed_in(study_site)
    assert 'id="step-' not in coordinator.get(FORM).text  # a coordinator only enters data
    assert _save(coordinator, VALID, complete="1").status_code == 303

    monitor = _person(study_site, "mo@sg.example", "monitor")
    answer = _step(monitor, "verify")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{FORM}?done=verify"
    shown = monitor.get(answer.headers["location"]).text
    assert 'id="done"' in shown
    assert 'id="form-state">verified<' in shown
    assert "mo@sg.example" in shown

    investigator = _person(study_site, "ivy@sg.example", "investigator")
    # the meanings offered are in the page's language (the English text is what is stored)
    chinese = investigator.get(FORM + "?lang=zh").text
    assert "批准：我批准本表单中的数据准确且完整" in chinese
    assert "I approve the data" not in chinese
    investigator.get(FORM + "?lang=en")
    wrong = _step(investigator, "sign", meaning="approval", password="not my password")
    assert wrong.status_code == 401
    assert 'id="step-error"' in wrong.text
    assert _stored(study_site).state == "verified"  # not signed
    signed = _step(investigator, "sign", meaning="approval", password=PASSWORD)
    assert signed.status_code == 303
    shown = investigator.get(signed.headers["location"]).text
    assert 'id="form-state">signed<' in shown
    signature = re.search(r'id="signature">([^<]+)<', shown)
    assert signature is not None
    assert "Signed by ivy (ivy@sg.example)" in signature.group(1)
    assert "approval: I approve the data in this form as accurate and complete" in (
        signature.group(1)
    )

    manager = _person(study_site, "dm@sg.example", "data_manager")
    assert _step(manager, "lock").status_code == 303
    assert _stored(study_site).state == "locked"
    locked = coordinator.get(FORM).text
    assert 'id="read-only"' in locked
    assert 'id="save"' not in locked
    no_reason = _step(manager, "unlock", reason=" ")
    assert no_reason.status_code == 422
    assert "needs a reason" in no_reason.text
    assert _stored(study_site).state == "locked"
    assert _step(manager, "unlock", reason="query on prior lines").status_code == 303
    assert _stored(study_site).state == "signed"
    # a step on a version that is no longer current changes nothing
    page = manager.get(FORM)
    stale = manager.post(
        FORM + "/state",
        data={"csrf_token": _csrf(page), "version": "1", "step": "lock"},
    )
    assert stale.status_code == 409
    assert 'id="step-error"' in stale.text
    assert _stored(study_site).state == "signed"
    with study_site.engine.connect() as connection:
        assert verify_trail(connection).ok


def test_a_file_item_is_shown_and_kept_when_the_form_is_saved(site: Site) -> None:
    # the CAR-T study with a file item added to its consent form
    source = template_text("cart-lbcl").replace(
        "          biobank_consent:\n",
        "          consent_scan:\n"
        "            type: file\n"
        "            label: {en: Signed consent (scan), zh: 已签署知情同意书扫描件}\n"
        "          biobank_consent:\n",
        1,
    )
    assert "consent_scan" in source
    studies.load_definition(site.engine, ADMIN, source)
    users.grant_role(
        site.engine, users.cli_operator(), email=EMAIL, study=STUDY, site="SG01", role="coordinator"
    )
    subjects.enrol_subject(
        site.engine,
        ADMIN,
        STUDY,
        SubjectInput(subject_id=SUBJECT, site="SG01", screening_date=date(2025, 1, 6)),
    )
    where = (STUDY, SUBJECT, "screening", "consent")
    data_entry.save_form(
        site.engine,
        ADMIN,
        *where,
        data_entry.FormSave(
            version=0, values={"consent_date": "2025-01-06", "consent_scan": "sha256:ab12"}
        ),
    )
    browser = _signed_in(site)
    url = f"/studies/{STUDY}/subjects/{SUBJECT}/events/screening/forms/consent"
    page = browser.get(url)
    assert '<span id="i-consent_scan">sha256:ab12</span>' in page.text
    assert 'name="consent_scan"' not in page.text  # not an input
    data = {
        "csrf_token": _csrf(page),
        "version": "1",
        "consent_date": "2025-01-06",
        "consent_version": "v2.1",
    }
    assert browser.post(url, data=data).status_code == 303
    stored = data_entry.read_form(site.engine, ADMIN, *where)
    assert stored.values == {
        "consent_date": "2025-01-06",
        "consent_scan": "sha256:ab12",
        "consent_version": "v2.1",
    }


def test_field_names_that_are_not_items_of_the_form_are_ignored(study_site: Site) -> None:
    browser = _signed_in(study_site)
    ae = f"/studies/{STUDY}/subjects/{SUBJECT}/events/ae_log/forms/ae"
    page = browser.get(ae)
    fields = {
        "csrf_token": _csrf(page),
        "version": "0",
        **_row(1, ANAEMIA),
        "events[x].ae_term": "not a row number",
        "events[1]": "no item",
        "events[1].not_an_item": "q",
        "ecog": "1",  # an item of another form
        "events[1].ae_serious_criteria::": "1",  # a tick box without a code
    }
    answer = browser.post(ae, data=fields)
    assert answer.status_code == 303, answer.text
    stored = data_entry.read_form(study_site.engine, ADMIN, STUDY, SUBJECT, "ae_log", "ae")
    assert stored.values == {"events": [ANAEMIA]}


def _query_step(browser: Browser, query_id: int, step: str, text: str) -> httpx.Response:
    page = browser.get(FORM)
    return browser.post(
        f"{FORM}/queries/{query_id}",
        data={"csrf_token": _csrf(page), "step": step, "text": text},
    )


def test_a_query_opened_on_saving_is_answered_closed_and_reopened_on_the_form_page(
    study_site: Site,
) -> None:
    coordinator = _signed_in(study_site)
    assert _save(coordinator, {**VALID, "ecog": "3"}).status_code == 303  # soft: a query
    page = coordinator.get(FORM).text
    section = re.search(r'<section class="query" id="query-(\d+)">(.*?)</section>', page, re.S)
    assert section is not None
    query_id, body = int(section.group(1)), section.group(2)
    assert "<strong>ecog</strong> · open" in body
    assert "opened on saving" in body
    assert 'value="answer"' in body
    assert 'value="close"' not in body  # a coordinator answers; others close and re-open

    empty = _query_step(coordinator, query_id, "answer", "  ")
    assert empty.status_code == 422
    assert 'id="step-error"' in empty.text
    answered = _query_step(coordinator, query_id, "answer", "ECOG 3 confirmed in the notes")
    assert answered.status_code == 303
    assert answered.headers["location"] == f"{FORM}?done=answer"
    shown = coordinator.get(answered.headers["location"]).text
    assert 'id="done"' in shown
    assert "<strong>ecog</strong> · answered" in shown
    assert "ECOG 3 confirmed in the notes" in shown
    assert _query_step(coordinator, query_id, "answer", "again").status_code == 409

    manager = _person(study_site, "dm@sg.example", "data_manager")
    body = manager.get(FORM).text
    assert 'value="close"' in body
    assert 'value="reopen"' in body
    assert _query_step(manager, query_id, "close", "Accepted").status_code == 303
    monitor = _person(study_site, "mo@sg.example", "monitor")
    assert _query_step(monitor, query_id, "reopen", "Please attach the source").status_code == 303
    thread = re.search(
        rf'id="query-{query_id}">.*?<ol class="thread">(.*?)</ol>', monitor.get(FORM).text, re.S
    )
    assert thread is not None
    assert re.findall(r"<small>(\w[\w-]*) ·", thread.group(1)) == [
        "opened",
        "answered",
        "closed",
        "re-opened",
    ]
    # a query is only taken through the form it is on
    other = f"/studies/{STUDY}/subjects/{SUBJECT}/events/screening/forms/demographics"
    page_other = coordinator.get(other)
    refused = coordinator.post(
        f"{other}/queries/{query_id}",
        data={"csrf_token": _csrf(page_other), "step": "answer", "text": "x"},
    )
    assert refused.status_code == 404


def test_a_monitor_opens_a_query_on_an_item_of_the_saved_form(study_site: Site) -> None:
    coordinator = _signed_in(study_site)
    assert 'id="open-query"' not in coordinator.get(FORM).text  # coordinators answer
    monitor = _person(study_site, "mo@sg.example", "monitor")
    assert 'id="open-query"' not in monitor.get(FORM).text  # nothing saved yet
    assert _save(coordinator, VALID).status_code == 303
    page = monitor.get(FORM)
    assert '<option value="prior_lines">' in page.text
    empty = monitor.post(
        f"{FORM}/queries",
        data={"csrf_token": _csrf(page), "item": "prior_lines", "text": ""},
    )
    assert empty.status_code == 422
    not_an_item = monitor.post(
        f"{FORM}/queries",
        data={"csrf_token": _csrf(page), "item": "events[1].ae_term", "text": "?"},
    )
    assert not_an_item.status_code == 422
    opened = monitor.post(
        f"{FORM}/queries",
        data={"csrf_token": _csrf(page), "item": "prior_lines", "text": "Source says 3 lines"},
    )
    assert opened.status_code == 303
    assert opened.headers["location"] == f"{FORM}?done=open"
    shown = coordinator.get(FORM).text
    assert "<strong>prior_lines</strong> · open" in shown
    assert "opened by a reviewer" in shown
    assert "Source says 3 lines" in shown
    assert _stored(study_site).open_queries == 1


def test_a_coordinator_enrols_a_subject_at_their_own_site(study_site: Site) -> None:
    browser = _signed_in(study_site)
    listing = browser.get(f"/studies/{STUDY}/subjects")
    assert 'id="enrol"' in listing.text
    assert '<option value="SG01">' in listing.text
    assert '<option value="SH01">' not in listing.text  # only where the reader may enrol
    enrol = f"/studies/{STUDY}/subjects"
    fields = {
        "csrf_token": _csrf(listing),
        "subject_id": "SG01-0002",
        "site": "SG01",
        "initials": "",
        "screening_date": "2025-03-03",
    }
    bad_date = browser.post(enrol, data={**fields, "screening_date": "03/03/2025"})
    assert bad_date.status_code == 422
    assert 'id="screening_date-error">Give the date as YYYY-MM-DD.<' in bad_date.text
    assert 'id="enrol-error"' not in bad_date.text  # beside the field, not above the form
    assert 'value="SG01-0002"' in bad_date.text  # what was typed stays
    elsewhere = browser.post(enrol, data={**fields, "site": "SH01"})
    assert elsewhere.status_code == 403
    answer = browser.post(enrol, data=fields)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/studies/{STUDY}/subjects/SG01-0002"
    record = subjects.get_subject(study_site.engine, ADMIN, STUDY, "SG01-0002")
    assert (record.site, record.status) == ("SG01", "screening")
    taken = browser.post(enrol, data=fields)
    assert taken.status_code == 409
    assert "already taken" in taken.text
    assert 'href="/studies/CART-LBCL/subjects/SG01-0002"' in browser.get(enrol).text


def test_a_subjects_status_changes_on_its_page(study_site: Site) -> None:
    browser = _signed_in(study_site)
    page = browser.get(f"/studies/{STUDY}/subjects/{SUBJECT}")
    assert '<option value="eligible">' in page.text
    assert '<option value="completed">' not in page.text  # not from screening
    url = f"/studies/{STUDY}/subjects/{SUBJECT}/status"
    token = _csrf(page)
    no_reason = browser.post(
        url, data={"csrf_token": token, "status": "screen_failed", "on_date": "2025-01-08"}
    )
    assert no_reason.status_code == 422
    assert "needs a reason" in no_reason.text
    eligible = {"csrf_token": token, "status": "eligible", "on_date": "2025-01-08"}
    ungated = browser.post(url, data=eligible)  # the study's gates: consent and eligibility
    assert ungated.status_code == 422
    shown_error = re.search(r'id="status-error"[^>]*>([^<]*)<', ungated.text)
    assert shown_error is not None
    assert shown_error.group(1) == (
        "becoming eligible needs form consent (screening) complete with consent_given == True: "
        "the form has not been saved; becoming eligible needs form eligibility (screening) "
        "complete with eligible == True: the form has not been saved"
    )
    assert subjects.get_subject(study_site.engine, ADMIN, STUDY, SUBJECT).status == "screening"
    consent = {"consent_given": "1", "consent_date": "2025-01-06", "consent_version": "2.1"}
    for form, values in (("consent", consent), ("eligibility", VALID)):
        data_entry.save_form(
            study_site.engine,
            ADMIN,
            STUDY,
            SUBJECT,
            "screening",
            form,
            data_entry.FormSave(version=0, values=values, complete=True),
        )
    answer = browser.post(url, data=eligible)
    assert answer.status_code == 303
    shown = browser.get(answer.headers["location"]).text
    assert 'id="subject-status">eligible<' in shown
    assert subjects.get_subject(study_site.engine, ADMIN, STUDY, SUBJECT).status == "eligible"
    monitor = _person(study_site, "mo@sg.example", "monitor")
    assert 'id="change-status"' not in monitor.get(f"/studies/{STUDY}/subjects/{SUBJECT}").text


def test_the_visit_date_saved_with_a_form_places_the_event_in_its_window(
    study_site: Site,
) -> None:
    browser = _signed_in(study_site)
    assert 'id="visit_date" name="visit_date" value=""' in browser.get(FORM).text
    bad = _save(browser, VALID, visit_date="8 Jan")
    assert bad.status_code == 422
    assert 'id="visit_date" name="visit_date" value="8 Jan"' in bad.text
    assert _stored(study_site).version == 0
    # screening's window is 2025-01-06 to 2025-01-20
    assert _save(browser, VALID, visit_date="2025-01-25").status_code == 303
    shown = browser.get(FORM).text
    assert 'id="visit_date" name="visit_date" value="2025-01-25"' in shown
    (screening,) = [
        e
        for e in schedule.list_events(study_site.engine, ADMIN, STUDY, SUBJECT)
        if e.ref == "screening"
    ]
    assert (screening.visit_date, screening.window_status) == (date(2025, 1, 25), "late")
    subject_page = browser.get(f"/studies/{STUDY}/subjects/{SUBJECT}").text
    assert "2025-01-25 <small>late</small>" in subject_page


def test_a_date_or_a_start_past_the_calendar_is_a_422_naming_its_field(
    study_site: Site,
) -> None:
    browser = _signed_in(study_site)
    enrol = f"/studies/{STUDY}/subjects"
    fields = {
        "csrf_token": _csrf(browser.get(enrol)),
        "subject_id": "SG01-0002",
        "site": "SG01",
        "initials": "",
        "screening_date": "9999-12-31",
    }
    refused = browser.post(enrol, data=fields)
    assert refused.status_code == 422
    assert re.search(
        r'id="screening_date" name="screening_date" value="9999-12-31" required'
        r' aria-invalid="true" aria-describedby="screening_date-error">\s*'
        r'<span class="error" id="screening_date-error">'
        r"9999-12-31 puts day 0, 35 days later, after 9999-12-31</span>",
        refused.text,
    ), refused.text
    assert 'aria-invalid="true" aria-describedby="subject_id-error"' not in refused.text
    assert 'value="SG01-0002"' in refused.text
    bad_code = browser.post(enrol, data={**fields, "subject_id": "no spaces"})
    assert bad_code.status_code == 422
    assert 'id="subject_id-error">&#39;no spaces&#39; is not a code' in bad_code.text
    bad_initials = browser.post(enrol, data={**fields, "initials": "9"})
    assert bad_initials.status_code == 422
    assert 'id="initials-error">use 1-8 letters' in bad_initials.text
    assert [s.subject_id for s in subjects.list_subjects(study_site.engine, ADMIN, STUDY)] == [
        SUBJECT,
        "SH01-0001",
    ]
    # a list start no database takes: refused, with the field and what would be right
    past = browser.get(f"{enrol}?start=100000000000000000000000")
    assert past.status_code == 422
    assert (
        "start: 100000000000000000000000 is out of range; use a number from 0 to 2147483647."
        in past.text
    )
    assert browser.get(f"{enrol}?start=2147483647").status_code == 200
