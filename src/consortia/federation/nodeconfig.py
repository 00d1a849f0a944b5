"""A member node's federation config file, and building its :class:`NodeRunner` from it.

::

    name: sgh
    url: https://consortia.sgh.example/
    key_file: keys/node.pem             # Ed25519 PEM, mode 0600
    trust_file: trust.yaml              # {peers: [{name, url, public_key}]}, and/or:
    peers:
      - {name: lead, url: https://lead.example/, public_key: "base64…"}
    lead_url: https://lead.example/     # set to long-poll the lead (pull transport)
    tables:
      cart_efficacy:
        file: data/cart.csv
        columns: {pfs_days: integer, pfs_event: boolean, arm: text}
        identifiers: [mrn]
    policy: {min_cell_count: 5, time_bin: 7, manual_approval: false}
    audit_log: audit/federation.jsonl
    approvals_file: approvals.json

Relative paths resolve against the config file's directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from consortia.exceptions import ConfigurationError
from consortia.federation.approval import ApprovalQueue
from consortia.federation.audit import JsonlAuditSink
from consortia.federation.node import NodeRunner
from consortia.federation.policy import NodePolicy
from consortia.federation.signing import Peer, TrustStore, load_key
from consortia.federation.tables import TableSpec, load_table

__all__ = ["NodeConfig", "build_node", "load_node_config"]


class NodeConfig(BaseModel):
    """Everything a member node needs to take part in federated analyses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    url: str = ""
    key_file: Path = Path("node_key.pem")
    trust_file: Path | None = None
    peers: list[Peer] = []
    lead_url: str | None = None
    tables: dict[str, TableSpec] = {}
    policy: NodePolicy = NodePolicy()
    audit_log: Path = Path("audit/federation.jsonl")
    approvals_file: Path | None = Path("approvals.json")
    clock_skew_seconds: float = Field(300.0, gt=0)
    base_dir: Path = Field(Path("."), exclude=True)

    def resolve(self, path: Path) -> Path:
        """A config path made absolute against the config file's directory."""
        return path if path.is_absolute() else self.base_dir / path


def load_node_config(path: Path) -> NodeConfig:
    """Read and validate a node config; every problem is reported as ``file: field: message``."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the node config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: the node config must be a mapping")
    try:
        return NodeConfig.model_validate({**data, "base_dir": path.resolve().parent})
    except PydanticValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigurationError("\n".join(lines)) from None


def build_node(config: NodeConfig) -> NodeRunner:
    """Load the node's key, trust store, tables, audit log and approval queue."""
    trust = TrustStore(config.peers)
    if config.trust_file is not None:
        for peer in TrustStore.load(config.resolve(config.trust_file)).peers:
            trust.add(peer)
    identifiers = {name for spec in config.tables.values() for name in spec.identifiers}
    tables = {
        name: load_table(
            name, spec, base_dir=config.base_dir, identifiers=config.policy.identifier_columns
        )
        for name, spec in config.tables.items()
    }
    approvals = (
        ApprovalQueue(config.resolve(config.approvals_file))
        if config.approvals_file is not None
        else ApprovalQueue()
    )
    return NodeRunner(
        config.name,
        load_key(config.resolve(config.key_file)),
        trust,
        tables,
        policy=config.policy,
        audit=JsonlAuditSink(config.resolve(config.audit_log)),
        approvals=approvals,
        identifiers=identifiers,
        url=config.url,
        clock_skew_seconds=config.clock_skew_seconds,
    )
