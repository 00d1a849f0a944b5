"""Passwords are hashed with argon2id and must be long and not the email."""

from __future__ import annotations

import pytest

from consortia.auth.passwords import check_password, hash_password, needs_rehash, verify_password
from consortia.exceptions import ValidationError


def test_a_password_is_stored_as_a_salted_argon2id_hash() -> None:
    first, second = hash_password("a long passphrase"), hash_password("a long passphrase")
    assert first.startswith("$argon2id$")
    assert first != second
    assert "a long passphrase" not in first
    assert verify_password(first, "a long passphrase")
    assert not verify_password(first, "a long passphrasE")
    assert not needs_rehash(first)


def test_a_malformed_stored_hash_never_matches() -> None:
    assert not verify_password("not-a-hash", "anything at all")
    assert needs_rehash("not-a-hash")


@pytest.mark.parametrize("password", ["", "eleven char", "x" * 11])
def test_passwords_under_twelve_characters_are_refused(password: str) -> None:
    with pytest.raises(ValidationError, match="use at least 12"):
        check_password(password, email="ana@sg.example")


@pytest.mark.parametrize(
    "password", ["Ana.Lim@SG.example", "  ana.lim@sg.example ", "ana.lim.ana.lim"]
)
def test_the_email_is_not_a_password(password: str) -> None:
    email = "ana.lim@sg.example" if "@" in password else "ana.lim.ana.lim@sg.example"
    with pytest.raises(ValidationError, match="must not be the email"):
        check_password(password, email=email)


def test_a_configured_minimum_can_raise_but_never_lower_the_length() -> None:
    with pytest.raises(ValidationError, match="at least 16"):
        check_password("fifteen chars!!", email="a@b.example", min_length=16)
    with pytest.raises(ValidationError, match="at least 12"):
        check_password("short pass", email="a@b.example", min_length=4)
    check_password("twelve chars", email="a@b.example")
