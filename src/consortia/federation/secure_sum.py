"""Secure aggregation: the lead learns the sum of the nodes' vectors, never one node's.

**Scheme** (pairwise additive masks, as in Bonawitz et al., "Practical Secure Aggregation",
CCS 2017, without its secret sharing of masks, which only serves to survive dropouts):

1. *Keys.* For one analysis session each node derives an X25519 key pair from its node key,
   the requester and the session id (HKDF-SHA256; any process of the node derives the same
   pair, nothing is stored) and announces the public key in its signed reply.
2. *Seeds.* The lead sends every participant's public key to every node in the next
   (signed) task. Each pair of nodes (i, j) computes the same X25519 shared secret and
   derives from it, by HKDF with the session and the pair's names, a seed only the two of
   them know.
3. *Masks.* Each seed is expanded by SHAKE-256 into one pseudo-random word per value. Node
   i adds the stream of every pair (i, j) with j after i (by name) and subtracts that of
   every pair with j before i: integers modulo 2^64, floats as fixed-point integers
   (``round(x · 2^60)``) modulo 2^128. Over all nodes every stream is added once and
   subtracted once, so the masks cancel in the sum and the lead decodes the exact total
   (integers to the last bit; a float total to 2^-60 absolute per node, which is 1e-12
   relative or better for totals above 1e-6; a float must be below 2^66 in magnitude).
4. *Dropouts.* Masks cancel only when every announced node's vector is in the sum: a
   node that announced its key and does not send its vector fails the round, naming the
   node (:func:`unmask`); nothing partial is decoded.

**Threat model.** The lead is honest but curious (it follows the protocol and looks at what
it receives) and colludes with no node. Each masked vector is then uniformly distributed
given everything the lead sees except the sum: the mask of node i includes a stream seeded
by a secret the lead cannot compute (X25519 between two nodes' private keys), so only the
total is learnt. With two nodes the total minus one's own share is the other's, so a node
refuses to take part with fewer than its policy's ``secure_min_nodes`` (default 3).
What it does not cover: a lead that substitutes its own public keys for the nodes' (a
man in the middle; nodes do not hold each other's keys to check the announcements), a
node colluding with the lead (together they learn the sum of the others), and what the
total itself says (the pooled cell rule applies to it: :mod:`.suppression`).

>>> from consortia.federation.signing import generate_key
>>> names = ["a", "b", "c"]
>>> keys = {name: session_key(generate_key(), "lead", "s1") for name in names}
>>> public = {name: public_key(key) for name, key in keys.items()}
>>> shares = [np.array([5, 1]), np.array([0, 2]), np.array([7, 3])]
>>> masked = {
...     name: mask(name, keys[name], public, "s1", share, np.array([0.5]))
...     for name, share in zip(names, shares)
... }
>>> integers, floats = unmask(masked, public)
>>> integers.tolist(), floats.tolist()
([12, 6], [1.5])
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from consortia.exceptions import FederationError, PolicyRefusal
from consortia.federation.policy import NodePolicy, Release

__all__ = [
    "FLOAT_MODULUS",
    "FLOAT_SCALE",
    "INTEGER_MODULUS",
    "check_participants",
    "mask",
    "public_key",
    "secure_release",
    "session_key",
    "unmask",
]

INTEGER_MODULUS = 2**64
FLOAT_MODULUS = 2**128
FLOAT_SCALE = 2**60
_FLOAT_LIMIT = 2.0**66
_INFO = b"consortia secure sum v1"


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def session_key(node_key: Ed25519PrivateKey, requester: str, session: str) -> X25519PrivateKey:
    """This node's X25519 key for one session, derived from its node key (the same in
    every process of the node; never stored)."""
    raw = node_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    info = b"|".join([_INFO, b"key", requester.encode(), session.encode()])
    return X25519PrivateKey.from_private_bytes(_hkdf(raw, info))


def public_key(key: X25519PrivateKey) -> str:
    """The session key's public half, base64 (what a node announces)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def _peer(key: str, name: str) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(base64.b64decode(key, validate=True))
    except (ValueError, binascii.Error):
        raise FederationError(f"secure sum: the key announced for {name!r} is not a key") from None


def check_participants(
    own: str,
    key: X25519PrivateKey,
    keys: Any,
    minimum: int,
) -> dict[str, str]:
    """The participants' announced keys as a round carries them, refused unless they hold
    this node's own key under its name and at least ``minimum`` nodes (the node policy's
    ``secure_min_nodes``): with fewer, the sum less one's own share would be another's."""
    if not isinstance(keys, Mapping) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in keys.items()
    ):
        raise FederationError("secure sum: the round must carry each participant's key")
    if keys.get(own) != public_key(key):
        raise PolicyRefusal(
            "secure_aggregation", "the round does not carry this node's own announced key"
        )
    if len(keys) < minimum:
        raise PolicyRefusal(
            "secure_aggregation",
            f"a secure sum needs at least {minimum} nodes at this node's policy; "
            f"the round has {len(keys)}",
        )
    if len(set(keys.values())) != len(keys):
        raise PolicyRefusal("secure_aggregation", "two participants announced the same key")
    return dict(keys)


def _masks(
    own: str, key: X25519PrivateKey, keys: Mapping[str, str], session: str, ints: int, floats: int
) -> tuple[npt.NDArray[np.uint64], list[int]]:
    integer_mask = np.zeros(ints, dtype=np.uint64)
    float_mask = [0] * floats
    for other in sorted(keys):
        if other == own:
            continue
        shared = key.exchange(_peer(keys[other], other))
        first, second = sorted([own, other])
        seed = _hkdf(
            shared, b"|".join([_INFO, b"pair", session.encode(), first.encode(), second.encode()])
        )
        stream = hashlib.shake_256(seed).digest(8 * ints + 16 * floats)
        words = np.frombuffer(stream[: 8 * ints], dtype="<u8").astype(np.uint64)
        wide = [
            int.from_bytes(stream[8 * ints + 16 * k : 8 * ints + 16 * (k + 1)], "little")
            for k in range(floats)
        ]
        if own == first:
            integer_mask += words  # wraps modulo 2^64
            float_mask = [(m + w) % FLOAT_MODULUS for m, w in zip(float_mask, wide, strict=True)]
        else:
            integer_mask -= words
            float_mask = [(m - w) % FLOAT_MODULUS for m, w in zip(float_mask, wide, strict=True)]
    return integer_mask, float_mask


def _fixed(value: float) -> int:
    if not np.isfinite(value) or abs(value) >= _FLOAT_LIMIT:
        raise FederationError("secure sum: a float must be finite and below 2^66 in magnitude")
    return round(value * FLOAT_SCALE) % FLOAT_MODULUS


def mask(
    own: str,
    key: X25519PrivateKey,
    keys: Mapping[str, str],
    session: str,
    integers: Sequence[int] | npt.NDArray[Any],
    floats: Sequence[float] | npt.NDArray[Any] = (),
) -> dict[str, Any]:
    """This node's share, masked: ``{"masked_integers": int64 words (the bits of the
    masked values modulo 2^64), "masked_floats": hex strings (modulo 2^128)}``."""
    values = np.asarray(integers, dtype=np.int64).reshape(-1)
    reals = np.asarray(floats, dtype=np.float64).reshape(-1)
    integer_mask, float_mask = _masks(own, key, keys, session, values.size, reals.size)
    masked = values.view(np.uint64) + integer_mask
    return {
        "masked_integers": masked.view(np.int64),
        "masked_floats": [
            format((_fixed(float(x)) + m) % FLOAT_MODULUS, "x")
            for x, m in zip(reals.tolist(), float_mask, strict=True)
        ],
    }


def unmask(
    replies: Mapping[str, Mapping[str, Any]], keys: Mapping[str, str]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The lead's sum of the masked shares: the totals. Every node whose key was announced
    must have sent its share, or the masks do not cancel: the round fails naming it."""
    missing = sorted(set(keys) - set(replies))
    if missing:
        raise FederationError(
            f"secure sum: node(s) {', '.join(missing)} announced a key but sent no share; "
            "the round fails (the masks cancel only over every announced node)"
        )
    total: npt.NDArray[np.uint64] | None = None
    wide: list[int] | None = None
    for name in sorted(keys):
        reply = replies[name]
        try:
            words = np.asarray(reply["masked_integers"], dtype=np.int64).reshape(-1)
            reals = [int(text, 16) % FLOAT_MODULUS for text in reply["masked_floats"]]
        except (KeyError, TypeError, ValueError):
            raise FederationError(f"node {name!r} sent a malformed secure share") from None
        if total is not None and (
            words.size != total.size or wide is None or len(reals) != len(wide)
        ):
            raise FederationError(f"node {name!r} sent a share of another size")
        unsigned = words.view(np.uint64)
        total = unsigned.copy() if total is None else total + unsigned
        wide = (
            reals
            if wide is None
            else [(a + b) % FLOAT_MODULUS for a, b in zip(wide, reals, strict=True)]
        )
    if total is None or wide is None:
        raise FederationError("secure sum: no participants")
    floats = [
        (value - FLOAT_MODULUS if value >= FLOAT_MODULUS // 2 else value) / FLOAT_SCALE
        for value in wide
    ]
    return total.view(np.int64), np.asarray(floats, dtype=np.float64)


def secure_release(
    release: Release,
    *,
    node: str,
    node_key: Ed25519PrivateKey,
    requester: str,
    session: str,
    payload: Mapping[str, Any],
    policy: NodePolicy,
) -> Release:
    """Apply a kind's secure-sum step to its release (a release without one is unchanged):
    announce this node's session key (with the minimum cell count the pooled total must
    meet), or mask its share under the participants' keys the round carries."""
    spec = release.secure
    if spec is None:
        return release
    key = session_key(node_key, requester, session)
    if spec.get("announce"):
        extra: dict[str, Any] = {
            "secure_key": public_key(key),
            "min_cell_count": policy.min_cell_count,
        }
    else:
        keys = check_participants(node, key, payload.get("keys"), policy.secure_min_nodes)
        extra = mask(node, key, keys, session, spec["integers"], spec.get("floats", ()))
    return dataclasses.replace(release, aggregates={**release.aggregates, **extra})
