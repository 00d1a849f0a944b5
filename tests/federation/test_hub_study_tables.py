"""Accepting a study version from the hub declares the tables its analysis plan reads.

A member's real app (in-process ASGI) receives ``cart-lbcl`` signed by its hub, on SQLite
and PostgreSQL; its subjects are entered through the data-entry services (an import of
synthetic records). Before the version is accepted the hub's ``pfs_km`` is refused (no
such table); once accepted, the same request runs on the captured data with no edit of
the node's config, and its estimates equal the same analysis over the generator's own
analysis table (1e-8 relative). A table the config declares keeps its own definition.
"""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_hub_processes import assert_same_estimates
from test_hub_studies import Member, member_node, post, signed

from consortia.auth.principal import Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import load_template
from consortia.federation.coordinator import AnalysisRefused, Coordinator
from consortia.federation.edc_tables import (
    EdcTableSpec,
    NodeTables,
    accepted_study_tables,
    plan_tables,
)
from consortia.federation.local import analyze_local
from consortia.federation.node import NodeRunner
from consortia.federation.signing import Peer, TrustStore
from consortia.federation.tables import ColumnType, Table
from consortia.federation.transport import InProcessTransport, NodeHandle
from consortia.services import hub_studies, imports
from consortia.services.common import cli_operator
from consortia.storage.audit import iter_events
from randomisation_network import ARM_CODES, record_allocations

PLAN = {
    "kind": "kaplan_meier",
    "table": "cart_efficacy",
    "time": "pfs_days",
    "event": "pfs_event",
    "group": "arm",
}


def analyze(member: Member, request: dict[str, Any]) -> dict[str, Any]:
    node: NodeRunner = member.app.state.node
    trust = TrustStore([Peer(name=node.name, url=node.url, public_key=node.public_key)])
    coordinator = Coordinator("hub", member.hub_key, trust, round_timeout=30.0)
    transport = InProcessTransport({node.name: node})
    handles = [NodeHandle(node.name, node.url)]
    return asyncio.run(coordinator.run_analysis(request, handles, transport)).to_dict()


def test_a_plan_names_its_tables_built_from_the_studys_captured_data() -> None:
    assert plan_tables(load_template("cart-lbcl")) == {
        "cart_efficacy": EdcTableSpec(edc="CART-LBCL")
    }
    # the glucose plan reads items of the repeating group of paired readings
    assert plan_tables(load_template("glucose-iso15197")) == {
        "glucose_pairs": EdcTableSpec(edc="GLUCOSE-ISO15197", rows="readings")
    }


def test_accepting_a_study_declares_its_analysis_table_for_the_hubs_plan(
    database_url: str, tmp_path: Path
) -> None:
    for member in member_node(database_url, tmp_path, "manual"):
        post(member, signed(member))
        with pytest.raises(AnalysisRefused, match="table 'cart_efficacy' does not exist"):
            analyze(member, PLAN)
        [offer] = hub_studies.list_offers(member.engine, cli_operator())
        accepted = hub_studies.accept_offer(
            member.engine,
            cli_operator(Role.STUDY_ADMIN),
            offer.id,
            member.app.state.node.trust,
            "hub",
        )
        assert hub_studies.offer_tables(accepted) == ["cart_efficacy"]
        with member.engine.connect() as connection:
            events = [e for e in iter_events(connection) if e.action == "study.offer.accept"]
        assert events[-1].after["tables"] == {"cart_efficacy": {"edc": "CART-LBCL"}}

        data = synthesize("cart-lbcl", subjects=30, site="SG01", seed=11)
        operator = cli_operator(Role.STUDY_ADMIN, Role.COORDINATOR, Role.DATA_MANAGER)
        report = imports.import_file(
            member.engine, operator, "CART-LBCL", data.write_csv(tmp_path / "records.csv")
        )
        assert report.subjects_created == 30
        record_allocations(member.engine, dict(data.allocations))  # the arm is never typed
        result = analyze(member, PLAN)
        assert result["complete"] is True
        assert [(n["name"], n["n"]) for n in result["nodes"]] == [("sgh", 30)]
        # a federated analysis groups by allocation code: the reference, by the arms' codes
        coded = [row | {"arm": ARM_CODES[str(row["arm"])]} for row in data.analysis_rows()]
        reference = analyze_local(
            PLAN, {"sgh": write_rows(tmp_path / "cart_efficacy.csv", coded)}
        ).to_dict()
        assert_same_estimates(result["estimates"], reference["estimates"])


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return path


def test_a_table_the_config_declares_comes_before_the_accepted_studys(
    database_url: str, tmp_path: Path
) -> None:
    for member in member_node(database_url, tmp_path, "auto"):
        post(member, signed(member))  # accepted at once by the node's policy
        own = Table(
            "cart_efficacy",
            {"x": np.array([1.0, 2.0])},
            {"x": ColumnType.DECIMAL},
            "file:own.csv",
        )
        tables = NodeTables(
            {"cart_efficacy": own}, engine=member.engine, declared=accepted_study_tables
        )
        assert tables["cart_efficacy"] is own
        assert list(tables) == ["cart_efficacy"]
        member.app.state.node.tables = tables
        with pytest.raises(AnalysisRefused, match="has no column"):
            analyze(member, PLAN)
