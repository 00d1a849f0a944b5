"""The ``[node]`` section of consortia.toml: the federation config in the one config file."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from consortia.config import load_settings
from consortia.exceptions import ConfigurationError
from consortia.federation.node_yaml import read_node_yaml
from consortia.federation.nodeconfig import build_node, node_config_from_settings
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


def test_the_node_section_is_the_same_node_config_as_the_yaml_file_it_replaces(
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
    yaml_file = tmp_path / "node.yaml"  # the same node as a YAML file of earlier releases
    yaml_file.write_text(
        f"name: sgh\nurl: http://127.0.0.1:8101\ndatabase_url: sqlite:///{tmp_path / 'node.db'}\n"
        "key_file: keys/node.pem\nlead_url: http://lead.example\nwitness_interval_seconds: 0\n"
        "policy: {min_cell_count: 7, analyses: [describe, kaplan_meier]}\n"
        f"peers: [{{name: lead, url: 'http://lead.example', public_key: '{lead}'}}]\n"
        f"tables: {{trial: {{file: '{trial}', identifiers: [mrn]}}}}\n",
        encoding="utf-8",
    )
    assert node == read_node_yaml(yaml_file)
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


def test_a_config_naming_a_yaml_federation_config_is_refused_with_its_line_and_the_fix(
    tmp_path: Path,
) -> None:
    (tmp_path / "node.yaml").write_text("name: sgh\nkey_file: node.pem\n", encoding="utf-8")
    fix = f"run `consortia config import-node-yaml {tmp_path / 'node.yaml'} --config"
    for text, line in (
        ('node_name = "sgh"\nfederation_config = "node.yaml"\n', 2),
        ('federation_config = "node.yaml"\n[node]\nkey_file = "node.pem"\n', 1),
    ):
        config = _write(tmp_path, text)
        with pytest.raises(ConfigurationError) as refused:
            load_settings(config)
        message = str(refused.value)
        assert message.startswith(f"{config}:{line}: federation_config: ")
        assert f"{fix} {config}` to move it there" in message
        assert "[node] section" in message


def test_a_federation_config_in_the_environment_is_refused_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSORTIA_FEDERATION_CONFIG", str(tmp_path / "node.yaml"))
    for config in (_write(tmp_path, 'node_name = "sgh"\n'), None):
        with pytest.raises(ConfigurationError) as refused:
            load_settings(config)
        message = str(refused.value)
        assert message.startswith("CONSORTIA_FEDERATION_CONFIG: federation_config: ")
        assert f"import-node-yaml {tmp_path / 'node.yaml'}" in message
        assert "unset CONSORTIA_FEDERATION_CONFIG" in message


def test_a_node_without_a_section_takes_no_part_in_federation(tmp_path: Path) -> None:
    assert node_config_from_settings(load_settings(_write(tmp_path, 'node_name = "x"\n'))) is None


def test_a_node_is_served_by_consortia_serve_alone() -> None:
    """`python -m consortia.federation.serve node.yaml` is gone with the YAML config."""
    assert importlib.util.find_spec("consortia.federation.serve") is None
