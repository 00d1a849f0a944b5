"""Repositories narrow every query to the principal's sites and mask identifiers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from consortia.auth.policy import Action
from consortia.auth.principal import Grant, Principal, Role
from consortia.exceptions import NotFoundError
from consortia.services import users
from consortia.storage.audit import append_event
from consortia.storage.capture import CaptureRepository
from consortia.storage.db import make_engine
from consortia.storage.repositories import (
    AuditRepository,
    GrantRepository,
    SubjectRepository,
    mask_event,
)
from consortia.storage.tables import event_instance, subject

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
SUBJECTS = [
    ("CART01", "SG01", "SG01-001", "AL"),
    ("CART01", "SG01", "SG01-002", "BT"),
    ("CART01", "SH01", "SH01-001", "CW"),
    ("ORTHO", "SG01", "SG01-901", "DX"),
]


def _person(*grants: Grant) -> Principal:
    return Principal(9, "p@example.org", "P", frozenset(grants))


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(migrated_database_url)
    with engine.begin() as connection:
        connection.execute(
            subject.insert(),
            [
                {
                    "study": study,
                    "site": site,
                    "subject_id": subject_id,
                    "initials": initials,
                    "created_at": NOW,
                    "created_by": "seed",
                }
                for study, site, subject_id, initials in SUBJECTS
            ],
        )
        for study, site, subject_id, initials in SUBJECTS:
            append_event(
                connection,
                study,
                actor="seed",
                action="subject.create",
                entity_type="subject",
                entity_id=f"{study}/{subject_id}",
                site=site,
                after={"subject_id": subject_id, "initials": initials},
            )
    yield engine
    engine.dispose()


def test_a_site_coordinator_sees_its_own_sites_subjects_only(engine: sa.Engine) -> None:
    coordinator = _person(Grant("CART01", "SG01", Role.COORDINATOR))
    with engine.connect() as connection:
        repository = SubjectRepository(connection, coordinator)
        listed = repository.list("CART01")
        assert [s.subject_id for s in listed] == ["SG01-001", "SG01-002"]
        assert [s.initials for s in listed] == ["AL", "BT"]
        assert repository.get("CART01", "SH01-001") is None
        assert repository.get("ORTHO", "SG01-901") is None
        assert repository.count_by_site("CART01", action=Action.AGGREGATE_READ) == {"SG01": 2}


def test_a_study_wide_statistician_sees_every_site_but_no_identifier(engine: sa.Engine) -> None:
    statistician = _person(Grant("CART01", "*", Role.STATISTICIAN))
    with engine.connect() as connection:
        listed = SubjectRepository(connection, statistician).list("CART01")
    assert [s.site for s in listed] == ["SG01", "SG01", "SH01"]
    assert all(s.initials is None and s.identifiers_masked for s in listed)


def test_masking_follows_the_role_at_each_records_site(engine: sa.Engine) -> None:
    person = _person(
        Grant("CART01", "SG01", Role.COORDINATOR), Grant("CART01", "SH01", Role.DATA_MANAGER)
    )
    with engine.connect() as connection:
        listed = SubjectRepository(connection, person).list("CART01")
    assert [(s.site, s.initials) for s in listed] == [
        ("SG01", "AL"),
        ("SG01", "BT"),
        ("SH01", None),
    ]


def test_a_role_without_read_access_lists_nothing(engine: sa.Engine) -> None:
    sponsor = _person(Grant("CART01", "*", Role.SPONSOR_VIEWER))
    with engine.connect() as connection:
        assert SubjectRepository(connection, sponsor).list("CART01") == []


def test_the_audit_trail_is_narrowed_to_sites_and_masked(engine: sa.Engine) -> None:
    site_auditor = _person(Grant("CART01", "SH01", Role.AUDITOR))
    masked_reader = _person(Grant("CART01", "*", Role.AUDITOR), Grant("CART01", "*", Role.MONITOR))
    with engine.connect() as connection:
        events = AuditRepository(connection, site_auditor).study_events("CART01")
        assert [(e.site, e.after["initials"]) for e in events] == [("SH01", "CW")]
        assert AuditRepository(connection, site_auditor).study_events("ORTHO") == []
        assert len(AuditRepository(connection, masked_reader).study_events("CART01")) == 3
        assert AuditRepository(connection, site_auditor).node_events() == []


def test_a_masked_audit_event_hides_identifiers_but_keeps_its_hash(engine: sa.Engine) -> None:
    statistician = _person(Grant("CART01", "*", Role.STATISTICIAN))
    auditor = _person(Grant("CART01", "*", Role.AUDITOR))
    with engine.connect() as connection:
        event = AuditRepository(connection, auditor).study_events("CART01")[0]
    masked = mask_event(event, statistician, "CART01")
    assert masked.after == {"subject_id": "SG01-001", "initials": None}
    assert masked.hash == event.hash


def test_grants_are_visible_only_to_those_who_manage_them(engine: sa.Engine) -> None:
    operator = users.cli_operator()
    for email in ("a@x.example", "b@x.example"):
        users.create_user(engine, operator, email=email, name=email, password=None)
    users.grant_role(
        engine, operator, email="a@x.example", study="CART01", site="SG01", role="coordinator"
    )
    users.grant_role(
        engine, operator, email="b@x.example", study="CART01", site="SH01", role="coordinator"
    )
    site_admin = _person(Grant("CART01", "SG01", Role.STUDY_ADMIN))
    coordinator = _person(Grant("CART01", "SG01", Role.COORDINATOR))
    with engine.connect() as connection:
        assert [g.email for g in GrantRepository(connection, site_admin).list()] == ["a@x.example"]
        assert GrantRepository(connection, coordinator).list() == []
        assert len(GrantRepository(connection, operator).list()) == 2


def test_the_capture_repository_checks_each_subject_against_its_own_principal(
    engine: sa.Engine,
) -> None:
    """A subject is named by its record, and the capture repository checks the record's
    site itself: a record found through someone else's lookup reaches nothing."""
    monitor = _person(Grant("CART01", "*", Role.MONITOR))
    shanghai = _person(Grant("CART01", "SH01", Role.COORDINATOR))
    with engine.begin() as connection:
        found = SubjectRepository(connection, monitor).get("CART01", "SG01-001")
        own = SubjectRepository(connection, shanghai).get("CART01", "SH01-001")
        assert found is not None
        assert own is not None
        capture = CaptureRepository(connection, shanghai)
        for reach in (
            lambda: capture.events(found),
            lambda: capture.subject_values(found),
            lambda: capture.add_event(found, event="day0", instance=1, created_at=NOW),
            lambda: capture.set_anchor(found, NOW.date()),
        ):
            with pytest.raises(NotFoundError, match="subject SG01-001 not found in study CART01"):
                reach()
        added = capture.add_event(own, event="day0", instance=1, created_at=NOW)
        assert [event.id for event in capture.events(own)] == [added.id]
        assert capture.subject_row(own).anchor_date is None
        count = sa.select(sa.func.count()).select_from(event_instance)
        assert connection.execute(count).scalar_one() == 1
        assert (
            connection.execute(
                sa.select(subject.c.anchor_date).where(subject.c.id == found.id)
            ).scalar_one()
            is None
        )
