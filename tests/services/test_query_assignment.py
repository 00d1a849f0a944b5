"""Assigning data queries: when opening or later, only to someone who answers or manages
queries at the query's study and site, by whoever may open queries there; each assignment
is audited with the assignee before and after, in the same transaction, on SQLite and
PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.services import data_entry, exports, queries, studies, subjects, users
from consortia.services.exports import ExportFormat
from consortia.services.subjects import SubjectInput
from consortia.storage.audit import iter_events
from consortia.storage.queries import QueryFilter
from consortia.storage.replay import compare_state
from consortia.storage.tables import data_query

STUDY = "CART-LBCL"
OPERATOR = users.cli_operator()
ADMIN = Principal(
    1,
    "admin@sg.example",
    "Admin",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR)),
)
MANAGER = Principal(2, "dm@sg.example", "Dee", frozenset({Grant(STUDY, "*", Role.DATA_MANAGER)}))
MONITOR_SH = Principal(3, "mo@sh.example", "Mo", frozenset({Grant(STUDY, "SH01", Role.MONITOR)}))
CO_SG = Principal(4, "co@sg.example", "Co", frozenset({Grant(STUDY, "SG01", Role.COORDINATOR)}))
ELIGIBILITY = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "ldh_elevated": False,
    "eligible": True,
}
#: the ``refuse_event`` fixture (tests/services/conftest.py)
RefuseEvent = Callable[[sa.Engine, str], AbstractContextManager[None]]


@pytest.fixture
def study(engine: sa.Engine) -> sa.Engine:
    """One subject at SG01 with a saved eligibility form, and people with roles: a
    coordinator and an investigator at SG01, a coordinator at SH01, a statistician
    everywhere, an auditor everywhere, and a coordinator at SG01 whose account is off."""
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    subjects.enrol_subject(
        engine,
        ADMIN,
        STUDY,
        SubjectInput(subject_id="SG01-0001", site="SG01", screening_date=date(2025, 1, 6)),
    )
    data_entry.save_form(
        engine,
        ADMIN,
        STUDY,
        "SG01-0001",
        "screening",
        "eligibility",
        data_entry.FormSave(version=0, values=ELIGIBILITY, complete=True),
    )
    for email, site, role in (
        ("co@sg.example", "SG01", Role.COORDINATOR),
        ("pi@sg.example", "SG01", Role.INVESTIGATOR),
        ("co@sh.example", "SH01", Role.COORDINATOR),
        ("stat@sg.example", "*", Role.STATISTICIAN),
        ("aud@sg.example", "*", Role.AUDITOR),
        ("gone@sg.example", "SG01", Role.COORDINATOR),
        ("dm@sg.example", "*", Role.DATA_MANAGER),
    ):
        users.create_user(engine, OPERATOR, email=email, name=email[:3], password=None)
        users.grant_role(engine, OPERATOR, email=email, study=STUDY, site=site, role=role)
    users.deactivate_user(engine, OPERATOR, "gone@sg.example")
    return engine


def _open(engine: sa.Engine, assignee: str | None = None) -> int:
    view = queries.open_query(
        engine,
        MANAGER,
        STUDY,
        "SG01-0001",
        "screening",
        "eligibility",
        "ecog",
        "Check ECOG",
        assignee,
    )
    return view.record.id


def _assign_events(engine: sa.Engine) -> list[tuple[str, object, object]]:
    with engine.connect() as connection:
        return [
            (event.actor, event.before, event.after)
            for event in iter_events(connection, chain=STUDY)
            if event.action == "query.assign"
        ]


def _stored_assignee(engine: sa.Engine, query_id: int) -> str | None:
    with engine.connect() as connection:
        value = connection.execute(
            sa.select(data_query.c.assigned_to).where(data_query.c.id == query_id)
        ).scalar_one()
    return None if value is None else str(value)


def test_a_query_opened_with_an_assignee_is_listed_under_that_assignee(
    study: sa.Engine,
) -> None:
    query_id = _open(study, " CO@sg.example ")
    view = queries.get_query(study, MANAGER, STUDY, query_id)
    assert view.record.assigned_to == "co@sg.example"
    mine = queries.list_queries(study, CO_SG, STUDY, QueryFilter(assigned_to="co@sg.example"))
    assert [v.record.id for v in mine] == [query_id]
    nobody = queries.list_queries(study, MANAGER, STUDY, QueryFilter(assigned_to="pi@sg.example"))
    assert nobody == []
    assert queries.assignee_filter(CO_SG, "me") == "co@sg.example"
    with study.connect() as connection:
        opened = [e for e in iter_events(connection, chain=STUDY) if e.action == "query.open"]
    assert opened[-1].after["assignee"] == "co@sg.example"


def test_a_query_is_reassigned_and_unassigned_each_change_audited_before_and_after(
    study: sa.Engine,
) -> None:
    query_id = _open(study)
    assert queries.get_query(study, MANAGER, STUDY, query_id).record.assigned_to is None
    queries.assign_query(study, MANAGER, STUDY, query_id, "co@sg.example")
    view = queries.assign_query(study, MANAGER, STUDY, query_id, "pi@sg.example")
    assert view.record.assigned_to == "pi@sg.example"
    queries.assign_query(study, MANAGER, STUDY, query_id, "pi@sg.example")  # no change
    queries.assign_query(study, MANAGER, STUDY, query_id, None)
    assert _stored_assignee(study, query_id) is None
    assert _assign_events(study) == [
        ("dm@sg.example", {"assignee": None}, {"assignee": "co@sg.example"}),
        ("dm@sg.example", {"assignee": "co@sg.example"}, {"assignee": "pi@sg.example"}),
        ("dm@sg.example", {"assignee": "pi@sg.example"}, {"assignee": None}),
    ]


@pytest.mark.parametrize(
    "assignee",
    [
        "co@sh.example",  # a coordinator at another site
        "stat@sg.example",  # a role that neither answers nor manages queries
        "aud@sg.example",  # reads queries, but neither answers nor manages them
        "gone@sg.example",  # an account that is no longer active
        "nobody@sg.example",  # no account at all
        "not an email",
    ],
)
def test_assigning_to_someone_who_may_not_act_on_the_query_is_refused_and_nothing_changes(
    study: sa.Engine, assignee: str
) -> None:
    query_id = _open(study, "co@sg.example")
    with pytest.raises(ValidationError) as refused:
        queries.assign_query(study, MANAGER, STUDY, query_id, assignee)
    assert [problem.path for problem in refused.value.problems] == ["assignee"]
    assert assignee in str(refused.value.problems[0])
    assert _stored_assignee(study, query_id) == "co@sg.example"
    assert _assign_events(study) == []
    with pytest.raises(ValidationError) as at_opening:
        _open(study, assignee)
    assert [problem.path for problem in at_opening.value.problems] == ["assignee"]
    listed = queries.list_queries(study, MANAGER, STUDY, QueryFilter())
    assert [v.record.id for v in listed] == [query_id]


def test_only_whoever_may_open_queries_at_the_site_assigns_them(study: sa.Engine) -> None:
    query_id = _open(study)
    with pytest.raises(PermissionDeniedError):
        queries.assign_query(study, CO_SG, STUDY, query_id, "co@sg.example")
    with pytest.raises(NotFoundError):  # a monitor at SH01 does not see a query at SG01
        queries.assign_query(study, MONITOR_SH, STUDY, query_id, "co@sg.example")
    assert _stored_assignee(study, query_id) is None
    with study.connect() as connection:
        assert queries.assignees(connection, CO_SG, STUDY, "SG01") == []
        people = queries.assignees(connection, MANAGER, STUDY, "SG01")
    assert [p.email for p in people] == ["co@sg.example", "dm@sg.example", "pi@sg.example"]


def test_a_closed_query_is_not_assigned(study: sa.Engine) -> None:
    query_id = _open(study)
    queries.close_query(study, MANAGER, STUDY, query_id, "Fine")
    with pytest.raises(ConflictError, match="closed"):
        queries.assign_query(study, MANAGER, STUDY, query_id, "co@sg.example")


def test_an_assignment_is_undone_with_its_audit_event(
    study: sa.Engine, refuse_event: RefuseEvent
) -> None:
    query_id = _open(study)
    with refuse_event(study, "query.assign"), pytest.raises(sa.exc.DBAPIError):
        queries.assign_query(study, MANAGER, STUDY, query_id, "co@sg.example")
    assert _stored_assignee(study, query_id) is None
    queries.assign_query(study, MANAGER, STUDY, query_id, "co@sg.example")
    assert _stored_assignee(study, query_id) == "co@sg.example"


def test_the_assignee_replayed_from_the_trail_matches_the_table_and_an_edit_shows(
    study: sa.Engine,
) -> None:
    first = _open(study, "co@sg.example")
    second = _open(study)
    queries.assign_query(study, MANAGER, STUDY, second, "pi@sg.example")
    queries.assign_query(study, MANAGER, STUDY, first, None)
    assert compare_state(study) == []
    with study.begin() as connection:  # an edit behind the services' back
        connection.execute(
            data_query.update().where(data_query.c.id == second).values(assigned_to="x@sg.example")
        )
    assert [(d.where, d.field, d.table, d.trail) for d in compare_state(study)] == [
        (f"{STUDY} query {second}", "assignee", "x@sg.example", "pi@sg.example")
    ]


def test_the_queries_export_carries_each_querys_assignee(study: sa.Engine) -> None:
    assigned, unassigned = _open(study, "co@sg.example"), _open(study, None)
    out = io.BytesIO()
    exports.export_table(
        study, MANAGER, STUDY, "queries", exports.ExportRequest(ExportFormat.CSV), out
    )
    rows = {row["query_id"]: row for row in csv.DictReader(io.StringIO(out.getvalue().decode()))}
    assert rows[str(assigned)]["assigned_to"] == "co@sg.example"
    assert rows[str(unassigned)]["assigned_to"] == ""
