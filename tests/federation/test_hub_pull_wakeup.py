"""The hub's pull queue wakes its waiters through the database, on SQLite and PostgreSQL:
a member's long poll returns when a task for it is committed, and the lead's waiting send
returns when the member's reply is, not when a timer next looks at the table."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from consortia.app import create_app
from consortia.config import Settings
from consortia.federation import hub_routes
from consortia.federation.hub import DatabaseBroker, Invitation, join_hub
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import canonical_json
from consortia.federation.pull import POLL_HEADER, POLL_PATH, RESULTS_PATH, poll_token
from consortia.federation.signing import TrustStore, generate_key, save_key, sign_message
from consortia.federation.transport import NodeHandle
from consortia.services import hub as hub_service
from consortia.services.common import cli_operator
from consortia.services.hub import HubIdentity
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade

HUB_URL = "http://hub.test"
AN_HOUR = 3600.0


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[tuple[FastAPI, sa.Engine, HubIdentity]]:
    engine = make_engine(database_url)
    upgrade(engine)
    key = generate_key()
    save_key(key, tmp_path / "hub.pem")
    settings = Settings(
        database_url=database_url,
        node_name="hub",
        node_url=HUB_URL,
        node_dir=tmp_path,
        node={"key_file": "hub.pem", "role": "hub", "consortium": "Test consortium"},
    )
    app = create_app(settings)
    try:
        yield app, engine, HubIdentity("hub", HUB_URL, key)
    finally:
        app.state.engine.dispose()
        engine.dispose()


def _pull_member(name: str, institution: str, country: str) -> dict[str, str]:
    """The join details of a member that polls the hub."""
    return {
        "name": name,
        "url": "",
        "institution": institution,
        "country": country,
        "transport": "pull",
        "software_version": "test",
        "protocol_version": "1",
    }


async def _waiting_poll(
    http: httpx.AsyncClient, runner: NodeRunner, looks: list[str]
) -> asyncio.Task[httpx.Response]:
    """The member's long poll, once the hub has looked at the queue (``looks`` grows) and
    found it empty: it now waits."""
    poll = asyncio.create_task(
        http.get(
            POLL_PATH,
            params={"node": runner.name, "wait": 600},
            headers={POLL_HEADER: poll_token(runner)},
        )
    )
    while not looks:
        await asyncio.sleep(0.005)
    assert not poll.done()
    return poll


def test_a_queued_task_wakes_the_long_poll_and_its_reply_wakes_the_lead(
    hub: tuple[FastAPI, sa.Engine, HubIdentity], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, engine, identity = hub
    # Neither side may find its task or reply by looking again on a timer within the test.
    monkeypatch.setattr(hub_routes, "POLL_INTERVAL", AN_HOUR)
    invitation: Invitation
    invitation, _ = hub_service.create_invitation(engine, cli_operator(), identity, "sgh")
    key = generate_key()
    member = _pull_member("sgh", "Singapore General (fictional)", "SG")
    runner = NodeRunner("sgh", key, TrustStore(), {})
    looks: list[str] = []  # each time the hub's server looked for the member's next task

    @sa.event.listens_for(app.state.engine, "before_cursor_execute")
    def _count(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "hub_task.message" in statement:
            looks.append(statement)

    async def run() -> tuple[httpx.Response, dict[str, Any]]:
        asgi = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=asgi, base_url=HUB_URL, timeout=60) as http:
            await join_hub(invitation, key, member, client=http)
            poll = await _waiting_poll(http, runner, looks)
            broker = DatabaseBroker(engine, poll_seconds=AN_HOUR)
            task = sign_message(
                {"task_id": "t-wake", "to": "sgh", "round": 1}, identity.key, identity.name
            )
            sending = asyncio.create_task(broker.send(NodeHandle("sgh"), task))
            polled = await asyncio.wait_for(poll, 30)
            assert not sending.done()  # the lead waits for the reply
            reply = sign_message({"task_id": "t-wake", "node": "sgh"}, key, "sgh")
            posted = await http.post(RESULTS_PATH, content=canonical_json(reply))
            assert posted.status_code == 202, posted.text
            answer = await asyncio.wait_for(sending, 30)
            return polled, answer

    polled, answer = asyncio.run(run())
    assert polled.status_code == 200
    assert json.loads(polled.content)["body"]["task_id"] == "t-wake"
    assert answer["body"] == {"task_id": "t-wake", "node": "sgh"}
    # Looked once on arrival, once when woken by the queued task: no polling in between.
    assert len(looks) == 2
    with engine.connect() as connection:  # the lead withdrew the answered task
        assert connection.execute(sa.text("SELECT count(*) FROM hub_task")).scalar() == 0


def test_a_long_poll_with_nothing_queued_ends_empty_at_its_deadline(
    hub: tuple[FastAPI, sa.Engine, HubIdentity],
) -> None:
    app, engine, identity = hub
    invitation, _ = hub_service.create_invitation(engine, cli_operator(), identity, "nuh")
    key = generate_key()
    member = _pull_member("nuh", "National University (fictional)", "SG")
    runner = NodeRunner("nuh", key, TrustStore(), {})

    async def run() -> int:
        asgi = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=asgi, base_url=HUB_URL, timeout=60) as http:
            await join_hub(invitation, key, member, client=http)
            # a task for another member does not hand anything to this one
            broker = DatabaseBroker(engine)
            task = sign_message({"task_id": "t-other", "to": "x"}, identity.key, identity.name)
            other = asyncio.create_task(broker.send(NodeHandle("someone-else"), task))
            polled = await http.get(
                POLL_PATH,
                params={"node": "nuh", "wait": 0.3},
                headers={POLL_HEADER: poll_token(runner)},
            )
            other.cancel()
            await asyncio.gather(other, return_exceptions=True)
            return polled.status_code

    assert asyncio.run(run()) == 204


def test_removing_a_member_ends_its_open_long_poll_refused_at_once(
    hub: tuple[FastAPI, sa.Engine, HubIdentity], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, engine, identity = hub
    # the poll may not notice the removal by looking again on a timer within the test
    monkeypatch.setattr(hub_routes, "POLL_INTERVAL", AN_HOUR)
    invitation, _ = hub_service.create_invitation(engine, cli_operator(), identity, "shh")
    key = generate_key()
    member = _pull_member("shh", "Shanghai Ruijin (fictional)", "CN")
    runner = NodeRunner("shh", key, TrustStore(), {})
    looks: list[str] = []

    @sa.event.listens_for(app.state.engine, "before_cursor_execute")
    def _count(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "hub_task.message" in statement or "UPDATE hub_member" in statement:
            looks.append(statement)

    async def run() -> httpx.Response:
        asgi = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=asgi, base_url=HUB_URL, timeout=60) as http:
            await join_hub(invitation, key, member, client=http)
            poll = await _waiting_poll(http, runner, looks)
            await asyncio.to_thread(hub_service.remove_member, engine, cli_operator(), "shh")
            return await asyncio.wait_for(poll, 30)

    polled = asyncio.run(run())
    assert polled.status_code == 401
    assert "'shh' is revoked" in polled.json()["detail"]
