"""The node's tables: people, their roles, their credentials, and enrolled subjects.

All tables live on :data:`consortia.storage.audit.metadata`, beside the audit trail, so one
``MetaData`` describes the whole schema (Alembic compares the migrations against it in a
test). Times are timezone-aware UTC on both databases (:class:`UTCDateTime`).

Studies and sites are named by short codes (``CART01``, ``SG01``) that grants and records
share; the wildcard ``*`` in a grant means "every study" or "every site of the study".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from consortia.auth.principal import WILDCARD
from consortia.storage.audit import metadata

__all__ = [
    "WILDCARD",
    "UTCDateTime",
    "api_token",
    "app_user",
    "metadata",
    "role_grant",
    "subject",
    "web_session",
]

CODE_LENGTH = 64
EMAIL_LENGTH = 320


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite has no time zones: values are stored as naive UTC and given ``UTC`` on the way
    out, so comparisons in SQL and in Python agree on both databases.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Consortia stores UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


app_user = sa.Table(
    "app_user",
    metadata,
    _id(),
    sa.Column("email", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("email", name="uq_app_user_email"),
)

role_grant = sa.Table(
    "role_grant",
    metadata,
    _id(),
    sa.Column(
        "user_id", sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("study", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("site", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("granted_at", UTCDateTime, nullable=False),
    sa.Column("granted_by", sa.String(EMAIL_LENGTH), nullable=False),
    sa.UniqueConstraint("user_id", "study", "site", "role", name="uq_role_grant"),
)

api_token = sa.Table(
    "api_token",
    metadata,
    _id(),
    sa.Column(
        "user_id", sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    # JSON list of study codes the token may act in; NULL means all of its owner's studies
    sa.Column("studies", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("token_hash", name="uq_api_token_token_hash"),
)

web_session = sa.Table(
    "web_session",
    metadata,
    # sha256 of the cookie value: a stolen database holds no usable session
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column(
        "user_id", sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
)

subject = sa.Table(
    "subject",
    metadata,
    _id(),
    sa.Column("study", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("site", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("subject_id", sa.String(CODE_LENGTH), nullable=False),
    # an identifier (PHI) item: masked for roles without identifier access
    sa.Column("initials", sa.String(8), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(EMAIL_LENGTH), nullable=False),
    sa.UniqueConstraint("study", "subject_id", name="uq_subject_study_subject_id"),
)
sa.Index("ix_subject_study_site", subject.c.study, subject.c.site)
