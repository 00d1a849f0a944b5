"""The innovation centre's partners, programmes, agreements and documents in the hub's
database.

Repositories run inside the caller's transaction and never commit; the services
(:mod:`consortia.services.centre` and its siblings) pair each change with its audit
event. The questions the centre's rules ask (which data-sharing agreements cover a study
and an institution) are answered here in SQL, so a study's programme counts as well as
the study itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.storage.centre_tables import (
    centre_agreement,
    centre_agreement_party,
    centre_agreement_scope,
    centre_document,
    centre_partner,
    centre_programme,
    centre_programme_study,
)

__all__ = [
    "AgreementRecord",
    "CentreRepository",
    "DocumentRecord",
    "PartnerRecord",
    "ProgrammeRecord",
    "record_of",
]

_R = TypeVar("_R")


def record_of(cls: type[_R], row: Any) -> _R:
    """A record dataclass from a row holding (at least) its fields."""
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class PartnerRecord:
    """A hospital, university, company or government body the centre works with."""

    id: int
    code: str
    name: str
    kind: str
    country: str
    member: str | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ProgrammeRecord:
    """A programme (cell and gene therapy, 3D printing …): its studies and projects."""

    id: int
    code: str
    name: str
    description: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AgreementRecord:
    """An agreement between partners, with its dates and status."""

    id: int
    code: str
    title: str
    kind: str
    status: str
    starts_on: date
    ends_on: date | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """A document the centre keeps (its bytes are read apart), with its SHA-256."""

    id: int
    owner_type: str
    owner_id: int
    filename: str
    media_type: str
    size: int
    sha256: str
    created_by: str
    created_at: datetime


def _insert(connection: Connection, table: sa.Table, values: dict[str, Any]) -> int:
    result = connection.execute(table.insert().values(**values))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


class CentreRepository:
    """Partners, programmes, agreements (parties, scope) and documents of the centre."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # ------------------------------------------------------------------ partners
    def add_partner(self, values: dict[str, Any]) -> int:
        return _insert(self.connection, centre_partner, values)

    def partner(self, code: str) -> PartnerRecord | None:
        row = self.connection.execute(
            sa.select(centre_partner).where(centre_partner.c.code == code)
        ).first()
        return None if row is None else record_of(PartnerRecord, row)

    def partner_of_member(self, member: str) -> PartnerRecord | None:
        row = self.connection.execute(
            sa.select(centre_partner).where(centre_partner.c.member == member)
        ).first()
        return None if row is None else record_of(PartnerRecord, row)

    def partners(self) -> list[PartnerRecord]:
        rows = self.connection.execute(sa.select(centre_partner).order_by(centre_partner.c.code))
        return [record_of(PartnerRecord, row) for row in rows]

    def partner_codes(self, ids: list[int]) -> dict[int, str]:
        if not ids:
            return {}
        rows = self.connection.execute(
            sa.select(centre_partner.c.id, centre_partner.c.code).where(
                centre_partner.c.id.in_(ids)
            )
        )
        return {int(row.id): str(row.code) for row in rows}

    def any_partner(self) -> bool:
        """Whether the centre is in use at this hub (it records at least one partner)."""
        return self.connection.execute(sa.select(centre_partner.c.id).limit(1)).first() is not None

    # ------------------------------------------------------------------ programmes
    def add_programme(self, values: dict[str, Any], studies: list[str]) -> int:
        programme_id = _insert(self.connection, centre_programme, values)
        self.add_programme_studies(programme_id, studies)
        return programme_id

    def add_programme_studies(self, programme_id: int, studies: list[str]) -> None:
        known = set(self.programme_studies(programme_id))
        for study in sorted(set(studies) - known):
            self.connection.execute(
                centre_programme_study.insert().values(programme_id=programme_id, study=study)
            )

    def programme(self, code: str) -> ProgrammeRecord | None:
        row = self.connection.execute(
            sa.select(centre_programme).where(centre_programme.c.code == code)
        ).first()
        return None if row is None else record_of(ProgrammeRecord, row)

    def programme_by_id(self, programme_id: int) -> ProgrammeRecord | None:
        row = self.connection.execute(
            sa.select(centre_programme).where(centre_programme.c.id == programme_id)
        ).first()
        return None if row is None else record_of(ProgrammeRecord, row)

    def programmes(self) -> list[ProgrammeRecord]:
        rows = self.connection.execute(
            sa.select(centre_programme).order_by(centre_programme.c.code)
        )
        return [record_of(ProgrammeRecord, row) for row in rows]

    def programme_studies(self, programme_id: int) -> list[str]:
        rows = self.connection.execute(
            sa.select(centre_programme_study.c.study)
            .where(centre_programme_study.c.programme_id == programme_id)
            .order_by(centre_programme_study.c.study)
        )
        return [str(row.study) for row in rows]

    # ------------------------------------------------------------------ agreements
    def add_agreement(
        self,
        values: dict[str, Any],
        parties: list[int],
        studies: list[str],
        programmes: list[int],
    ) -> int:
        agreement_id = _insert(self.connection, centre_agreement, values)
        for partner_id in sorted(set(parties)):
            self.connection.execute(
                centre_agreement_party.insert().values(
                    agreement_id=agreement_id, partner_id=partner_id
                )
            )
        for study in sorted(set(studies)):
            self.connection.execute(
                centre_agreement_scope.insert().values(agreement_id=agreement_id, study=study)
            )
        for programme_id in sorted(set(programmes)):
            self.connection.execute(
                centre_agreement_scope.insert().values(
                    agreement_id=agreement_id, programme_id=programme_id
                )
            )
        return agreement_id

    def agreement(self, code: str) -> AgreementRecord | None:
        row = self.connection.execute(
            sa.select(centre_agreement).where(centre_agreement.c.code == code)
        ).first()
        return None if row is None else record_of(AgreementRecord, row)

    def agreements(self) -> list[AgreementRecord]:
        rows = self.connection.execute(
            sa.select(centre_agreement).order_by(centre_agreement.c.code)
        )
        return [record_of(AgreementRecord, row) for row in rows]

    def set_agreement(self, agreement_id: int, **values: Any) -> None:
        self.connection.execute(
            centre_agreement.update().where(centre_agreement.c.id == agreement_id).values(**values)
        )

    def agreement_parties(self, agreement_id: int) -> list[str]:
        rows = self.connection.execute(
            sa.select(centre_partner.c.code)
            .join(
                centre_agreement_party,
                centre_agreement_party.c.partner_id == centre_partner.c.id,
            )
            .where(centre_agreement_party.c.agreement_id == agreement_id)
            .order_by(centre_partner.c.code)
        )
        return [str(row.code) for row in rows]

    def agreement_scope(self, agreement_id: int) -> tuple[list[str], list[str]]:
        """The studies and the programmes (by code) an agreement covers."""
        rows = self.connection.execute(
            sa.select(centre_agreement_scope.c.study, centre_programme.c.code)
            .select_from(centre_agreement_scope)
            .outerjoin(
                centre_programme, centre_programme.c.id == centre_agreement_scope.c.programme_id
            )
            .where(centre_agreement_scope.c.agreement_id == agreement_id)
        )
        studies, programmes = [], []
        for row in rows:
            if row.study is not None:
                studies.append(str(row.study))
            else:
                programmes.append(str(row.code))
        return sorted(studies), sorted(programmes)

    def covering_agreements(self, partner_id: int, study: str, kind: str) -> list[AgreementRecord]:
        """The agreements of ``kind`` to which the partner is a party and that cover the
        study, directly or through a programme the study belongs to (any status)."""
        in_programme = sa.select(centre_programme_study.c.programme_id).where(
            centre_programme_study.c.study == study
        )
        covering = sa.select(centre_agreement_scope.c.agreement_id).where(
            sa.or_(
                centre_agreement_scope.c.study == study,
                centre_agreement_scope.c.programme_id.in_(in_programme),
            )
        )
        rows = self.connection.execute(
            sa.select(centre_agreement)
            .join(
                centre_agreement_party,
                centre_agreement_party.c.agreement_id == centre_agreement.c.id,
            )
            .where(
                centre_agreement_party.c.partner_id == partner_id,
                centre_agreement.c.kind == kind,
                centre_agreement.c.id.in_(covering),
            )
            .order_by(centre_agreement.c.ends_on.desc(), centre_agreement.c.code)
        )
        return [record_of(AgreementRecord, row) for row in rows]

    # ------------------------------------------------------------------ documents
    def add_document(self, values: dict[str, Any]) -> int:
        return _insert(self.connection, centre_document, values)

    def documents(self, owner_type: str, owner_id: int) -> list[DocumentRecord]:
        columns = [c for c in centre_document.c if c.name != "content"]
        rows = self.connection.execute(
            sa.select(*columns)
            .where(
                centre_document.c.owner_type == owner_type, centre_document.c.owner_id == owner_id
            )
            .order_by(centre_document.c.id)
        )
        return [record_of(DocumentRecord, row) for row in rows]

    def document(self, document_id: int) -> tuple[DocumentRecord, bytes] | None:
        row = self.connection.execute(
            sa.select(centre_document).where(centre_document.c.id == document_id)
        ).first()
        if row is None:
            return None
        return record_of(DocumentRecord, row), bytes(row.content)
