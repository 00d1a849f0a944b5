"""Query assignment on the pages, in-process on both databases: the form page shows each
query's assignee and offers "Assign" (a choice of the people who answer or manage queries
at the subject's site) to those who may assign; the study's query list shows the assignee
and narrows to "Assigned to me" or to one person."""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest
from web_client import EMAIL, PASSWORD, Browser, Site

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.services import data_entry, queries, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.storage.audit import iter_events
from consortia.storage.queries import QueryFilter

STUDY = "CART-LBCL"
SUBJECT = "SG01-0001"
FORM = f"/studies/{STUDY}/subjects/{SUBJECT}/events/screening/forms/eligibility"
LIST = f"/studies/{STUDY}/queries"
MANAGER = "dee@sg.example"
ADMIN = Principal(
    1,
    "admin@sg.example",
    "Admin",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR)),
)
REVIEWER = Principal(
    2, "rev@sg.example", "Reviewer", frozenset({Grant(STUDY, "*", Role.DATA_MANAGER)})
)
ELIGIBILITY = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "ldh_elevated": False,
    "eligible": True,
}


@pytest.fixture
def study_site(site: Site) -> Site:
    """CAR-T with one subject at SG01 and its eligibility form saved, one open query on ECOG;
    Ana coordinates at SG01, Dee manages data at SG01, Sam is a statistician at SG01 and
    Hu a coordinator at SH01 (each with an account)."""
    studies.load_definition(site.engine, ADMIN, template_text("cart-lbcl"))
    operator = users.cli_operator()
    users.grant_role(
        site.engine, operator, email=EMAIL, study=STUDY, site="SG01", role="coordinator"
    )
    for email, name, where, role in (
        (MANAGER, "Dee", "SG01", "data_manager"),
        ("sam@sg.example", "Sam", "SG01", "statistician"),
        ("hu@sh.example", "Hu", "SH01", "coordinator"),
    ):
        users.create_user(site.engine, operator, email=email, name=name, password=PASSWORD)
        users.grant_role(site.engine, operator, email=email, study=STUDY, site=where, role=role)
    subjects.enrol_subject(
        site.engine,
        ADMIN,
        STUDY,
        SubjectInput(subject_id=SUBJECT, site="SG01", screening_date=date(2025, 1, 6)),
    )
    data_entry.save_form(
        site.engine,
        ADMIN,
        STUDY,
        SUBJECT,
        "screening",
        "eligibility",
        data_entry.FormSave(version=0, values=ELIGIBILITY, complete=True),
    )
    queries.open_query(
        site.engine, REVIEWER, STUDY, SUBJECT, "screening", "eligibility", "ecog", "ECOG?"
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


def _query_id(site: Site) -> int:
    return queries.list_queries(site.engine, REVIEWER, STUDY, QueryFilter())[0].record.id


def _options(page: httpx.Response, select_id: str) -> list[str]:
    select = re.search(rf'<select id="{select_id}" name="assignee">(.*?)</select>', page.text)
    assert select is not None, page.text
    return re.findall(r'<option value="([^"]*)"', select.group(1))


def test_a_data_manager_assigns_a_query_from_the_form_page_to_an_eligible_person(
    study_site: Site,
) -> None:
    query_id = _query_id(study_site)
    dee = _signed_in(study_site, MANAGER)
    page = dee.get(FORM)
    assert page.status_code == 200, page.text
    assert f'<span id="assignee-{query_id}">nobody</span>' in page.text
    # the people who answer or manage queries at SG01: not Sam (statistician), not Hu (SH01)
    assert _options(page, f"assignee-of-{query_id}") == ["", EMAIL, MANAGER]
    assigned = dee.post(
        f"{FORM}/queries/{query_id}/assign", data={"csrf_token": _csrf(page), "assignee": EMAIL}
    )
    assert assigned.status_code == 303, assigned.text
    assert assigned.headers["location"] == f"{FORM}?done=assign#query-{query_id}"
    after = dee.get(f"{FORM}?done=assign")
    assert "The query&#39;s assignee is saved." in after.text
    assert f'<span id="assignee-{query_id}">{EMAIL}</span>' in after.text
    assert f'<option value="{EMAIL}" selected>' in after.text
    refused = dee.post(
        f"{FORM}/queries/{query_id}/assign",
        data={"csrf_token": _csrf(page), "assignee": "sam@sg.example"},
    )
    assert refused.status_code == 422
    assert "sam@sg.example does not answer or manage queries" in refused.text
    no_token = dee.post(f"{FORM}/queries/{query_id}/assign", data={"assignee": MANAGER})
    assert no_token.status_code == 403
    with study_site.engine.connect() as connection:
        events = [
            (e.actor, e.before, e.after)
            for e in iter_events(connection, chain=STUDY)
            if e.action == "query.assign"
        ]
    assert events == [(MANAGER, {"assignee": None}, {"assignee": EMAIL})]


def test_a_coordinator_sees_the_assignee_but_is_not_offered_to_assign(study_site: Site) -> None:
    query_id = _query_id(study_site)
    ana = _signed_in(study_site)
    page = ana.get(FORM)
    assert f'<span id="assignee-{query_id}">nobody</span>' in page.text
    assert f'id="assign-{query_id}"' not in page.text
    refused = ana.post(
        f"{FORM}/queries/{query_id}/assign", data={"csrf_token": _csrf(page), "assignee": EMAIL}
    )
    assert refused.status_code == 403
    assert (
        queries.get_query(study_site.engine, REVIEWER, STUDY, query_id).record.assigned_to is None
    )


def test_a_query_opened_on_the_form_page_may_be_assigned_at_once(study_site: Site) -> None:
    dee = _signed_in(study_site, MANAGER)
    page = dee.get(FORM)
    assert _options(page, "query-assignee") == ["", EMAIL, MANAGER]
    opened = dee.post(
        f"{FORM}/queries",
        data={"csrf_token": _csrf(page), "item": "histology", "text": "Biopsy?", "assignee": EMAIL},
    )
    assert opened.status_code == 303, opened.text
    mine = queries.list_queries(
        study_site.engine, REVIEWER, STUDY, QueryFilter(assigned_to=EMAIL, item="histology")
    )
    assert [v.record.text for v in mine] == ["Biopsy?"]


def test_the_query_list_shows_the_assignee_and_narrows_to_me_or_to_a_person(
    study_site: Site,
) -> None:
    query_id = _query_id(study_site)
    queries.assign_query(study_site.engine, REVIEWER, STUDY, query_id, EMAIL)
    ana = _signed_in(study_site)
    everything = ana.get(LIST)
    assert '<th scope="col">Assigned to</th>' in everything.text
    assert f'<td class="assignee">{EMAIL}</td>' in everything.text
    assert _options(everything, "f-assignee") == ["", "me", EMAIL, MANAGER]
    mine = ana.get(f"{LIST}?assignee=me")
    assert mine.status_code == 200
    assert f'id="row-{query_id}"' in mine.text
    assert '<option value="me" selected>Assigned to me</option>' in mine.text
    dee = _signed_in(study_site, MANAGER)
    assert 'id="no-queries"' in dee.get(f"{LIST}?assignee=me").text
    by_person = dee.get(f"{LIST}?assignee={EMAIL}")
    assert f'id="row-{query_id}"' in by_person.text
    assert f'<option value="{EMAIL}" selected>' in by_person.text
    # closing from the list comes back to the list as narrowed
    assert f'value="{LIST}?assignee=ana%40sg.example&amp;start=0"' in by_person.text
    assert dee.get(f"{LIST}?assignee=not-an-email").status_code == 422
    chinese = ana.get(f"{LIST}?assignee=me&lang=zh")
    assert "指派给我的" in chinese.text
    assert "负责人" in chinese.text
