"""Study versions published by the hub, received by a member's real app over HTTP
(in-process ASGI), on SQLite and PostgreSQL: a version its hub signed waits for the
administrator (or is accepted by the node's policy); an unsigned, tampered or foreign
version is refused and nothing is kept; a stored offer changed afterwards is refused on
acceptance; and the node loads no study text of its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from typer.testing import CliRunner

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.cli import app as cli
from consortia.config import Settings
from consortia.domain.templates import template_text
from consortia.exceptions import NotFoundError, PermissionDeniedError
from consortia.federation.hub import STUDIES_PATH, study_message
from consortia.federation.protocol import canonical_json, sha256_hex
from consortia.federation.signing import generate_key, public_key_b64, save_key, sign_message
from consortia.services import hub_studies
from consortia.services.common import cli_operator
from consortia.services.studies import current_definition
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from consortia.storage.tables import study_offer

SOURCE = template_text("cart-lbcl")
SITES = {"SG01": "sgh"}


@dataclass
class Member:
    app: FastAPI
    engine: sa.Engine
    hub_key: Ed25519PrivateKey
    other_key: Ed25519PrivateKey
    settings: Settings


def member_node(database_url: str, tmp_path: Path, accept: str) -> Iterator[Member]:
    engine = make_engine(database_url)
    upgrade(engine)
    hub_key, other_key = generate_key(), generate_key()
    save_key(generate_key(), tmp_path / "sgh.pem")
    settings = Settings(
        database_url=database_url,
        node_name="sgh",
        node_url="http://sgh.test",
        node_dir=tmp_path,
        node={
            "key_file": "sgh.pem",
            "hub": "hub",
            "accept_studies": accept,
            "peers": [
                {"name": "hub", "url": "http://hub.test", "public_key": public_key_b64(hub_key)},
                {"name": "peer", "url": "", "public_key": public_key_b64(other_key)},
            ],
        },
    )
    app = create_app(settings)
    try:
        yield Member(app, engine, hub_key, other_key, settings)
    finally:
        app.state.engine.dispose()
        engine.dispose()


@pytest.fixture
def node(database_url: str, tmp_path: Path) -> Iterator[Member]:
    yield from member_node(database_url, tmp_path, "manual")


def post(member: Member, message: Any) -> tuple[int, dict[str, Any]]:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=member.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sgh.test") as client:
            body = message if isinstance(message, bytes) else canonical_json(message)
            return await client.post(STUDIES_PATH, content=body)

    response = asyncio.run(run())
    return response.status_code, response.json()["body"]


def signed(member: Member, source: str = SOURCE) -> dict[str, Any]:
    return study_message(
        member.hub_key, "hub", study="CART-LBCL", label="1.0", source=source, sites=SITES
    )


def offers(member: Member) -> list[Any]:
    return hub_studies.list_offers(member.engine, cli_operator())


def test_a_version_the_hub_signed_waits_for_the_administrator_then_runs(node: Member) -> None:
    status, reply = post(node, signed(node))
    assert status == 200
    assert reply["status"] == "pending"
    [offer] = offers(node)
    assert (offer.study, offer.label, offer.sha256) == (
        "CART-LBCL",
        "1.0",
        sha256_hex(SOURCE.encode()),
    )
    with node.engine.connect() as connection, pytest.raises(NotFoundError):
        current_definition(connection, "CART-LBCL")  # not run before it is accepted
    accepted = hub_studies.accept_offer(
        node.engine,
        cli_operator(Role.STUDY_ADMIN),
        offer.id,
        node.app.state.node.trust,
        "hub",
    )
    assert accepted.status == "accepted"
    with node.engine.connect() as connection:
        assert current_definition(connection, "CART-LBCL").sha256 == offer.sha256
    # the same version again: kept once, still accepted
    assert post(node, signed(node))[1]["status"] == "accepted"
    assert len(offers(node)) == 1


def test_a_new_version_follows_the_same_path(node: Member) -> None:
    post(node, signed(node))
    [first] = offers(node)
    operator = cli_operator(Role.STUDY_ADMIN)
    trust = node.app.state.node.trust
    hub_studies.accept_offer(node.engine, operator, first.id, trust, "hub")
    newer = SOURCE.replace('version: "1.0"', 'version: "1.1"', 1)
    assert newer != SOURCE
    status, reply = post(node, signed(node, newer))
    assert (status, reply["status"]) == (200, "pending")
    second = next(o for o in offers(node) if o.status == "pending")
    with node.engine.connect() as connection:
        assert current_definition(connection, "CART-LBCL").sha256 == first.sha256
    hub_studies.accept_offer(node.engine, operator, second.id, trust, "hub")
    with node.engine.connect() as connection:
        assert current_definition(connection, "CART-LBCL").sha256 == second.sha256


@pytest.mark.parametrize(
    ("forge", "rule"),
    [
        ("unsigned", "signature.unsigned"),
        ("tampered text", "signature.body_hash"),
        ("tampered text, hash redone", "signature.body_hash"),
        ("signed by an impostor as the hub", "signature.bad_signature"),
        ("signed by another trusted peer", "study.not_from_hub"),
    ],
)
def test_a_version_the_hub_did_not_sign_is_refused_and_not_kept(
    node: Member, forge: str, rule: str
) -> None:
    message = signed(node)
    if forge == "unsigned":
        message = {"body": message["body"]}
    elif forge == "tampered text":
        message["body"]["source"] = SOURCE.replace("CAR-T", "CAR-X")
    elif forge == "tampered text, hash redone":
        message["body"]["source"] = text = SOURCE.replace("CAR-T", "CAR-X")
        message["body"]["sha256"] = sha256_hex(text.encode())
    elif forge == "signed by an impostor as the hub":
        message = sign_message(message["body"], generate_key(), "hub")
    else:
        message = sign_message(message["body"], node.other_key, "peer")
    status, reply = post(node, message)
    assert status == 401
    assert reply["status"] == "refused"
    assert reply["rule"] == rule
    assert offers(node) == []


def test_an_offer_changed_in_the_database_is_refused_on_acceptance(node: Member) -> None:
    post(node, signed(node))
    [offer] = offers(node)
    stored = json.loads(offer.message)
    stored["body"]["source"] = SOURCE.replace("CAR-T", "CAR-X")
    with node.engine.begin() as connection:
        connection.execute(study_offer.update().values(message=json.dumps(stored)))
    with pytest.raises(PermissionDeniedError, match="not a version signed by this node's hub"):
        hub_studies.accept_offer(
            node.engine,
            cli_operator(Role.STUDY_ADMIN),
            offer.id,
            node.app.state.node.trust,
            "hub",
        )
    with node.engine.connect() as connection, pytest.raises(NotFoundError):
        current_definition(connection, "CART-LBCL")


def test_a_node_whose_policy_says_auto_accepts_its_hubs_versions(
    database_url: str, tmp_path: Path
) -> None:
    for member in member_node(database_url, tmp_path, "auto"):
        status, reply = post(member, signed(member))
        assert (status, reply["status"]) == (200, "accepted")
        with member.engine.connect() as connection:
            assert current_definition(connection, "CART-LBCL").sha256 == sha256_hex(SOURCE.encode())
        assert post(member, {"body": signed(member)["body"]})[1]["status"] == "refused"


def test_a_member_loads_no_study_text_of_its_own(tmp_path: Path) -> None:
    config = tmp_path / "consortia.toml"
    key = public_key_b64(generate_key())
    config.write_text(
        f'node_name = "sgh"\n[node]\nhub = "hub"\n'
        f'[[node.peers]]\nname = "hub"\nurl = "http://hub.test"\npublic_key = "{key}"\n',
        encoding="utf-8",
    )
    study = tmp_path / "study.yaml"
    study.write_text(SOURCE, encoding="utf-8")
    result = CliRunner().invoke(cli, ["study", "load", str(study), "--config", str(config)])
    assert result.exit_code == 1
    assert "takes its studies from its hub 'hub'" in result.output
    assert not (tmp_path / "consortia.db").exists()


def test_a_study_message_larger_than_the_nodes_limit_is_refused_unread(node: Member) -> None:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=node.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sgh.test") as client:
            return await client.post(STUDIES_PATH, content=b'{"a":"' + b"x" * 5_000_000 + b'"}')

    assert asyncio.run(run()).status_code == 413
    assert offers(node) == []
