"""A node's consortia.toml: paths relative to the node, environment variables win."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortia.config import load_settings
from consortia.exceptions import ConfigurationError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "consortia.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_relative_paths_are_relative_to_the_node_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONSORTIA_DATABASE_URL", raising=False)
    monkeypatch.chdir("/")
    settings = load_settings(
        _write(tmp_path, 'node_dir = "."\ndatabase_url = "sqlite:///consortia.db"\n')
    )
    assert settings.node_dir == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'consortia.db'}"


def test_environment_variables_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", "postgresql://db.example/consortia")
    monkeypatch.setenv("CONSORTIA_NODE_NAME", "shanghai")
    settings = load_settings(
        _write(tmp_path, 'node_name = "singapore"\ndatabase_url = "sqlite:///x.db"\n')
    )
    assert settings.database_url == "postgresql://db.example/consortia"
    assert settings.node_name == "shanghai"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("node_name = ", "not valid TOML"),
        ('no_such_setting = "x"\n', "no_such_setting"),
        ("session_minutes = 0\n", "session_minutes"),
    ],
)
def test_a_bad_config_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(_write(tmp_path, text))


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_settings(tmp_path / "absent.toml")
