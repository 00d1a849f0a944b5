"""Subjects: enrol, list, read, count — the first study data behind the site-isolation rules.

The order of checks is what keeps existence from leaking:

1. a study where the caller holds no role is *not found* (404);
2. a subject at a site where the caller holds no role is *not found* (404) — the
   repository cannot see it;
3. a role that lacks the action is *refused* (403);
4. identifier values are masked by the repository for roles without identifier access.

Enrolment is one transaction: policy check, uniqueness check, insert, audit event on the
study's chain (with the site, so site-scoped audit readers see it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Engine

from consortia.auth.policy import Action
from consortia.auth.principal import Principal
from consortia.domain.schedule import SubjectStatus
from consortia.exceptions import ConflictError, NotFoundError, Problem, ValidationError
from consortia.services.common import (
    audit,
    check_code,
    check_page,
    require_in_study,
    utc_now,
    visible_study,
)
from consortia.services.schedule import plan_subject_events
from consortia.services.studies import current_definition
from consortia.services.unit_of_work import reading, writing
from consortia.storage.capture import CaptureRepository, StudyVersionRepository
from consortia.storage.repositories import SubjectRecord, SubjectRepository

__all__ = [
    "INITIALS_PATTERN",
    "SubjectInput",
    "SubjectRecord",
    "count_subjects",
    "enrol_subject",
    "get_subject",
    "list_subjects",
]

INITIALS_PATTERN = r"^[A-Za-z][A-Za-z-]{0,7}$"
_INITIALS = re.compile(INITIALS_PATTERN)


@dataclass(frozen=True, slots=True)
class SubjectInput:
    """What enrolling a subject needs."""

    subject_id: str
    site: str
    initials: str | None = None
    screening_date: date | None = None


def list_subjects(
    engine: Engine, principal: Principal, study: str, *, limit: int = 100, offset: int = 0
) -> list[SubjectRecord]:
    """Subjects of ``study`` at the sites where the principal may read them."""
    visible_study(principal, study)
    require_in_study(principal, Action.SUBJECT_READ, study)
    check_page(limit, offset)
    with reading(engine, principal) as work:
        records = work.subjects().list(study, limit=limit, offset=offset)
    _audit_identifier_reads(engine, principal, study, records, f"{study}/*")
    return records


def _audit_identifier_reads(
    engine: Engine,
    principal: Principal,
    study: str,
    records: list[SubjectRecord],
    entity: str,
) -> None:
    """Showing identifier values is an access event: one per site, naming the subjects.

    The records are read in a read-only unit of work; only when identifier values are
    about to be shown does a (short) write record it, before they are returned.
    """
    shown: dict[str, list[str]] = {}
    for record in records:
        if record.initials is not None:
            shown.setdefault(record.site, []).append(record.subject_id)
    if not shown:
        return
    with writing(engine, principal) as work:
        for site, subject_ids in sorted(shown.items()):
            work.audit(
                "identifier.read",
                "subject",
                entity,
                chain=study,
                site=site,
                after={"subjects": subject_ids, "items": ["initials"]},
            )


def get_subject(engine: Engine, principal: Principal, study: str, subject_id: str) -> SubjectRecord:
    """One subject; at a site the principal cannot see, it is not found."""
    visible_study(principal, study)
    with reading(engine, principal) as work:
        record = work.subjects().get(study, subject_id)
    if record is None:
        raise NotFoundError(f"subject {subject_id} not found in study {study}")
    require_in_study(principal, Action.SUBJECT_READ, study, record.site)
    _audit_identifier_reads(engine, principal, study, [record], f"{study}/{subject_id}")
    return record


def enrol_subject(
    engine: Engine, principal: Principal, study: str, subject: SubjectInput
) -> SubjectRecord:
    """Enrol a subject at a site where the principal may enrol."""
    visible_study(principal, study)
    site = check_code(subject.site, "site")
    require_in_study(principal, Action.SUBJECT_CREATE, study, site)
    subject_id = check_code(subject.subject_id, "subject_id")
    if subject.initials is not None and not _INITIALS.fullmatch(subject.initials):
        raise ValidationError(
            [Problem("initials", "use 1-8 letters or '-', starting with a letter")]
        )
    taken = f"subject id {subject_id} is already taken in study {study}"
    with writing(engine, principal, conflict=taken) as work:
        connection = work.connection
        subjects = SubjectRepository(connection, principal)
        now = utc_now()
        if subjects.exists_anywhere(study, subject_id):
            # subject ids are unique in a study; the message names no site or record
            raise ConflictError(taken)
        record = subjects.add(
            study=study,
            site=site,
            subject_id=subject_id,
            initials=subject.initials,
            now=now,
        )
        screened = subject.screening_date or now.date()
        capture = CaptureRepository(connection, principal)
        capture.add_status(
            record,
            status=SubjectStatus.SCREENING.value,
            on_date=screened,
            reason=None,
            recorded_at=now,
            recorded_by=principal.email,
        )
        definition = StudyVersionRepository(connection).current(study)
        if definition is not None:
            parsed = current_definition(connection, study)
            plan_subject_events(capture, parsed, record, screened, now)
        audit(
            connection,
            principal,
            "subject.create",
            "subject",
            f"{study}/{subject_id}",
            chain=study,
            site=site,
            after={
                "subject_id": subject_id,
                "site": site,
                "initials": subject.initials,
                "screening_date": screened.isoformat(),
            },
        )
    return record


def count_subjects(engine: Engine, principal: Principal, study: str) -> dict[str, int]:
    """Enrolment per site, for the sites where the principal may read aggregates."""
    visible_study(principal, study)
    require_in_study(principal, Action.AGGREGATE_READ, study)
    with reading(engine, principal) as work:
        return work.subjects().count_by_site(study, action=Action.AGGREGATE_READ)
