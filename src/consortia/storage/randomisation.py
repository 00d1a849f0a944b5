"""Central randomisation in the database: the hub's sealed lists and allocations, and a
member node's record of each subject's allocation.

At the hub (``hub_randomisation*``, ``hub_allocation``): one row per study holds the scheme's
secret seed and the allocation counter; a block scheme's lists are kept entry by entry per
stratum; every allocation made is one row, unique per subject and per list entry. The counter
row is what serialises a study's allocations: :meth:`HubRandomisationRepository.lock` updates
it first in the allocating transaction, so on PostgreSQL a second transaction for the same
study waits on that row lock until the first commits (and then sees its allocation),
and on SQLite every writer already queues (``BEGIN IMMEDIATE``).

At a member (``subject_randomisation``): the allocation its hub signed, with the signed
answer kept verbatim, and any emergency unblinding. Repositories run inside the caller's
transaction and never commit; the services pair each change with its audit event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import Action, site_scope
from consortia.auth.principal import Principal
from consortia.storage.tables import UTCDateTime, metadata

__all__ = [
    "AllocationRecord",
    "HubRandomisationRepository",
    "ListEntry",
    "SchemeRecord",
    "SubjectAllocation",
    "SubjectRandomisationRepository",
    "hub_allocation",
    "hub_randomisation",
    "hub_randomisation_entry",
    "subject_randomisation",
]

_CODE = 64
_EMAIL = 320
_STRATUM = 2000

hub_randomisation = sa.Table(
    "hub_randomisation",
    metadata,
    sa.Column("study", sa.String(_CODE), primary_key=True),
    sa.Column("method", sa.String(32), nullable=False),
    # the secret seed: the lists and every minimisation draw follow from it (sealed)
    sa.Column("seed", sa.Text, nullable=False),
    sa.Column("study_sha256", sa.String(64), nullable=False),
    sa.Column("allocations", sa.Integer, nullable=False),
    sa.Column("generated_by", sa.String(_EMAIL), nullable=False),
    sa.Column("generated_at", UTCDateTime, nullable=False),
)
hub_randomisation_entry = sa.Table(
    "hub_randomisation_entry",
    metadata,
    sa.Column("study", sa.String(_CODE), primary_key=True),
    sa.Column("stratum", sa.String(_STRATUM), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("arm", sa.String(_CODE), nullable=False),
    sa.Column("block", sa.Integer, nullable=False),
    sa.Column("block_size", sa.Integer, nullable=False),
)
hub_allocation = sa.Table(
    "hub_allocation",
    metadata,
    sa.Column("study", sa.String(_CODE), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("subject", sa.String(_CODE), nullable=False),
    sa.Column("site", sa.String(_CODE), nullable=False),
    sa.Column("member", sa.String(200), nullable=False),
    sa.Column("stratum", sa.String(_STRATUM), nullable=False),
    sa.Column("position", sa.Integer, nullable=True),
    sa.Column("levels", sa.Text, nullable=False),
    sa.Column("arm", sa.String(_CODE), nullable=False),
    sa.Column("allocated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("study", "subject", name="uq_hub_allocation_subject"),
    sa.UniqueConstraint("study", "stratum", "position", name="uq_hub_allocation_entry"),
)
subject_randomisation = sa.Table(
    "subject_randomisation",
    metadata,
    sa.Column("subject_pk", sa.ForeignKey("subject.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("study", sa.String(_CODE), nullable=False),
    sa.Column("site", sa.String(_CODE), nullable=False),
    sa.Column("subject_id", sa.String(_CODE), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("arm", sa.String(_CODE), nullable=False),
    sa.Column("code", sa.String(_CODE), nullable=False),
    sa.Column("levels", sa.Text, nullable=False),
    sa.Column("hub", sa.String(200), nullable=False),
    sa.Column("hub_answer", sa.Text, nullable=False),
    sa.Column("randomised_at", UTCDateTime, nullable=False),
    sa.Column("randomised_by", sa.String(_EMAIL), nullable=False),
    sa.Column("unblinded_at", UTCDateTime, nullable=True),
    sa.Column("unblinded_by", sa.String(_EMAIL), nullable=True),
    sa.Column("unblind_reason", sa.Text, nullable=True),
    sa.UniqueConstraint("study", "subject_id", name="uq_subject_randomisation"),
)
sa.Index(
    "ix_subject_randomisation_study_site",
    subject_randomisation.c.study,
    subject_randomisation.c.site,
)


@dataclass(frozen=True, slots=True)
class SchemeRecord:
    """A study's randomisation at the hub (the seed is the sealed secret)."""

    study: str
    method: str
    seed: int
    study_sha256: str
    allocations: int
    generated_by: str
    generated_at: datetime


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One entry of a stratum's sealed list."""

    stratum: str
    position: int
    arm: str
    block: int
    block_size: int


@dataclass(frozen=True, slots=True)
class AllocationRecord:
    """One allocation the hub made."""

    study: str
    number: int
    subject: str
    site: str
    member: str
    stratum: str
    position: int | None
    levels: dict[str, str]
    arm: str
    allocated_at: datetime


def _allocation(row: Any) -> AllocationRecord:
    values = dict(row._mapping)
    values["levels"] = json.loads(values["levels"])
    return AllocationRecord(**values)


class HubRandomisationRepository:
    """The hub's schemes, sealed lists and allocations (in the caller's transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def scheme(self, study: str) -> SchemeRecord | None:
        row = self.connection.execute(
            sa.select(hub_randomisation).where(hub_randomisation.c.study == study)
        ).first()
        if row is None:
            return None
        values = dict(row._mapping)
        values["seed"] = int(values["seed"])
        return SchemeRecord(**values)

    def add_scheme(self, record: SchemeRecord, entries: Iterable[ListEntry]) -> None:
        values = {
            "study": record.study,
            "method": record.method,
            "seed": str(record.seed),
            "study_sha256": record.study_sha256,
            "allocations": record.allocations,
            "generated_by": record.generated_by,
            "generated_at": record.generated_at,
        }
        self.connection.execute(sa.insert(hub_randomisation), [values])
        rows = [
            {
                "study": record.study,
                "stratum": e.stratum,
                "position": e.position,
                "arm": e.arm,
                "block": e.block,
                "block_size": e.block_size,
            }
            for e in entries
        ]
        if rows:
            self.connection.execute(sa.insert(hub_randomisation_entry), rows)

    def entries(self, study: str) -> list[ListEntry]:
        rows = self.connection.execute(
            sa.select(
                hub_randomisation_entry.c.stratum,
                hub_randomisation_entry.c.position,
                hub_randomisation_entry.c.arm,
                hub_randomisation_entry.c.block,
                hub_randomisation_entry.c.block_size,
            )
            .where(hub_randomisation_entry.c.study == study)
            .order_by(hub_randomisation_entry.c.stratum, hub_randomisation_entry.c.position)
        )
        return [ListEntry(*row) for row in rows]

    def entry(self, study: str, stratum: str, position: int) -> ListEntry | None:
        table = hub_randomisation_entry
        row = self.connection.execute(
            sa.select(
                table.c.stratum, table.c.position, table.c.arm, table.c.block, table.c.block_size
            ).where(
                table.c.study == study, table.c.stratum == stratum, table.c.position == position
            )
        ).first()
        return None if row is None else ListEntry(*row)

    def lock(self, study: str) -> SchemeRecord | None:
        """The study's scheme, its row locked for this transaction (None: no scheme).

        A no-op update takes the row lock on PostgreSQL (a second allocating transaction
        for the study waits here until the first commits, then reads its count); SQLite's
        writers queue already (``BEGIN IMMEDIATE``).
        """
        table = hub_randomisation
        self.connection.execute(
            sa.update(table).where(table.c.study == study).values(allocations=table.c.allocations)
        )
        return self.scheme(study)

    def set_count(self, study: str, allocations: int) -> None:
        table = hub_randomisation
        self.connection.execute(
            sa.update(table).where(table.c.study == study).values(allocations=allocations)
        )

    def allocation_of(self, study: str, subject: str) -> AllocationRecord | None:
        row = self.connection.execute(
            sa.select(hub_allocation).where(
                hub_allocation.c.study == study, hub_allocation.c.subject == subject
            )
        ).first()
        return None if row is None else _allocation(row)

    def allocations(self, study: str) -> list[AllocationRecord]:
        rows = self.connection.execute(
            sa.select(hub_allocation)
            .where(hub_allocation.c.study == study)
            .order_by(hub_allocation.c.number)
        )
        return [_allocation(row) for row in rows]

    def used_in_stratum(self, study: str, stratum: str) -> int:
        count = self.connection.execute(
            sa.select(sa.func.count()).where(
                hub_allocation.c.study == study, hub_allocation.c.stratum == stratum
            )
        ).scalar_one()
        return int(count)

    def add_allocation(self, record: AllocationRecord) -> None:
        values = {
            "study": record.study,
            "number": record.number,
            "subject": record.subject,
            "site": record.site,
            "member": record.member,
            "stratum": record.stratum,
            "position": record.position,
            "levels": json.dumps(dict(record.levels), sort_keys=True),
            "arm": record.arm,
            "allocated_at": record.allocated_at,
        }
        self.connection.execute(sa.insert(hub_allocation), [values])


@dataclass(frozen=True, slots=True)
class SubjectAllocation:
    """A subject's allocation as its node recorded it (the arm is for unblinded eyes)."""

    subject_pk: int
    study: str
    site: str
    subject_id: str
    number: int
    arm: str
    code: str
    levels: dict[str, str]
    hub: str
    hub_answer: str
    randomised_at: datetime
    randomised_by: str
    unblinded_at: datetime | None
    unblinded_by: str | None
    unblind_reason: str | None


def _subject_allocation(row: Any) -> SubjectAllocation:
    values = dict(row._mapping)
    values["levels"] = json.loads(values["levels"])
    return SubjectAllocation(**values)


class SubjectRandomisationRepository:
    """Allocations recorded at this node, at the sites the principal may see."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal

    def _scoped(self, study: str) -> sa.Select[Any]:
        table = subject_randomisation
        query = sa.select(table).where(table.c.study == study)
        scope = site_scope(self.principal, study, Action.SUBJECT_READ)
        if not scope.every_site:
            query = query.where(table.c.site.in_(sorted(scope.sites)))
        return query

    def get(self, study: str, subject_id: str) -> SubjectAllocation | None:
        row = self.connection.execute(
            self._scoped(study).where(subject_randomisation.c.subject_id == subject_id)
        ).first()
        return None if row is None else _subject_allocation(row)

    def list(self, study: str) -> list[SubjectAllocation]:
        rows = self.connection.execute(
            self._scoped(study).order_by(subject_randomisation.c.randomised_at)
        )
        return [_subject_allocation(row) for row in rows]

    def add(self, values: Mapping[str, Any]) -> None:
        row = dict(values)
        row["levels"] = json.dumps(dict(row["levels"]), sort_keys=True)
        self.connection.execute(sa.insert(subject_randomisation), [row])

    def unblind(self, subject_pk: int, *, by: str, at: datetime, reason: str) -> None:
        self.connection.execute(
            sa.update(subject_randomisation)
            .where(subject_randomisation.c.subject_pk == subject_pk)
            .values(unblinded_at=at, unblinded_by=by, unblind_reason=reason)
        )
