"""Passwords: argon2id hashes, and the rules a new password must meet.

>>> stored = hash_password("correct horse battery")
>>> stored.startswith("$argon2id$")
True
>>> verify_password(stored, "correct horse battery"), verify_password(stored, "wrong")
(True, False)
>>> check_password("short", email="a@b.example")
Traceback (most recent call last):
...
consortia.exceptions.ValidationError: <input>: password: has 5 characters; use at least 12
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from consortia.exceptions import Problem, ValidationError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "check_password",
    "dummy_verify",
    "hash_password",
    "needs_rehash",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 12
# argon2-cffi's defaults are argon2id with the RFC 9106 low-memory parameters; tests may
# swap in a cheaper hasher (verification always uses the parameters stored in the hash)
_HASHER = PasswordHasher()
_dummy: tuple[PasswordHasher, str] | None = None


def hash_password(password: str) -> str:
    """Hash ``password`` with argon2id and a fresh salt."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (a malformed hash never matches)."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    """Spend the time of a real verification, so unknown emails answer no faster."""
    global _dummy
    if _dummy is None or _dummy[0] is not _HASHER:
        _dummy = (_HASHER, _HASHER.hash("a password nobody has: equalises timing"))
    verify_password(_dummy[1], password)


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with older parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def check_password(password: str, *, email: str, min_length: int = MIN_PASSWORD_LENGTH) -> None:
    """Refuse a password shorter than ``min_length`` (never below 12) or equal to the email.

    Comparison with the email ignores case and also refuses its part before the ``@``.
    """
    problems: list[Problem] = []
    length = max(min_length, MIN_PASSWORD_LENGTH)
    if len(password) < length:
        problems.append(
            Problem("password", f"has {len(password)} characters; use at least {length}")
        )
    folded = password.strip().casefold()
    address = email.strip().casefold()
    if folded and folded in {address, address.partition("@")[0]}:
        problems.append(Problem("password", "must not be the email address"))
    if problems:
        raise ValidationError(problems)
