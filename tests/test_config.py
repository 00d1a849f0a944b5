from __future__ import annotations

import re
from pathlib import Path

import pytest

from consortia.config import DEFAULT_SECRET, Settings
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
