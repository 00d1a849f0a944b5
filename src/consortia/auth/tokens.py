"""Personal API tokens: random secrets shown once, stored only as their SHA-256.

A token looks like ``cst_`` + 43 URL-safe characters (256 random bits), so a plain hash
is enough to store it (no salt or slow hash needed: it cannot be guessed), and it can be
looked up by its hash. The first characters (the *prefix*) are kept to let a person tell
their tokens apart.

>>> token = new_token()
>>> token.startswith(TOKEN_PREFIX), len(hash_token(token))
(True, 64)
>>> parse_lifetime("90d")
datetime.timedelta(days=90)
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from consortia.exceptions import Problem, ValidationError

__all__ = [
    "MAX_TOKEN_LIFETIME",
    "TOKEN_PREFIX",
    "display_prefix",
    "hash_token",
    "new_token",
    "parse_lifetime",
]

TOKEN_PREFIX = "cst_"
MAX_TOKEN_LIFETIME = timedelta(days=366)
_LIFETIME = re.compile(r"^(\d{1,5})([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def new_token() -> str:
    """A new random token (show it once; store :func:`hash_token` of it)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def display_prefix(token: str) -> str:
    """The first characters of a token, safe to show in lists."""
    return token[: len(TOKEN_PREFIX) + 6]


def parse_lifetime(text: str) -> timedelta:
    """Read ``90d``, ``12h`` or ``30m``; refuse zero and anything above 366 days."""
    match = _LIFETIME.fullmatch(text.strip())
    if not match:
        raise ValidationError(
            [Problem("expires", f"{text!r} is not a lifetime; write e.g. 90d, 12h or 30m")]
        )
    lifetime = timedelta(**{_UNITS[match[2]]: int(match[1])})
    if lifetime <= timedelta(0) or lifetime > MAX_TOKEN_LIFETIME:
        raise ValidationError(
            [Problem("expires", f"{text} is outside 1 minute to {MAX_TOKEN_LIFETIME.days} days")]
        )
    return lifetime
