"""Moving a subject's schedule from its page, in-process on both databases: day 0 moves
with a reason (the API's ``PUT .../schedule``), every scheduled event's target and window
follow, and the move is audited with its reason; every refusal (no CSRF token, no reason, a
reason too long, a malformed date, a role that does not enter data, another site's subject)
moves nothing."""

from __future__ import annotations

import re
from datetime import date, timedelta

import httpx
import pytest
from test_review_pages import ADMIN, STUDY
from web_client import PASSWORD, Browser, Site

from consortia.domain.templates import template_text
from consortia.services import history, schedule, studies, subjects, users
from consortia.services.subjects import SubjectInput
from consortia.web.i18n import CATALOGUES

EN, ZH = CATALOGUES["en"], CATALOGUES["zh"]
SUBJECT, OTHER = "SG01-0001", "SH01-0001"
COORDINATOR = "cat@sg.example"


@pytest.fixture
def schedule_site(site: Site) -> Site:
    """The CAR-T study, a subject at SG01 and one at SH01; Cat coordinates at SG01."""
    studies.load_definition(site.engine, ADMIN, template_text("cart-lbcl"))
    for subject_id in (SUBJECT, OTHER):
        subjects.enrol_subject(
            site.engine,
            ADMIN,
            STUDY,
            SubjectInput(
                subject_id=subject_id, site=subject_id[:4], screening_date=date(2025, 1, 6)
            ),
        )
    operator = users.cli_operator()
    for email, role in ((COORDINATOR, "coordinator"), ("mo@sg.example", "monitor")):
        users.create_user(site.engine, operator, email=email, name=email[:3], password=PASSWORD)
        users.grant_role(site.engine, operator, email=email, study=STUDY, site="SG01", role=role)
    return site


def _signed_in(site: Site, email: str = COORDINATOR) -> Browser:
    browser = site.browser()
    answer = browser.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return browser


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def _plan(site: Site, subject_id: str = SUBJECT) -> list[tuple[str, date | None]]:
    events = schedule.list_events(site.engine, ADMIN, STUDY, subject_id)
    return [(event.ref, event.target_date) for event in events]


def _moves(site: Site, subject_id: str = SUBJECT) -> list[tuple[object, str | None]]:
    events = history.subject_history(site.engine, ADMIN, STUDY, subject_id)
    return [(e.after, e.reason) for e in events if e.action == "schedule.reanchor"]


def _path(subject_id: str = SUBJECT) -> str:
    return f"/studies/{STUDY}/subjects/{subject_id}"


def test_a_coordinator_moves_a_schedule_with_a_reason(schedule_site: Site) -> None:
    browser = _signed_in(schedule_site)
    page = browser.get(_path())
    assert 'id="move-schedule-form"' in page.text
    anchor = subjects.get_subject(schedule_site.engine, ADMIN, STUDY, SUBJECT).anchor_date
    assert anchor is not None
    assert f'id="anchor-date" name="anchor_date" value="{anchor.isoformat()}"' in page.text
    before = _plan(schedule_site)
    later = anchor + timedelta(days=9)
    moved = browser.post(
        f"{_path()}/schedule",
        data={
            "csrf_token": _csrf(page),
            "anchor_date": later.isoformat(),
            "reason": "Infusion postponed: product release delayed",
        },
    )
    assert moved.status_code == 303, moved.text
    assert moved.headers["location"] == f"{_path()}?moved=1"
    after = _plan(schedule_site)
    scheduled = [(ref, target) for ref, target in before if target is not None]
    assert scheduled  # the study has scheduled events
    shifted = dict(after)
    for ref, target in scheduled:
        assert target is not None
        assert shifted[ref] == target + timedelta(days=9), ref
    [(after, reason)] = _moves(schedule_site)  # one audit event, with the reason
    assert reason == "Infusion postponed: product release delayed"
    assert after == {"anchor_date": later.isoformat()}
    shown = browser.get(moved.headers["location"])
    assert EN["schedule.moved"] in shown.text
    assert f'value="{later.isoformat()}"' in shown.text
    assert _moves(schedule_site, OTHER) == []  # the other subject's schedule stays


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"anchor_date": "2025-02-01", "reason": "   "}, "schedule.reason_needed"),
        ({"anchor_date": "2025-02-01"}, "schedule.reason_needed"),
        ({"anchor_date": "2025-02-01", "reason": "x" * 2001}, "schedule.reason_too_long"),
        ({"anchor_date": "1 Feb 2025", "reason": "moved"}, "schedule.bad_date"),
        ({"anchor_date": "", "reason": "moved"}, "schedule.bad_date"),
    ],
)
def test_bad_input_moves_nothing(schedule_site: Site, fields: dict[str, str], message: str) -> None:
    browser = _signed_in(schedule_site)
    page = browser.get(_path())
    before = _plan(schedule_site)
    refused = browser.post(f"{_path()}/schedule", data={"csrf_token": _csrf(page), **fields})
    assert refused.status_code == 422
    assert EN[message] in refused.text
    assert 'id="schedule-error" role="alert"' in refused.text
    assert _plan(schedule_site) == before
    assert _moves(schedule_site) == []


def test_refusals_move_nothing(schedule_site: Site) -> None:
    browser = _signed_in(schedule_site)
    page = browser.get(_path())
    before, other_before = _plan(schedule_site), _plan(schedule_site, OTHER)
    move = {"anchor_date": "2025-03-01", "reason": "postponed"}
    # without the CSRF token
    assert browser.post(f"{_path()}/schedule", data=move).status_code == 403
    # another site's subject: not found
    other = browser.post(f"{_path(OTHER)}/schedule", data={"csrf_token": _csrf(page), **move})
    assert other.status_code == 404
    # a monitor reads the subject but does not move its schedule, nor sees the form
    monitor = _signed_in(schedule_site, "mo@sg.example")
    seen = monitor.get(_path())
    assert seen.status_code == 200
    assert 'id="move-schedule-form"' not in seen.text
    refused = monitor.post(f"{_path()}/schedule", data={"csrf_token": _csrf(seen), **move})
    assert refused.status_code == 403
    assert _plan(schedule_site) == before
    assert _plan(schedule_site, OTHER) == other_before
    assert _moves(schedule_site) == _moves(schedule_site, OTHER) == []


def test_the_schedule_form_in_chinese(schedule_site: Site) -> None:
    browser = _signed_in(schedule_site)
    page = browser.get(f"{_path()}?lang=zh")
    for key in ("schedule.move", "schedule.anchor", "schedule.reason", "schedule.submit"):
        assert ZH[key] in page.text
    refused = browser.post(
        f"{_path()}/schedule",
        data={"csrf_token": _csrf(page), "anchor_date": "2025-02-01", "reason": ""},
    )
    assert ZH["schedule.reason_needed"] in refused.text
