"""Role grants: which role a user holds in which study, at which site."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.auth.policy import (
    ROLE_ACTIONS,
    Action,
)
from consortia.auth.principal import WILDCARD, Grant, Principal, Role
from consortia.storage.prepared import Prepared
from consortia.storage.tables import app_user, role_grant

__all__ = ["GrantRecord", "GrantRepository", "load_grants"]


# Statements run on every request are built once and run on the driver's cursor
# (storage/prepared.py; bench/RESULTS.md, section 3).
_GRANTS_OF = Prepared(
    sa.select(role_grant.c.study, role_grant.c.site, role_grant.c.role).where(
        role_grant.c.user_id == sa.bindparam("user_id")
    )
)


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A role held by a person at a study and site."""

    id: int
    user_id: int
    email: str
    study: str
    site: str
    role: Role
    granted_at: datetime
    granted_by: str

    @property
    def grant(self) -> Grant:
        return Grant(self.study, self.site, self.role)


def load_grants(connection: Connection, user_id: int) -> frozenset[Grant]:
    """Every grant a person holds (to build their principal); unknown roles are ignored."""
    known = {role.value for role in Role}
    return frozenset(
        Grant(row.study, row.site, Role(row.role))
        for row in _GRANTS_OF.all(connection, {"user_id": user_id})
        if row.role in known
    )


class GrantRepository:
    """Role grants the principal may manage: in its studies, at its sites (``grant.manage``)."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal

    def _visible(self) -> sa.ColumnElement[bool]:
        """Grants whose (study, site) one of the principal's grant.manage grants covers."""
        clauses: list[sa.ColumnElement[bool]] = []
        for grant in self.principal.grants:
            if Action.GRANT_MANAGE not in ROLE_ACTIONS[grant.role]:
                continue
            study_ok = sa.true() if grant.study == WILDCARD else role_grant.c.study == grant.study
            site_ok = sa.true() if grant.site == WILDCARD else role_grant.c.site == grant.site
            clauses.append(sa.and_(study_ok, site_ok))
        return sa.or_(*clauses) if clauses else sa.false()

    def _query(self) -> sa.Select[Any]:
        return (
            sa.select(role_grant, app_user.c.email)
            .join(app_user, app_user.c.id == role_grant.c.user_id)
            .where(self._visible())
        )

    @staticmethod
    def _record(row: Any) -> GrantRecord:
        return GrantRecord(
            id=row.id,
            user_id=row.user_id,
            email=row.email,
            study=row.study,
            site=row.site,
            role=Role(row.role),
            granted_at=row.granted_at,
            granted_by=row.granted_by,
        )

    def list(self, *, study: str | None = None, email: str | None = None) -> list[GrantRecord]:
        query = self._query()
        if study is not None:
            query = query.where(role_grant.c.study == study)
        if email is not None:
            query = query.where(app_user.c.email == email)
        query = query.order_by(app_user.c.email, role_grant.c.study, role_grant.c.site)
        return [self._record(row) for row in self.connection.execute(query)]

    def get(self, grant_id: int) -> GrantRecord | None:
        row = self.connection.execute(self._query().where(role_grant.c.id == grant_id)).first()
        return None if row is None else self._record(row)

    def find(self, user_id: int, grant: Grant) -> GrantRecord | None:
        query = self._query().where(
            role_grant.c.user_id == user_id,
            role_grant.c.study == grant.study,
            role_grant.c.site == grant.site,
            role_grant.c.role == grant.role.value,
        )
        row = self.connection.execute(query).first()
        return None if row is None else self._record(row)

    def add(self, user_id: int, grant: Grant, *, now: datetime) -> int:
        result = self.connection.execute(
            role_grant.insert().values(
                user_id=user_id,
                study=grant.study,
                site=grant.site,
                role=grant.role.value,
                granted_at=now,
                granted_by=self.principal.email,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def remove(self, grant_id: int) -> None:
        self.connection.execute(role_grant.delete().where(role_grant.c.id == grant_id))
