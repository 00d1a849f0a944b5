"""The node commands read the ``[node]`` section of consortia.toml; ``node serve`` is gone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from consortia.cli import app
from consortia.federation.signing import generate_key, public_key_b64, save_key

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_consortia_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CONSORTIA_"):
            monkeypatch.delenv(name)


def _node(tmp_path: Path) -> tuple[Path, str]:
    key = generate_key()
    save_key(key, tmp_path / "node_key.pem")
    config = tmp_path / "consortia.toml"
    config.write_text(
        'node_name = "sgh"\nnode_url = "https://sgh.example"\n'
        '[node]\nkey_file = "node_key.pem"\ntrust_file = "trust.yaml"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    return config, public_key_b64(key)


def test_identity_and_trust_read_the_node_section_of_consortia_toml(tmp_path: Path) -> None:
    config, public_key = _node(tmp_path)
    shown = runner.invoke(app, ["node", "identity", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "sgh" in shown.output
    assert public_key in shown.output
    lead = public_key_b64(generate_key())
    trusted = runner.invoke(
        app, ["node", "trust", "lead", "https://lead.example", lead, "--config", str(config)]
    )
    assert trusted.exit_code == 0, trusted.output
    peers = yaml.safe_load((tmp_path / "trust.yaml").read_text(encoding="utf-8"))["peers"]
    assert [peer["name"] for peer in peers] == ["lead"]


def test_a_consortia_toml_without_a_node_section_is_named(tmp_path: Path) -> None:
    config = tmp_path / "consortia.toml"
    config.write_text('node_name = "sgh"\n', encoding="utf-8")
    result = runner.invoke(app, ["node", "identity", "--config", str(config)])
    assert result.exit_code == 1
    assert f"{config}: has no [node] section" in result.output


def test_node_serve_is_gone_and_says_what_replaces_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["node", "serve", "--config", str(tmp_path / "node.yaml")])
    assert result.exit_code == 1
    assert "`consortia serve` serves the federation endpoints" in result.output
    assert "consortia config import-node-yaml" in result.output
    assert not (tmp_path / "node.yaml").exists()
