"""The review pages, in-process on both databases: the study's queries, the SDV worklist,
an item's history and the audit pages of a form and a subject.

Each page reads through the services the API calls, so these tests check what a reader at
one site sees (never another site's queries, forms or history), the filters, identifier
masking in history, and that each page is linked from where a person would look for it.
"""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest
from web_client import EMAIL, PASSWORD, Browser, Site

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.services import data_entry, form_states, queries, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.queries import QueryFilter

STUDY = "CART-LBCL"
SUBJECT = "SG01-0001"
OTHER = "SH01-0001"  # a subject at the other site
ADMIN = Principal(
    1,
    "admin@sg.example",
    "Admin",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR)),
)
REVIEWER = Principal(
    2,
    "rev@sg.example",
    "Reviewer",
    frozenset(Grant(STUDY, "*", r) for r in (Role.MONITOR, Role.DATA_MANAGER)),
)
ELIGIBILITY = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "ldh_elevated": False,
    "eligible": True,
}


def _form(subject_id: str, form: str = "eligibility") -> str:
    return f"/studies/{STUDY}/subjects/{subject_id}/events/screening/forms/{form}"


@pytest.fixture
def study_site(site: Site) -> Site:
    """The CAR-T study, Ana its coordinator at SG01, a complete eligibility form at SG01 and
    at SH01, each with a query opened by a reviewer."""
    studies.load_definition(site.engine, ADMIN, template_text("cart-lbcl"))
    users.grant_role(
        site.engine,
        users.cli_operator(),
        email=EMAIL,
        study=STUDY,
        site="SG01",
        role="coordinator",
    )
    for subject_id, where in ((SUBJECT, "SG01"), (OTHER, "SH01")):
        subjects.enrol_subject(
            site.engine,
            ADMIN,
            STUDY,
            SubjectInput(subject_id=subject_id, site=where, screening_date=date(2025, 1, 6)),
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
        queries.open_query(
            site.engine,
            REVIEWER,
            STUDY,
            subject_id,
            "screening",
            "eligibility",
            "ecog",
            f"ECOG of {subject_id}: please check the source",
        )
    return site


def _signed_in(site: Site, email: str = EMAIL) -> Browser:
    browser = site.browser()
    answer = browser.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return browser


def _person(site: Site, email: str, role: str) -> Browser:
    operator = users.cli_operator()
    users.create_user(
        site.engine, operator, email=email, name=email.split("@")[0], password=PASSWORD
    )
    users.grant_role(site.engine, operator, email=email, study=STUDY, site="SG01", role=role)
    return _signed_in(site, email)


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def test_the_query_list_shows_the_readers_sites_and_filters(study_site: Site) -> None:
    browser = _signed_in(study_site)
    listing = browser.get(f"/studies/{STUDY}/subjects")
    assert f'href="/studies/{STUDY}/queries"' in listing.text  # navigation to it
    page = browser.get(f"/studies/{STUDY}/queries")
    assert page.status_code == 200, page.text
    assert f"ECOG of {SUBJECT}" in page.text
    assert f"{_form(SUBJECT)}#query-" in page.text  # each query links to its place
    assert OTHER not in page.text  # SH01's query is not Ana's to see
    # a coordinator answers, but does not close
    assert "/close" not in page.text
    assert f"ECOG of {SUBJECT}" in browser.get(f"/studies/{STUDY}/queries?status=open").text
    for narrowed in ("status=answered", "status=closed", "form=demographics", "age=1"):
        filtered = browser.get(f"/studies/{STUDY}/queries?{narrowed}")
        assert filtered.status_code == 200
        assert "ECOG of" not in filtered.text, narrowed
        assert 'id="no-queries"' in filtered.text
    assert "ECOG of" in browser.get(f"/studies/{STUDY}/queries?age=0&form=eligibility").text
    # asking for the other site's queries by name shows none
    other = browser.get(f"/studies/{STUDY}/queries?site=SH01")
    assert other.status_code == 200
    assert "ECOG of" not in other.text
    for bad in ("status=lost", "age=-1", "age=soon", "start=99999999999"):
        assert browser.get(f"/studies/{STUDY}/queries?{bad}").status_code == 422, bad


def test_a_query_is_marked_beside_its_item_on_the_form(study_site: Site) -> None:
    browser = _signed_in(study_site)
    page = browser.get(_form(SUBJECT))
    mark = re.search(r'<a href="#query-(\d+)" class="query-mark" id="mark-ecog"', page.text)
    assert mark is not None, page.text
    assert f'id="query-{mark.group(1)}"' in page.text
    assert 'id="mark-histology"' not in page.text  # no query on it


def test_a_data_manager_closes_a_query_from_the_list_in_one_step(study_site: Site) -> None:
    browser = _person(study_site, "dee@sg.example", "data_manager")
    page = browser.get(f"/studies/{STUDY}/queries?status=open")
    found = re.search(r'action="/studies/CART-LBCL/queries/(\d+)/close"', page.text)
    assert found is not None, page.text
    query_id = int(found.group(1))
    closed = browser.post(
        f"/studies/{STUDY}/queries/{query_id}/close",
        data={
            "csrf_token": _csrf(page),
            "text": "Corrected against the clinic note",
            "back": f"/studies/{STUDY}/queries?status=open",
        },
    )
    assert closed.status_code == 303
    assert closed.headers["location"] == (f"/studies/{STUDY}/queries?status=open&closed={query_id}")
    view = queries.get_query(study_site.engine, REVIEWER, STUDY, query_id)
    assert view.record.status == "closed"
    assert view.record.messages[-1].text == "Corrected against the clinic note"
    again = browser.post(
        f"/studies/{STUDY}/queries/{query_id}/close",
        data={"csrf_token": _csrf(page), "text": "twice"},
    )
    assert again.status_code == 409  # already closed: nothing more recorded
    empty = browser.post(
        f"/studies/{STUDY}/queries/{query_id}/close",
        data={"csrf_token": _csrf(page), "text": "  "},
    )
    assert empty.status_code == 422
    assert len(queries.get_query(study_site.engine, REVIEWER, STUDY, query_id).record.messages) == 2
    after = browser.get(closed.headers["location"])
    assert 'id="closed"' in after.text
    assert f"ECOG of {SUBJECT}" not in after.text  # no longer open
    # without the CSRF token nothing is closed
    other = queries.list_queries(
        study_site.engine, REVIEWER, STUDY, QueryFilter(subject_id=OTHER), limit=5
    )[0]
    refused = browser.post(f"/studies/{STUDY}/queries/{other.record.id}/close", data={"text": "x"})
    assert refused.status_code == 403
    # another site's query: not found, and still open
    answer = browser.post(
        f"/studies/{STUDY}/queries/{other.record.id}/close",
        data={"csrf_token": _csrf(page), "text": "closing SH01's"},
    )
    assert answer.status_code == 404
    assert queries.get_query(study_site.engine, REVIEWER, STUDY, other.record.id).record.status == (
        "open"
    )


def test_the_sdv_worklist_lists_complete_forms_at_the_monitors_sites(study_site: Site) -> None:
    browser = _person(study_site, "mo@sg.example", "monitor")
    listing = browser.get(f"/studies/{STUDY}/subjects")
    assert f'href="/studies/{STUDY}/sdv"' in listing.text
    page = browser.get(f"/studies/{STUDY}/sdv")
    assert page.status_code == 200, page.text
    assert f'href="{_form(SUBJECT)}"' in page.text
    assert OTHER not in page.text
    assert "<td>Screening</td>" in page.text  # the visit's label, not its name in the file
    assert "<td>筛选</td>" in browser.get(f"/studies/{STUDY}/sdv?lang=zh").text
    form_states.verify_form(
        study_site.engine, REVIEWER, (STUDY, SUBJECT, "screening", "eligibility"), 1
    )
    after = browser.get(f"/studies/{STUDY}/sdv")
    assert _form(SUBJECT) not in after.text
    assert 'id="no-forms"' in after.text
    # a coordinator does not verify: no link, and the worklist is refused
    ana = _signed_in(study_site)
    assert "/sdv" not in ana.get(f"/studies/{STUDY}/subjects").text
    assert ana.get(f"/studies/{STUDY}/sdv").status_code == 403


def test_an_items_history_shows_each_change_with_its_reason(study_site: Site) -> None:
    data_entry.save_form(
        study_site.engine,
        ADMIN,
        STUDY,
        SUBJECT,
        "screening",
        "eligibility",
        data_entry.FormSave(
            version=1,
            values={**ELIGIBILITY, "ecog": 2},
            complete=True,
            reason="Source note says ECOG 2",
        ),
    )
    browser = _signed_in(study_site)
    form = browser.get(_form(SUBJECT))
    link = f"{_form(SUBJECT)}/items/ecog/history"
    assert f'href="{link}"' in form.text
    page = browser.get(link)
    assert page.status_code == 200, page.text
    rows = re.findall(
        r'<td class="before">([^<]*)</td><td class="after">([^<]*)</td>\s*'
        r'<td class="reason">([^<]*)</td>',
        page.text,
    )
    assert rows == [("—", "1", ""), ("1", "2", "Source note says ECOG 2")]
    # another site's subject: not found, history included
    assert browser.get(f"{_form(OTHER)}/items/ecog/history").status_code == 404
    assert browser.get(f"{_form(OTHER)}/history").status_code == 404
    assert browser.get(f"/studies/{STUDY}/subjects/{OTHER}/history").status_code == 404


def test_the_audit_pages_of_a_form_and_a_subject_are_linked(study_site: Site) -> None:
    browser = _signed_in(study_site)
    subject = browser.get(f"/studies/{STUDY}/subjects/{SUBJECT}")
    assert f'href="/studies/{STUDY}/subjects/{SUBJECT}/history"' in subject.text
    trail = browser.get(f"/studies/{STUDY}/subjects/{SUBJECT}/history")
    assert trail.status_code == 200
    assert "subject.create" in trail.text
    assert "form.save" in trail.text
    form = browser.get(_form(SUBJECT))
    assert f'href="{_form(SUBJECT)}/history"' in form.text
    form_trail = browser.get(f"{_form(SUBJECT)}/history")
    assert form_trail.status_code == 200
    assert "form.save" in form_trail.text
    assert "subject.enrol" not in form_trail.text
    assert "subject.create" not in form_trail.text
    assert browser.get(f"{_form(SUBJECT)}/history?start=x").status_code == 422
    zh = browser.get(f"{_form(SUBJECT)}/history?lang=zh")
    assert "稽查轨迹" in zh.text


def test_identifiers_are_masked_in_history_for_roles_that_may_not_see_them(
    study_site: Site,
) -> None:
    for version, initials, reason in ((0, "QX", None), (1, "QY", "Typo in the initials")):
        data_entry.save_form(
            study_site.engine,
            ADMIN,
            STUDY,
            SUBJECT,
            "screening",
            "demographics",
            data_entry.FormSave(
                version=version,
                values={"initials": initials, "sex": "M", "age": 54},
                reason=reason,
            ),
        )
    demographics = _form(SUBJECT, "demographics")
    manager = _person(study_site, "dee@sg.example", "data_manager")  # no identifier access
    for url in (
        f"{demographics}/items/initials/history",
        f"{demographics}/history",
        f"/studies/{STUDY}/subjects/{SUBJECT}/history",
    ):
        page = manager.get(url)
        assert page.status_code == 200, url
        assert "QX" not in page.text, url
        assert "QY" not in page.text, url
    masked = manager.get(f"{demographics}/items/initials/history")
    assert masked.text.count('class="masked"') == 4  # before and after of both saves
    assert "Typo in the initials" in masked.text
    # the coordinator may see identifiers: before → after shown
    shown = _signed_in(study_site).get(f"{demographics}/items/initials/history")
    assert '<td class="before">QX</td><td class="after">QY</td>' in shown.text
