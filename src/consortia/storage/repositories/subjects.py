"""Subjects, site-scoped, their identifiers masked where the caller may not see them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import (
    Action,
    may_see_identifiers,
    site_scope,
)
from consortia.auth.principal import Principal
from consortia.storage.prepared import Prepared
from consortia.storage.repositories.scope import in_scope
from consortia.storage.tables import subject

__all__ = ["SubjectRecord", "SubjectRepository"]


# Statements run on every request are built once and run on the driver's cursor
# (storage/prepared.py; bench/RESULTS.md, section 3).
_SUBJECT_BY_ID = Prepared(
    sa.select(subject).where(
        subject.c.study == sa.bindparam("study"),
        subject.c.subject_id == sa.bindparam("subject_id"),
    )
)


@dataclass(frozen=True, slots=True)
class SubjectRecord:
    """A subject as the principal may see it: ``initials`` is ``None`` when masked."""

    id: int
    study: str
    site: str
    subject_id: str
    initials: str | None
    identifiers_masked: bool
    created_at: datetime
    created_by: str
    status: str = "screening"
    anchor_date: date | None = None


class SubjectRepository:
    """Subjects of one node, narrowed to the principal's sites and masked for its roles."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal

    def _record(self, row: Any) -> SubjectRecord:
        visible = may_see_identifiers(self.principal, row.study, row.site)
        return SubjectRecord(
            id=row.id,
            study=row.study,
            site=row.site,
            subject_id=row.subject_id,
            initials=row.initials if visible else None,
            identifiers_masked=not visible,
            created_at=row.created_at,
            created_by=row.created_by,
            status=row.status,
            anchor_date=row.anchor_date,
        )

    def _scoped(self, study: str, action: Action | None) -> sa.Select[Any]:
        scope = site_scope(self.principal, study, action)
        return sa.select(subject).where(subject.c.study == study, in_scope(subject.c.site, scope))

    def get(self, study: str, subject_id: str) -> SubjectRecord | None:
        """The subject, if it exists at a site where the principal holds any role."""
        scope = site_scope(self.principal, study, None)
        if not (scope.every_site or scope.sites):
            return None
        row = _SUBJECT_BY_ID.first(self.connection, {"study": study, "subject_id": subject_id})
        return None if row is None else self.visible(row)

    def visible(self, row: Any) -> SubjectRecord | None:
        """A subject's row (every column of the table) as the principal sees it; ``None``
        at a site where it holds no role."""
        scope = site_scope(self.principal, row.study, None)
        if not (scope.every_site or row.site in scope.sites):
            return None  # another site's subject is not there for this caller
        return self._record(row)

    def list(
        self, study: str, *, action: Action = Action.SUBJECT_READ, limit: int = 100, offset: int = 0
    ) -> list[SubjectRecord]:
        """Subjects at the sites where the principal may do ``action``, by subject id."""
        query = self._scoped(study, action).order_by(subject.c.subject_id)
        rows = self.connection.execute(query.limit(limit).offset(offset))
        return [self._record(row) for row in rows]

    def count_by_site(self, study: str, *, action: Action) -> dict[str, int]:
        """How many subjects each visible site has enrolled."""
        scope = site_scope(self.principal, study, action)
        query = (
            sa.select(subject.c.site, sa.func.count())
            .where(subject.c.study == study, in_scope(subject.c.site, scope))
            .group_by(subject.c.site)
            .order_by(subject.c.site)
        )
        return {row[0]: int(row[1]) for row in self.connection.execute(query)}

    def exists_anywhere(self, study: str, subject_id: str) -> bool:
        """Whether the id is taken in the study at any site (uniqueness is study-wide)."""
        query = sa.select(subject.c.id).where(
            subject.c.study == study, subject.c.subject_id == subject_id
        )
        return self.connection.execute(query).first() is not None

    def add(
        self, *, study: str, site: str, subject_id: str, initials: str | None, now: datetime
    ) -> SubjectRecord:
        result = self.connection.execute(
            subject.insert().values(
                study=study,
                site=site,
                subject_id=subject_id,
                initials=initials,
                created_at=now,
                created_by=self.principal.email,
            )
        )
        assert result.inserted_primary_key is not None
        row = self.connection.execute(
            sa.select(subject).where(subject.c.id == result.inserted_primary_key[0])
        ).one()
        return self._record(row)
