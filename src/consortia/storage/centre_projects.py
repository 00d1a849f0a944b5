"""The innovation centre's portfolio in the hub's database: steering committees and their
members, projects with their links and gate decisions, doctors' ideas, and inventions and
patents.

Runs inside the caller's transaction and never commits (see :mod:`consortia.storage.centre`).
A project's stage moves by a conditional update (``WHERE stage = <the stage read>``), so
of two decisions recorded at once on the same gate only one moves it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.storage.centre import record_of
from consortia.storage.centre_tables import (
    centre_committee,
    centre_committee_member,
    centre_gate_decision,
    centre_idea,
    centre_idea_partner,
    centre_ip,
    centre_partner,
    centre_person,
    centre_programme,
    centre_project,
    centre_project_link,
)

__all__ = [
    "CommitteeRecord",
    "GateDecisionRecord",
    "IdeaRecord",
    "IpRecord",
    "PortfolioRepository",
    "ProjectRecord",
]


@dataclass(frozen=True, slots=True)
class CommitteeRecord:
    """A steering committee: its named members are kept apart; a decision needs ``quorum``."""

    id: int
    code: str
    name: str
    quorum: int
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    """A project, at a stage gate, under a committee (and maybe a programme)."""

    id: int
    code: str
    title: str
    programme_id: int | None
    committee_id: int
    stage: str
    status: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class GateDecisionRecord:
    """A committee's decision at a gate: go, hold or stop, why, and what it reviewed."""

    id: int
    project_id: int
    from_stage: str
    to_stage: str
    decision: str
    decided_on: date
    rationale: str
    documents: list[str]
    present: list[str]
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IdeaRecord:
    """A clinician's idea, from submission to a project or a reasoned decline."""

    id: int
    title: str
    clinician: str
    problem: str
    solution: str
    patients: str
    needs: str
    status: str
    programme_id: int | None
    project_id: int | None
    reason: str | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IpRecord:
    """An invention disclosure or a patent filing."""

    id: int
    kind: str
    title: str
    inventors: list[str]
    application_number: str | None
    jurisdiction: str | None
    filed_on: date | None
    granted_on: date | None
    status: str
    family: str | None
    project_id: int | None
    created_by: str
    created_at: datetime


def _inserted(connection: Connection, table: sa.Table, values: dict[str, Any]) -> int:
    result = connection.execute(table.insert().values(**values))
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def _decision(row: Any) -> GateDecisionRecord:
    values = dict(row._mapping)
    values["documents"] = json.loads(values["documents"])
    values["present"] = json.loads(values["present"])
    return GateDecisionRecord(**values)


def _ip(row: Any) -> IpRecord:
    values = dict(row._mapping)
    values["inventors"] = json.loads(values["inventors"])
    return IpRecord(**values)


class PortfolioRepository:
    """Committees, projects (links, gate decisions), ideas and IP."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # ------------------------------------------------------------------ committees
    def add_committee(self, values: dict[str, Any], member_ids: list[int]) -> int:
        committee_id = _inserted(self.connection, centre_committee, values)
        for person_id in sorted(set(member_ids)):
            self.connection.execute(
                centre_committee_member.insert().values(
                    committee_id=committee_id, person_id=person_id
                )
            )
        return committee_id

    def committee(self, code: str) -> CommitteeRecord | None:
        row = self.connection.execute(
            sa.select(centre_committee).where(centre_committee.c.code == code)
        ).first()
        return None if row is None else record_of(CommitteeRecord, row)

    def committee_by_id(self, committee_id: int) -> CommitteeRecord | None:
        row = self.connection.execute(
            sa.select(centre_committee).where(centre_committee.c.id == committee_id)
        ).first()
        return None if row is None else record_of(CommitteeRecord, row)

    def committees(self) -> list[CommitteeRecord]:
        rows = self.connection.execute(
            sa.select(centre_committee).order_by(centre_committee.c.code)
        )
        return [record_of(CommitteeRecord, row) for row in rows]

    def committee_members(self, committee_id: int) -> list[str]:
        """The committee's members, by email."""
        rows = self.connection.execute(
            sa.select(centre_person.c.email)
            .join(
                centre_committee_member,
                centre_committee_member.c.person_id == centre_person.c.id,
            )
            .where(centre_committee_member.c.committee_id == committee_id)
            .order_by(centre_person.c.email)
        )
        return [str(row.email) for row in rows]

    # ------------------------------------------------------------------ projects
    def add_project(self, values: dict[str, Any]) -> int:
        return _inserted(self.connection, centre_project, values)

    def project(self, code: str) -> ProjectRecord | None:
        row = self.connection.execute(
            sa.select(centre_project).where(centre_project.c.code == code)
        ).first()
        return None if row is None else record_of(ProjectRecord, row)

    def projects(self) -> list[ProjectRecord]:
        rows = self.connection.execute(sa.select(centre_project).order_by(centre_project.c.code))
        return [record_of(ProjectRecord, row) for row in rows]

    def move_project(self, project_id: int, *, stage: str, to_stage: str, status: str) -> bool:
        """Set a project's stage and status if it is still at ``stage``."""
        result = self.connection.execute(
            centre_project.update()
            .where(centre_project.c.id == project_id, centre_project.c.stage == stage)
            .values(stage=to_stage, status=status)
        )
        return result.rowcount == 1

    def add_link(self, project_id: int, kind: str, target: str) -> bool:
        """Link a project to a study, partner, person, agreement or IP; False if linked."""
        exists = self.connection.execute(
            sa.select(centre_project_link.c.project_id).where(
                centre_project_link.c.project_id == project_id,
                centre_project_link.c.kind == kind,
                centre_project_link.c.target == target,
            )
        ).first()
        if exists is not None:
            return False
        self.connection.execute(
            centre_project_link.insert().values(project_id=project_id, kind=kind, target=target)
        )
        return True

    def links(self, project_id: int) -> dict[str, list[str]]:
        rows = self.connection.execute(
            sa.select(centre_project_link.c.kind, centre_project_link.c.target)
            .where(centre_project_link.c.project_id == project_id)
            .order_by(centre_project_link.c.kind, centre_project_link.c.target)
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(str(row.kind), []).append(str(row.target))
        return found

    def add_decision(self, values: dict[str, Any]) -> int:
        values = {
            **values,
            "documents": json.dumps(values["documents"], ensure_ascii=False),
            "present": json.dumps(values["present"], ensure_ascii=False),
        }
        return _inserted(self.connection, centre_gate_decision, values)

    def decisions(self, project_id: int) -> list[GateDecisionRecord]:
        rows = self.connection.execute(
            sa.select(centre_gate_decision)
            .where(centre_gate_decision.c.project_id == project_id)
            .order_by(centre_gate_decision.c.id)
        )
        return [_decision(row) for row in rows]

    # ------------------------------------------------------------------ ideas
    def add_idea(self, values: dict[str, Any]) -> int:
        return _inserted(self.connection, centre_idea, values)

    def idea(self, idea_id: int) -> IdeaRecord | None:
        row = self.connection.execute(
            sa.select(centre_idea).where(centre_idea.c.id == idea_id)
        ).first()
        return None if row is None else record_of(IdeaRecord, row)

    def ideas(self) -> list[IdeaRecord]:
        rows = self.connection.execute(sa.select(centre_idea).order_by(centre_idea.c.id.desc()))
        return [record_of(IdeaRecord, row) for row in rows]

    def set_idea(self, idea_id: int, status_was: str, **values: Any) -> bool:
        """Change an idea if its status is still ``status_was``."""
        result = self.connection.execute(
            centre_idea.update()
            .where(centre_idea.c.id == idea_id, centre_idea.c.status == status_was)
            .values(**values)
        )
        return result.rowcount == 1

    def match_partners(self, idea_id: int, partner_ids: list[int]) -> None:
        self.connection.execute(
            centre_idea_partner.delete().where(centre_idea_partner.c.idea_id == idea_id)
        )
        for partner_id in sorted(set(partner_ids)):
            self.connection.execute(
                centre_idea_partner.insert().values(idea_id=idea_id, partner_id=partner_id)
            )

    def idea_partners(self, idea_id: int) -> list[str]:
        rows = self.connection.execute(
            sa.select(centre_partner.c.code)
            .join(centre_idea_partner, centre_idea_partner.c.partner_id == centre_partner.c.id)
            .where(centre_idea_partner.c.idea_id == idea_id)
            .order_by(centre_partner.c.code)
        )
        return [str(row.code) for row in rows]

    def programme_code(self, programme_id: int | None) -> str | None:
        if programme_id is None:
            return None
        row = self.connection.execute(
            sa.select(centre_programme.c.code).where(centre_programme.c.id == programme_id)
        ).first()
        return None if row is None else str(row.code)

    def project_code(self, project_id: int | None) -> str | None:
        if project_id is None:
            return None
        row = self.connection.execute(
            sa.select(centre_project.c.code).where(centre_project.c.id == project_id)
        ).first()
        return None if row is None else str(row.code)

    # ------------------------------------------------------------------ IP
    def add_ip(self, values: dict[str, Any]) -> int:
        values = {**values, "inventors": json.dumps(values["inventors"], ensure_ascii=False)}
        return _inserted(self.connection, centre_ip, values)

    def ip(self, ip_id: int) -> IpRecord | None:
        row = self.connection.execute(sa.select(centre_ip).where(centre_ip.c.id == ip_id)).first()
        return None if row is None else _ip(row)

    def ips(self) -> list[IpRecord]:
        rows = self.connection.execute(sa.select(centre_ip).order_by(centre_ip.c.id))
        return [_ip(row) for row in rows]

    def ip_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Patents and disclosures counted by status, and by jurisdiction (``-``: none)."""
        by_status = {
            str(row.status): int(row.n)
            for row in self.connection.execute(
                sa.select(centre_ip.c.status, sa.func.count().label("n")).group_by(
                    centre_ip.c.status
                )
            )
        }
        jurisdiction = sa.func.coalesce(centre_ip.c.jurisdiction, "-")
        by_jurisdiction = {
            str(row.jurisdiction): int(row.n)
            for row in self.connection.execute(
                sa.select(jurisdiction.label("jurisdiction"), sa.func.count().label("n")).group_by(
                    jurisdiction
                )
            )
        }
        return dict(sorted(by_status.items())), dict(sorted(by_jurisdiction.items()))
