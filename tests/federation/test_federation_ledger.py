"""The release ledger of file tables: one history per file, kept by a node with or
without a database, and per released group as well as per release."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consortia.federation.audit import MemoryAuditSink
from consortia.federation.coordinator import AnalysisRefused, Coordinator
from consortia.federation.database_audit import DatabaseAuditSink
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import build_node
from consortia.federation.signing import (
    Peer,
    TrustStore,
    generate_key,
    public_key_b64,
    save_key,
)
from consortia.federation.tables import ColumnType, Table
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from nodetoml import node_config

LEAD_KEY = generate_key()


def _node(folder: Path, database_url: str | None) -> NodeRunner:
    rows = []
    for number in range(30):
        rows.append(
            {
                "age": 40 + number,
                "weight": "" if number == 7 else 60 + number,  # one subject's weight missing
                "arm": "a" if number < 15 else "b",
                "group": "x" if number < 16 else "y",  # arm a and one subject of arm b
            }
        )
    rows += [{"age": "", "weight": "", "arm": "a", "group": "x"}] * 5
    with (folder / "trial.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    save_key(generate_key(), folder / "node.pem")
    config: dict[str, Any] = {
        "name": "sgh",
        "key_file": "node.pem",
        "peers": [{"name": "lead", "public_key": public_key_b64(LEAD_KEY)}],
        "tables": {
            "trial": {"file": "trial.csv"},
            "again": {"file": "trial.csv", "columns": {"weight": "decimal", "age": "integer"}},
        },
        "audit_log": "audit.jsonl",
    }
    if database_url is not None:
        engine = make_engine(database_url)
        upgrade(engine)
        engine.dispose()
        config["database_url"] = database_url
    return build_node(node_config(folder, config))


def _run(node: NodeRunner, request: dict[str, Any]) -> dict[str, Any]:
    trust = TrustStore([Peer(name="sgh", public_key=node.public_key)])
    lead = Coordinator("lead", LEAD_KEY, trust, round_timeout=10.0)
    return asyncio.run(
        lead.run_analysis(request, [NodeHandle("sgh")], InProcessTransport({"sgh": node}))
    ).to_dict()


def _refused(node: NodeRunner, request: dict[str, Any]) -> str:
    with pytest.raises(AnalysisRefused) as refused:
        _run(node, request)
    return refused.value.rule


@pytest.mark.parametrize("with_database", [True, False])
def test_two_tables_over_one_file_share_its_ledger(
    tmp_path: Path, database_url: str, with_database: bool
) -> None:
    node = _node(tmp_path, database_url if with_database else None)
    try:
        assert _run(node, {"kind": "describe", "table": "trial", "variable": "age"})
        request = {"kind": "describe", "table": "again", "variable": "weight"}
        assert _refused(node, request) == "differencing"
    finally:
        node.close()


def test_groups_that_differ_by_one_row_are_refused_across_kinds(
    tmp_path: Path, database_url: str
) -> None:
    node = _node(tmp_path, database_url)
    try:
        crosstab = {"kind": "crosstab", "table": "trial", "rows": "arm", "columns": "arm"}
        assert _run(node, crosstab)["complete"]
        by_group = {"kind": "crosstab", "table": "trial", "rows": "group", "columns": "group"}
        assert _refused(node, by_group) == "differencing"
        bins = {"kind": "describe", "table": "trial", "variable": "age"}
        assert _run(node, {**bins, "bins": {"start": 40, "stop": 80, "width": 10}})
        # [56, 80] holds the ten subjects of [60, 70) and four more: their count would show
        edges = {**bins, "bin_edges": [40, 56, 80]}
        assert _refused(node, edges) == "differencing"
    finally:
        node.close()


@pytest.mark.parametrize("with_database", [True, False])
def test_models_on_one_set_of_rows_share_one_parameter_budget(
    database_url: str, with_database: bool
) -> None:
    """Each model's X'y is a set of weighted sums of the outcome over the same 30 rows:
    with enough models (30 independent sums) every patient's outcome could be solved for.
    Models on one set of rows may have 0.33 × 30 = 9.9 parameters in all."""
    rng = np.random.default_rng(3)
    columns = {f"c{index}": rng.normal(size=30) for index in range(12)}
    columns["y"] = rng.normal(size=30)
    gappy = rng.normal(size=30)
    gappy[:6] = np.nan  # another set of rows: 24
    columns["gappy"] = gappy
    table = Table("t", columns, dict.fromkeys(columns, ColumnType.DECIMAL))
    audit: Any = MemoryAuditSink()
    engine = None
    if with_database:
        engine = make_engine(database_url)
        upgrade(engine)
        audit = DatabaseAuditSink(engine)
    lead = Peer(name="lead", public_key=public_key_b64(LEAD_KEY))
    node = NodeRunner("sgh", generate_key(), TrustStore([lead]), {"t": table}, audit=audit)
    try:

        def glm(*covariates: str) -> dict[str, Any]:
            return {"kind": "glm", "table": "t", "outcome": "y", "covariates": list(covariates)}

        assert _run(node, glm("c0", "c1", "c2"))["complete"]  # 4 parameters
        assert _run(node, glm("c3", "c4", "c5"))["complete"]  # 8 in all
        assert _refused(node, glm("c6", "c7")) == "parameter_budget"  # 11 > 9.9
        assert _run(node, glm("c0", "c1", "c2"))["complete"]  # a re-run uses nothing new
        assert _run(node, glm("c6", "gappy"))["complete"]  # other rows, own budget
    finally:
        if engine is not None:
            engine.dispose()
