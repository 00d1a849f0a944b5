"""Node keys, the trust store of peers, and signing/verifying every message.

Each node holds one Ed25519 key (PEM, file mode 0600) and a trust store naming its peers
with their URL and public key. Every task and every reply travels as a signed message
(:mod:`consortia.federation.protocol`); :class:`Verifier` refuses, each with its own rule:

========================  =========================================================
rule                      refused when
========================  =========================================================
``signature.unsigned``    the message has no (well-formed) envelope
``signature.untrusted_key`` the sender is not in the trust store, or is revoked
``signature.bad_signature`` the signature does not verify with the sender's key
``signature.body_hash``   the body does not hash to the signed ``body_sha256``
``signature.clock_skew``  the timestamp is more than ``clock_skew_seconds`` away
``signature.replay``      the sender already used this nonce within the skew window
========================  =========================================================

>>> key = generate_key()
>>> trust = TrustStore([Peer(name="lead", url="http://lead", public_key=public_key_b64(key))])
>>> message = sign_message({"hello": 1}, key, "lead")
>>> Verifier(trust).verify(message)
('lead', {'hello': 1})
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from consortia.exceptions import ConfigurationError, SignatureError
from consortia.federation.protocol import Envelope, canonical_json, sha256_hex

__all__ = [
    "MemoryNonces",
    "MessageRejected",
    "NonceStore",
    "Peer",
    "TrustStore",
    "Verifier",
    "generate_key",
    "load_key",
    "node_identity",
    "public_key_b64",
    "save_key",
    "sign_message",
    "sign_message_wire",
    "utc_timestamp",
]

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MessageRejected(SignatureError):
    """A signed message was refused; ``rule`` names the check that failed."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.detail = message
        super().__init__(f"{rule}: {message}")


# --------------------------------------------------------------------------- keys


def generate_key() -> Ed25519PrivateKey:
    """Return a new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def save_key(key: Ed25519PrivateKey, path: Path, *, overwrite: bool = False) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM readable by its owner only (mode 0600).

    Refuses to replace an existing file unless ``overwrite`` is true: losing a node key
    means every peer must re-trust the node.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigurationError(
            f"{path}: a key file already exists; refusing to overwrite it"
        ) from None
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(pem)


def load_key(path: Path) -> Ed25519PrivateKey:
    """Read a node key written by :func:`save_key`; refuse files others may read."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the node key ({exc.strerror})") from None
    if os.name == "posix" and mode & 0o077:
        raise ConfigurationError(
            f"{path}: the node key is readable by others (mode {mode & 0o777:o}); "
            f"run chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{path}: the node key must be Ed25519")
    return key


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return the raw 32-byte public key in standard base64 (what peers put in trust stores)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def node_identity(name: str, url: str, key: Ed25519PrivateKey) -> str:
    """Return the line a node operator gives to peers: ``name url public_key``.

    >>> node_identity("a", "http://a", generate_key()).count(" ")
    2
    """
    return f"{name} {url} {public_key_b64(key)}"


def _decode_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("public_key must be base64") from None
    if len(raw) != 32:
        raise ValueError(f"public_key must be 32 raw bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


# --------------------------------------------------------------------------- trust store


class Peer(BaseModel):
    """A node this node trusts: its name, URL and base64 raw Ed25519 public key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    url: str = ""
    public_key: str
    trusted: bool = True

    @field_validator("public_key")
    @classmethod
    def _valid_key(cls, value: str) -> str:
        _decode_public_key(value)
        return value


class TrustStore:
    """The peers a node accepts messages from, keyed by name."""

    def __init__(self, peers: Iterable[Peer] = ()) -> None:
        self._peers: dict[str, Peer] = {}
        self._keys: dict[str, Ed25519PublicKey] = {}
        for peer in peers:
            self.add(peer)

    def add(self, peer: Peer) -> None:
        """Add or replace a peer."""
        self._peers[peer.name] = peer
        self._keys[peer.name] = _decode_public_key(peer.public_key)

    def remove(self, name: str) -> None:
        """Forget a peer (messages from it are refused from now on)."""
        self._peers.pop(name, None)
        self._keys.pop(name, None)

    def get(self, name: str) -> Peer | None:
        """Return the peer called ``name``, or ``None``."""
        return self._peers.get(name)

    def public_key(self, name: str) -> Ed25519PublicKey | None:
        """Return the decoded public key of a trusted peer, or ``None``."""
        peer = self._peers.get(name)
        return self._keys[name] if peer is not None and peer.trusted else None

    @property
    def peers(self) -> list[Peer]:
        """All peers, sorted by name."""
        return [self._peers[name] for name in sorted(self._peers)]

    @classmethod
    def load(cls, path: Path) -> TrustStore:
        """Read ``{peers: [{name, url, public_key, trusted}]}`` from a YAML or JSON file."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigurationError(
                f"{path}: cannot read the trust store ({exc.strerror})"
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path}: not valid YAML/JSON ({exc})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<trust>") -> TrustStore:
        """Build a trust store from ``{peers: [...]}`` (or a bare list of peers)."""
        entries = data.get("peers", []) if isinstance(data, Mapping) else data
        if not isinstance(entries, list):
            raise ConfigurationError(f"{source}: peers must be a list")
        peers = []
        for index, entry in enumerate(entries):
            try:
                peers.append(Peer.model_validate(entry))
            except PydanticValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ConfigurationError(
                    f"{source}: peers[{index}].{where}: {first['msg']}"
                ) from None
        return cls(peers)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{peers: [...]}`` as plain JSON values."""
        return {"peers": [peer.model_dump() for peer in self.peers]}

    def save(self, path: Path) -> None:
        """Write the trust store (JSON if the name ends in ``.json``, otherwise YAML)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


# --------------------------------------------------------------------------- sign / verify


def utc_timestamp(moment: datetime | None = None) -> str:
    """Return an ISO 8601 UTC timestamp with microseconds (``…+00:00``)."""
    return (moment or _utc_now()).astimezone(UTC).isoformat(timespec="microseconds")


def _envelope(
    body_json: bytes,
    key: Ed25519PrivateKey,
    sender: str,
    now: datetime | None,
    nonce: str | None,
) -> dict[str, str]:
    signed = {
        "sender": sender,
        "timestamp": utc_timestamp(now),
        "nonce": nonce or secrets.token_hex(16),
        "body_sha256": sha256_hex(body_json),
    }
    signature = key.sign(canonical_json(signed))
    return {**signed, "signature": base64.b64encode(signature).decode("ascii")}


def sign_message(
    body: Mapping[str, Any],
    key: Ed25519PrivateKey,
    sender: str,
    *,
    now: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Wrap ``body`` in a signed envelope: ``{"envelope": {...}, "body": body}``."""
    envelope = _envelope(canonical_json(body), key, sender, now, nonce)
    return {"envelope": envelope, "body": dict(body)}


def sign_message_wire(
    body: Mapping[str, Any],
    key: Ed25519PrivateKey,
    sender: str,
    *,
    now: datetime | None = None,
    nonce: str | None = None,
) -> bytes:
    """The canonical JSON of :func:`sign_message`'s result, serialising ``body`` only once.

    The body's canonical bytes are hashed for the envelope and spliced into the message as
    they are (keys sort as ``body`` < ``envelope``), so a large body costs one serialisation
    and one hash.

    >>> key, when = generate_key(), datetime(2026, 1, 1, tzinfo=UTC)
    >>> wire = sign_message_wire({"a": [1.5]}, key, "lead", now=when, nonce="0" * 32)
    >>> wire == canonical_json(sign_message({"a": [1.5]}, key, "lead", now=when, nonce="0" * 32))
    True
    """
    body_json = canonical_json(body)
    envelope = _envelope(body_json, key, sender, now, nonce)
    return _BODY_PREFIX + body_json + _ENVELOPE_INFIX + canonical_json(envelope) + b"}"


_BODY_PREFIX = b'{"body":'
_ENVELOPE_INFIX = b',"envelope":'


def _wire_body(wire: bytes, envelope: Any) -> bytes | None:
    """The body's bytes inside ``wire`` when it is laid out canonically, else ``None``.

    A canonical message is ``{"body":BODY,"envelope":ENVELOPE}``; with the envelope
    re-serialised as the suffix, what lies between is BODY's exact text.
    """
    if not wire.startswith(_BODY_PREFIX):
        return None
    try:
        suffix = _ENVELOPE_INFIX + canonical_json(envelope) + b"}"
    except (TypeError, ValueError):
        return None
    if len(wire) < len(_BODY_PREFIX) + len(suffix) or not wire.endswith(suffix):
        return None
    return wire[len(_BODY_PREFIX) : len(wire) - len(suffix)]


class NonceStore(Protocol):
    """Where a verifier remembers the nonces of the messages it accepted."""

    def remember(self, sender: str, nonce: str, until: datetime, now: datetime) -> bool:
        """Record ``(sender, nonce)`` until ``until``; False if it is recorded already."""
        ...


class MemoryNonces:
    """Nonces in this process's memory: for a lead, or a node served by one process
    without a database (a node with one keeps them there: a restart or another process
    of the node must refuse a replay too)."""

    def __init__(self, max_nonces: int = 1_000_000) -> None:
        self._max_nonces = max_nonces
        self._seen: dict[tuple[str, str], datetime] = {}
        self._last_pruned = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def remember(self, sender: str, nonce: str, until: datetime, now: datetime) -> bool:
        with self._lock:
            self._forget_expired(now)
            key = (sender, nonce)
            if key in self._seen:
                return False
            if len(self._seen) >= self._max_nonces:
                raise MessageRejected(
                    "signature.replay", "too many recent messages to remember; try again shortly"
                )
            self._seen[key] = until
            return True

    def _forget_expired(self, now: datetime) -> None:
        # Pruning walks every remembered nonce; once a second is plenty.
        if now - self._last_pruned < timedelta(seconds=1):
            return
        self._last_pruned = now
        expired = [key for key, until in self._seen.items() if until < now]
        for key in expired:
            del self._seen[key]


class Verifier:
    """Checks signed messages against a trust store and remembers nonces.

    A nonce is remembered until its message's timestamp leaves the skew window, so a
    replay is refused for as long as the message could otherwise be accepted; ``nonces``
    says where (default: this process's memory).
    """

    def __init__(
        self,
        trust: TrustStore,
        *,
        clock_skew_seconds: float = 300.0,
        clock: Clock = _utc_now,
        max_nonces: int = 1_000_000,
        nonces: NonceStore | None = None,
    ) -> None:
        self.trust = trust
        self.skew = timedelta(seconds=clock_skew_seconds)
        self._clock = clock
        self.nonces: NonceStore = nonces if nonces is not None else MemoryNonces(max_nonces)

    def verify(self, message: Any, *, wire: bytes | None = None) -> tuple[str, dict[str, Any]]:
        """Return ``(sender, body)`` of a valid message; raise :class:`MessageRejected`.

        ``wire``, when given, must be the exact bytes ``message`` was parsed from: if they
        are laid out canonically the body hash is checked on the body's own bytes, without
        serialising the body again (a body whose bytes hash to the signed digest is, short
        of a SHA-256 collision, the signed canonical text, so its parse is the signed body).
        """
        if not isinstance(message, Mapping) or not isinstance(message.get("body"), Mapping):
            raise MessageRejected("signature.unsigned", "the message has no body to verify")
        raw_envelope = message.get("envelope")
        if raw_envelope is None:
            raise MessageRejected("signature.unsigned", "the message carries no signed envelope")
        try:
            envelope = Envelope.model_validate(raw_envelope)
        except PydanticValidationError as exc:
            fields = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
            raise MessageRejected(
                "signature.unsigned", f"the envelope is malformed (fields: {', '.join(fields)})"
            ) from None
        sender = envelope.sender
        public_key = self.trust.public_key(sender)
        if public_key is None:
            peer = self.trust.get(sender)
            reason = "is revoked" if peer is not None else "is not in the trust store"
            raise MessageRejected("signature.untrusted_key", f"sender {sender!r} {reason}")
        try:
            signature = base64.b64decode(envelope.signature, validate=True)
            public_key.verify(signature, canonical_json(envelope.signed_part()))
        except (InvalidSignature, binascii.Error, ValueError):
            raise MessageRejected(
                "signature.bad_signature",
                f"the signature does not verify with {sender!r}'s public key",
            ) from None
        body = dict(message["body"])
        body_json = _wire_body(wire, raw_envelope) if wire is not None else None
        digest = sha256_hex(body_json) if body_json is not None else ""
        if digest != envelope.body_sha256:
            try:
                digest = sha256_hex(canonical_json(body))
            except (TypeError, ValueError):
                digest = ""
        if digest != envelope.body_sha256:
            raise MessageRejected(
                "signature.body_hash", "the body does not match the signed body_sha256"
            )
        self._check_time_and_nonce(sender, envelope)
        return sender, body

    def _check_time_and_nonce(self, sender: str, envelope: Envelope) -> None:
        try:
            sent = datetime.fromisoformat(envelope.timestamp)
        except ValueError:
            raise MessageRejected(
                "signature.clock_skew", f"timestamp {envelope.timestamp!r} is not ISO 8601"
            ) from None
        if sent.tzinfo is None:
            raise MessageRejected(
                "signature.clock_skew", f"timestamp {envelope.timestamp!r} has no time zone"
            )
        now = self._clock()
        offset = (now - sent).total_seconds()
        if abs(offset) > self.skew.total_seconds():
            raise MessageRejected(
                "signature.clock_skew",
                f"the message is {abs(offset):.0f} s {'old' if offset > 0 else 'in the future'}; "
                f"at most {self.skew.total_seconds():.0f} s is accepted",
            )
        if not self.nonces.remember(sender, envelope.nonce, sent + self.skew, now):
            raise MessageRejected(
                "signature.replay", f"nonce {envelope.nonce} from {sender!r} was already used"
            )
