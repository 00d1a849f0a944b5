"""Fixtures for federation tests: three hospitals' synthetic trial files and a federation.

Each node's table comes from a CSV file written here and read back with the table loader,
so every test also exercises the loader. ``mrn`` is an identifier column: it is declared
as such and never enters a table.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consortia.federation.audit import MemoryAuditSink
from consortia.federation.coordinator import Coordinator
from consortia.federation.node import NodeRunner
from consortia.federation.policy import NodePolicy
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64
from consortia.federation.tables import Table, concat_tables, read_table
from consortia.federation.transport import NodeHandle

NODE_SIZES = {"sgh": 80, "ruijin": 70, "nuh": 60}
COLUMNS = [
    "mrn",
    "age",
    "arm",
    "response",
    "pfs_days",
    "pfs_event",
    "biomarker",
    "ref_mgdl",
    "meter_mgdl",
    "ai_score",
    "biopsy",
]


def trial_rows(seed: int, n: int) -> list[dict[str, Any]]:
    """Synthetic CAR-T trial rows: covariates, a binary response, PFS, glucose and AI reads."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(n):
        age = int(rng.integers(30, 80))
        arm = "car_t" if rng.random() < 0.5 else "soc"
        linear = -1.0 + 0.03 * (age - 55) + (1.2 if arm == "car_t" else 0.0)
        response = int(rng.random() < 1 / (1 + math.exp(-linear)))
        hazard = 0.004 * math.exp(0.02 * (age - 55) - (0.7 if arm == "car_t" else 0.0))
        pfs_days = max(1, int(rng.exponential(1 / hazard)))
        censor = int(rng.integers(200, 900))
        event = int(pfs_days <= censor)
        reference = float(rng.uniform(60, 300))
        truth = int(rng.random() < 0.45)
        rows.append(
            {
                "mrn": f"M{seed:02d}{index:04d}",
                "age": age,
                "arm": arm,
                "response": response,
                "pfs_days": min(pfs_days, censor),
                "pfs_event": event,
                "biomarker": round(float(rng.normal(5 + (age - 55) / 20, 1.5)), 3),
                "ref_mgdl": round(reference, 1),
                "meter_mgdl": round(reference * (1 + float(rng.normal(0, 0.06))), 1),
                "ai_score": round(float(np.clip(rng.normal(0.35 + 0.3 * truth, 0.18), 0, 1)), 3),
                "biopsy": truth,
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows (dicts with the same keys) as a CSV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def trial_files(tmp_path: Path) -> dict[str, Path]:
    """One ``trial.csv`` per node (same stem, different folders)."""
    return {
        name: write_csv(tmp_path / name / "trial.csv", trial_rows(seed, n))
        for seed, (name, n) in enumerate(NODE_SIZES.items(), start=1)
    }


@pytest.fixture
def trial_tables(trial_files: dict[str, Path]) -> dict[str, Table]:
    """The nodes' tables, read without the identifier column."""
    return {name: read_table(path, identifiers=["mrn"]) for name, path in trial_files.items()}


@pytest.fixture
def pooled(trial_tables: dict[str, Table]) -> Table:
    """All nodes' rows in one table: the pooled reference."""
    return concat_tables(list(trial_tables.values()))


@pytest.fixture
def node_labels(trial_tables: dict[str, Table]) -> np.ndarray[Any, Any]:
    """For each pooled row, the node it came from."""
    return np.array([name for name, table in trial_tables.items() for _ in range(table.n_rows)])


@dataclass
class Federation:
    """A lead and member nodes living in this process."""

    coordinator: Coordinator
    runners: dict[str, NodeRunner]
    audits: dict[str, MemoryAuditSink] = field(default_factory=dict)

    @property
    def handles(self) -> list[NodeHandle]:
        return [NodeHandle(name, f"http://{name}.test") for name in self.runners]


FederationFactory = Callable[..., Federation]


@pytest.fixture
def make_federation(trial_tables: dict[str, Table]) -> FederationFactory:
    """Build a lead trusting every node and nodes trusting the lead.

    ``policies`` maps node names to their policy (others get ``policy``, default
    DESIGN.md's defaults); ``tables`` replaces the trial tables.
    """

    def build(
        *,
        policy: NodePolicy | None = None,
        policies: Mapping[str, NodePolicy] | None = None,
        tables: Mapping[str, Table] | None = None,
        round_timeout: float = 10.0,
        **runner_options: Any,
    ) -> Federation:
        chosen = dict(tables) if tables is not None else trial_tables
        lead_key = generate_key()
        lead_peer = Peer(name="lead", url="http://lead.test", public_key=public_key_b64(lead_key))
        runners: dict[str, NodeRunner] = {}
        audits: dict[str, MemoryAuditSink] = {}
        for name, table in chosen.items():
            audits[name] = MemoryAuditSink()
            runners[name] = NodeRunner(
                name,
                generate_key(),
                TrustStore([lead_peer]),
                {table.name: table},
                policy=(policies or {}).get(name, policy),
                audit=audits[name],
                identifiers=["mrn"],
                url=f"http://{name}.test",
                **runner_options,
            )
        trust = TrustStore(
            [Peer(name=n, url=r.url, public_key=r.public_key) for n, r in runners.items()]
        )
        coordinator = Coordinator(
            "lead", lead_key, trust, round_timeout=round_timeout, retry_interval=0.02
        )
        return Federation(coordinator, runners, audits)

    return build
