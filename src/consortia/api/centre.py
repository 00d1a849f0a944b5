"""The innovation centre's REST API at the hub (``hub.manage``): partners, programmes,
agreements and their documents, people, placements, training and study training rules.

* ``GET|POST /centre/partners``, ``GET|POST /centre/programmes``;
* ``GET|POST /centre/agreements``, ``PATCH /centre/agreements/{code}`` (status, end day),
  ``GET /centre/agreements/expiring`` (in force, ending within 30 days);
* ``PUT /centre/agreements/{code}/documents/{filename}`` (the file as the body; PDF, Word,
  PNG, JPEG or text, within the API's ``max_request_bytes``), ``GET /centre/documents/{id}``;
* ``GET|POST /centre/people``, ``POST /centre/people/{email}/affiliations``,
  ``GET|POST /centre/placements``, ``POST /centre/training``,
  ``GET /centre/training/expiring``, ``PUT /centre/studies/{study}/training``.

Projects, committees, ideas and IP are :mod:`consortia.api.centre_portfolio`.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.services import centre, centre_people

__all__ = [
    "AgreementCreate",
    "AgreementPublic",
    "AgreementUpdate",
    "DocumentPublic",
    "PartnerCreate",
    "PartnerPublic",
    "PersonCreate",
    "PersonPublic",
    "ProgrammeCreate",
    "router",
]

router = APIRouter(tags=["centre"])

Code = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
FileName = Annotated[str, Path(min_length=1, max_length=200)]
Email = Annotated[str, Path(min_length=3, max_length=320)]
Short = Annotated[str, Field(max_length=400)]
Long = Annotated[str, Field(max_length=8000)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PartnerCreate(_Model):
    """A partner: hospital, university, company or government body."""

    code: Short
    name: Short
    kind: Short = Field(description="hospital, university, company or government")
    country: Short
    member: Short | None = Field(None, description="the hub member node of its institution")


class PartnerPublic(PartnerCreate):
    """A partner of the centre."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    created_by: str
    created_at: datetime


class ProgrammeCreate(_Model):
    """A programme and the studies it runs."""

    code: Short
    name: Short
    description: Long = ""
    studies: list[Short] = Field(default_factory=list, max_length=200)


class ProgrammePublic(ProgrammeCreate):
    model_config = ConfigDict(frozen=True, extra="ignore")


class AgreementCreate(_Model):
    """An agreement: MOU, collaboration, data sharing, data transfer or clinical trial."""

    code: Short
    title: Short
    kind: Short = Field(
        description="mou, collaboration, data_sharing, data_transfer or clinical_trial"
    )
    starts_on: date
    ends_on: date | None = None
    status: Short = Field("active", description="draft, active or terminated")
    parties: list[Short] = Field(max_length=100, description="partner codes")
    studies: list[Short] = Field(default_factory=list, max_length=200)
    programmes: list[Short] = Field(default_factory=list, max_length=100)


class AgreementUpdate(_Model):
    """A change of status or end day (a renewal)."""

    status: Short | None = None
    ends_on: date | None = None


class DocumentPublic(BaseModel):
    """A document kept by the centre, with its SHA-256."""

    model_config = ConfigDict(frozen=True)
    id: int
    owner_type: str
    owner_id: int
    filename: str
    media_type: str
    size: int
    sha256: str
    created_by: str
    created_at: datetime


class AgreementPublic(BaseModel):
    """An agreement with its parties, scope, state today and documents."""

    model_config = ConfigDict(frozen=True)
    code: str
    title: str
    kind: str
    status: str
    starts_on: date
    ends_on: date | None
    state: str = Field(description="in_force, expired, not_started, draft or terminated")
    expiring: bool = Field(description="in force and ending within 30 days")
    parties: list[str]
    studies: list[str]
    programmes: list[str]
    documents: list[DocumentPublic]

    @classmethod
    def of(cls, view: centre.AgreementView) -> AgreementPublic:
        record = view.agreement
        return cls(
            code=record.code,
            title=record.title,
            kind=record.kind,
            status=record.status,
            starts_on=record.starts_on,
            ends_on=record.ends_on,
            state=view.state,
            expiring=view.expiring,
            parties=view.parties,
            studies=view.studies,
            programmes=view.programmes,
            documents=[DocumentPublic(**asdict(d)) for d in view.documents],
        )


class PersonCreate(_Model):
    email: Short
    name: Short


class AffiliationCreate(_Model):
    partner: Short
    title: Short


class PersonPublic(BaseModel):
    """A person with affiliations and training."""

    model_config = ConfigDict(frozen=True)
    email: str
    name: str
    affiliations: list[dict[str, str]]
    training: list[dict[str, Any]]

    @classmethod
    def of(cls, view: centre_people.PersonView) -> PersonPublic:
        return cls(
            email=view.person.email,
            name=view.person.name,
            affiliations=[{"partner": p, "title": t} for p, t in view.affiliations],
            training=[asdict(t) for t in view.training],
        )


class PlacementCreate(_Model):
    email: Short
    from_partner: Short
    to_partner: Short
    starts_on: date
    ends_on: date
    purpose: Long


class TrainingCreate(_Model):
    email: Short
    kind: Short = Field(description="gcp or protocol")
    title: Short
    completed_on: date
    expires_on: date | None = None
    study: Short | None = Field(None, description="the study of a protocol training")


class StudyTrainingUpdate(_Model):
    requires_gcp: bool
    requires_protocol: bool


@router.get("/centre/partners", response_model=list[PartnerPublic])
def list_partners(principal: CurrentPrincipal, engine: EngineDep) -> list[PartnerPublic]:
    """The centre's partners."""
    found = centre.list_partners(engine, principal)
    return [PartnerPublic.model_validate(asdict(p)) for p in found]


@router.post("/centre/partners", response_model=PartnerPublic, status_code=201)
def add_partner(body: PartnerCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Record a partner."""
    record = centre.add_partner(engine, principal, **body.model_dump())
    return PartnerPublic.model_validate(asdict(record))


@router.get("/centre/programmes", response_model=list[ProgrammePublic])
def list_programmes(principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """The programmes with their studies."""
    return [
        ProgrammePublic.model_validate({**asdict(v.programme), "studies": v.studies})
        for v in centre.list_programmes(engine, principal)
    ]


@router.post("/centre/programmes", response_model=ProgrammePublic, status_code=201)
def add_programme(body: ProgrammeCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Record a programme."""
    view = centre.add_programme(engine, principal, **body.model_dump())
    return ProgrammePublic.model_validate({**asdict(view.programme), "studies": view.studies})


@router.get("/centre/agreements", response_model=list[AgreementPublic])
def list_agreements(principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Every agreement with its state today."""
    return [AgreementPublic.of(v) for v in centre.list_agreements(engine, principal)]


@router.get("/centre/agreements/expiring", response_model=list[AgreementPublic])
def expiring_agreements(principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """The agreements in force that end within 30 days, soonest first."""
    return [AgreementPublic.of(v) for v in centre.expiring_agreements(engine, principal)]


@router.post("/centre/agreements", response_model=AgreementPublic, status_code=201)
def add_agreement(body: AgreementCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Record an agreement between partners."""
    return AgreementPublic.of(centre.add_agreement(engine, principal, **body.model_dump()))


@router.patch("/centre/agreements/{code}", response_model=AgreementPublic)
def change_agreement(
    code: Code, body: AgreementUpdate, principal: CurrentPrincipal, engine: EngineDep
) -> Any:
    """Change an agreement's status or end day."""
    return AgreementPublic.of(
        centre.set_agreement_status(
            engine, principal, code, status=body.status, ends_on=body.ends_on
        )
    )


@router.put(
    "/centre/agreements/{code}/documents/{filename}",
    response_model=DocumentPublic,
    status_code=201,
)
async def attach_document(
    code: Code, filename: FileName, request: Request, principal: CurrentPrincipal, engine: EngineDep
) -> Any:
    """Attach a document (the request body) to an agreement; kept with its SHA-256."""
    content = await request.body()
    record = await run_in_threadpool(
        lambda: centre.attach_document(
            engine,
            principal,
            owner_type="agreement",
            owner=code,
            filename=filename,
            content=content,
        )
    )
    return DocumentPublic(**asdict(record))


@router.get("/centre/documents/{document_id}")
def read_document(
    document_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    principal: CurrentPrincipal,
    engine: EngineDep,
) -> Response:
    """A kept document's bytes (checked against its SHA-256), as an attachment."""
    record, content = centre.read_document(engine, principal, document_id)
    return Response(
        content,
        media_type=record.media_type,
        headers={
            # the name may hold any letter: RFC 6266 / 5987 say it in UTF-8
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(record.filename)}",
            "X-Content-SHA256": record.sha256,
        },
    )


@router.get("/centre/people", response_model=list[PersonPublic])
def list_people(principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """The centre's people with their affiliations and training."""
    return [PersonPublic.of(v) for v in centre_people.list_people(engine, principal)]


@router.post("/centre/people", status_code=201)
def add_person(body: PersonCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Record a member of staff."""
    return asdict(centre_people.add_person(engine, principal, **body.model_dump()))


@router.post("/centre/people/{email}/affiliations", response_model=PersonPublic)
def affiliate(
    email: Email, body: AffiliationCreate, principal: CurrentPrincipal, engine: EngineDep
) -> Any:
    """Affiliate a person with a partner."""
    return PersonPublic.of(
        centre_people.affiliate(engine, principal, email=email, **body.model_dump())
    )


@router.get("/centre/placements")
def list_placements(principal: CurrentPrincipal, engine: EngineDep) -> list[dict[str, Any]]:
    """The exchange placements."""
    return [asdict(p) for p in centre_people.list_placements(engine, principal)]


@router.post("/centre/placements", status_code=201)
def add_placement(body: PlacementCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Record an exchange placement."""
    return asdict(centre_people.add_placement(engine, principal, **body.model_dump()))


@router.post("/centre/training", status_code=201)
def add_training(body: TrainingCreate, principal: CurrentPrincipal, engine: EngineDep) -> Any:
    """Record a GCP certificate or a study's protocol training."""
    return asdict(centre_people.add_training(engine, principal, **body.model_dump()))


@router.get("/centre/training/expiring")
def expiring_training(principal: CurrentPrincipal, engine: EngineDep) -> list[dict[str, Any]]:
    """Training still valid that expires within 30 days."""
    return [asdict(t) for t in centre_people.expiring_training(engine, principal)]


@router.put("/centre/studies/{study}/training")
def set_study_training(
    study: Code, body: StudyTrainingUpdate, principal: CurrentPrincipal, engine: EngineDep
) -> Any:
    """Say what granting a role at the study needs (GCP, its protocol training)."""
    rule = centre_people.set_study_training(engine, principal, study=study, **body.model_dump())
    return asdict(rule)
