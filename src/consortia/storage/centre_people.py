"""The innovation centre's people in the hub's database: staff with their affiliations at
partners, exchange placements, training records (GCP certificates, protocol training)
and each study's training rule.

Runs inside the caller's transaction and never commits (see :mod:`consortia.storage.centre`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.storage.centre import record_of
from consortia.storage.centre_tables import (
    centre_affiliation,
    centre_partner,
    centre_person,
    centre_placement,
    centre_study_training,
    centre_training,
)

__all__ = [
    "PeopleRepository",
    "PersonRecord",
    "PlacementRecord",
    "StudyTrainingRecord",
    "TrainingRecord",
]


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """A member of staff (matched to an account by email)."""

    id: int
    email: str
    name: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PlacementRecord:
    """An exchange placement: who, from which partner to which, when, why."""

    id: int
    email: str
    from_partner: str
    to_partner: str
    starts_on: date
    ends_on: date
    purpose: str


@dataclass(frozen=True, slots=True)
class TrainingRecord:
    """A training record: a GCP certificate, or a study's protocol training."""

    id: int
    email: str
    kind: str
    study: str | None
    title: str
    completed_on: date
    expires_on: date | None


@dataclass(frozen=True, slots=True)
class StudyTrainingRecord:
    """What granting a role at a study needs."""

    study: str
    requires_gcp: bool
    requires_protocol: bool
    created_by: str
    created_at: datetime


def _training_query() -> sa.Select[Any]:
    return (
        sa.select(*[c for c in centre_training.c if c.name not in ("person_id",)])
        .add_columns(centre_person.c.email)
        .join(centre_person, centre_person.c.id == centre_training.c.person_id)
    )


class PeopleRepository:
    """People, affiliations, placements, training and study training rules."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add_person(self, values: dict[str, Any]) -> None:
        self.connection.execute(centre_person.insert().values(**values))

    def person(self, email: str) -> PersonRecord | None:
        row = self.connection.execute(
            sa.select(centre_person).where(centre_person.c.email == email)
        ).first()
        return None if row is None else record_of(PersonRecord, row)

    def people(self) -> list[PersonRecord]:
        rows = self.connection.execute(sa.select(centre_person).order_by(centre_person.c.email))
        return [record_of(PersonRecord, row) for row in rows]

    def people_by_ids(self, ids: list[int]) -> list[PersonRecord]:
        if not ids:
            return []
        rows = self.connection.execute(
            sa.select(centre_person)
            .where(centre_person.c.id.in_(ids))
            .order_by(centre_person.c.email)
        )
        return [record_of(PersonRecord, row) for row in rows]

    def add_affiliation(self, person_id: int, partner_id: int, title: str) -> bool:
        """Add an affiliation; False when the person is affiliated there already."""
        exists = self.connection.execute(
            sa.select(centre_affiliation.c.person_id).where(
                centre_affiliation.c.person_id == person_id,
                centre_affiliation.c.partner_id == partner_id,
            )
        ).first()
        if exists is not None:
            return False
        self.connection.execute(
            centre_affiliation.insert().values(
                person_id=person_id, partner_id=partner_id, title=title
            )
        )
        return True

    def affiliations(self) -> dict[str, list[tuple[str, str]]]:
        """Each person's (email's) affiliations: (partner code, title)."""
        rows = self.connection.execute(
            sa.select(centre_person.c.email, centre_partner.c.code, centre_affiliation.c.title)
            .join(centre_person, centre_person.c.id == centre_affiliation.c.person_id)
            .join(centre_partner, centre_partner.c.id == centre_affiliation.c.partner_id)
            .order_by(centre_person.c.email, centre_partner.c.code)
        )
        found: dict[str, list[tuple[str, str]]] = {}
        for row in rows:
            found.setdefault(str(row.email), []).append((str(row.code), str(row.title)))
        return found

    def add_placement(self, values: dict[str, Any]) -> int:
        result = self.connection.execute(centre_placement.insert().values(**values))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def placements(self) -> list[PlacementRecord]:
        source = centre_partner.alias("source")
        target = centre_partner.alias("target")
        rows = self.connection.execute(
            sa.select(
                centre_placement.c.id,
                centre_person.c.email,
                source.c.code.label("from_partner"),
                target.c.code.label("to_partner"),
                centre_placement.c.starts_on,
                centre_placement.c.ends_on,
                centre_placement.c.purpose,
            )
            .join(centre_person, centre_person.c.id == centre_placement.c.person_id)
            .join(source, source.c.id == centre_placement.c.from_partner_id)
            .join(target, target.c.id == centre_placement.c.to_partner_id)
            .order_by(centre_placement.c.starts_on, centre_placement.c.id)
        )
        return [record_of(PlacementRecord, row) for row in rows]

    def add_training(self, values: dict[str, Any]) -> int:
        result = self.connection.execute(centre_training.insert().values(**values))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def training(self, training_id: int) -> TrainingRecord | None:
        row = self.connection.execute(
            _training_query().where(centre_training.c.id == training_id)
        ).first()
        return None if row is None else record_of(TrainingRecord, row)

    def trainings(self) -> list[TrainingRecord]:
        rows = self.connection.execute(
            _training_query().order_by(centre_person.c.email, centre_training.c.id)
        )
        return [record_of(TrainingRecord, row) for row in rows]

    def valid_training(
        self, person_id: int, kind: str, study: str | None, day: date
    ) -> TrainingRecord | None:
        """A training record of ``kind`` (for ``study``) completed and not expired on ``day``."""
        query = _training_query().where(
            centre_training.c.person_id == person_id,
            centre_training.c.kind == kind,
            centre_training.c.completed_on <= day,
            sa.or_(centre_training.c.expires_on.is_(None), centre_training.c.expires_on >= day),
        )
        if study is not None:
            query = query.where(centre_training.c.study == study)
        row = self.connection.execute(query.limit(1)).first()
        return None if row is None else record_of(TrainingRecord, row)

    def set_study_training(self, values: dict[str, Any]) -> StudyTrainingRecord | None:
        """Set a study's training rule; the rule it replaces (None for a new one)."""
        before = self.study_training(str(values["study"]))
        if before is None:
            self.connection.execute(centre_study_training.insert().values(**values))
        else:
            self.connection.execute(
                centre_study_training.update()
                .where(centre_study_training.c.study == values["study"])
                .values(**values)
            )
        return before

    def study_training(self, study: str) -> StudyTrainingRecord | None:
        row = self.connection.execute(
            sa.select(centre_study_training).where(centre_study_training.c.study == study)
        ).first()
        return None if row is None else record_of(StudyTrainingRecord, row)

    def study_trainings(self) -> list[StudyTrainingRecord]:
        rows = self.connection.execute(
            sa.select(centre_study_training).order_by(centre_study_training.c.study)
        )
        return [record_of(StudyTrainingRecord, row) for row in rows]
