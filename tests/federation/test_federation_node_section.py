"""The ``[node]`` section of consortia.toml: the federation config in the one config file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from consortia.config import load_settings
from consortia.exceptions import ConfigurationError
from consortia.federation.nodeconfig import (
    build_node,
    load_node_config,
    node_config_from_settings,
)
from consortia.federation.signing import generate_key, public_key_b64, save_key


@pytest.fixture(autouse=True)
def _no_consortia_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CONSORTIA_"):
            monkeypatch.delenv(name)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "consortia.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_the_node_section_is_the_same_node_config_as_a_yaml_file(
    tmp_path: Path, trial_files: dict[str, Path]
) -> None:
    lead = public_key_b64(generate_key())
    save_key(generate_key(), tmp_path / "keys" / "node.pem")
    trial = trial_files["sgh"]
    config = _write(
        tmp_path,
        'node_name = "sgh"\nnode_url = "http://127.0.0.1:8101"\n'
        'database_url = "sqlite:///node.db"\n'
        '[node]\nkey_file = "keys/node.pem"\nlead_url = "http://lead.example"\n'
        "witness_interval_seconds = 0\n"
        '[node.policy]\nmin_cell_count = 7\nanalyses = ["describe", "kaplan_meier"]\n'
        f'[[node.peers]]\nname = "lead"\nurl = "http://lead.example"\npublic_key = "{lead}"\n'
        f'[node.tables.trial]\nfile = "{trial}"\nidentifiers = ["mrn"]\n',
    )
    node = node_config_from_settings(load_settings(config))
    assert node is not None
    yaml_file = tmp_path / "node.yaml"
    yaml_file.write_text(
        yaml.safe_dump(
            {
                "name": "sgh",
                "url": "http://127.0.0.1:8101",
                "database_url": f"sqlite:///{tmp_path / 'node.db'}",
                "key_file": "keys/node.pem",
                "lead_url": "http://lead.example",
                "witness_interval_seconds": 0,
                "policy": {"min_cell_count": 7, "analyses": ["describe", "kaplan_meier"]},
                "peers": [{"name": "lead", "url": "http://lead.example", "public_key": lead}],
                "tables": {"trial": {"file": str(trial), "identifiers": ["mrn"]}},
            }
        ),
        encoding="utf-8",
    )
    assert node == load_node_config(yaml_file)
    assert node.resolve(node.key_file) == tmp_path / "keys" / "node.pem"
    runner = build_node(node.model_copy(update={"database_url": None}))
    try:
        assert runner.name == "sgh"
        assert runner.policy.min_cell_count == 7
        assert runner.trust.get("lead") is not None
    finally:
        runner.close()


def test_a_node_section_repeating_a_setting_or_with_a_bad_field_names_each_line(
    tmp_path: Path,
) -> None:
    config = _write(
        tmp_path,
        'node_name = "sgh"\n[node]\nname = "other"\n'
        "witness_interval_seconds = -1\nno_such_field = 1\n[node.policy]\nmin_cell_count = 0\n",
    )
    with pytest.raises(ConfigurationError) as refused:
        node_config_from_settings(load_settings(config))
    lines = str(refused.value).splitlines()
    assert lines[0] == (
        f"{config}:3: node.name: this is the setting node_name (write `node_name = ...` at "
        "the top of the file, before any section)"
    )
    assert any(line.startswith(f"{config}:4: node.witness_interval_seconds: ") for line in lines)
    assert any(line.startswith(f"{config}:5: node.no_such_field: ") for line in lines)
    assert any(line.startswith(f"{config}:7: node.policy.min_cell_count: ") for line in lines)


def test_federation_config_is_still_read_without_a_node_section_and_refused_with_one(
    tmp_path: Path,
) -> None:
    save_key(generate_key(), tmp_path / "node.pem")
    (tmp_path / "node.yaml").write_text("name: sgh\nkey_file: node.pem\n", encoding="utf-8")
    config = _write(tmp_path, 'federation_config = "node.yaml"\n')
    node = node_config_from_settings(load_settings(config))
    assert node is not None
    assert node.name == "sgh"
    config = _write(tmp_path, 'federation_config = "node.yaml"\n[node]\nkey_file = "node.pem"\n')
    with pytest.raises(ConfigurationError, match=f"{config}:1: federation_config: "):
        node_config_from_settings(load_settings(config))


def test_a_node_without_a_section_takes_no_part_in_federation(tmp_path: Path) -> None:
    assert node_config_from_settings(load_settings(_write(tmp_path, 'node_name = "x"\n'))) is None
