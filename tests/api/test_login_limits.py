"""Sign-in limits per client address and per account (kept in the database), and password
hashing on the app's own password threads, not on the threads that serve requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from node_client import Node, running_node

from consortia.services.common import utc_now
from consortia.storage.audit import iter_events, verify_trail

PASSWORD = "a long passphrase"
SESSION = "/api/v1/session"


class RecordingHasher(PasswordHasher):
    """The real (cheap) argon2id hasher, noting the thread each hash runs on."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.threads: list[str] = []
        self.verified = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.threads.append(threading.current_thread().name)
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.threads.append(threading.current_thread().name)
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> RecordingHasher:
    recording = RecordingHasher()
    monkeypatch.setattr("consortia.auth.passwords._HASHER", recording)
    return recording


@pytest.fixture
def limited(migrated_database_url: str) -> Iterator[Node]:
    """A node allowing 3 failures per account and 5 per address in a 15-minute window."""
    with running_node(
        migrated_database_url, login_failures_per_account=3, login_failures_per_address=5
    ) as node:
        for name in ("ana", "bo", "cy", "di"):
            node.add_user(f"{name}@sg.example", password=PASSWORD, with_token=False)
        yield node


def _sign_in(node: Node, email: str, password: str, address: str = "192.0.2.1") -> httpx.Response:
    client = node.client(client_address=address)
    return client.post(SESSION, json={"email": email, "password": password})


def _node_actions(node: Node) -> list[str]:
    with node.engine.connect() as connection:
        assert verify_trail(connection).ok
        return [event.action for event in iter_events(connection, chain="node")]


def _assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert 1 <= int(response.headers["retry-after"]) <= 15 * 60
    assert "too many failed sign-ins" in response.json()["detail"]
    assert "set-cookie" not in response.headers


def test_an_account_is_refused_429_after_its_failures_even_with_the_right_password(
    limited: Node, hasher: RecordingHasher
) -> None:
    answers = [_sign_in(limited, "ana@sg.example", "wrong password!").status_code for _ in range(3)]
    assert answers == [401, 401, 401]
    verified = hasher.verified
    _assert_limited(_sign_in(limited, "ana@sg.example", "wrong password!"))
    _assert_limited(_sign_in(limited, "ANA@sg.example", PASSWORD, address="198.51.100.9"))
    assert hasher.verified == verified  # refused before any password was hashed
    # another account from the same address is not limited (the address has 3 of 5)
    assert _sign_in(limited, "bo@sg.example", PASSWORD).status_code == 200
    actions = _node_actions(limited)
    assert actions.count("login.failed") == 3  # the refused sign-ins are not one event each
    assert actions.count("login.limited") == 1


def test_an_unknown_account_name_is_limited_like_a_known_one(limited: Node) -> None:
    for _ in range(3):
        assert _sign_in(limited, "nobody@sg.example", "wrong password!").status_code == 401
    _assert_limited(_sign_in(limited, "nobody@sg.example", "wrong password!"))


def test_an_address_is_refused_429_after_its_failures_for_any_account(limited: Node) -> None:
    for email in ("ana", "bo", "cy", "di", "nobody"):
        response = _sign_in(limited, f"{email}@sg.example", "wrong password!", "203.0.113.5")
        assert response.status_code == 401
    _assert_limited(_sign_in(limited, "ana@sg.example", PASSWORD, "203.0.113.5"))
    # another address signs in to the same account
    assert _sign_in(limited, "ana@sg.example", PASSWORD, "203.0.113.6").status_code == 200
    # an IPv6 client is counted by its /64: changing the last bits does not escape
    for suffix in range(5):
        email, address = f"x{suffix}@sg.example", f"2001:db8:1:2::{suffix + 1}"
        assert _sign_in(limited, email, "wrong password!", address).status_code == 401
    _assert_limited(_sign_in(limited, "di@sg.example", PASSWORD, "2001:db8:1:2::ff"))


def test_a_success_resets_the_accounts_count_but_not_the_addresses(limited: Node) -> None:
    for _ in range(2):
        assert _sign_in(limited, "ana@sg.example", "wrong password!").status_code == 401
    assert _sign_in(limited, "ana@sg.example", PASSWORD).status_code == 200
    for _ in range(2):  # the account starts again: 2 more are not refused
        assert _sign_in(limited, "ana@sg.example", "wrong password!").status_code == 401
    # the address has 4 failures: one more, and it is refused for every account
    assert _sign_in(limited, "bo@sg.example", "wrong password!").status_code == 401
    _assert_limited(_sign_in(limited, "cy@sg.example", PASSWORD))


def test_the_limits_are_shared_by_two_apps_on_one_database(migrated_database_url: str) -> None:
    settings = {"login_failures_per_account": 4, "login_failures_per_address": 100}
    with (
        running_node(migrated_database_url, **settings) as first,
        running_node(migrated_database_url, **settings) as second,
    ):
        first.add_user("ana@sg.example", password=PASSWORD, with_token=False)
        for node in (first, second, first, second):
            assert _sign_in(node, "ana@sg.example", "wrong password!").status_code == 401
        _assert_limited(_sign_in(first, "ana@sg.example", PASSWORD))
        _assert_limited(_sign_in(second, "ana@sg.example", PASSWORD))


def test_refusals_are_audited_as_one_summary_when_the_window_ends_and_rows_are_pruned(
    limited: Node,
) -> None:
    from consortia.storage.tables import login_throttle  # (imported here: new in this change)

    for _ in range(3):
        _sign_in(limited, "ana@sg.example", "wrong password!")
    for _ in range(4):
        _assert_limited(_sign_in(limited, "ana@sg.example", "wrong password!"))
    assert "login.limit_summary" not in _node_actions(limited)
    with limited.engine.begin() as connection:  # as if the window had ended
        connection.execute(
            login_throttle.update().values(window_start=utc_now() - timedelta(minutes=16))
        )
    # the next sign-in (any account) prunes the ended windows
    assert _sign_in(limited, "ana@sg.example", PASSWORD, "192.0.2.99").status_code == 200
    with limited.engine.connect() as connection:
        events = [e for e in iter_events(connection, chain="node") if e.action.startswith("login.")]
        remaining = connection.execute(sa.select(sa.func.count()).select_from(login_throttle))
        assert remaining.scalar_one() == 0  # every ended window is gone
    summaries = [e for e in events if e.action == "login.limit_summary"]
    assert len(summaries) == 1
    assert summaries[0].after is not None
    assert summaries[0].after["refused"] == 4
    assert summaries[0].after["subject"] == "ana@sg.example"


def test_password_hashing_runs_on_the_password_threads_only(
    limited: Node, hasher: RecordingHasher
) -> None:
    from consortia.auth.hashing import THREAD_PREFIX  # (imported here: new in this change)

    work = limited.app.state.password_work
    before = work.completed
    assert _sign_in(limited, "ana@sg.example", PASSWORD).status_code == 200
    assert _sign_in(limited, "ana@sg.example", "wrong password!").status_code == 401
    assert _sign_in(limited, "nobody@sg.example", "wrong password!").status_code == 401
    assert hasher.verified == 3  # the right one, a wrong one, an unknown account's
    assert all(name.startswith(THREAD_PREFIX) for name in hasher.threads), hasher.threads
    assert work.completed == before + 3
