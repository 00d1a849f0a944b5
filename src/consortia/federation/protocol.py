"""The messages nodes exchange, versioned, and the canonical JSON they are signed over.

Every message on the wire is a *signed message*::

    {"envelope": {"sender", "timestamp", "nonce", "body_sha256", "signature"},
     "body": {...}}

The body is an :class:`AnalysisTask` (lead → node) or a :class:`NodeReply` (node → lead).
``body_sha256`` is the SHA-256 of the body's canonical JSON and the signature covers the
canonical JSON of the other four envelope fields (see :mod:`consortia.federation.signing`).

Canonical JSON is UTF-8, keys sorted, no insignificant whitespace, no NaN/Infinity; Python
floats round-trip exactly through it, so a body re-serialised by the receiver hashes the same.
It is the one :func:`consortia.hashchain.canonical_json` the audit chains hash too.

>>> canonical_json({"b": 1, "a": [1.5, None, "é"]})
b'{"a":[1.5,null,"\xc3\xa9"],"b":1}'

Numeric arrays in aggregates travel compactly: :func:`encode_arrays` turns every numpy array
in a JSON value into ``{"__ndarray__": base64 of the little-endian bytes, "dtype": "<f8" or
"<i8", "shape": [...]}`` and :func:`decode_arrays` turns it back, bit for bit (so exactness is
untouched, and the body hash covers the encoded text). A float array is about 10.7 bytes per
number instead of ~20 as JSON text, and costs no per-number formatting or parsing.

>>> wire = encode_arrays({"x": np.array([0.1, -2.0]), "n": 3})
>>> wire["x"]["dtype"], wire["x"]["shape"]
('<f8', [2])
>>> back = decode_arrays(wire)
>>> back["x"].tolist(), back["n"]
([0.1, -2.0], 3)
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from consortia.exceptions import FederationError
from consortia.hashchain import canonical_json, sha256_hex

__all__ = [
    "PROTOCOL_VERSION",
    "AnalysisTask",
    "Envelope",
    "NodeReply",
    "ReplyStatus",
    "WireMessage",
    "canonical_json",
    "decode_arrays",
    "encode_arrays",
    "new_id",
    "sha256_hex",
    "wire_size",
]

PROTOCOL_VERSION = 1
NDARRAY_KEY = "__ndarray__"
_WIRE_DTYPES = {"<f8": np.dtype("<f8"), "<i8": np.dtype("<i8")}
_SCALARS = frozenset({int, float, str, bool, type(None)})

ReplyStatus = Literal["ok", "refused", "pending"]


def _encode_array(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    if array.dtype.kind == "f":
        wire = np.ascontiguousarray(array, dtype="<f8")
        dtype = "<f8"
    elif array.dtype.kind in "iub":
        wire = np.ascontiguousarray(array, dtype="<i8")
        dtype = "<i8"
    else:
        raise TypeError(f"cannot send an array of {array.dtype} (only numbers)")
    return {
        NDARRAY_KEY: base64.b64encode(wire.data).decode("ascii"),
        "dtype": dtype,
        "shape": list(array.shape),
    }


def encode_arrays(value: Any) -> Any:
    """Return ``value`` with every numpy array replaced by its compact wire form.

    Dicts, lists and tuples are walked (tuples become lists); everything else is returned
    as it is, so the result is plain JSON when the rest of ``value`` is.
    """
    if isinstance(value, np.ndarray):
        return _encode_array(value)
    if isinstance(value, Mapping):
        return {key: encode_arrays(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if _SCALARS.issuperset(map(type, value)):
            return list(value)  # a list of numbers or strings: nothing to walk
        return [encode_arrays(item) for item in value]
    return value


def _decode_array(data: Mapping[str, Any]) -> np.ndarray[Any, Any]:
    text, dtype, shape = data.get(NDARRAY_KEY), data.get("dtype"), data.get("shape")
    if (
        set(data) != {NDARRAY_KEY, "dtype", "shape"}
        or not isinstance(text, str)
        or not isinstance(dtype, str)
        or dtype not in _WIRE_DTYPES
        or not isinstance(shape, list)
        or not all(isinstance(size, int) and size >= 0 for size in shape)
    ):
        raise FederationError(
            "a packed array needs exactly __ndarray__ (base64), dtype ('<f8' or '<i8') "
            "and shape (sizes)"
        )
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise FederationError("a packed array is not valid base64") from None
    wire = _WIRE_DTYPES[dtype]
    if len(raw) != math.prod(shape) * wire.itemsize:
        raise FederationError(
            f"a packed array of shape {shape} and dtype {dtype} cannot hold {len(raw)} bytes"
        )
    native = np.float64 if dtype == "<f8" else np.int64
    return np.frombuffer(bytearray(raw), dtype=wire).reshape(shape).astype(native, copy=False)


def decode_arrays(value: Any) -> Any:
    """Undo :func:`encode_arrays`: packed arrays become (writable) numpy arrays.

    A malformed packed array raises :class:`~consortia.exceptions.FederationError`.
    """
    if isinstance(value, Mapping):
        if NDARRAY_KEY in value:
            return _decode_array(value)
        return {key: decode_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        if _SCALARS.issuperset(map(type, value)):
            return value  # a list of numbers or strings: nothing to walk
        return [decode_arrays(item) for item in value]
    return value


def new_id() -> str:
    """Return a random 128-bit identifier as 32 hex characters."""
    return secrets.token_hex(16)


class WireMessage(dict[str, Any]):
    """A message parsed from the exact bytes it arrived as; ``wire`` keeps those bytes.

    Transports return replies as ``WireMessage`` so the lead can check the body hash on the
    body's own bytes (``Verifier.verify(message, wire=message.wire)``) and count the bytes
    exchanged without serialising a large reply again. It is a plain dict otherwise.

    >>> message = WireMessage.parse(b'{"body":{"a":1},"envelope":{}}')
    >>> message["body"], len(message.wire)
    ({'a': 1}, 30)
    """

    wire: bytes

    @classmethod
    def parse(cls, wire: bytes) -> WireMessage:
        """Parse JSON bytes holding an object; raise ``ValueError`` otherwise."""
        data = json.loads(wire)
        if not isinstance(data, dict):
            raise ValueError("a message must be a JSON object")
        message = cls(data)
        message.wire = bytes(wire)
        return message


def wire_size(message: Mapping[str, Any]) -> int:
    """Bytes of ``message`` on the wire: its received bytes, or its canonical JSON."""
    if isinstance(message, WireMessage):
        return len(message.wire)
    return len(canonical_json(dict(message)))


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
