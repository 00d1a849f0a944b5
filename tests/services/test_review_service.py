"""Reads for review: the SDV worklist (forms complete but not verified, by site), the query
listing's age filter, and an identifier item's history marked as withheld."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.exceptions import PermissionDeniedError, ValidationError
from consortia.services import data_entry, form_states, history, queries, studies, subjects
from consortia.services.common import utc_now
from consortia.services.subjects import SubjectInput
from consortia.storage.queries import QueryFilter

STUDY = "CART-LBCL"
ADMIN = Principal(
    1,
    "admin@sg.example",
    "Admin",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR)),
)
MONITOR_SG = Principal(2, "mo@sg.example", "Mo", frozenset({Grant(STUDY, "SG01", Role.MONITOR)}))
MONITOR_ALL = Principal(3, "mx@sg.example", "Mx", frozenset({Grant(STUDY, "*", Role.MONITOR)}))
MANAGER = Principal(4, "dm@sg.example", "Dee", frozenset({Grant(STUDY, "*", Role.DATA_MANAGER)}))
COORDINATOR = Principal(
    5, "co@sg.example", "Co", frozenset({Grant(STUDY, "SG01", Role.COORDINATOR)})
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
def study(engine: sa.Engine) -> sa.Engine:
    """Three subjects: complete eligibility at SG01 and SH01, in progress at SG01."""
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    for subject_id, site, complete in (
        ("SG01-0001", "SG01", True),
        ("SG01-0002", "SG01", False),
        ("SH01-0001", "SH01", True),
    ):
        subjects.enrol_subject(
            engine,
            ADMIN,
            STUDY,
            SubjectInput(subject_id=subject_id, site=site, screening_date=date(2025, 1, 6)),
        )
        data_entry.save_form(
            engine,
            ADMIN,
            STUDY,
            subject_id,
            "screening",
            "eligibility",
            data_entry.FormSave(version=0, values=ELIGIBILITY, complete=complete),
        )
    return engine


def test_the_sdv_worklist_holds_complete_unverified_forms_at_the_monitors_sites(
    study: sa.Engine,
) -> None:
    everywhere = form_states.sdv_worklist(study, MONITOR_ALL, STUDY)
    assert [(e.site, e.subject_id, e.form) for e in everywhere] == [
        ("SG01", "SG01-0001", "eligibility"),
        ("SH01", "SH01-0001", "eligibility"),
    ]
    assert [e.site for e in form_states.sdv_worklist(study, MONITOR_ALL, STUDY, site="SH01")] == [
        "SH01"
    ]
    mine = form_states.sdv_worklist(study, MONITOR_SG, STUDY)
    assert [e.subject_id for e in mine] == ["SG01-0001"]
    assert form_states.sdv_worklist(study, MONITOR_SG, STUDY, site="SH01") == []
    form_states.verify_form(study, MONITOR_SG, (STUDY, "SG01-0001", "screening", "eligibility"), 1)
    assert form_states.sdv_worklist(study, MONITOR_SG, STUDY) == []
    with pytest.raises(PermissionDeniedError):
        form_states.sdv_worklist(study, COORDINATOR, STUDY)
    with pytest.raises(ValidationError):
        form_states.sdv_worklist(study, MONITOR_ALL, STUDY, offset=-1)


def test_queries_are_filtered_by_age(study: sa.Engine) -> None:
    queries.open_query(
        study, MANAGER, STUDY, "SG01-0001", "screening", "eligibility", "ecog", "Check ECOG"
    )
    now = utc_now()
    young = QueryFilter(opened_before=now + timedelta(seconds=1))
    assert len(queries.list_queries(study, MANAGER, STUDY, young)) >= 1
    old = QueryFilter(opened_before=now - timedelta(days=1))
    assert queries.list_queries(study, MANAGER, STUDY, old) == []


def test_an_identifiers_history_is_withheld_from_those_who_may_not_see_it(
    study: sa.Engine,
) -> None:
    where = (STUDY, "SG01-0001", "screening", "demographics")
    for version, initials, reason in ((0, "QX", None), (1, "QY", "typo")):
        data_entry.save_form(
            study,
            ADMIN,
            *where,
            data_entry.FormSave(
                version=version,
                values={"initials": initials, "sex": "M", "age": 54},
                reason=reason,
            ),
        )
    hidden = history.item_history(study, MANAGER, *where, "initials")
    assert [(c.before, c.after, c.masked) for c in hidden] == [
        (None, None, True),
        (None, None, True),
    ]
    shown = history.item_history(study, ADMIN, *where, "initials")
    assert [(c.before, c.after, c.masked) for c in shown] == [
        (None, "QX", False),
        ("QX", "QY", False),
    ]
    age = history.item_history(study, MANAGER, *where, "age")
    assert [(c.after, c.masked) for c in age] == [("54", False)]


def test_a_history_is_read_a_page_at_a_time(study: sa.Engine) -> None:
    where = (STUDY, "SG01-0001", "screening", "eligibility")
    data_entry.save_form(
        study,
        ADMIN,
        *where,
        data_entry.FormSave(version=1, values={**ELIGIBILITY, "ecog": 2}, reason="source"),
    )
    whole = history.subject_history(study, MONITOR_SG, STUDY, "SG01-0001")
    assert len(whole) >= 3
    pages = [
        history.subject_history(study, MONITOR_SG, STUDY, "SG01-0001", limit=2, offset=start)
        for start in range(0, len(whole), 2)
    ]
    assert [event.seq for page in pages for event in page] == [event.seq for event in whole]
    saves = history.form_history(study, MONITOR_SG, *where, limit=1, offset=1)
    assert [event.reason for event in saves] == ["source"]
    with pytest.raises(ValidationError):
        history.form_history(study, MONITOR_SG, *where, limit=1001)
