"""Personal API tokens, looked up by their hash (node-level records)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from consortia.auth.principal import Grant, Principal, Role
from consortia.storage.prepared import Prepared
from consortia.storage.tables import api_token, app_user, role_grant

__all__ = ["TokenRecord", "TokenRepository"]


# Statements run on every request are built once and run on the driver's cursor
# (storage/prepared.py; bench/RESULTS.md, section 3).
_TOKEN_BY_HASH = Prepared(
    sa.select(api_token).where(api_token.c.token_hash == sa.bindparam("token_hash"))
)
_TOKEN_WITH_OWNER = Prepared(
    sa.select(
        api_token,
        app_user.c.email.label("owner_email"),
        app_user.c.name.label("owner_name"),
        app_user.c.active.label("owner_active"),
        role_grant.c.study.label("grant_study"),
        role_grant.c.site.label("grant_site"),
        role_grant.c.role.label("grant_role"),
    )
    .join(app_user, app_user.c.id == api_token.c.user_id)
    .outerjoin(role_grant, role_grant.c.user_id == api_token.c.user_id)
    .where(api_token.c.token_hash == sa.bindparam("token_hash"))
)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An API token's metadata (its secret is never stored, only its hash)."""

    id: int
    user_id: int
    name: str
    prefix: str
    studies: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def usable_at(self, moment: datetime) -> bool:
        return self.revoked_at is None and moment < self.expires_at


class TokenRepository:
    """API tokens: found by hash to authenticate, listed and revoked by their owner."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @staticmethod
    def _record(row: Any) -> TokenRecord:
        studies = None if row.studies is None else tuple(json.loads(row.studies))
        return TokenRecord(
            id=row.id,
            user_id=row.user_id,
            name=row.name,
            prefix=row.prefix,
            studies=studies,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
        )

    def by_hash(self, token_hash: str) -> TokenRecord | None:
        row = _TOKEN_BY_HASH.first(self.connection, {"token_hash": token_hash})
        return None if row is None else self._record(row)

    def with_owner(self, token_hash: str) -> tuple[TokenRecord, Principal | None] | None:
        """The token and its owner's principal (``None`` if inactive), in one query.

        The principal holds every grant of the owner; narrowing it to the token's studies
        is the caller's business.
        """
        return self._with_owner(_TOKEN_WITH_OWNER.all(self.connection, {"token_hash": token_hash}))

    @classmethod
    def read_with_owner(
        cls, engine: Engine, token_hash: str
    ) -> tuple[TokenRecord, Principal | None] | None:
        """:meth:`with_owner` as one statement of its own, outside any transaction: what
        every API request does first, so it costs no transaction of its own."""
        return cls._with_owner(_TOKEN_WITH_OWNER.all_alone(engine, {"token_hash": token_hash}))

    @classmethod
    def _with_owner(cls, rows: list[Any]) -> tuple[TokenRecord, Principal | None] | None:
        if not rows:
            return None
        first = rows[0]
        if not first.owner_active:
            return cls._record(first), None
        known = {role.value for role in Role}
        grants = frozenset(
            Grant(row.grant_study, row.grant_site, Role(row.grant_role))
            for row in rows
            if row.grant_role in known
        )
        owner = Principal(first.user_id, first.owner_email, first.owner_name, grants)
        return cls._record(first), owner

    def of_user(self, user_id: int, token_id: int | None = None) -> list[TokenRecord]:
        query = sa.select(api_token).where(api_token.c.user_id == user_id)
        if token_id is not None:
            query = query.where(api_token.c.id == token_id)
        rows = self.connection.execute(query.order_by(api_token.c.id))
        return [self._record(row) for row in rows]

    def add(
        self,
        *,
        user_id: int,
        name: str,
        token_hash: str,
        prefix: str,
        studies: Sequence[str] | None,
        now: datetime,
        expires_at: datetime,
    ) -> int:
        result = self.connection.execute(
            api_token.insert().values(
                user_id=user_id,
                name=name,
                token_hash=token_hash,
                prefix=prefix,
                studies=None if studies is None else json.dumps(sorted(studies)),
                created_at=now,
                expires_at=expires_at,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def update(self, token_id: int, **values: Any) -> None:
        self.connection.execute(
            api_token.update().where(api_token.c.id == token_id).values(**values)
        )
