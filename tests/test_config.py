from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from consortia.config import DEFAULT_SECRET, Settings, load_settings
from consortia.exceptions import ConfigurationError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOCS.read_text(encoding="utf-8"), re.M))
    assert set(Settings.model_fields) == documented


def test_settings_come_from_prefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSORTIA_NODE_NAME", "sh_node")
    monkeypatch.setenv("CONSORTIA_DATABASE_URL", "postgresql://db/consortia")
    settings = Settings()
    assert settings.node_name == "sh_node"
    assert settings.database_url == "postgresql://db/consortia"


@pytest.mark.parametrize("environment", ["production", "test"])
def test_the_default_secret_is_refused_outside_development(environment: str) -> None:
    with pytest.raises(ConfigurationError, match="CONSORTIA_SECRET_KEY"):
        Settings(environment=environment).check_safe()  # type: ignore[arg-type]


def test_a_short_secret_is_refused_in_production() -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        Settings(environment="production", secret_key="short").check_safe()  # type: ignore[arg-type]


def test_a_strong_secret_is_accepted_in_production() -> None:
    Settings(environment="production", secret_key="x" * 40).check_safe()  # type: ignore[arg-type]


def test_development_accepts_the_default_secret() -> None:
    settings = Settings()
    assert settings.secret_key.get_secret_value() == DEFAULT_SECRET
    settings.check_safe()


def _config(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "consortia.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["0644", "0640", "0604"])
def test_a_secret_in_a_config_file_others_may_read_is_refused_in_production(
    tmp_path: Path, mode: int
) -> None:
    secret = "s" * 40
    path = _config(tmp_path, f'environment = "production"\nsecret_key = "{secret}"\n', mode)
    with pytest.raises(ConfigurationError, match="readable by others") as refused:
        load_settings(path)
    assert f"chmod 600 {path}" in str(refused.value)
    assert secret not in str(refused.value)
    path.chmod(0o600)
    assert load_settings(path).secret_key.get_secret_value() == secret


def test_a_secret_in_a_readable_config_file_is_warned_about_in_development(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _config(tmp_path, 'environment = "development"\nsecret_key = "dev-secret"\n', 0o644)
    with caplog.at_level(logging.WARNING, logger="consortia.config"):
        settings = load_settings(path)
    assert settings.secret_key.get_secret_value() == "dev-secret"
    assert any("readable by others" in record.getMessage() for record in caplog.records)


def test_a_readable_config_file_without_a_secret_is_accepted(tmp_path: Path) -> None:
    path = _config(tmp_path, 'environment = "production"\nnode_name = "sg"\n', 0o644)
    assert load_settings(path).node_name == "sg"


def test_a_secret_overridden_by_the_environment_is_still_a_secret_in_a_readable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSORTIA_SECRET_KEY", "e" * 40)
    path = _config(tmp_path, f'environment = "production"\nsecret_key = "{"f" * 40}"\n', 0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        load_settings(path)
