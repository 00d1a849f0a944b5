"""What a node does with a task before it trusts it, on a node with a database.

* A replayed signed task is refused after the node restarts, and by another process of
  the node: the nonces live in the database, not in one process's memory.
* An unsigned (or otherwise unverified) task is never stored: a task too large is refused
  before it is read, and a refusal is logged as a bounded summary (size, source, rule), at
  most one per source per minute, whichever process of the node refused it.
"""

from __future__ import annotations

import asyncio
import csv
import doctest
import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from consortia.federation.apps import create_node_app
from consortia.federation.database_audit import FEDERATION_CHAIN
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import NodeConfig, build_node
from consortia.federation.protocol import AnalysisTask, new_id
from consortia.federation.signing import (
    Peer,
    TrustStore,
    Verifier,
    generate_key,
    public_key_b64,
    save_key,
    sign_message,
)
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.db import make_engine
from consortia.storage.federation_guards import admit_refusal, remember_nonce
from consortia.storage.tables import federation_nonce
from nodetoml import node_config

DESCRIBE = {"kind": "describe", "table": "trial", "variable": "age"}
ANALYZE = "/federation/v1/analyze"
MB = 1024 * 1024


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(migrated_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def lead_key() -> Any:
    return generate_key()


@pytest.fixture
def config(
    tmp_path: Path, migrated_database_url: str, engine: sa.Engine, lead_key: Any
) -> NodeConfig:
    """A member node ``sgh`` of the lead, with a file table and the node database."""
    with (tmp_path / "trial.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["age"])
        writer.writerows([[40 + index] for index in range(12)])
    save_key(generate_key(), tmp_path / "node.pem")
    document = {
        "name": "sgh",
        "key_file": "node.pem",
        "peers": [{"name": "lead", "public_key": public_key_b64(lead_key)}],
        "tables": {"trial": {"file": "trial.csv"}},
        "policy": {"analyses": ["describe"]},
        "database_url": migrated_database_url,
    }
    return node_config(tmp_path, document)


def _task(lead_key: Any) -> dict[str, Any]:
    body = AnalysisTask(task_id=new_id(), session=new_id(), round=1, to="sgh", request=DESCRIBE)
    return sign_message(body.model_dump(mode="json"), lead_key, "lead")


def _post(node: NodeRunner, content: bytes, **app_options: Any) -> httpx.Response:
    """POST ``content`` to a fresh app of ``node`` (a process of the node, as it were)."""

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_node_app(node, **app_options))
        async with httpx.AsyncClient(transport=transport, base_url="http://sgh.test") as client:
            return await client.post(
                ANALYZE, content=content, headers={"content-type": "application/json"}
            )

    return asyncio.run(main())


def _reply(node: NodeRunner, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    lead_view = Verifier(TrustStore([Peer(name="sgh", public_key=node.public_key)]))
    return lead_view.verify(response.json())[1]


def _federation_events(engine: sa.Engine) -> list[Any]:
    with engine.connect() as connection:
        assert verify_trail(connection, chain=FEDERATION_CHAIN).ok
        return list(iter_events(connection, chain=FEDERATION_CHAIN))


# --------------------------------------------------------------------------- replays


def test_a_replay_is_refused_by_a_node_restarted_on_the_same_database(
    config: NodeConfig, engine: sa.Engine, lead_key: Any
) -> None:
    wire = json.dumps(_task(lead_key)).encode()
    first = build_node(config)
    try:
        assert _reply(first, _post(first, wire))["status"] == "ok"
    finally:
        first.close()
    restarted = build_node(config)  # a new process: nothing remembered in memory
    try:
        replayed = _reply(restarted, _post(restarted, wire))
    finally:
        restarted.close()
    assert (replayed["status"], replayed["rule"]) == ("refused", "signature.replay")
    decisions = [(event.action, event.after.get("rule")) for event in _federation_events(engine)]
    assert decisions == [("federation.released", None), ("federation.refused", "signature.replay")]


def test_a_replay_to_another_process_of_the_node_is_refused(
    config: NodeConfig, lead_key: Any
) -> None:
    wire = json.dumps(_task(lead_key)).encode()
    one, other = build_node(config), build_node(config)
    try:
        assert _reply(one, _post(one, wire))["status"] == "ok"
        assert _reply(other, _post(other, wire))["rule"] == "signature.replay"
        fresh = json.dumps(_task(lead_key)).encode()
        assert _reply(other, _post(other, fresh))["status"] == "ok"
    finally:
        one.close()
        other.close()


def test_nonces_are_kept_until_their_message_expires_and_then_pruned(engine: sa.Engine) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as connection:
        assert remember_nonce(connection, "lead", "a" * 32, now + timedelta(seconds=300), now)
        later = now + timedelta(seconds=299)
        assert not remember_nonce(
            connection, "lead", "a" * 32, later + timedelta(seconds=300), later
        )
        assert remember_nonce(connection, "other", "a" * 32, later + timedelta(seconds=300), later)
        expired = now + timedelta(seconds=301)
        assert remember_nonce(
            connection, "lead", "b" * 32, expired + timedelta(seconds=300), expired
        )
        rows = connection.execute(sa.select(federation_nonce.c.sender, federation_nonce.c.nonce))
        assert sorted(rows) == [("lead", "b" * 32), ("other", "a" * 32)]


# --------------------------------------------------------------------------- unsigned


def test_unsigned_tasks_larger_than_the_limit_are_refused_unread_and_store_nothing(
    config: NodeConfig, engine: sa.Engine
) -> None:
    node = build_node(config)
    try:
        padding = "x" * (5 * MB)
        body = json.dumps({"body": {"task_id": "t", "request": {"padding": padding}}}).encode()
        for _ in range(3):
            response = _post(node, body)
            assert response.status_code == 413
            assert response.headers["content-type"] == "application/problem+json"
            assert "larger than 4194304 bytes" in response.json()["detail"]
    finally:
        node.close()
    assert _federation_events(engine) == []


def test_unsigned_tasks_are_logged_as_one_bounded_summary_per_source_per_window(
    config: NodeConfig, engine: sa.Engine
) -> None:
    padding = "x" * MB  # under the size limit: read, refused by its (missing) signature
    body = json.dumps(
        {"body": {"task_id": "t-" + "9" * 500, "request": {"padding": padding}},
         "envelope": {"sender": "mallory" * 100}}
    ).encode()  # fmt: skip
    one, other = build_node(config), build_node(config)  # two processes of one node
    try:
        replies = [_reply(node, _post(node, body)) for node in (one, other, one)]
    finally:
        one.close()
        other.close()
    assert {(reply["status"], reply["rule"]) for reply in replies} == {
        ("refused", "signature.unsigned")
    }
    assert all(len(reply["task_id"]) <= 103 for reply in replies)
    (summary,) = _federation_events(engine)
    assert summary.action == "federation.refused"
    stored = json.dumps(summary.after)
    assert len(stored) < 2000  # not the megabyte that was sent
    assert padding[:100] not in stored
    assert summary.after["bytes"] == len(body)
    assert summary.after["source"] == "127.0.0.1"
    assert summary.after["rule"] == "signature.unsigned"
    assert summary.after["verified"] is False
    assert summary.after["unlogged_before"] == 0
    assert len(summary.actor) < 200


def test_the_summary_after_a_window_counts_the_refusals_left_unlogged(engine: sa.Engine) -> None:
    now, minute = datetime(2026, 1, 1, tzinfo=UTC), timedelta(minutes=1)
    seconds = [0, 5, 30, 59, 60, 61, 200]
    with engine.begin() as connection:
        decisions = [
            admit_refusal(connection, "10.0.0.9", now + timedelta(seconds=s), minute)
            for s in seconds
        ]
        other_source = admit_refusal(connection, "10.0.0.10", now + timedelta(seconds=5), minute)
    assert decisions == [0, None, None, None, 3, None, 1]
    assert other_source == 0


@pytest.mark.parametrize(
    "module", ["consortia.federation.guards", "consortia.storage.federation_guards"]
)
def test_docstring_examples_run(module: str) -> None:
    outcome = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0
    assert outcome.attempted > 0
