"""The record-status dashboard's reads: each form's state, open queries, site scope,
filters and pages, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.exceptions import ValidationError
from consortia.services import data_entry, form_states, queries, studies, subjects
from consortia.services.dashboard import GridFilter, read_dashboard

STUDY = "CART-LBCL"
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
SG_COORDINATOR = Principal(
    3, "co@sg.example", "Coordinator", frozenset({Grant(STUDY, "SG01", Role.COORDINATOR)})
)
ELIGIBILITY = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "ldh_elevated": False,
    "eligible": True,
}


def _save(engine: sa.Engine, subject_id: str, *, complete: bool) -> None:
    save = data_entry.FormSave(version=0, values=ELIGIBILITY, complete=complete)
    data_entry.save_form(engine, ADMIN, STUDY, subject_id, "screening", "eligibility", save)


@pytest.fixture
def node(engine: sa.Engine) -> sa.Engine:
    """SG01-001 verified, SG01-002 in progress with an open query, SG01-003 nothing saved,
    SH01-001 locked."""
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    for subject_id in ("SG01-001", "SG01-002", "SG01-003", "SH01-001"):
        subjects.enrol_subject(
            engine,
            ADMIN,
            STUDY,
            subjects.SubjectInput(subject_id, subject_id[:4], screening_date=date(2025, 1, 6)),
        )
    _save(engine, "SG01-001", complete=True)
    form_states.verify_form(engine, REVIEWER, (STUDY, "SG01-001", "screening", "eligibility"), 1)
    _save(engine, "SG01-002", complete=False)
    queries.open_query(
        engine, REVIEWER, STUDY, "SG01-002", "screening", "eligibility", "ecog", "ECOG source?"
    )
    _save(engine, "SH01-001", complete=True)
    form_states.lock_form(engine, REVIEWER, (STUDY, "SH01-001", "screening", "eligibility"), 1)
    return engine


def _states(engine: sa.Engine, principal: Principal, where: GridFilter) -> dict[str, object]:
    page = read_dashboard(engine, principal, STUDY, where)
    return {
        row.subject_id: [(c.event, c.form, c.state, c.open_queries) for c in row.forms]
        for row in page.rows
    }


def test_each_form_shows_its_state_and_open_queries(node: sa.Engine) -> None:
    assert _states(node, ADMIN, GridFilter()) == {
        "SG01-001": [("screening", "eligibility", "verified", 0)],
        "SG01-002": [("screening", "eligibility", "in_progress", 1)],
        "SG01-003": [],
        "SH01-001": [("screening", "eligibility", "locked", 0)],
    }


def test_a_site_sees_its_own_subjects_only(node: sa.Engine) -> None:
    assert list(_states(node, SG_COORDINATOR, GridFilter())) == ["SG01-001", "SG01-002", "SG01-003"]
    # asking for the other site does not reach past the scope
    assert _states(node, SG_COORDINATOR, GridFilter(site="SH01")) == {}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (GridFilter(site="SH01"), ["SH01-001"]),
        (GridFilter(form_state="verified"), ["SG01-001"]),
        (GridFilter(form_state="in_progress"), ["SG01-002"]),
        (GridFilter(form_state="open_query"), ["SG01-002"]),
        (GridFilter(form_state="locked", site="SG01"), []),
        (GridFilter(status="screening"), ["SG01-001", "SG01-002", "SG01-003", "SH01-001"]),
        (GridFilter(status="withdrawn"), []),
    ],
)
def test_filters_keep_the_subjects_they_name(
    node: sa.Engine, where: GridFilter, expected: list[str]
) -> None:
    page = read_dashboard(node, ADMIN, STUDY, where)
    assert [row.subject_id for row in page.rows] == expected
    assert page.total == len(expected)


def test_pages_follow_the_subject_ids_and_count_every_subject(node: sa.Engine) -> None:
    first = read_dashboard(node, ADMIN, STUDY, GridFilter(), limit=3)
    second = read_dashboard(node, ADMIN, STUDY, GridFilter(), limit=3, offset=3)
    assert [row.subject_id for row in first.rows] == ["SG01-001", "SG01-002", "SG01-003"]
    assert [row.subject_id for row in second.rows] == ["SH01-001"]
    assert first.total == second.total == 4


def test_a_filter_out_of_the_study_is_refused_with_its_field(node: sa.Engine) -> None:
    with pytest.raises(ValidationError) as refused:
        read_dashboard(node, ADMIN, STUDY, GridFilter(site="XX01", form_state="lost"))
    paths = [problem.path for problem in refused.value.problems]
    assert paths == ["site", "state"]
    assert "SG01, SH01" in refused.value.problems[0].message
