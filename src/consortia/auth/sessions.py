"""Web sessions: a random cookie value, its stored hash, and the CSRF token bound to it.

The cookie is ``Secure; HttpOnly; SameSite=Strict``; the server keeps only the SHA-256 of
its value (:func:`session_key`), so sessions end when deleted (logout, idle timeout). The
CSRF token is an HMAC of the cookie value under the node's secret key: the server needs
to store nothing more, and a token from one session is worthless in another. Every
state-changing request authenticated by the cookie must echo it in :data:`CSRF_HEADER`.

>>> cookie = new_session_value()
>>> token = csrf_token("secret", cookie)
>>> csrf_matches("secret", cookie, token), csrf_matches("secret", cookie, "forged")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = [
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "csrf_matches",
    "csrf_token",
    "new_session_value",
    "session_key",
]

SESSION_COOKIE = "consortia_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_session_value() -> str:
    """A new random cookie value (256 bits)."""
    return secrets.token_urlsafe(32)


def session_key(cookie_value: str) -> str:
    """The SHA-256 (hex) under which a session is stored."""
    return hashlib.sha256(cookie_value.encode("utf-8")).hexdigest()


def csrf_token(secret_key: str, cookie_value: str) -> str:
    """The CSRF token of the session whose cookie is ``cookie_value``."""
    message = b"csrf:" + cookie_value.encode("utf-8")
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def csrf_matches(secret_key: str, cookie_value: str, presented: str | None) -> bool:
    """Whether ``presented`` is this session's CSRF token (constant-time comparison)."""
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(secret_key, cookie_value), presented)
