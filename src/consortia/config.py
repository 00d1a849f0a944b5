"""Settings: one class, read from ``CONSORTIA_*`` environment variables or a node's config.

Every setting is documented in docs/settings.md (a test checks). Outside development the
app refuses to start with a missing or default secret.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from consortia.exceptions import ConfigurationError

DEFAULT_SECRET = "change-me-development-only"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Everything a node can be configured with."""

    model_config = SettingsConfigDict(env_prefix="CONSORTIA_", extra="forbid", frozen=True)

    environment: Environment = Field(
        Environment.DEVELOPMENT, description="development, test or production"
    )
    database_url: str = Field(
        "sqlite:///consortia.db", description="SQLAlchemy URL: sqlite:///PATH or postgresql://..."
    )
    secret_key: SecretStr = Field(
        SecretStr(DEFAULT_SECRET), description="signs session cookies and CSRF tokens"
    )
    node_name: str = Field("local", description="this node's name in the consortium")
    node_url: str = Field("http://127.0.0.1:8000", description="the URL peers reach this node at")
    node_dir: Path = Field(Path("."), description="the node's directory (keys, config, files)")
    session_minutes: int = Field(30, ge=1, description="idle minutes before a web session ends")
    login_max_failures: int = Field(5, ge=1, description="failed logins before a lockout")
    login_lockout_minutes: int = Field(15, ge=1, description="how long a lockout lasts")
    min_password_length: int = Field(12, ge=12, description="shortest password accepted")
    clock_skew_seconds: int = Field(
        300, ge=1, description="largest clock difference accepted on signed messages"
    )
    log_level: str = Field("INFO", description="Python logging level")

    def check_safe(self) -> None:
        """Refuse a default or short secret anywhere but development."""
        if self.environment is Environment.DEVELOPMENT:
            return
        secret = self.secret_key.get_secret_value()
        if not secret or secret == DEFAULT_SECRET:
            raise ConfigurationError(
                "CONSORTIA_SECRET_KEY is missing or the development default; set a random "
                f"secret of at least 32 characters to run in {self.environment.value}"
            )
        if len(secret) < 32:
            raise ConfigurationError(
                f"CONSORTIA_SECRET_KEY has {len(secret)} characters; use at least 32"
            )
