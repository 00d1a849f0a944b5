"""The ``approvals_file`` setting: from the environment, or from consortia.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortia.config import Settings, load_settings


def test_the_approvals_file_comes_from_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CONSORTIA_APPROVALS_FILE", raising=False)
    assert Settings().approvals_file is None
    monkeypatch.setenv("CONSORTIA_APPROVALS_FILE", str(tmp_path / "approvals.json"))
    assert Settings().approvals_file == tmp_path / "approvals.json"


def test_a_relative_approvals_file_in_the_config_is_in_the_node_directory(tmp_path: Path) -> None:
    config = tmp_path / "consortia.toml"
    config.write_text('node_dir = "node"\napprovals_file = "approvals.json"\n', encoding="utf-8")
    assert load_settings(config).approvals_file == tmp_path / "node" / "approvals.json"
    config.write_text(f'approvals_file = "{tmp_path / "q.json"}"\n', encoding="utf-8")
    assert load_settings(config).approvals_file == tmp_path / "q.json"
