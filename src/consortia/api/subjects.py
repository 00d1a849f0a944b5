"""``/studies/{study}/subjects``: enrol, list and read subjects; enrolment counts; audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.api.schemas import (
    AuditEventPublic,
    EnrolmentPublic,
    SubjectCreate,
    SubjectPublic,
)
from consortia.auth.principal import CODE_PATTERN
from consortia.services import audit_trail, subjects
from consortia.services.common import MAX_LIMIT, MAX_OFFSET

__all__ = ["router"]

router = APIRouter(prefix="/studies/{study}", tags=["subjects"])

StudyCode = Annotated[str, Path(pattern=CODE_PATTERN, description="the study's code")]
SubjectId = Annotated[str, Path(pattern=CODE_PATTERN, description="the subject's id")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@router.get("/subjects", response_model=list[SubjectPublic])
def list_subjects(
    study: StudyCode,
    principal: CurrentPrincipal,
    engine: EngineDep,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[SubjectPublic]:
    """Subjects at the sites where the caller may read them, ordered by subject id."""
    records = subjects.list_subjects(engine, principal, study, limit=limit, offset=offset)
    return [SubjectPublic.of(record) for record in records]


@router.post("/subjects", response_model=SubjectPublic, status_code=status.HTTP_201_CREATED)
def enrol_subject(
    study: StudyCode, body: SubjectCreate, principal: CurrentPrincipal, engine: EngineDep
) -> SubjectPublic:
    """Enrol a subject at a site where the caller may enrol."""
    record = subjects.enrol_subject(
        engine,
        principal,
        study,
        subjects.SubjectInput(
            subject_id=body.subject_id,
            site=body.site,
            initials=body.initials,
            screening_date=body.screening_date,
        ),
    )
    return SubjectPublic.of(record)


@router.get("/subjects/{subject_id}", response_model=SubjectPublic)
def get_subject(
    study: StudyCode, subject_id: SubjectId, principal: CurrentPrincipal, engine: EngineDep
) -> SubjectPublic:
    """One subject (404 when it is at a site the caller cannot see)."""
    return SubjectPublic.of(subjects.get_subject(engine, principal, study, subject_id))


@router.get("/enrolment", response_model=EnrolmentPublic)
def enrolment(study: StudyCode, principal: CurrentPrincipal, engine: EngineDep) -> EnrolmentPublic:
    """Subjects enrolled per site (aggregates only)."""
    counts = subjects.count_subjects(engine, principal, study)
    return EnrolmentPublic(study=study, sites=counts, total=sum(counts.values()))


@router.get("/audit", response_model=list[AuditEventPublic])
def study_audit(
    study: StudyCode,
    principal: CurrentPrincipal,
    engine: EngineDep,
    after_seq: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Limit = 100,
) -> list[AuditEventPublic]:
    """The study's audit trail at the caller's sites, oldest first (page with after_seq)."""
    events = audit_trail.study_audit_trail(
        engine, principal, study, after_seq=after_seq, limit=limit
    )
    return [AuditEventPublic.of(event) for event in events]
