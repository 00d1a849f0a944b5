"""The innovation centre at the hub: its partners, programmes and agreements, and the
documents attached to them (kept with their SHA-256).

Every change is one unit of work with its audit event on the hub's ``hub`` chain
(``centre.partner.add``, ``centre.agreement.add`` …) and needs ``hub.manage``. What the
agreements *enforce* (a site needs a data-sharing agreement in force) is
:mod:`consortia.services.centre_enforcement`; projects and their gates
:mod:`~consortia.services.centre_projects`; ideas and IP :mod:`~consortia.services.centre_ideas`;
people and training :mod:`~consortia.services.centre_people`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal
from consortia.domain import centre as rules
from consortia.exceptions import ConflictError, NotFoundError, Problem, ValidationError
from consortia.services.common import require, utc_now
from consortia.services.hub import HUB_CHAIN
from consortia.services.unit_of_work import reading, writing
from consortia.storage.centre import (
    AgreementRecord,
    CentreRepository,
    DocumentRecord,
    PartnerRecord,
    ProgrammeRecord,
)

__all__ = [
    "AgreementRecord",
    "AgreementView",
    "DocumentRecord",
    "PartnerRecord",
    "ProgrammeRecord",
    "ProgrammeView",
    "add_agreement",
    "add_partner",
    "add_programme",
    "attach_document",
    "expiring_agreements",
    "list_agreements",
    "list_partners",
    "list_programmes",
    "read_document",
    "refuse",
    "set_agreement_status",
    "today",
]

#: What a document may be kept with (a gate decision lists the documents it reviewed by name).
DOCUMENT_OWNERS = ("agreement",)


@dataclass(frozen=True, slots=True)
class AgreementView:
    """An agreement with its parties, what it covers, its state today and its documents."""

    agreement: AgreementRecord
    parties: list[str]
    studies: list[str]
    programmes: list[str]
    state: str
    expiring: bool
    documents: list[DocumentRecord]


@dataclass(frozen=True, slots=True)
class ProgrammeView:
    """A programme with its studies."""

    programme: ProgrammeRecord
    studies: list[str]


def today() -> date:
    """Today's date in UTC: the day agreements and training are judged on."""
    return utc_now().date()


def refuse(problems: Sequence[Problem]) -> None:
    """Raise the problems found, all at once (nothing is changed)."""
    if problems:
        raise ValidationError(list(problems))


def ids_of(
    names: Iterable[str],
    find: Callable[[str], Any],
    field: str,
    unknown: str,
    problems: list[Problem],
) -> list[int]:
    """The record ids of ``names`` looked up with ``find``; each name not found adds a
    problem at ``field`` (``unknown`` formatted with the name)."""
    ids = []
    for name in names:
        record = find(name)
        if record is None:
            problems.append(Problem(field, unknown.format(name)))
        else:
            ids.append(int(record.id))
    return ids


def add_partner(
    engine: Engine,
    principal: Principal,
    *,
    code: str,
    name: str,
    kind: str,
    country: str,
    member: str | None = None,
) -> PartnerRecord:
    """Record a partner; ``member`` names the hub member node that is its institution."""
    require(principal, Action.HUB_MANAGE, Resource())
    refuse(
        [
            *rules.check_code_text(code, "code"),
            *rules.check_text(name, "name"),
            *rules.check_choice(kind, rules.PARTNER_KINDS, "kind"),
            *rules.check_text(country, "country", limit=64),
            *(rules.check_code_text(member, "member") if member else []),
        ]
    )
    with writing(engine, principal, conflict=f"partner {code!r} exists already") as work:
        repository = CentreRepository(work.connection)
        if repository.partner(code) is not None:
            raise ConflictError(f"partner {code!r} exists already")
        if member and repository.partner_of_member(member) is not None:
            raise ConflictError(f"member node {member!r} is the institution of another partner")
        values = {
            "code": code,
            "name": name.strip(),
            "kind": kind,
            "country": country.strip(),
            "member": member or None,
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        repository.add_partner(values)
        work.audit("centre.partner.add", "partner", code, chain=HUB_CHAIN, after=values)
        added = repository.partner(code)
    assert added is not None
    return added


def list_partners(engine: Engine, principal: Principal) -> list[PartnerRecord]:
    """Every partner, by code."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        return CentreRepository(work.connection).partners()


def add_programme(
    engine: Engine,
    principal: Principal,
    *,
    code: str,
    name: str,
    description: str = "",
    studies: Sequence[str] = (),
) -> ProgrammeView:
    """Record a programme and the studies it runs."""
    require(principal, Action.HUB_MANAGE, Resource())
    refuse(
        [
            *rules.check_code_text(code, "code"),
            *rules.check_text(name, "name"),
            *rules.check_text(description, "description", limit=4000, required=False),
            *[p for s in studies for p in rules.check_code_text(s, "studies")],
        ]
    )
    with writing(engine, principal, conflict=f"programme {code!r} exists already") as work:
        repository = CentreRepository(work.connection)
        if repository.programme(code) is not None:
            raise ConflictError(f"programme {code!r} exists already")
        values = {
            "code": code,
            "name": name.strip(),
            "description": description.strip(),
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        programme_id = repository.add_programme(values, list(studies))
        work.audit(
            "centre.programme.add",
            "programme",
            code,
            chain=HUB_CHAIN,
            after={**values, "studies": sorted(set(studies))},
        )
        programme = repository.programme(code)
        assert programme is not None
        return ProgrammeView(programme, repository.programme_studies(programme_id))


def list_programmes(engine: Engine, principal: Principal) -> list[ProgrammeView]:
    """Every programme with its studies."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        repository = CentreRepository(work.connection)
        return [
            ProgrammeView(p, repository.programme_studies(p.id)) for p in repository.programmes()
        ]


def add_agreement(
    engine: Engine,
    principal: Principal,
    *,
    code: str,
    title: str,
    kind: str,
    starts_on: date,
    ends_on: date | None,
    parties: Sequence[str],
    status: str = "active",
    studies: Sequence[str] = (),
    programmes: Sequence[str] = (),
) -> AgreementView:
    """Record an agreement between ``parties`` (partner codes), covering ``studies`` and
    ``programmes`` (a data-sharing agreement covers the sites of those studies)."""
    require(principal, Action.HUB_MANAGE, Resource())
    problems = [
        *rules.check_code_text(code, "code"),
        *rules.check_text(title, "title"),
        *rules.check_choice(kind, rules.AGREEMENT_KINDS, "kind"),
        *rules.check_choice(status, rules.AGREEMENT_STATUSES, "status"),
        *rules.check_dates(starts_on, ends_on, "ends_on"),
        *[p for s in studies for p in rules.check_code_text(s, "studies")],
    ]
    if not parties:
        problems.append(Problem("parties", "an agreement needs at least one partner"))
    if kind == "data_sharing" and not (studies or programmes):
        problems.append(
            Problem("studies", "a data-sharing agreement covers a study or a programme: name one")
        )
    with writing(engine, principal, conflict=f"agreement {code!r} exists already") as work:
        repository = CentreRepository(work.connection)
        party_ids = ids_of(
            parties, repository.partner, "parties", "{!r} is not a partner of the centre", problems
        )
        programme_ids = ids_of(
            programmes, repository.programme, "programmes", "{!r} is not a programme", problems
        )
        refuse(problems)
        if repository.agreement(code) is not None:
            raise ConflictError(f"agreement {code!r} exists already")
        values = {
            "code": code,
            "title": title.strip(),
            "kind": kind,
            "status": status,
            "starts_on": starts_on,
            "ends_on": ends_on,
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        repository.add_agreement(values, party_ids, list(studies), programme_ids)
        work.audit(
            "centre.agreement.add",
            "agreement",
            code,
            chain=HUB_CHAIN,
            after={
                **values,
                "parties": sorted(set(parties)),
                "studies": sorted(set(studies)),
                "programmes": sorted(set(programmes)),
            },
        )
        record = repository.agreement(code)
        assert record is not None
        return _view(repository, record, today())


def set_agreement_status(
    engine: Engine,
    principal: Principal,
    code: str,
    *,
    status: str | None = None,
    ends_on: date | None = None,
) -> AgreementView:
    """Change an agreement's status (signed: ``active``; ended early: ``terminated``) or
    its end date (a renewal)."""
    require(principal, Action.HUB_MANAGE, Resource())
    if status is not None:
        refuse(rules.check_choice(status, rules.AGREEMENT_STATUSES, "status"))
    with writing(engine, principal) as work:
        repository = CentreRepository(work.connection)
        record = repository.agreement(code)
        if record is None:
            raise NotFoundError(f"agreement {code!r} does not exist")
        changes: dict[str, object] = {}
        if status is not None:
            changes["status"] = status
        if ends_on is not None:
            refuse(rules.check_dates(record.starts_on, ends_on, "ends_on"))
            changes["ends_on"] = ends_on
        if not changes:
            refuse([Problem("status", "say what changes: a status or an end date")])
        repository.set_agreement(record.id, **changes)
        work.audit(
            "centre.agreement.change",
            "agreement",
            code,
            chain=HUB_CHAIN,
            before={key: getattr(record, key) for key in changes},
            after=changes,
        )
        changed = repository.agreement(code)
        assert changed is not None
        return _view(repository, changed, today())


def _view(repository: CentreRepository, record: AgreementRecord, day: date) -> AgreementView:
    studies, programmes = repository.agreement_scope(record.id)
    state = rules.agreement_state(record.status, record.starts_on, record.ends_on, day)
    return AgreementView(
        agreement=record,
        parties=repository.agreement_parties(record.id),
        studies=studies,
        programmes=programmes,
        state=state,
        expiring=state == "in_force" and rules.expiring(record.ends_on, day),
        documents=repository.documents("agreement", record.id),
    )


def list_agreements(
    engine: Engine, principal: Principal, *, on: date | None = None
) -> list[AgreementView]:
    """Every agreement with its parties, scope, documents and state on ``on`` (today)."""
    require(principal, Action.HUB_MANAGE, Resource())
    day = on or today()
    with reading(engine, principal) as work:
        repository = CentreRepository(work.connection)
        return [_view(repository, a, day) for a in repository.agreements()]


def expiring_agreements(
    engine: Engine, principal: Principal, *, on: date | None = None
) -> list[AgreementView]:
    """The agreements in force that end within 30 days of ``on`` (today), soonest first."""
    found = [v for v in list_agreements(engine, principal, on=on) if v.expiring]
    return sorted(found, key=lambda v: (v.agreement.ends_on or date.max, v.agreement.code))


def attach_document(
    engine: Engine,
    principal: Principal,
    *,
    owner_type: str,
    owner: str,
    filename: str,
    content: bytes,
) -> DocumentRecord:
    """Keep a document (PDF, Word, PNG, JPEG or text, at most 10 MiB) with an agreement
    (``owner`` its code), and its SHA-256."""
    require(principal, Action.HUB_MANAGE, Resource())
    refuse(rules.check_choice(owner_type, DOCUMENT_OWNERS, "owner_type"))
    media_type, problems = rules.check_document(filename, content)
    refuse(problems)
    sha256 = hashlib.sha256(content).hexdigest()
    with writing(engine, principal) as work:
        repository = CentreRepository(work.connection)
        owner_id = _owner_id(repository, owner_type, owner)
        values = {
            "owner_type": owner_type,
            "owner_id": owner_id,
            "filename": filename,
            "media_type": media_type,
            "size": len(content),
            "sha256": sha256,
            "created_by": principal.email,
            "created_at": utc_now(),
        }
        document_id = repository.add_document({**values, "content": content})
        work.audit(
            "centre.document.add",
            "document",
            document_id,
            chain=HUB_CHAIN,
            after={**values, "owner": owner},
        )
        kept = repository.document(document_id)
    assert kept is not None
    return kept[0]


def _owner_id(repository: CentreRepository, owner_type: str, owner: str) -> int:
    assert owner_type == "agreement"
    record = repository.agreement(owner)
    if record is None:
        raise NotFoundError(f"agreement {owner!r} does not exist")
    return record.id


def read_document(
    engine: Engine, principal: Principal, document_id: int
) -> tuple[DocumentRecord, bytes]:
    """A kept document and its bytes, checked against the SHA-256 kept with it; the read
    is audited (``centre.document.read``)."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        found = CentreRepository(work.connection).document(document_id)
    if found is None:
        raise NotFoundError(f"document {document_id} does not exist")
    record, content = found
    if hashlib.sha256(content).hexdigest() != record.sha256:
        raise ConflictError(
            f"document {document_id} ({record.filename}) does not match its SHA-256: it was "
            "changed in the database"
        )
    with writing(engine, principal) as work:  # who read a contract is on the trail
        work.audit(
            "centre.document.read",
            "document",
            document_id,
            chain=HUB_CHAIN,
            after={"filename": record.filename, "sha256": record.sha256},
        )
    return record, content
