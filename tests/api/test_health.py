"""``/api/v1/health`` for monitoring: the database (its revision) and the audit chains'
heads, without signing in; 503 when either is wrong."""

from __future__ import annotations

import sqlalchemy as sa
from node_client import Node

from consortia.auth.principal import Role
from consortia.storage.audit import audit_head
from consortia.storage.migrations import head_revision


def test_health_reports_the_database_and_the_chains(node: Node) -> None:
    node.add_user("ana@sg.example", ("CART01", "SG01", Role.COORDINATOR))
    answer = node.client().get("/api/v1/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["database"] == {"status": "ok", "revision": head_revision()}
    assert body["audit"]["status"] == "ok"
    assert body["audit"]["chains"] >= 1


def test_a_head_that_is_not_the_last_event_fails_the_health_check(node: Node) -> None:
    node.add_user("ana@sg.example", ("CART01", "SG01", Role.COORDINATOR))
    with node.engine.begin() as connection:  # as if the last events had been removed
        connection.execute(
            audit_head.update().where(audit_head.c.chain == "node").values(seq=audit_head.c.seq - 1)
        )
    answer = node.client().get("/api/v1/health")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "failing"
    assert body["database"]["status"] == "ok"
    assert body["audit"]["status"] == "broken"
    assert body["audit"]["problems"][0].startswith("chain 'node': events go on past its head ")


def test_a_database_behind_the_code_fails_the_health_check(node: Node) -> None:
    with node.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    answer = node.client().get("/api/v1/health")
    assert answer.status_code == 503
    assert answer.json()["database"] == {
        "status": "wrong revision",
        "revision": "0001",
        "expected": head_revision(),
    }
