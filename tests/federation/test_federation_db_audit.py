"""A node with a database audits federation in the database's trail, chain ``federation``."""

from __future__ import annotations

import asyncio
import csv
import doctest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

import consortia.federation.database_audit as database_audit_module
from consortia.federation.audit import AuditChainError, JsonlAuditSink
from consortia.federation.coordinator import AnalysisRefused, Coordinator
from consortia.federation.database_audit import FEDERATION_CHAIN, DatabaseAuditSink
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import build_node, load_node_config, verify_node_audit
from consortia.federation.protocol import AnalysisTask, new_id
from consortia.federation.signing import (
    Peer,
    TrustStore,
    generate_key,
    public_key_b64,
    save_key,
    sign_message,
)
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.storage.audit import audit_event, iter_events, verify_chain
from consortia.storage.db import make_engine

DESCRIBE = {"kind": "describe", "table": "trial", "variable": "age"}


def _write_node(folder: Path, lead_key: Any, database_url: str | None) -> Path:
    rows = [{"age": 40 + index, "arm": "A" if index % 2 else "B"} for index in range(12)]
    with (folder / "trial.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["age", "arm"])
        writer.writeheader()
        writer.writerows(rows)
    save_key(generate_key(), folder / "node.pem")
    config: dict[str, Any] = {
        "name": "sgh",
        "url": "http://sgh.test",
        "key_file": "node.pem",
        "peers": [
            {"name": "lead", "url": "http://lead.test", "public_key": public_key_b64(lead_key)}
        ],
        "tables": {"trial": {"file": "trial.csv"}},
        "policy": {"analyses": ["describe"]},
        "audit_log": "audit/federation.jsonl",
    }
    if database_url is not None:
        config["database_url"] = database_url
    path = folder / "node.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _analyze(node: NodeRunner, lead_key: Any, request: dict[str, Any]) -> dict[str, Any]:
    trust = TrustStore([Peer(name=node.name, url=node.url, public_key=node.public_key)])
    coordinator = Coordinator("lead", lead_key, trust, round_timeout=10.0)
    transport = InProcessTransport({node.name: node})
    handles = [NodeHandle(node.name, node.url)]
    return asyncio.run(coordinator.run_analysis(request, handles, transport))


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(migrated_database_url)
    yield engine
    engine.dispose()


def _drop_triggers(connection: sa.Connection) -> None:
    """What someone with database rights would do before editing the trail."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("DROP TRIGGER audit_event_no_update")
    else:
        connection.exec_driver_sql("DROP TRIGGER audit_event_no_change ON audit_event")


def test_refused_and_released_requests_land_in_the_database_trail_and_verify(
    engine: sa.Engine, migrated_database_url: str, tmp_path: Path
) -> None:
    lead_key = generate_key()
    config = load_node_config(_write_node(tmp_path, lead_key, migrated_database_url))
    node = build_node(config)
    try:
        assert isinstance(node.audit, DatabaseAuditSink)
        result = _analyze(node, lead_key, DESCRIBE)
        crosstab = {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "arm"}
        with pytest.raises(AnalysisRefused) as refused:
            _analyze(node, lead_key, crosstab)
        assert refused.value.rule == "analysis_not_allowed"
        forged = {"envelope": {"sender": "mallory"}, "body": {"task_id": "t-forged"}}
        asyncio.run(node.handle(forged))
    finally:
        node.close()

    with engine.connect() as connection:
        events = list(iter_events(connection, chain=FEDERATION_CHAIN))
        assert verify_chain(connection, chain=FEDERATION_CHAIN).ok
        assert verify_chain(connection).ok
    assert [event.seq for event in events] == [1, 2, 3]
    released, refusal, forgery = events
    assert (released.actor, released.action) == ("node:lead", "federation.released")
    assert released.entity_type == "analysis_task"
    assert released.entity_id == released.after["task_id"]
    assert released.after["request"] == DESCRIBE
    assert released.after["n"] == result["nodes"][0]["n"] == 12
    assert released.after["released"]["n"] == 12  # exactly what left the node
    assert "m2" in released.after["released"]
    assert (refusal.action, refusal.after["rule"]) == ("federation.refused", "analysis_not_allowed")
    assert refusal.after["released"] is None
    assert refusal.after["request"] == crosstab
    assert forgery.actor == "unverified:mallory"
    assert forgery.after["verified"] is False
    assert forgery.after["rule"].startswith("signature")
    assert not (tmp_path / "audit" / "federation.jsonl").exists()  # the file is not used
    report = verify_node_audit(config)
    assert report.startswith("federation audit trail intact: 3 events on chain 'federation'")
    assert "`consortia audit verify` checks every chain" in report


def test_an_edited_federation_audit_row_is_caught(
    engine: sa.Engine, migrated_database_url: str, tmp_path: Path
) -> None:
    lead_key = generate_key()
    config = load_node_config(_write_node(tmp_path, lead_key, migrated_database_url))
    node = build_node(config)
    try:
        _analyze(node, lead_key, DESCRIBE)
        with pytest.raises(AnalysisRefused):
            _analyze(node, lead_key, {"kind": "proportion", "table": "trial", "outcome": "age"})
    finally:
        node.close()
    with engine.begin() as connection:
        _drop_triggers(connection)
        row = connection.execute(
            sa.select(audit_event.c.after).where(
                audit_event.c.chain == FEDERATION_CHAIN, audit_event.c.seq == 1
            )
        ).scalar_one()
        # pretend less was released than really was
        connection.execute(
            audit_event.update()
            .where(audit_event.c.chain == FEDERATION_CHAIN, audit_event.c.seq == 1)
            .values(after=row.replace('"n":12', '"n":10'))
        )
    with engine.connect() as connection:
        report = verify_chain(connection, chain=FEDERATION_CHAIN)
    assert not report.ok
    assert (report.broken_chain, report.broken_seq) == (FEDERATION_CHAIN, 1)
    with pytest.raises(AuditChainError, match="chain 'federation' event 1"):
        verify_node_audit(config)


def test_a_node_without_a_database_keeps_its_json_lines_audit(tmp_path: Path) -> None:
    lead_key = generate_key()
    config = load_node_config(_write_node(tmp_path, lead_key, None))
    assert verify_node_audit(config).startswith("federation audit log intact: 0 events")
    node = build_node(config)
    assert isinstance(node.audit, JsonlAuditSink)
    _analyze(node, lead_key, DESCRIBE)
    node.close()
    assert verify_node_audit(config) == "federation audit log intact: 1 events"


def test_one_sink_per_event_is_one_transaction_and_a_failed_append_refuses_the_answer(
    engine: sa.Engine, tmp_path: Path
) -> None:
    sink = DatabaseAuditSink(engine)
    sink.append({"action": "federation.request", "task_id": "t1", "decision": "refused"})
    sink.append({"action": "federation.request", "task_id": "t2", "values": (1, 2)})
    assert [event["task_id"] for event in sink.events] == ["t1", "t2"]
    assert sink.events[1]["values"] == [1, 2]  # stored as plain JSON, hashed as stored
    assert sink.verify().ok
    lead_key = generate_key()
    config = load_node_config(_write_node(tmp_path, lead_key, None))
    node = build_node(config, engine=engine)
    assert isinstance(node.audit, DatabaseAuditSink)
    with engine.begin() as connection:  # the audit table is gone: nothing may be released
        connection.exec_driver_sql("ALTER TABLE audit_event RENAME TO audit_event_moved")
    task = AnalysisTask(task_id=new_id(), session=new_id(), round=1, to="sgh", request=DESCRIBE)
    message = sign_message(task.model_dump(mode="json"), lead_key, "lead")
    with pytest.raises(sa.exc.DBAPIError):
        asyncio.run(node.handle(message))


def test_docstring_examples_run() -> None:
    outcome = doctest.testmod(database_audit_module, optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0
    assert outcome.attempted > 0
