"""Web sessions, looked up by the hash of their id (node-level records)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.storage.tables import web_session

__all__ = ["SessionRecord", "SessionRepository"]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A web session, stored under the hash of its cookie value."""

    id_hash: str
    user_id: int
    created_at: datetime
    last_seen_at: datetime


class SessionRepository:
    """Web sessions: created at login, touched while used, deleted at logout or timeout."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get(self, id_hash: str) -> SessionRecord | None:
        query = sa.select(web_session).where(web_session.c.id_hash == id_hash)
        row = self.connection.execute(query).first()
        if row is None:
            return None
        return SessionRecord(row.id_hash, row.user_id, row.created_at, row.last_seen_at)

    def add(self, id_hash: str, user_id: int, *, now: datetime) -> None:
        self.connection.execute(
            web_session.insert().values(
                id_hash=id_hash, user_id=user_id, created_at=now, last_seen_at=now
            )
        )

    def touch(self, id_hash: str, *, now: datetime) -> None:
        self.connection.execute(
            web_session.update().where(web_session.c.id_hash == id_hash).values(last_seen_at=now)
        )

    def remove(self, id_hash: str) -> None:
        self.connection.execute(web_session.delete().where(web_session.c.id_hash == id_hash))

    def remove_of_user(self, user_id: int, *, keep: str | None = None) -> int:
        """End every session of ``user_id`` but the one stored as ``keep``; how many ended."""
        statement = web_session.delete().where(web_session.c.user_id == user_id)
        if keep is not None:
            statement = statement.where(web_session.c.id_hash != keep)
        return int(self.connection.execute(statement).rowcount)

    def remove_idle(self, *, before: datetime) -> int:
        """End sessions last used before ``before``; how many ended."""
        statement = web_session.delete().where(web_session.c.last_seen_at < before)
        return int(self.connection.execute(statement).rowcount)
