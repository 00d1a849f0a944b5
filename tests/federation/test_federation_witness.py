"""Witnessed heads: a node's peers keep its signed chain heads, so a trail cut short, rewritten
or removed by someone with the database file (but not the node's key) is caught.

Two node apps talk real HTTP in process (httpx ASGITransport): ``sgh`` (on SQLite and on
PostgreSQL) hands its heads to ``ruijin`` (SQLite), then reads them back to verify.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa

from consortia.federation.apps import create_node_app
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import canonical_json
from consortia.federation.signing import (
    Peer,
    TrustStore,
    generate_key,
    public_key_b64,
    sign_message,
)
from consortia.federation.witness import (
    HELD_PATH,
    WITNESS_CHAIN,
    WITNESS_PATH,
    HeadWitness,
    run_witness_pusher,
    sign_statement,
)
from consortia.storage.audit import (
    append_events,
    audit_event,
    audit_head,
    event_hash,
    iter_events,
    verify_trail,
)
from consortia.storage.db import make_engine
from consortia.storage.witness import ChainHead, audit_witness, trail_heads

T = TypeVar("T")


@dataclass
class Pair:
    """``sgh`` (the node under test) and ``ruijin`` (its peer, the witness)."""

    sgh: HeadWitness
    ruijin: HeadWitness
    apps: dict[str, Any]

    def run(self, call: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
        async def main() -> T:
            mounts = {
                f"http://{name}.test": httpx.ASGITransport(app=app)
                for name, app in self.apps.items()
            }
            async with httpx.AsyncClient(mounts=mounts) as client:
                return await call(client)

        return asyncio.run(main())


def _node(name: str, engine: sa.Engine, key: Any, peer: str, peer_key: Any) -> HeadWitness:
    trust = TrustStore(
        [Peer(name=peer, url=f"http://{peer}.test", public_key=public_key_b64(peer_key))]
    )
    runner = NodeRunner(name, key, trust, {}, url=f"http://{name}.test", offload=False)
    return HeadWitness(engine, name, key, trust, runner.verifier)


@pytest.fixture
def pair(
    migrated_database_url: str, migrated_sqlite: Callable[[Path], str], tmp_path: Path
) -> Iterator[Pair]:
    sgh_engine = make_engine(migrated_database_url)
    ruijin_engine = make_engine(migrated_sqlite(tmp_path / "ruijin.db"))
    sgh_key, ruijin_key = generate_key(), generate_key()
    sgh = _node("sgh", sgh_engine, sgh_key, "ruijin", ruijin_key)
    ruijin = _node("ruijin", ruijin_engine, ruijin_key, "sgh", sgh_key)
    apps = {
        "sgh": create_node_app(NodeRunner("sgh", sgh_key, sgh.trust, {}), witness=sgh),
        "ruijin": create_node_app(
            NodeRunner("ruijin", ruijin_key, ruijin.trust, {}), witness=ruijin
        ),
    }
    _append(sgh_engine, "CART-LBCL", 10)
    _append(sgh_engine, "node", 3)
    try:
        yield Pair(sgh, ruijin, apps)
    finally:
        sgh_engine.dispose()
        ruijin_engine.dispose()


def _append(engine: sa.Engine, chain: str, count: int) -> None:
    entries = [
        {
            "actor": "coord@sg.example",
            "action": "form.save",
            "entity_type": "form",
            "entity_id": f"{chain}/SG01-{n:03d}/day0/crs_icans",
            "after": {"values": {"fever_temp": f"38.{n}"}},
        }
        for n in range(count)
    ]
    with engine.begin() as connection:
        append_events(connection, chain, entries)


def _drop_triggers(connection: sa.Connection) -> None:
    """What someone with write access to the database file does first."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("DROP TRIGGER audit_event_no_update")
        connection.exec_driver_sql("DROP TRIGGER audit_event_no_delete")
    else:
        connection.exec_driver_sql("DROP TRIGGER audit_event_no_change ON audit_event")


def _trail_intact(engine: sa.Engine) -> bool:
    with engine.connect() as connection:
        return verify_trail(connection).ok


def _witness_now(pair: Pair) -> None:
    outcomes = pair.run(pair.sgh.push)
    assert [(o.peer, o.ok) for o in outcomes] == [("ruijin", True)], outcomes


def test_an_honest_chain_that_went_on_after_it_was_witnessed_is_clean(pair: Pair) -> None:
    _witness_now(pair)
    again = pair.run(pair.sgh.push)
    assert again[0].detail == "already had them"  # the same heads are kept once
    _append(pair.sgh.engine, "CART-LBCL", 5)
    report = pair.run(pair.sgh.verify)
    assert report.ok, report.lines()
    assert report.complete
    assert [w.peer for w in report.witnessed] == ["ruijin"]
    assert {h.chain: h.length for h in report.witnessed[0].statement.chains} == {
        "CART-LBCL": 10,
        "node": 3,
    }
    _witness_now(pair)
    report = pair.run(pair.sgh.verify)
    assert report.ok
    assert {h.chain: h.length for h in report.witnessed[0].statement.chains}["CART-LBCL"] == 15
    with pair.ruijin.engine.connect() as connection:
        kept = connection.execute(sa.select(sa.func.count()).select_from(audit_witness)).scalar()
        receipts = [e.action for e in iter_events(connection, chain=WITNESS_CHAIN)]
        assert verify_trail(connection).ok
    assert kept == 2
    # each push first reads what the peer holds; the same heads again are not kept twice
    assert receipts == [
        *("witness.read", "witness.stored"),  # push
        "witness.read",  # push again: already had them
        "witness.read",  # verify
        *("witness.read", "witness.stored"),  # push after the chain went on
        "witness.read",  # verify
    ]


def test_deleting_the_tail_and_rolling_the_head_back_is_reported_as_truncation(
    pair: Pair,
) -> None:
    _witness_now(pair)
    engine = pair.sgh.engine
    with engine.begin() as connection:
        _drop_triggers(connection)
        connection.execute(
            audit_event.delete().where(audit_event.c.chain == "CART-LBCL", audit_event.c.seq > 6)
        )
        sixth = connection.execute(
            sa.select(audit_event.c.hash).where(
                audit_event.c.chain == "CART-LBCL", audit_event.c.seq == 6
            )
        ).scalar_one()
        connection.execute(
            audit_head.update().where(audit_head.c.chain == "CART-LBCL").values(seq=6, hash=sixth)
        )
    assert _trail_intact(engine)  # unseen by the hash chain alone
    # the node does not hand the cut trail over, and the peer would refuse it anyway
    refused = pair.run(pair.sgh.push)
    assert refused[0].ok is False
    assert refused[0].detail.startswith("not handed over: truncated: chain 'CART-LBCL'")
    with engine.connect() as connection:
        cut = [h for h in trail_heads(connection) if h.chain != WITNESS_CHAIN]
    rollback = _post(pair, WITNESS_PATH, sign_statement(cut, pair.sgh.key, "sgh"))
    assert rollback.status_code == 409
    assert "witness.rollback" in rollback.json()["detail"]
    assert "'CART-LBCL' went from 10 to 6 events" in rollback.json()["detail"]
    report = pair.run(pair.sgh.verify)
    assert [(f.kind, f.chain, f.peer) for f in report.findings] == [
        ("truncated", "CART-LBCL", "ruijin")
    ]
    assert "ends at event 6, but ruijin witnessed 10 events" in str(report.findings[0])


def test_deleting_a_whole_chain_and_its_head_is_reported_as_missing(pair: Pair) -> None:
    _witness_now(pair)
    engine = pair.sgh.engine
    with engine.begin() as connection:
        _drop_triggers(connection)
        connection.execute(audit_event.delete().where(audit_event.c.chain == "CART-LBCL"))
        connection.execute(audit_head.delete().where(audit_head.c.chain == "CART-LBCL"))
    assert _trail_intact(engine)
    report = pair.run(pair.sgh.verify)
    assert [(f.kind, f.chain) for f in report.findings] == [("missing", "CART-LBCL")]
    assert "has no events, but ruijin witnessed 10" in str(report.findings[0])


def test_rewriting_an_event_and_rehashing_everything_after_it_is_reported_as_a_fork(
    pair: Pair,
) -> None:
    """A forger with the file but not the key: edit event 3, re-hash 3..10, move the head."""
    _witness_now(pair)
    engine = pair.sgh.engine
    with engine.connect() as connection:
        events = list(iter_events(connection, chain="CART-LBCL"))
    with engine.begin() as connection:
        _drop_triggers(connection)
        prev = events[1].hash
        for audit in events[2:]:
            after = {"values": {"fever_temp": "36.6"}} if audit.seq == 3 else audit.after
            payload = {**audit.payload(), "after": after}
            new_hash = event_hash(prev, payload)
            connection.execute(
                audit_event.update()
                .where(audit_event.c.chain == "CART-LBCL", audit_event.c.seq == audit.seq)
                .values(after=canonical_json(after).decode(), prev_hash=prev, hash=new_hash)
            )
            prev = new_hash
        connection.execute(
            audit_head.update().where(audit_head.c.chain == "CART-LBCL").values(hash=prev)
        )
    assert _trail_intact(engine)
    _append(engine, "CART-LBCL", 2)  # the forged history goes on: the peer cannot tell
    assert pair.run(pair.sgh.push)[0].detail.startswith("not handed over: forked")
    report = pair.run(pair.sgh.verify)
    assert [(f.kind, f.chain) for f in report.findings] == [("forked", "CART-LBCL")]
    assert "event 10 has hash" in str(report.findings[0])


def _post(pair: Pair, path: str, message: dict[str, Any]) -> httpx.Response:
    async def call(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"http://ruijin.test{path}", content=canonical_json(message))

    return pair.run(call)


def test_a_statement_not_signed_by_a_trusted_peer_is_refused_and_nothing_is_kept(
    pair: Pair,
) -> None:
    heads = [ChainHead("CART-LBCL", 1, "a" * 64)]
    forged = _post(pair, WITNESS_PATH, sign_statement(heads, generate_key(), "sgh"))
    assert forged.status_code == 401
    assert "signature.bad_signature" in forged.json()["detail"]
    stranger = _post(pair, WITNESS_PATH, sign_statement(heads, generate_key(), "mallory"))
    assert stranger.status_code == 401
    assert "signature.untrusted_key" in stranger.json()["detail"]
    unsigned = _post(pair, WITNESS_PATH, {"body": {"node": "sgh"}})
    assert unsigned.status_code == 401
    own = _post(pair, WITNESS_PATH, sign_statement(heads, pair.sgh.key, "sgh"))
    assert own.status_code == 201  # its own heads, signed by itself: kept
    about_nuh = {**sign_statement(heads, pair.sgh.key, "sgh")["body"], "node": "nuh"}
    claims_nuh = _post(pair, WITNESS_PATH, sign_message(about_nuh, pair.sgh.key, "sgh"))
    assert claims_nuh.status_code == 403
    assert "witness.not_own_heads" in claims_nuh.json()["detail"]
    read_other = _post(
        pair,
        HELD_PATH,
        sign_message(
            {"protocol": 1, "type": "witness_request", "node": "nuh"}, pair.sgh.key, "sgh"
        ),
    )
    assert read_other.status_code == 403
    with pair.ruijin.engine.connect() as connection:
        kept = connection.execute(sa.select(audit_witness.c.node)).scalars().all()
        actions = [(e.action, e.actor) for e in iter_events(connection, chain=WITNESS_CHAIN)]
    assert kept == ["sgh"]
    assert actions == [
        ("witness.refused", "unverified:sgh"),
        ("witness.refused", "unverified:mallory"),
        ("witness.refused", "unverified"),
        ("witness.stored", "node:sgh"),
        ("witness.refused", "unverified:sgh"),
        ("witness.read_refused", "unverified:sgh"),
    ]


def test_a_peer_returning_a_statement_the_node_never_signed_is_not_trusted(pair: Pair) -> None:
    """A peer cannot make up heads for the node: the node checks its own signature."""
    forged = sign_statement([ChainHead("CART-LBCL", 99, "b" * 64)], generate_key(), "sgh")
    with pair.ruijin.engine.begin() as connection:
        connection.execute(
            audit_witness.insert().values(
                node="sgh",
                received_at="2026-01-01T00:00:00Z",
                heads_sha256="0" * 64,
                statement=canonical_json(forged).decode(),
            )
        )
    report = pair.run(pair.sgh.verify)
    assert report.ok
    assert not report.witnessed
    assert not report.complete
    assert "signature.bad_signature" in report.failures[0].detail


def test_the_running_node_hands_its_heads_over_at_its_interval(pair: Pair) -> None:
    async def held_length(client: httpx.AsyncClient) -> int | None:
        witnessed, _ = await pair.sgh.fetch(client)
        if not witnessed:
            return None
        return {h.chain: h.length for h in witnessed[0].statement.chains}["CART-LBCL"]

    async def scenario(client: httpx.AsyncClient) -> list[int | None]:
        stop = asyncio.Event()
        pusher = asyncio.create_task(run_witness_pusher(pair.sgh, 0.02, stop, client))
        seen: list[int | None] = []
        try:
            for expected in (10, 12):
                deadline = asyncio.get_running_loop().time() + 10
                while (length := await held_length(client)) != expected:
                    assert asyncio.get_running_loop().time() < deadline, length
                    await asyncio.sleep(0.01)
                seen.append(length)
                await asyncio.to_thread(_append, pair.sgh.engine, "CART-LBCL", 2)
        finally:
            stop.set()
            await pusher
        return seen

    assert pair.run(scenario) == [10, 12]
