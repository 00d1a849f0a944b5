"""Request and response bodies of the REST API: ``XCreate`` comes in, ``XPublic`` goes out.

Public schemas are built from repository records, which are already site-scoped and
masked; nothing here decides what a caller may see.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from consortia.auth.principal import CODE_PATTERN, Principal, Role
from consortia.services.audit_trail import AuditEvent
from consortia.services.subjects import INITIALS_PATTERN, SubjectRecord
from consortia.services.tokens import TokenRecord
from consortia.services.users import GrantRecord, UserRecord

__all__ = [
    "AuditEventPublic",
    "EnrolmentPublic",
    "GrantCreate",
    "GrantPublic",
    "LoginRequest",
    "MePublic",
    "RolePublic",
    "SessionPublic",
    "SubjectCreate",
    "SubjectPublic",
    "TokenCreate",
    "TokenCreated",
    "TokenPublic",
    "UserCreate",
    "UserPublic",
]

GRANT_CODE_PATTERN = r"^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$"
Email = Field(min_length=3, max_length=320, examples=["ana@sg-hospital.example"])
Password = Field(min_length=1, max_length=1024)


class _In(BaseModel):
    # no whitespace stripping: it would change passwords; services normalise what they need
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --------------------------------------------------------------------------- accounts


class LoginRequest(_In):
    """Email and password, to open a web session."""

    email: str = Email
    password: str = Password


class PasswordChange(_In):
    """The current password (again) and the new one."""

    current_password: str = Password
    new_password: str = Password


class RolePublic(_Out):
    """A role in force: at a study (``*``: all) and site (``*``: all)."""

    study: str
    site: str
    role: Role


class GrantPublic(_Out):
    """A role granted to a person at a study (``*``: all) and site (``*``: all)."""

    id: int
    email: str
    study: str
    site: str
    role: Role
    granted_at: datetime
    granted_by: str

    @classmethod
    def of(cls, record: GrantRecord) -> GrantPublic:
        return cls(
            id=record.id,
            email=record.email,
            study=record.study,
            site=record.site,
            role=record.role,
            granted_at=record.granted_at,
            granted_by=record.granted_by,
        )


class MePublic(_Out):
    """The caller: who they are and the roles in force for this request."""

    id: int
    email: str
    name: str
    grants: list[RolePublic]
    token_studies: list[str] | None = Field(
        None, description="the studies the request's API token is limited to, if any"
    )

    @classmethod
    def of(cls, principal: Principal) -> MePublic:
        return cls(
            id=principal.user_id,
            email=principal.email,
            name=principal.name,
            grants=[
                RolePublic(study=g.study, site=g.site, role=g.role)
                for g in sorted(principal.grants)
            ],
            token_studies=None
            if principal.token_studies is None
            else sorted(principal.token_studies),
        )


class SessionPublic(_Out):
    """A web session: send ``csrf_token`` as ``X-CSRF-Token`` with every change."""

    me: MePublic
    csrf_token: str


class UserCreate(_In):
    """A new account; without a password the person can use API tokens only."""

    email: str = Email
    name: str = Field(min_length=1, max_length=200)
    password: str | None = Field(None, min_length=1, max_length=1024)


class UserPublic(_Out):
    """An account (never its password hash)."""

    id: int
    email: str
    name: str
    active: bool
    created_at: datetime
    locked_until: datetime | None

    @classmethod
    def of(cls, record: UserRecord) -> UserPublic:
        return cls(
            id=record.id,
            email=record.email,
            name=record.name,
            active=record.active,
            created_at=record.created_at,
            locked_until=record.locked_until,
        )


class GrantCreate(_In):
    """Give ``email`` a role at a study and site."""

    email: str = Email
    study: str = Field(pattern=GRANT_CODE_PATTERN)
    site: str = Field(pattern=GRANT_CODE_PATTERN)
    role: Role


class TokenCreate(_In):
    """A new personal API token."""

    name: str = Field(min_length=1, max_length=100)
    expires: str = Field("90d", pattern=r"^\d{1,5}[dhm]$", description="lifetime: 90d, 12h, 30m")
    studies: list[str] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="the studies the token may act in; omit for all of yours",
    )


class TokenPublic(_Out):
    """A token's metadata; its secret is shown only once, when it is created."""

    id: int
    name: str
    prefix: str
    studies: list[str] | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, record: TokenRecord) -> TokenPublic:
        return cls(
            id=record.id,
            name=record.name,
            prefix=record.prefix,
            studies=None if record.studies is None else list(record.studies),
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            last_used_at=record.last_used_at,
        )


class TokenCreated(TokenPublic):
    """A new token with its secret: store it now, it is never shown again."""

    token: str


# --------------------------------------------------------------------------- subjects


class SubjectCreate(_In):
    """Enrol a subject at a site."""

    subject_id: str = Field(pattern=CODE_PATTERN, examples=["SG01-001"])
    site: str = Field(pattern=CODE_PATTERN, examples=["SG01"])
    initials: str | None = Field(
        None, pattern=INITIALS_PATTERN, description="an identifier (PHI) item"
    )
    screening_date: date | None = Field(
        None, description="the first scheduled event falls on it (default: today, UTC)"
    )


class SubjectPublic(_Out):
    """A subject; ``initials`` is null and ``identifiers_masked`` true without PHI access."""

    study: str
    site: str
    subject_id: str
    initials: str | None
    identifiers_masked: bool
    created_at: datetime
    created_by: str
    status: str
    anchor_date: date | None = Field(None, description="day 0 of the subject's schedule")

    @classmethod
    def of(cls, record: SubjectRecord) -> SubjectPublic:
        return cls(
            study=record.study,
            site=record.site,
            subject_id=record.subject_id,
            initials=record.initials,
            identifiers_masked=record.identifiers_masked,
            created_at=record.created_at,
            created_by=record.created_by,
            status=record.status,
            anchor_date=record.anchor_date,
        )


class EnrolmentPublic(_Out):
    """Subjects enrolled per site (the sites the caller may see aggregates of)."""

    study: str
    sites: dict[str, int]
    total: int


class AuditEventPublic(_Out):
    """One audit event (identifier values masked for callers without PHI access)."""

    chain: str
    seq: int
    at: str
    actor: str
    action: str
    entity_type: str
    entity_id: str
    site: str | None
    before: Any
    after: Any
    reason: str | None
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventPublic:
        return cls(**event.payload(), prev_hash=event.prev_hash, hash=event.hash)
