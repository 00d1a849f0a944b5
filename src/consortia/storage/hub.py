"""The hub's consortium in its database, and a member node's study offers.

Repositories run inside the caller's transaction and never commit; the services
(:mod:`consortia.services.hub`, ``hub_studies``, ``hub_analyses``) pair each change with
its audit event. A one-time
invitation is used by a conditional update (``WHERE used_at IS NULL``), so of two joins
with the same invitation exactly one succeeds, whatever the database; a pull task is taken
the same way, so two processes of the hub never hand one task out twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.storage.tables import (
    hub_analysis,
    hub_delivery,
    hub_invitation,
    hub_member,
    hub_study,
    hub_study_site,
    hub_task,
    study_offer,
)

__all__ = [
    "AnalysisRecord",
    "HubRepository",
    "InvitationRecord",
    "MemberRecord",
    "OfferRecord",
    "PublishedStudy",
    "StudyOfferRepository",
]


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member node as the hub knows it."""

    name: str
    institution: str
    country: str
    url: str
    transport: str
    public_key: str
    fingerprint: str
    status: str
    software_version: str
    protocol_version: str
    joined_at: datetime
    last_seen_at: datetime | None
    removed_at: datetime | None


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    """An invitation the hub issued (its secret is kept as a SHA-256 only)."""

    id: str
    name: str
    secret_sha256: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class PublishedStudy:
    """A study version the hub signed and published."""

    study: str
    sha256: str
    label: str
    source: str
    message: str
    published_by: str
    published_at: datetime


@dataclass(frozen=True, slots=True)
class AnalysisRecord:
    """An analysis the hub ran (or is running) across its members."""

    id: str
    study: str | None
    plan: str | None
    request: dict[str, Any]
    transport: dict[str, str]
    status: str
    result: dict[str, Any] | None
    error: str | None
    requested_by: str
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class OfferRecord:
    """A study version a member node's hub sent it."""

    id: str
    hub: str
    study: str
    label: str
    sha256: str
    message: str
    received_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None


def _columns(table: sa.Table) -> list[str]:
    return [column.name for column in table.columns]


def _member(row: Any) -> MemberRecord:
    return MemberRecord(**{column: row._mapping[column] for column in _columns(hub_member)})


def _analysis(row: Any) -> AnalysisRecord:
    values = dict(row._mapping)
    values["request"] = json.loads(values["request"])
    values["transport"] = json.loads(values["transport"])
    values["result"] = None if values["result"] is None else json.loads(values["result"])
    return AnalysisRecord(**values)


class HubRepository:
    """Members, invitations, studies, analyses and pull tasks of the hub."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # ---------------------------------------------------------------- invitations
    def add_invitation(self, record: InvitationRecord) -> None:
        self.connection.execute(
            hub_invitation.insert().values(
                id=record.id,
                name=record.name,
                secret_sha256=record.secret_sha256,
                created_by=record.created_by,
                created_at=record.created_at,
                expires_at=record.expires_at,
                used_at=None,
            )
        )

    def invitation(self, invitation_id: str) -> InvitationRecord | None:
        row = self.connection.execute(
            sa.select(hub_invitation).where(hub_invitation.c.id == invitation_id)
        ).first()
        return None if row is None else InvitationRecord(**dict(row._mapping))

    def use_invitation(self, invitation_id: str, now: datetime) -> bool:
        """Mark the invitation used; False when it was used already (by anyone)."""
        result = self.connection.execute(
            hub_invitation.update()
            .where(hub_invitation.c.id == invitation_id, hub_invitation.c.used_at.is_(None))
            .values(used_at=now)
        )
        return result.rowcount == 1

    # ---------------------------------------------------------------- members
    def member(self, name: str) -> MemberRecord | None:
        row = self.connection.execute(
            sa.select(hub_member).where(hub_member.c.name == name)
        ).first()
        return None if row is None else _member(row)

    def members(self) -> list[MemberRecord]:
        rows = self.connection.execute(sa.select(hub_member).order_by(hub_member.c.name))
        return [_member(row) for row in rows]

    def add_member(self, record: MemberRecord) -> None:
        self.connection.execute(
            hub_member.insert().values(
                **{column: getattr(record, column) for column in _columns(hub_member)}
            )
        )

    def remove_member(self, name: str, now: datetime) -> bool:
        result = self.connection.execute(
            hub_member.update()
            .where(hub_member.c.name == name, hub_member.c.status == "active")
            .values(status="removed", removed_at=now)
        )
        return result.rowcount == 1

    def seen(self, name: str, now: datetime) -> None:
        self.connection.execute(
            hub_member.update().where(hub_member.c.name == name).values(last_seen_at=now)
        )

    def seen_active(self, name: str, now: datetime) -> bool:
        """Note that the member called in, if it is active; False if it is not (removed)."""
        marked = self.connection.execute(
            hub_member.update()
            .where(hub_member.c.name == name, hub_member.c.status == "active")
            .values(last_seen_at=now)
        )
        return marked.rowcount == 1

    # ---------------------------------------------------------------- studies
    def add_study(self, record: PublishedStudy) -> bool:
        """Keep a published version; False when this exact version was published before."""
        exists = self.connection.execute(
            sa.select(hub_study.c.sha256).where(
                hub_study.c.study == record.study, hub_study.c.sha256 == record.sha256
            )
        ).first()
        if exists is not None:
            return False
        self.connection.execute(
            hub_study.insert().values(
                **{column: getattr(record, column) for column in _columns(hub_study)}
            )
        )
        return True

    def latest_study(self, study: str) -> PublishedStudy | None:
        row = self.connection.execute(
            sa.select(hub_study)
            .where(hub_study.c.study == study)
            .order_by(hub_study.c.published_at.desc())
            .limit(1)
        ).first()
        return None if row is None else PublishedStudy(**dict(row._mapping))

    def studies(self) -> list[PublishedStudy]:
        rows = self.connection.execute(
            sa.select(hub_study).order_by(hub_study.c.study, hub_study.c.published_at)
        )
        return [PublishedStudy(**dict(row._mapping)) for row in rows]

    def set_sites(self, study: str, sites: dict[str, str]) -> None:
        self.connection.execute(hub_study_site.delete().where(hub_study_site.c.study == study))
        if sites:
            self.connection.execute(
                hub_study_site.insert(),
                [{"study": study, "site": site, "member": m} for site, m in sorted(sites.items())],
            )

    def sites(self, study: str) -> dict[str, str]:
        rows = self.connection.execute(
            sa.select(hub_study_site.c.site, hub_study_site.c.member)
            .where(hub_study_site.c.study == study)
            .order_by(hub_study_site.c.site)
        )
        return {row.site: row.member for row in rows}

    def set_delivery(
        self, study: str, sha256: str, member: str, status: str, detail: str, now: datetime
    ) -> None:
        key = (
            hub_delivery.c.study == study,
            hub_delivery.c.sha256 == sha256,
            hub_delivery.c.member == member,
        )
        changed = self.connection.execute(
            hub_delivery.update().where(*key).values(status=status, detail=detail, updated_at=now)
        )
        if changed.rowcount == 0:
            self.connection.execute(
                hub_delivery.insert().values(
                    study=study,
                    sha256=sha256,
                    member=member,
                    status=status,
                    detail=detail,
                    updated_at=now,
                )
            )

    def deliveries(self, study: str) -> list[dict[str, Any]]:
        rows = self.connection.execute(
            sa.select(hub_delivery)
            .where(hub_delivery.c.study == study)
            .order_by(hub_delivery.c.updated_at, hub_delivery.c.member)
        )
        return [dict(row._mapping) for row in rows]

    # ---------------------------------------------------------------- analyses
    def start_analysis(
        self,
        analysis_id: str,
        *,
        study: str | None,
        plan: str | None,
        request: dict[str, Any],
        transport: dict[str, str],
        by: str,
        now: datetime,
    ) -> None:
        self.connection.execute(
            hub_analysis.insert().values(
                id=analysis_id,
                study=study,
                plan=plan,
                request=json.dumps(request, sort_keys=True),
                transport=json.dumps(transport, sort_keys=True),
                status="running",
                result=None,
                error=None,
                requested_by=by,
                started_at=now,
                finished_at=None,
            )
        )

    def finish_analysis(
        self,
        analysis_id: str,
        *,
        result: dict[str, Any] | None,
        error: str | None,
        now: datetime,
    ) -> None:
        self.connection.execute(
            hub_analysis.update()
            .where(hub_analysis.c.id == analysis_id)
            .values(
                status="done" if error is None else "failed",
                result=None if result is None else json.dumps(result, sort_keys=True, default=str),
                error=error,
                finished_at=now,
            )
        )

    def analysis(self, analysis_id: str) -> AnalysisRecord | None:
        row = self.connection.execute(
            sa.select(hub_analysis).where(hub_analysis.c.id == analysis_id)
        ).first()
        return None if row is None else _analysis(row)

    def analyses(self, limit: int = 100) -> list[AnalysisRecord]:
        rows = self.connection.execute(
            sa.select(hub_analysis).order_by(hub_analysis.c.started_at.desc()).limit(limit)
        )
        return [_analysis(row) for row in rows]

    # ---------------------------------------------------------------- pull tasks
    def queue_task(
        self, task_id: str, member: str, message: str, now: datetime, expires_at: datetime
    ) -> None:
        self.connection.execute(
            hub_task.insert().values(
                task_id=task_id,
                member=member,
                message=message,
                created_at=now,
                expires_at=expires_at,
                taken_at=None,
                reply=None,
            )
        )

    def take_task(self, member: str, now: datetime) -> str | None:
        """The member's oldest live task not yet handed out, marked taken; None if none."""
        candidates = self.connection.execute(
            sa.select(hub_task.c.task_id, hub_task.c.message)
            .where(
                hub_task.c.member == member,
                hub_task.c.taken_at.is_(None),
                hub_task.c.expires_at > now,
            )
            .order_by(hub_task.c.created_at)
            .limit(8)
        ).all()
        for task_id, message in candidates:
            taken = self.connection.execute(
                hub_task.update()
                .where(hub_task.c.task_id == task_id, hub_task.c.taken_at.is_(None))
                .values(taken_at=now)
            )
            if taken.rowcount == 1:
                return str(message)
        return None

    def deliver_reply(self, task_id: str, member: str, reply: str) -> bool:
        """Keep a member's reply to a task handed to it; False if no such task waits."""
        result = self.connection.execute(
            hub_task.update()
            .where(
                hub_task.c.task_id == task_id,
                hub_task.c.member == member,
                hub_task.c.taken_at.is_not(None),
                hub_task.c.reply.is_(None),
            )
            .values(reply=reply)
        )
        return result.rowcount == 1

    def task_reply(self, task_id: str) -> str | None:
        row = self.connection.execute(
            sa.select(hub_task.c.reply).where(hub_task.c.task_id == task_id)
        ).first()
        return None if row is None or row.reply is None else str(row.reply)

    def members_to_wake(self, members: list[str], now: datetime) -> set[str]:
        """Which of ``members`` have a live task not yet handed out, or are no longer active
        (their open long polls end now: refused, not at their deadline). One query."""
        queued = sa.select(hub_task.c.member).where(
            hub_task.c.member.in_(members),
            hub_task.c.taken_at.is_(None),
            hub_task.c.expires_at > now,
        )
        gone = sa.select(hub_member.c.name).where(
            hub_member.c.name.in_(members), hub_member.c.status != "active"
        )
        return {str(row[0]) for row in self.connection.execute(sa.union(queued, gone))}

    def answered_tasks(self, task_ids: list[str]) -> set[str]:
        """Which of ``task_ids`` have their reply (one query)."""
        rows = self.connection.execute(
            sa.select(hub_task.c.task_id).where(
                hub_task.c.task_id.in_(task_ids), hub_task.c.reply.is_not(None)
            )
        )
        return {str(row.task_id) for row in rows}

    def drop_task(self, task_id: str) -> None:
        self.connection.execute(hub_task.delete().where(hub_task.c.task_id == task_id))

    def drop_expired_tasks(self, now: datetime) -> None:
        self.connection.execute(hub_task.delete().where(hub_task.c.expires_at <= now))

    def drop_member_tasks(self, member: str) -> int:
        """Withdraw every task queued for ``member`` (it was removed)."""
        return self.connection.execute(
            hub_task.delete().where(hub_task.c.member == member)
        ).rowcount


class StudyOfferRepository:
    """A member node's study versions offered by its hub."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add(self, record: OfferRecord) -> bool:
        """Keep an offer; False when the same version from the same hub is kept already."""
        if self.get(record.id) is not None:
            return False
        self.connection.execute(
            study_offer.insert().values(
                **{column: getattr(record, column) for column in _columns(study_offer)}
            )
        )
        return True

    def get(self, offer_id: str) -> OfferRecord | None:
        row = self.connection.execute(
            sa.select(study_offer).where(study_offer.c.id == offer_id)
        ).first()
        return None if row is None else OfferRecord(**dict(row._mapping))

    def list(self) -> list[OfferRecord]:
        rows = self.connection.execute(sa.select(study_offer).order_by(study_offer.c.received_at))
        return [OfferRecord(**dict(row._mapping)) for row in rows]

    def decide(self, offer_id: str, status: str, by: str, now: datetime) -> bool:
        result = self.connection.execute(
            study_offer.update()
            .where(study_offer.c.id == offer_id, study_offer.c.status == "pending")
            .values(status=status, decided_by=by, decided_at=now)
        )
        return result.rowcount == 1
