"""Node accounts: the people who sign in (node-level records, in no site)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.storage.prepared import Prepared
from consortia.storage.tables import app_user

__all__ = ["UserRecord", "UserRepository"]


# Statements run on every request are built once and run on the driver's cursor
# (storage/prepared.py; bench/RESULTS.md, section 3).
_USER_BY_ID = Prepared(sa.select(app_user).where(app_user.c.id == sa.bindparam("user_id")))


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A person with an account on this node (the password hash stays in the database)."""

    id: int
    email: str
    name: str
    active: bool
    created_at: datetime
    failed_logins: int
    locked_until: datetime | None


class UserRepository:
    """Node accounts: looked up by email to log in, listed by node administrators."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @staticmethod
    def _record(row: Any) -> UserRecord:
        return UserRecord(
            id=row.id,
            email=row.email,
            name=row.name,
            active=bool(row.active),
            created_at=row.created_at,
            failed_logins=row.failed_logins,
            locked_until=row.locked_until,
        )

    def by_email(self, email: str, *, for_update: bool = False) -> UserRecord | None:
        """The account with ``email``; ``for_update`` locks its row (login counters)."""
        query = sa.select(app_user).where(app_user.c.email == email)
        if for_update and self.connection.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self.connection.execute(query).first()
        return None if row is None else self._record(row)

    def by_id(self, user_id: int) -> UserRecord | None:
        row = _USER_BY_ID.first(self.connection, {"user_id": user_id})
        return None if row is None else self._record(row)

    def password_hash(self, user_id: int) -> str | None:
        query = sa.select(app_user.c.password_hash).where(app_user.c.id == user_id)
        return self.connection.execute(query).scalar_one_or_none()

    def count(self) -> int:
        query = sa.select(sa.func.count()).select_from(app_user)
        return int(self.connection.execute(query).scalar_one())

    def list(self) -> list[UserRecord]:
        rows = self.connection.execute(sa.select(app_user).order_by(app_user.c.email))
        return [self._record(row) for row in rows]

    def add(self, *, email: str, name: str, password_hash: str | None, now: datetime) -> int:
        result = self.connection.execute(
            app_user.insert().values(
                email=email, name=name, password_hash=password_hash, created_at=now
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def update(self, user_id: int, **values: Any) -> None:
        self.connection.execute(app_user.update().where(app_user.c.id == user_id).values(**values))
