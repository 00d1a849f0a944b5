"""Personal API tokens: create (shown once), list, revoke — each audited on the node chain.

A person manages their own tokens; a node administrator (``user.manage``) may manage
anyone's. A request authenticated *by a token* — scoped to studies or not — cannot create
tokens: a stolen token must not be able to mint a wider or longer-lived one. Tokens are
created by a signed-in person (web session, with its CSRF token) or at the node's shell
(``consortia token create``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal
from consortia.auth.tokens import MAX_TOKEN_LIFETIME, display_prefix, hash_token, new_token
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.services.common import check_code, normalise_email, utc_now
from consortia.services.unit_of_work import reading, writing
from consortia.storage.repositories import TokenRecord, TokenRepository, UserRepository

__all__ = [
    "CreatedToken",
    "TokenRecord",
    "create_token",
    "list_tokens",
    "revoke_token",
]


@dataclass(frozen=True, slots=True)
class CreatedToken:
    """A new token: its record and its secret, which is never shown again."""

    record: TokenRecord
    secret: str


def _owner_id(engine: Engine, principal: Principal, email: str | None) -> int:
    """The user whose tokens are meant; someone else's needs ``user.manage``."""
    if email is None or normalise_email(email) == principal.email:
        return principal.user_id
    if not can(principal, Action.USER_MANAGE, Resource()):
        raise PermissionDeniedError("only a node administrator manages other people's tokens")
    with reading(engine, principal) as work:
        user = UserRepository(work.connection).by_email(normalise_email(email))
    if user is None:
        raise NotFoundError(f"user {email} not found")
    return user.id


def create_token(
    engine: Engine,
    principal: Principal,
    *,
    name: str,
    lifetime: timedelta,
    studies: Sequence[str] | None,
    email: str | None = None,
    now: datetime | None = None,
) -> CreatedToken:
    """Create a token for ``email`` (default: the principal) valid for ``lifetime``.

    ``studies`` limits the token to those studies; ``None`` lets it act in all of its
    owner's studies (and with node-level roles).
    """
    if principal.by_token:
        raise PermissionDeniedError(
            "an API token cannot create tokens; sign in (web session) to create one"
        )
    name = name.strip()
    problems = []
    if not 1 <= len(name) <= 100:
        problems.append(Problem("name", "give the token a name of 1-100 characters"))
    if lifetime <= timedelta(0) or lifetime > MAX_TOKEN_LIFETIME:
        problems.append(Problem("expires", f"use 1 minute to {MAX_TOKEN_LIFETIME.days} days"))
    if studies is not None and not studies:
        problems.append(Problem("studies", "name at least one study, or none for all studies"))
    if problems:
        raise ValidationError(problems)
    scope = None if studies is None else sorted({check_code(s, "study") for s in studies})
    owner_id = _owner_id(engine, principal, email)
    now = now or utc_now()
    secret = new_token()
    with writing(engine, principal) as work:
        owner = UserRepository(work.connection).by_id(owner_id)
        if owner is None:  # pragma: no cover - a CLI operator's id 0 is never an owner
            raise NotFoundError("the token's owner does not exist")
        tokens = TokenRepository(work.connection)
        token_id = tokens.add(
            user_id=owner_id,
            name=name,
            token_hash=hash_token(secret),
            prefix=display_prefix(secret),
            studies=scope,
            now=now,
            expires_at=now + lifetime,
        )
        record = tokens.of_user(owner_id, token_id)[0]
        work.audit(
            "token.create",
            "api_token",
            token_id,
            after={
                "owner": owner.email,
                "name": name,
                "prefix": record.prefix,
                "studies": scope,
                "expires_at": record.expires_at.isoformat(),
            },
        )
    return CreatedToken(record, secret)


def list_tokens(
    engine: Engine, principal: Principal, *, email: str | None = None
) -> list[TokenRecord]:
    """The tokens of ``email`` (default: the principal), newest last."""
    owner_id = _owner_id(engine, principal, email)
    with reading(engine, principal) as work:
        return TokenRepository(work.connection).of_user(owner_id)


def revoke_token(
    engine: Engine,
    principal: Principal,
    token_id: int,
    *,
    email: str | None = None,
    now: datetime | None = None,
) -> TokenRecord:
    """Revoke token ``token_id`` of ``email`` (default: the principal); it stops at once."""
    owner_id = _owner_id(engine, principal, email)
    with writing(engine, principal) as work:
        tokens = TokenRepository(work.connection)
        found = tokens.of_user(owner_id, token_id)
        if not found:
            raise NotFoundError(f"token {token_id} not found")
        if found[0].revoked_at is not None:
            raise ConflictError(f"token {token_id} is already revoked")
        tokens.update(token_id, revoked_at=now or utc_now())
        work.audit(
            "token.revoke",
            "api_token",
            token_id,
            before={"name": found[0].name, "prefix": found[0].prefix},
        )
        return tokens.of_user(owner_id, token_id)[0]
