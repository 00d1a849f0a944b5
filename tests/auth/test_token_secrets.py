"""API token secrets: random, stored as a hash, with bounded lifetimes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from consortia.auth.sessions import csrf_matches, csrf_token, new_session_value, session_key
from consortia.auth.tokens import (
    TOKEN_PREFIX,
    display_prefix,
    hash_token,
    new_token,
    parse_lifetime,
)
from consortia.exceptions import ValidationError


def test_tokens_are_random_and_only_their_hash_and_prefix_are_kept() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    token = tokens.pop()
    assert token.startswith(TOKEN_PREFIX)
    assert len(token) >= 40
    assert hash_token(token) == hash_token(token) != hash_token(token + "x")
    assert token.startswith(display_prefix(token))
    assert len(display_prefix(token)) == 10


@pytest.mark.parametrize(
    ("text", "lifetime"),
    [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30))],
)
def test_lifetimes_are_read_in_days_hours_or_minutes(text: str, lifetime: timedelta) -> None:
    assert parse_lifetime(text) == lifetime


@pytest.mark.parametrize("text", ["0d", "367d", "90", "forever", "-1d", "1w"])
def test_unreadable_zero_or_too_long_lifetimes_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="expires"):
        parse_lifetime(text)


def test_a_csrf_token_belongs_to_one_session_and_one_secret() -> None:
    cookie, other = new_session_value(), new_session_value()
    token = csrf_token("secret", cookie)
    assert csrf_matches("secret", cookie, token)
    assert not csrf_matches("secret", other, token)
    assert not csrf_matches("another secret", cookie, token)
    assert not csrf_matches("secret", cookie, None)
    assert not csrf_matches("secret", cookie, "")
    assert session_key(cookie) != cookie
    assert len(session_key(cookie)) == 64
