"""Head statements: what a node signs about its chain heads and its peers keep, checked
against the node's own key, and compared with the trail (truncated, forked, missing).

Sending, keeping and serving them is :class:`consortia.federation.witness.HeadWitness`;
:mod:`consortia.federation.witness` re-exports these names.

>>> from consortia.federation.signing import generate_key
>>> key = generate_key()
>>> message = sign_statement([ChainHead("S1", 3, "a" * 64)], key, "sgh")
>>> verify_own_statement(message, key, "sgh").chains[0].length
3
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Engine

from consortia.federation.protocol import (
    PROTOCOL_VERSION,
    Envelope,
    canonical_json,
    sha256_hex,
)
from consortia.federation.signing import (
    sign_message,
    utc_timestamp,
)
from consortia.storage.witness import (
    ChainHead,
    event_hash_at,
    trail_heads,
)

__all__ = [
    "MAX_CHAINS",
    "HeadStatement",
    "HeldRequest",
    "PeerOutcome",
    "StatedHead",
    "WitnessFinding",
    "WitnessRefused",
    "WitnessReport",
    "Witnessed",
    "check_goes_on",
    "check_witnessed",
    "parse_message",
    "sign_statement",
    "verify_own_statement",
]

MAX_CHAINS = 100_000
_M = TypeVar("_M", bound="_Message")


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatedHead(_Message):
    """One chain in a head statement."""

    chain: str = Field(min_length=1, max_length=128)
    length: int = Field(ge=1)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class HeadStatement(_Message):
    """A node's signed word on its chain heads at ``at`` (the body of a signed message)."""

    protocol: int = PROTOCOL_VERSION
    type: Literal["heads"] = "heads"
    node: str = Field(min_length=1, max_length=200)
    at: str = Field(min_length=1, max_length=64)
    chains: list[StatedHead] = Field(max_length=MAX_CHAINS)

    def heads_sha256(self) -> str:
        """The hash of the chains alone: two statements of the same heads share it."""
        return sha256_hex(canonical_json([head.model_dump() for head in self.chains]))


class HeldRequest(_Message):
    """A node asking a peer for the newest statement the peer holds about it."""

    protocol: int = PROTOCOL_VERSION
    type: Literal["witness_request"] = "witness_request"
    node: str = Field(min_length=1, max_length=200)


class WitnessRefused(Exception):
    """A statement or request was refused; ``rule`` names why, ``status`` the HTTP status."""

    def __init__(self, rule: str, message: str, status: int = 400) -> None:
        self.rule = rule
        self.status = status
        self.detail = message
        super().__init__(f"{rule}: {message}")


def sign_statement(
    heads: Sequence[ChainHead], key: Ed25519PrivateKey, node: str, *, at: str | None = None
) -> dict[str, Any]:
    """The signed head statement of ``node`` for ``heads``."""
    body = HeadStatement(
        node=node,
        at=at or utc_timestamp(),
        chains=[StatedHead(chain=h.chain, length=h.length, hash=h.hash) for h in heads],
    )
    return sign_message(body.model_dump(), key, node)


def verify_own_statement(message: Any, key: Ed25519PrivateKey, node: str) -> HeadStatement:
    """Check that ``message`` is a head statement ``node`` signed with ``key`` (its own).

    Unlike :meth:`Verifier.verify` there is no clock or nonce check: a statement a peer
    kept is old by design; what matters is that only this node's key could have made it.
    """
    if not isinstance(message, Mapping) or not isinstance(message.get("body"), Mapping):
        raise WitnessRefused("witness.malformed", "the statement has no body")
    try:
        envelope = Envelope.model_validate(message.get("envelope"))
        body = HeadStatement.model_validate(message["body"])
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "statement"
        raise WitnessRefused("witness.malformed", f"{where}: {first['msg']}") from None
    if envelope.sender != node or body.node != node:
        raise WitnessRefused(
            "witness.not_own_heads", f"the statement is by {envelope.sender!r}, not {node!r}"
        )
    try:
        signature = base64.b64decode(envelope.signature, validate=True)
        key.public_key().verify(signature, canonical_json(envelope.signed_part()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise WitnessRefused(
            "signature.bad_signature", f"the statement was not signed with {node!r}'s key"
        ) from None
    if sha256_hex(canonical_json(dict(message["body"]))) != envelope.body_sha256:
        raise WitnessRefused("signature.body_hash", "the statement's body was changed")
    return body


@dataclass(frozen=True, slots=True)
class PeerOutcome:
    """What one peer answered to a push or a fetch (``ok`` false: ``detail`` says why)."""

    peer: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Witnessed:
    """The newest statement one peer holds about this node, its signature checked."""

    peer: str
    statement: HeadStatement


@dataclass(frozen=True, slots=True)
class WitnessFinding:
    """A difference between the trail and what a peer witnessed."""

    peer: str
    chain: str
    kind: Literal["truncated", "forked", "missing"]
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class WitnessReport:
    """What ``consortia audit verify --node-config`` found against the witnessed heads."""

    witnessed: list[Witnessed]
    findings: list[WitnessFinding]
    failures: list[PeerOutcome]

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def complete(self) -> bool:
        """Whether at least one peer answered and none failed."""
        return bool(self.witnessed) and not self.failures

    def lines(self) -> list[str]:
        out = [str(finding) for finding in self.findings]
        out += [f"peer {f.peer}: {f.detail}" for f in self.failures]
        for item in self.witnessed:
            chains = len(item.statement.chains)
            out.append(
                f"peer {item.peer} witnessed {chains} chains at {item.statement.at}"
                + ("" if self.findings else ": the trail holds them")
            )
        if not self.witnessed:
            out.append("no peer gave witnessed heads: the trail could not be checked against them")
        return out


def check_witnessed(engine: Engine, witnessed: Sequence[Witnessed]) -> list[WitnessFinding]:
    """Compare the trail's events with each witnessed statement."""
    findings: list[WitnessFinding] = []
    with engine.connect() as connection:
        heads = {head.chain: head for head in trail_heads(connection)}
        for item in witnessed:
            peer, at = item.peer, item.statement.at
            for stated in item.statement.chains:
                local = heads.get(stated.chain)
                if local is None:
                    findings.append(
                        WitnessFinding(
                            peer,
                            stated.chain,
                            "missing",
                            f"chain {stated.chain!r} has no events, but {peer} witnessed "
                            f"{stated.length} at {at} (the whole chain was removed)",
                        )
                    )
                    continue
                if local.length < stated.length:
                    findings.append(
                        WitnessFinding(
                            peer,
                            stated.chain,
                            "truncated",
                            f"chain {stated.chain!r} ends at event {local.length}, but {peer} "
                            f"witnessed {stated.length} events at {at} (events at the end "
                            "were removed)",
                        )
                    )
                    continue
                found = event_hash_at(connection, stated.chain, stated.length)
                if found != stated.hash:
                    findings.append(
                        WitnessFinding(
                            peer,
                            stated.chain,
                            "forked",
                            f"chain {stated.chain!r} event {stated.length} has hash "
                            f"{(found or 'none')[:16]}…, but {peer} witnessed "
                            f"{stated.hash[:16]}… at {at} (the history up to it was rewritten)",
                        )
                    )
    return findings


def check_goes_on(earlier: HeadStatement, statement: HeadStatement) -> None:
    """Refuse a statement that does not continue the one kept before it: a chain gone,
    shorter, or with another last hash at the same length (a node whose trail was cut
    short or rewritten since)."""
    now = {head.chain: head for head in statement.chains}
    problems = []
    for head in earlier.chains:
        new = now.get(head.chain)
        if new is None:
            problems.append(f"chain {head.chain!r} is gone (it had {head.length} events)")
        elif new.length < head.length:
            problems.append(f"chain {head.chain!r} went from {head.length} to {new.length} events")
        elif new.length == head.length and new.hash != head.hash:
            problems.append(f"chain {head.chain!r} event {head.length} has another hash")
    if problems:
        raise WitnessRefused(
            "witness.rollback",
            f"these heads do not continue those kept from {earlier.at}: " + "; ".join(problems),
            409,
        )


def parse_message(model: type[_M], body: Mapping[str, Any]) -> _M:
    if body.get("protocol") != PROTOCOL_VERSION:
        raise WitnessRefused(
            "protocol_version",
            f"this node speaks protocol {PROTOCOL_VERSION}, not {body.get('protocol')!r}",
        )
    try:
        return model.model_validate(body)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise WitnessRefused("witness.malformed", f"{where}: {first['msg']}") from None
