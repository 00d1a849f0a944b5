"""Manual approval is configured by the node policy alone; its queue is the node database.

There is no approvals file any more: a setting or node config still naming one is refused
(so nobody believes decisions go to a file), and a node whose policy asks for manual
approval without a database refuses to start, saying which setting to set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consortia.config import load_settings
from consortia.exceptions import ConfigurationError, ConsortiaError
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import NodeConfig, build_node, node_config_from_settings
from consortia.federation.policy import NodePolicy
from consortia.federation.signing import TrustStore, generate_key, save_key


def test_a_settings_file_naming_an_approvals_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "consortia.toml"
    config.write_text('approvals_file = "approvals.json"\n', encoding="utf-8")
    with pytest.raises(ConsortiaError, match="approvals_file"):
        load_settings(config)


def test_a_node_config_naming_an_approvals_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "consortia.toml"
    path.write_text('node_name = "sgh"\n[node]\napprovals_file = "approvals.json"\n')
    with pytest.raises(ConsortiaError, match=f"{path}:3: node.approvals_file: "):
        node_config_from_settings(load_settings(path))


def test_a_node_asking_for_manual_approval_without_a_database_refuses_to_start(
    tmp_path: Path,
) -> None:
    save_key(generate_key(), tmp_path / "node_key.pem")
    config = NodeConfig(name="sgh", policy={"manual_approval": True}, base_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="database_url"):
        build_node(config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node_key.pem"]


def test_a_runner_with_manual_approval_needs_the_database_queue() -> None:
    with pytest.raises(ConfigurationError, match="manual_approval needs the node database"):
        NodeRunner("sgh", generate_key(), TrustStore(), {}, policy=NodePolicy(manual_approval=True))
