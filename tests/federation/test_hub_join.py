"""Joining a consortium by invitation, over HTTP to the hub's real app (in-process ASGI),
on SQLite and PostgreSQL: keys exchanged and pinned both ways; a wrong, expired, reused or
misdirected invitation refused with a clear message; a removed member's key refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.config import Settings
from consortia.domain.templates import template_text
from consortia.exceptions import (
    ConfigurationError,
    ConflictError,
    FederationError,
    ValidationError,
)
from consortia.federation.hub import Invitation, JoinAnswer, fingerprint, join_hub
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import canonical_json
from consortia.federation.pull import POLL_HEADER, POLL_PATH, RESULTS_PATH, poll_token
from consortia.federation.signing import (
    TrustStore,
    generate_key,
    public_key_b64,
    save_key,
    sign_message,
)
from consortia.services import hub as hub_service
from consortia.services import hub_analyses, hub_studies, tokens, users
from consortia.services.common import cli_operator, utc_now
from consortia.services.hub import HubIdentity
from consortia.storage.audit import audit_event, verify_trail
from consortia.storage.db import make_engine
from consortia.storage.hub import HubRepository
from consortia.storage.migrations import upgrade
from consortia.storage.tables import hub_invitation

HUB_URL = "http://hub.test"


@dataclass
class Hub:
    app: FastAPI
    engine: sa.Engine
    identity: HubIdentity


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
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
        yield Hub(app, engine, HubIdentity("hub", HUB_URL, key))
    finally:
        app.state.engine.dispose()
        engine.dispose()


def member(name: str = "sgh", transport: str = "push") -> dict[str, str]:
    return {
        "name": name,
        "url": f"http://{name}.test",
        "institution": "Singapore General (fictional)",
        "country": "SG",
        "transport": transport,
        "software_version": "test",
        "protocol_version": "1",
    }


def join(hub: Hub, invitation: Invitation, key: Ed25519PrivateKey, **who: str) -> JoinAnswer:
    async def run() -> JoinAnswer:
        transport = httpx.ASGITransport(app=hub.app)
        async with httpx.AsyncClient(transport=transport, base_url=HUB_URL) as client:
            return await join_hub(invitation, key, member(**who), client=client)

    return asyncio.run(run())


def invite(hub: Hub, name: str = "sgh") -> Invitation:
    invitation, _ = hub_service.create_invitation(hub.engine, cli_operator(), hub.identity, name)
    return invitation


def hub_actions(hub: Hub) -> list[str]:
    with hub.engine.connect() as connection:
        rows = connection.execute(
            sa.select(audit_event.c.action)
            .where(audit_event.c.chain == "hub")
            .order_by(audit_event.c.seq)
        )
        return [row.action for row in rows]


def test_a_node_joins_by_invitation_and_each_side_pins_the_others_key(hub: Hub) -> None:
    invitation = Invitation.decode(invite(hub).encode())  # the printed line, read back
    assert invitation.fingerprint == hub.identity.fingerprint
    key = generate_key()
    answer = join(hub, invitation, key)
    assert answer.public_key == hub.identity.public_key
    assert answer.fingerprint == hub.identity.fingerprint
    assert answer.member_fingerprint == fingerprint(public_key_b64(key))
    [listed] = hub_service.list_members(hub.engine, cli_operator())
    assert (listed.name, listed.status, listed.transport) == ("sgh", "active", "push")
    assert listed.public_key == public_key_b64(key)
    assert listed.fingerprint == answer.member_fingerprint
    assert (listed.institution, listed.country) == ("Singapore General (fictional)", "SG")
    with hub.engine.connect() as connection:
        stored = connection.execute(sa.select(hub_invitation)).one()
        assert stored.secret_sha256 != invitation.secret
        assert invitation.secret not in stored.secret_sha256
        assert verify_trail(connection, chain="hub").ok
    assert hub_actions(hub) == ["hub.invite", "hub.member.join"]


def test_a_reused_invitation_is_refused(hub: Hub) -> None:
    invitation = invite(hub)
    join(hub, invitation, generate_key())
    with pytest.raises(FederationError, match="the invitation was used already"):
        join(hub, invitation, generate_key())
    assert [m.name for m in hub_service.list_members(hub.engine, cli_operator())] == ["sgh"]
    assert hub_actions(hub)[-1] == "hub.join_refused"


def test_a_wrong_secret_or_unknown_invitation_is_refused(hub: Hub) -> None:
    invitation = invite(hub)
    with pytest.raises(FederationError, match=r"not valid \(unknown or wrong secret\)"):
        join(hub, replace(invitation, secret=invitation.secret[:-2] + "xx"), generate_key())
    with pytest.raises(FederationError, match=r"not valid \(unknown or wrong secret\)"):
        join(hub, replace(invitation, id="0" * 16), generate_key())
    assert hub_service.list_members(hub.engine, cli_operator()) == []
    # a wrong secret for an invitation the hub issued is audited; an unknown id is not
    assert hub_actions(hub) == ["hub.invite", "hub.join_refused"]
    join(hub, invitation, generate_key())  # the real one still works, once


def test_an_expired_invitation_is_refused(hub: Hub) -> None:
    invitation = invite(hub)
    with hub.engine.begin() as connection:
        connection.execute(
            hub_invitation.update().values(expires_at=utc_now() - timedelta(minutes=1))
        )
    with pytest.raises(FederationError, match=r"the invitation expired at .* ask the hub"):
        join(hub, invitation, generate_key())
    assert hub_service.list_members(hub.engine, cli_operator()) == []


def test_an_invitation_for_another_name_is_refused(hub: Hub) -> None:
    with pytest.raises(FederationError, match="the invitation is for 'sgh', not 'evil'"):
        join(hub, invite(hub, "sgh"), generate_key(), name="evil")


def test_a_server_without_the_invitations_key_is_not_told_the_secret(hub: Hub) -> None:
    other = HubIdentity("hub", HUB_URL, generate_key())
    invitation = replace(invite(hub), fingerprint=other.fingerprint)
    with pytest.raises(FederationError, match="refusing to join it"):
        join(hub, invitation, generate_key())
    assert hub_actions(hub) == ["hub.invite"]  # the hub never saw the join


def test_a_damaged_invitation_says_so() -> None:
    with pytest.raises(ConfigurationError, match="not an invitation"):
        Invitation.decode("https://hub.example/")
    with pytest.raises(ConfigurationError, match="damaged"):
        Invitation.decode("consortia-invite-1.!!!notbase64")


def test_a_removed_members_key_is_refused_and_it_is_sent_nothing(hub: Hub) -> None:
    key = generate_key()
    join(hub, invite(hub), key, transport="pull")
    runner = NodeRunner("sgh", key, TrustStore(), {})

    async def poll_and_post() -> tuple[int, str, int, str]:
        transport = httpx.ASGITransport(app=hub.app)
        async with httpx.AsyncClient(transport=transport, base_url=HUB_URL) as http:
            polled = await http.get(
                POLL_PATH,
                params={"node": "sgh", "wait": 0},
                headers={POLL_HEADER: poll_token(runner)},
            )
            result = sign_message({"task_id": "t1", "node": "sgh"}, key, "sgh")
            posted = await http.post(RESULTS_PATH, content=canonical_json(result))
            return polled.status_code, polled.text, posted.status_code, posted.text

    status, _, posted, _ = asyncio.run(poll_and_post())
    assert status == 204  # a member: no task waiting
    assert posted == 404  # a member: no task has this id
    with hub.engine.begin() as connection:  # a task waiting for it is withdrawn
        HubRepository(connection).queue_task(
            "t2", "sgh", "{}", utc_now(), utc_now() + timedelta(minutes=5)
        )
    hub_service.remove_member(hub.engine, cli_operator(), "sgh")
    with hub.engine.connect() as connection:
        assert HubRepository(connection).take_task("sgh", utc_now()) is None
    status, text, posted, posted_text = asyncio.run(poll_and_post())
    assert (status, posted) == (401, 401)
    assert "'sgh' is revoked" in text
    assert "'sgh' is revoked" in posted_text
    [listed] = hub_service.list_members(hub.engine, cli_operator())
    assert listed.status == "removed"
    assert listed.removed_at is not None
    assert hub_actions(hub)[-1] == "hub.member.remove"
    with pytest.raises(ConflictError, match="removed already"):
        hub_service.remove_member(hub.engine, cli_operator(), "sgh")
    with pytest.raises(ValidationError, match="'sgh' is not an active member"):
        hub_studies.publish_study(
            hub.engine, cli_operator(), hub.identity, template_text("cart-lbcl"), {"SG01": "sgh"}
        )
    assert hub_analyses.study_members(hub.engine, "CART-LBCL") == []


def test_the_hubs_api_is_for_its_administrators(hub: Hub) -> None:
    join(hub, invite(hub), generate_key())
    operator = users.cli_operator()
    secrets = {}
    for email, role in (("admin@hub.example", Role.NODE_ADMIN), ("stats@hub.example", None)):
        users.create_user(hub.engine, operator, email=email, name=email, password=None)
        if role is not None:
            users.grant_role(hub.engine, operator, email=email, study="*", site="*", role=role)
        else:
            users.grant_role(
                hub.engine, operator, email=email, study="CART", site="*", role=Role.STATISTICIAN
            )
        created = tokens.create_token(
            hub.engine, operator, email=email, name="t", lifetime=timedelta(hours=1), studies=None
        )
        secrets[email] = created.secret

    async def get(path: str, secret: str | None) -> httpx.Response:
        transport = httpx.ASGITransport(app=hub.app)
        headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(transport=transport, base_url=HUB_URL) as client:
            return await client.get(path, headers=headers)

    for path in ("/api/v1/hub/members", "/api/v1/hub/analyses", "/api/v1/hub/studies"):
        assert asyncio.run(get(path, None)).status_code == 401
        assert asyncio.run(get(path, secrets["stats@hub.example"])).status_code == 403
        assert asyncio.run(get(path, secrets["admin@hub.example"])).status_code == 200
    [listed] = asyncio.run(get("/api/v1/hub/members", secrets["admin@hub.example"])).json()
    assert (listed["name"], listed["status"]) == ("sgh", "active")
    assert "public_key" not in listed
    missing = asyncio.run(get("/api/v1/hub/analyses/00ff", secrets["admin@hub.example"]))
    assert missing.status_code == 404
