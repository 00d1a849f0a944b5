"""Enrolling a subject: one transaction with its audit event; refusals change nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.services import subjects
from consortia.services.subjects import SubjectInput
from consortia.storage.audit import iter_events, verify_trail


def _person(*grants: Grant) -> Principal:
    return Principal(3, "c@sg.example", "C", frozenset(grants))


COORDINATOR = _person(Grant("CART01", "SG01", Role.COORDINATOR))


def _study_events(engine: sa.Engine, study: str = "CART01") -> list[tuple[str, str | None]]:
    with engine.connect() as connection:
        assert verify_trail(connection).ok
        return [(e.action, e.site) for e in iter_events(connection, chain=study)]


def test_enrolment_writes_the_subject_and_its_audit_event_together(engine: sa.Engine) -> None:
    record = subjects.enrol_subject(
        engine, COORDINATOR, "CART01", SubjectInput("SG01-001", "SG01", "AL")
    )
    assert (record.subject_id, record.site, record.initials) == ("SG01-001", "SG01", "AL")
    assert _study_events(engine) == [("subject.create", "SG01")]
    with engine.connect() as connection:
        event = next(iter_events(connection, chain="CART01"))
    assert event.actor == "c@sg.example"
    assert event.after == {
        "subject_id": "SG01-001",
        "site": "SG01",
        "initials": "AL",
        "screening_date": datetime.now(UTC).date().isoformat(),
    }


def test_a_taken_subject_id_is_refused_without_naming_the_other_site(engine: sa.Engine) -> None:
    other = _person(Grant("CART01", "SH01", Role.COORDINATOR))
    subjects.enrol_subject(engine, other, "CART01", SubjectInput("X-001", "SH01", "ZZ"))
    with pytest.raises(ConflictError) as refused:
        subjects.enrol_subject(engine, COORDINATOR, "CART01", SubjectInput("X-001", "SG01"))
    assert "SH01" not in str(refused.value)
    assert "ZZ" not in str(refused.value)
    assert _study_events(engine) == [("subject.create", "SH01")]


@pytest.mark.parametrize(
    ("principal", "study", "site", "error"),
    [
        (COORDINATOR, "ORTHO", "SG01", NotFoundError),
        (COORDINATOR, "CART01", "SH01", PermissionDeniedError),
        (_person(Grant("CART01", "SG01", Role.MONITOR)), "CART01", "SG01", PermissionDeniedError),
        (COORDINATOR, "CART01", "bad site!", ValidationError),
    ],
)
def test_refused_enrolments_write_nothing(
    engine: sa.Engine, principal: Principal, study: str, site: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        subjects.enrol_subject(engine, principal, study, SubjectInput("S-1", site, "AL"))
    assert _study_events(engine, study) == []
    assert subjects.list_subjects(engine, _person(Grant("*", "*", Role.AUDITOR)), "CART01") == []


def test_a_subject_at_an_unseen_site_is_not_found_and_a_missing_action_is_refused(
    engine: sa.Engine,
) -> None:
    subjects.enrol_subject(engine, COORDINATOR, "CART01", SubjectInput("SG01-001", "SG01"))
    elsewhere = _person(Grant("CART01", "SH01", Role.COORDINATOR))
    with pytest.raises(NotFoundError):
        subjects.get_subject(engine, elsewhere, "CART01", "SG01-001")
    sponsor = _person(Grant("CART01", "SG01", Role.SPONSOR_VIEWER))
    with pytest.raises(PermissionDeniedError):
        subjects.get_subject(engine, sponsor, "CART01", "SG01-001")
    assert subjects.count_subjects(engine, sponsor, "CART01") == {"SG01": 1}


def test_a_listing_past_what_a_database_takes_is_refused_naming_the_field(
    engine: sa.Engine,
) -> None:
    # SQLite cannot bind 2**63 and PostgreSQL refuses it: the service says which number
    subjects.enrol_subject(engine, COORDINATOR, "CART01", SubjectInput("SG01-001", "SG01"))
    for limit, offset, path in ((100, 10**23, "offset"), (100, -1, "offset"), (0, 0, "limit")):
        with pytest.raises(ValidationError) as refused:
            subjects.list_subjects(engine, COORDINATOR, "CART01", limit=limit, offset=offset)
        (problem,) = refused.value.problems
        assert problem.path == path
        assert f"{offset if path == 'offset' else limit} is out of range" in problem.message
    assert subjects.list_subjects(engine, COORDINATOR, "CART01", offset=2**31 - 1) == []
    assert len(subjects.list_subjects(engine, COORDINATOR, "CART01", limit=1)) == 1
