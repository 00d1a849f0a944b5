"""The test helper that writes a node's consortia.toml writes what a node reads back."""

from __future__ import annotations

import doctest
from pathlib import Path

import nodetoml
from consortia.config import load_settings
from consortia.federation.nodeconfig import node_config_from_settings
from consortia.federation.signing import generate_key, public_key_b64
from nodetoml import node_config, write_node_toml

LEAD = public_key_b64(generate_key())


def test_the_helper_s_examples_run() -> None:
    outcome = doctest.testmod(nodetoml)
    assert outcome.failed == 0
    assert outcome.attempted > 0


def test_a_written_config_reads_back_as_the_same_node(tmp_path: Path) -> None:
    fields = {
        "name": "sgh",
        "url": "http://sgh.test",
        "database_url": "sqlite:///node.db",
        "key_file": "keys/node.pem",
        "peers": [{"name": "lead", "url": "http://lead.test", "public_key": LEAD}],
        "tables": {"trial": {"file": "trial.csv", "identifiers": ["mrn"]}, "cart": {"edc": "X"}},
        "policy": {"min_cell_count": 7, "analyses": ["describe"], "time_bin": 1},
        "witness_interval_seconds": 0,
        "audit_log": "ignored.jsonl",  # a served node audits to its database
    }
    config = node_config_from_settings(load_settings(write_node_toml(tmp_path, fields)))
    assert config is not None
    assert (config.name, config.url) == ("sgh", "http://sgh.test")
    assert config.database() == f"sqlite:///{tmp_path.resolve() / 'node.db'}"
    assert config.policy.min_cell_count == 7
    assert config.peers[0].name == "lead"
    assert set(config.tables) == {"trial", "cart"}
    assert config == node_config(tmp_path, fields)
    without = node_config(tmp_path, {**fields, "database_url": None})
    assert without.database() is None
    assert without.resolve(without.key_file) == tmp_path.resolve() / "keys" / "node.pem"
