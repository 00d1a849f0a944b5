"""Hash chains: the one definition of canonical JSON, a link's hash, the genesis value and
the check of a sequence of links, used by every trail that chains.

A chain is a sequence of links ``1, 2, 3 …``; each link stores the hash of the link before
it (``prev_hash``, :data:`GENESIS` for the first) and its own hash,
``sha256(prev_hash ‖ body)``, where ``body`` is the canonical JSON of what the link records.
Changing, removing or reordering a link breaks every hash after it.

Two trails chain this way, each with its own body:

* the database audit trail (:mod:`consortia.storage.audit`): one chain per study (and
  ``node``, ``federation``, ``witness``), the body being the event's fields;
* the federation audit file of a node without a database (:mod:`consortia.federation.audit`),
  the body being ``{"event", "seq", "time"}``.

The signed federation messages and witnessed head statements hash and sign the same
canonical JSON (:mod:`consortia.federation.protocol`, :mod:`consortia.federation.witness`).

>>> canonical_json({"b": 1, "a": [1.5, None, "é"]})
b'{"a":[1.5,null,"\\xc3\\xa9"],"b":1}'
>>> first = link_hash(GENESIS, canonical_json({"seq": 1}))
>>> second = link_hash(first, canonical_json({"seq": 2}))
>>> links = [Link(1, GENESIS, first, canonical_json({"seq": 1})),
...          Link(2, first, second, canonical_json({"seq": 2}))]
>>> verify_chain(links).ok, verify_chain(links).length
(True, 2)
>>> verify_chain([links[1]]).problem
'expected event 1, found 2 (an event is missing)'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "GENESIS",
    "ChainCheck",
    "Link",
    "LinkProblem",
    "canonical_json",
    "link_hash",
    "sha256_hex",
    "verify_chain",
]

#: The ``prev_hash`` of a chain's first link (and the head of a chain with no link yet).
GENESIS = "0" * 64

_OPTIONS: dict[str, Any] = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False}
_STRICT = json.JSONEncoder(**_OPTIONS, allow_nan=False)
_LENIENT = json.JSONEncoder(**_OPTIONS, allow_nan=True, default=str)


def canonical_json(value: Any, *, lenient: bool = False) -> bytes:
    """``value`` as canonical JSON: UTF-8, keys sorted, no insignificant whitespace.

    Strict by default: ``nan``/``inf`` raise :class:`ValueError` (JSON has no spelling for
    them) and anything that is not a dict, list, tuple, str, int, float, bool or ``None``
    raises :class:`TypeError`, so what is signed is exactly what a reader parses back.
    ``lenient=True`` is how the audit trail records whatever it is given rather than lose
    the event: a value that is not JSON as its text (a ``date`` as ``"2025-01-06"``), a
    non-finite float as ``NaN``/``Infinity``. The same value always gives the same bytes,
    and Python floats round-trip exactly, so a re-serialised value hashes the same.

    >>> from datetime import date
    >>> canonical_json({"d": date(2025, 1, 6)}, lenient=True)
    b'{"d":"2025-01-06"}'
    """
    return (_LENIENT if lenient else _STRICT).encode(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 digest of ``data``.

    >>> sha256_hex(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def link_hash(prev_hash: str, body: bytes) -> str:
    """A link's hash: ``sha256(prev_hash ‖ body)`` as hex, ``body`` being canonical JSON."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(body)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Link:
    """One stored link: its position, the hashes it stores, and the body its hash covers."""

    seq: int
    prev_hash: str
    hash: str
    body: bytes


class LinkProblem(StrEnum):
    """Why a link breaks its chain."""

    SEQUENCE = "sequence"  # a link is missing (or out of order)
    LINK = "link"  # its prev_hash is not the hash of the link before it
    CONTENT = "content"  # its body does not hash to its stored hash


_MESSAGES = {
    LinkProblem.LINK: "its prev_hash does not match the hash of the event before it",
    LinkProblem.CONTENT: "its content does not match its hash (the event was changed)",
}


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The outcome of :func:`verify_chain`: how many links held, the hash of the last one
    that did (:data:`GENESIS` when none), and the first break (``seq``, ``kind``)."""

    length: int
    head: str
    broken_seq: int | None = None
    kind: LinkProblem | None = None

    @property
    def ok(self) -> bool:
        """No link is broken."""
        return self.kind is None

    @property
    def problem(self) -> str | None:
        """The first break in words, or ``None``."""
        if self.kind is None:
            return None
        if self.kind is LinkProblem.SEQUENCE:
            expected = self.length + 1
            return f"expected event {expected}, found {self.broken_seq} (an event is missing)"
        return _MESSAGES[self.kind]


def verify_chain(links: Iterable[Link]) -> ChainCheck:
    """Check a chain's links in order, from the first; stop at the first broken one.

    Link ``k`` must have ``seq == k``, store the hash of link ``k - 1`` (:data:`GENESIS` for
    the first) as its ``prev_hash``, and its body must hash to its stored hash.
    """
    prev = GENESIS
    length = 0
    for link in links:
        kind = None
        if link.seq != length + 1:
            kind = LinkProblem.SEQUENCE
        elif link.prev_hash != prev:
            kind = LinkProblem.LINK
        elif link_hash(prev, link.body) != link.hash:
            kind = LinkProblem.CONTENT
        if kind is not None:
            return ChainCheck(length, prev, link.seq, kind)
        prev = link.hash
        length += 1
    return ChainCheck(length, prev)
