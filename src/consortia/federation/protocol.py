"""The messages nodes exchange, versioned, and the canonical JSON they are signed over.

Every message on the wire is a *signed message*::

    {"envelope": {"sender", "timestamp", "nonce", "body_sha256", "signature"},
     "body": {...}}

The body is an :class:`AnalysisTask` (lead → node) or a :class:`NodeReply` (node → lead).
``body_sha256`` is the SHA-256 of the body's canonical JSON and the signature covers the
canonical JSON of the other four envelope fields (see :mod:`consortia.federation.signing`).

Canonical JSON is UTF-8, keys sorted, no insignificant whitespace, no NaN/Infinity; Python
floats round-trip exactly through it, so a body re-serialised by the receiver hashes the same.

>>> canonical_json({"b": 1, "a": [1.5, None, "é"]})
b'{"a":[1.5,null,"\xc3\xa9"],"b":1}'
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PROTOCOL_VERSION",
    "AnalysisTask",
    "Envelope",
    "NodeReply",
    "ReplyStatus",
    "canonical_json",
    "new_id",
    "sha256_hex",
]

PROTOCOL_VERSION = 1

ReplyStatus = Literal["ok", "refused", "pending"]


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` as canonical JSON bytes (sorted keys, compact, UTF-8, finite)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 digest of ``data``.

    >>> sha256_hex(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def new_id() -> str:
    """Return a random 128-bit identifier as 32 hex characters."""
    return secrets.token_hex(16)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(_Message):
    """Who sent a body, when, and the signature binding them to the body's hash."""

    sender: str = Field(min_length=1, max_length=200)
    timestamp: str = Field(min_length=1, max_length=64)
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    body_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(min_length=1, max_length=200)

    def signed_part(self) -> dict[str, str]:
        """The fields the signature covers (everything but the signature)."""
        return {
            "sender": self.sender,
            "timestamp": self.timestamp,
            "nonce": self.nonce,
            "body_sha256": self.body_sha256,
        }


class AnalysisTask(_Message):
    """One round of an analysis, sent by the lead to one node.

    ``session`` groups the rounds of one analysis (the node keeps its prepared table for
    the session); ``payload`` carries what changes per round, such as Newton's ``beta``.
    """

    protocol: int = PROTOCOL_VERSION
    type: Literal["task"] = "task"
    task_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    session: str = Field(pattern=r"^[0-9a-f]{32}$")
    round: int = Field(ge=1)
    to: str = Field(min_length=1)
    request: dict[str, Any]
    payload: dict[str, Any] = Field(default_factory=dict)


class NodeReply(_Message):
    """A node's answer to one task: aggregates, a refusal naming its rule, or "pending".

    ``n`` is the number of rows the node analysed (0 unless ``status`` is ``"ok"``).
    ``approval_id`` names the approval-queue entry when manual approval is pending.
    """

    protocol: int = PROTOCOL_VERSION
    type: Literal["reply"] = "reply"
    task_id: str
    session: str
    round: int
    node: str
    status: ReplyStatus
    n: int = 0
    aggregates: dict[str, Any] | None = None
    rule: str | None = None
    message: str | None = None
    approval_id: str | None = None
