"""Repositories: the only code that queries the node's tables, always site-scoped.

Study data repositories take the caller's :class:`~consortia.auth.principal.Principal`
and narrow *every* query to the sites :func:`~consortia.auth.policy.site_scope` allows, so
a record at another site is indistinguishable from one that does not exist. They also
mask identifier (PHI) values for principals without identifier access at the record's
site (:data:`IDENTIFIER_FIELDS`), so no layer above can leak them by mistake.

The account repositories (:class:`UserRepository`, :class:`TokenRepository`) hold
node-level records that belong to no site; they are used to authenticate, before any
principal exists, and by services that check node-level policy first.

Repositories run inside the caller's transaction (a :class:`~sqlalchemy.Connection`);
they never commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from consortia.auth.policy import (
    ROLE_ACTIONS,
    Action,
    Resource,
    SiteScope,
    can,
    may_see_identifiers,
    sees_study,
    site_scope,
)
from consortia.auth.principal import WILDCARD, Grant, Principal, Role
from consortia.storage.audit import AuditEvent, audit_event, row_event
from consortia.storage.prepared import Prepared
from consortia.storage.tables import api_token, app_user, role_grant, subject, web_session

__all__ = [
    "IDENTIFIERS_KEY",
    "IDENTIFIER_FIELDS",
    "NODE_CHAIN",
    "AuditRepository",
    "GrantRecord",
    "GrantRepository",
    "SessionRecord",
    "SessionRepository",
    "SubjectRecord",
    "SubjectRepository",
    "TokenRecord",
    "TokenRepository",
    "UserRecord",
    "UserRepository",
    "load_grants",
    "mask_event",
]

#: The audit chain of node-level events: accounts, logins, grants, tokens.
NODE_CHAIN = "node"

#: Identifier (PHI) fields per entity type: masked wherever they appear, audit trail included.
IDENTIFIER_FIELDS: Mapping[str, frozenset[str]] = {"subject": frozenset({"initials"})}


# Statements run on every request are built once and run on the driver's cursor
# (storage/prepared.py; bench/RESULTS.md, section 3).
_USER_BY_ID = Prepared(sa.select(app_user).where(app_user.c.id == sa.bindparam("user_id")))
_GRANTS_OF = Prepared(
    sa.select(role_grant.c.study, role_grant.c.site, role_grant.c.role).where(
        role_grant.c.user_id == sa.bindparam("user_id")
    )
)
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
_SUBJECT_BY_ID = Prepared(
    sa.select(subject).where(
        subject.c.study == sa.bindparam("study"),
        subject.c.subject_id == sa.bindparam("subject_id"),
    )
)


def _in_scope(column: sa.ColumnElement[str], scope: SiteScope) -> sa.ColumnElement[bool]:
    if scope.every_site:
        return sa.true()
    if not scope.sites:
        return sa.false()
    return column.in_(sorted(scope.sites))


# --------------------------------------------------------------------------- users


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


# --------------------------------------------------------------------------- grants


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


# --------------------------------------------------------------------------- tokens


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


# --------------------------------------------------------------------------- sessions


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

    def remove_idle(self, *, before: datetime) -> None:
        """Forget sessions last used before ``before``."""
        self.connection.execute(web_session.delete().where(web_session.c.last_seen_at < before))


# --------------------------------------------------------------------------- subjects


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
        return sa.select(subject).where(subject.c.study == study, _in_scope(subject.c.site, scope))

    def get(self, study: str, subject_id: str) -> SubjectRecord | None:
        """The subject, if it exists at a site where the principal holds any role."""
        scope = site_scope(self.principal, study, None)
        if not (scope.every_site or scope.sites):
            return None
        row = _SUBJECT_BY_ID.first(self.connection, {"study": study, "subject_id": subject_id})
        if row is None or not (scope.every_site or row.site in scope.sites):
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
            .where(subject.c.study == study, _in_scope(subject.c.site, scope))
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


# --------------------------------------------------------------------------- audit


#: The key of an audit event's before/after under which identifier item values travel.
IDENTIFIERS_KEY = "identifiers"


def mask_event(event: AuditEvent, principal: Principal, study: str) -> AuditEvent:
    """``event`` with identifier values replaced by ``None`` unless the principal may see them.

    Identifier values are the :data:`IDENTIFIER_FIELDS` of the entity type, and every value
    under the :data:`IDENTIFIERS_KEY` of a before/after mapping (form saves put the values
    of identifier items there).
    """
    fields = IDENTIFIER_FIELDS.get(event.entity_type, frozenset())
    if event.site and may_see_identifiers(principal, study, event.site):
        return event

    def masked(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = {key: None if key in fields else item for key, item in value.items()}
        identifiers = out.get(IDENTIFIERS_KEY)
        if isinstance(identifiers, dict):
            out[IDENTIFIERS_KEY] = dict.fromkeys(identifiers)
        return out

    return AuditEvent(
        **{**event.payload(), "before": masked(event.before), "after": masked(event.after)},
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


class AuditRepository:
    """A study's audit chain, narrowed to the sites where the principal may read it."""

    def __init__(self, connection: Connection, principal: Principal) -> None:
        self.connection = connection
        self.principal = principal

    def study_events(self, study: str, *, after_seq: int = 0, limit: int = 100) -> list[AuditEvent]:
        """Events of ``study``'s chain after ``after_seq``, oldest first.

        Events without a site (study-wide changes) are shown only to principals who may
        read the trail at every site.
        """
        if not sees_study(self.principal, study):
            return []
        scope = site_scope(self.principal, study, Action.AUDIT_READ)
        site_ok = sa.true() if scope.every_site else _in_scope(audit_event.c.site, scope)
        query = (
            sa.select(audit_event)
            .where(audit_event.c.chain == study, audit_event.c.seq > after_seq, site_ok)
            .order_by(audit_event.c.seq)
            .limit(limit)
        )
        return [
            mask_event(row_event(row), self.principal, study)
            for row in self.connection.execute(query)
        ]

    def node_events(self, *, after_seq: int = 0, limit: int = 100) -> list[AuditEvent]:
        """Events of the node chain (accounts, logins, grants, tokens), oldest first."""
        if not can(self.principal, Action.NODE_AUDIT_READ, Resource()):
            return []
        query = (
            sa.select(audit_event)
            .where(audit_event.c.chain == NODE_CHAIN, audit_event.c.seq > after_seq)
            .order_by(audit_event.c.seq)
            .limit(limit)
        )
        return [row_event(row) for row in self.connection.execute(query)]

    def history(
        self,
        study: str,
        entity_id: str,
        *,
        descendants: bool = False,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[AuditEvent]:
        """Events of ``study`` about one entity (and, with ``descendants``, the entities
        under it: ``study/subject/...``), oldest first, identifiers masked.

        The caller has already found the entity through a site-scoped repository.
        """
        match = audit_event.c.entity_id == entity_id
        if descendants:
            escaped = entity_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            match = sa.or_(match, audit_event.c.entity_id.like(f"{escaped}/%", escape="\\"))
        query = (
            sa.select(audit_event)
            .where(audit_event.c.chain == study, match)
            .order_by(audit_event.c.seq)
            .limit(limit)
            .offset(offset)
        )
        return [
            mask_event(row_event(row), self.principal, study)
            for row in self.connection.execute(query)
        ]
