"""Settings: one class, read from ``CONSORTIA_*`` environment variables or a node's config.

Every setting is documented in docs/settings.md (a test checks). Outside development the
app refuses to start with a missing or default secret.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, SecretStr
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from consortia.exceptions import ConfigurationError
from consortia.tomllines import KeyPath, key_lines, line_of

DEFAULT_SECRET = "change-me-development-only"
CONFIG_FILE_NAME = "consortia.toml"
#: The setting that named a node's YAML federation config before the ``[node]`` section.
FEDERATION_CONFIG = "federation_config"
log = logging.getLogger(__name__)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def env_name(setting: str) -> str:
    """The environment variable of a setting: ``node_name`` -> ``CONSORTIA_NODE_NAME``."""
    return f"CONSORTIA_{setting.upper()}"


def from_environment(setting: str) -> bool:
    """Whether a ``CONSORTIA_*`` variable sets ``setting`` (names are not case-sensitive)."""
    wanted = env_name(setting)
    return any(name.upper() == wanted for name in os.environ)


@dataclass(frozen=True)
class ConfigSource:
    """The config file settings were read from and the line of each of its keys."""

    file: Path
    lines: dict[KeyPath, int]

    def locate(self, path: Sequence[str | int], *, exact: bool = False) -> str | None:
        """``FILE:LINE`` of a key path (or, unless ``exact``, of its nearest written
        ancestor); None if the file does not hold it."""
        line = self.lines.get(tuple(path)) if exact else line_of(self.lines, path)
        return None if line is None else f"{self.file}:{line}"


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
    login_window_minutes: int = Field(
        15, ge=1, description="window in which failed sign-ins are counted for the limits"
    )
    login_failures_per_address: int = Field(
        30, ge=1, description="failed sign-ins from one client address per window"
    )
    login_failures_per_account: int = Field(
        10, ge=1, description="failed sign-ins for one account name per window"
    )
    password_hash_workers: int = Field(
        1, ge=1, le=16, description="password hashes computed at once per server process"
    )
    password_hash_queue: int = Field(
        32, ge=1, description="sign-ins that may wait for a password hash per server process"
    )
    clock_skew_seconds: int = Field(
        300, ge=1, description="largest clock difference accepted on signed messages"
    )
    log_level: str = Field("INFO", description="Python logging level")
    server_threads: int = Field(
        2,
        ge=1,
        le=256,
        description="threads per server process that run requests' database work",
    )
    max_request_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="the largest request body the API reads (larger: 413)",
    )
    max_json_depth: int = Field(
        32, ge=4, le=512, description="the deepest nesting of a JSON request body (deeper: 400)"
    )

    node: dict[str, Any] | None = Field(
        None,
        description="the node's federation section ([node] in consortia.toml): key, trust, "
        "tables, disclosure policy",
    )
    _source: ConfigSource | None = PrivateAttr(None)

    @property
    def source(self) -> ConfigSource | None:
        """The config file these settings were read from (None: the environment alone)."""
        return self._source

    def locate(self, path: Sequence[str | int], *, exact: bool = False) -> str:
        """Where a setting's value came from: ``CONSORTIA_X``, ``FILE:LINE`` (of the key, or
        unless ``exact`` of its nearest written ancestor) or ``default``.

        >>> Settings().locate(["session_minutes"]) in ("default", "CONSORTIA_SESSION_MINUTES")
        True
        """
        name = str(path[0]) if path else ""
        if from_environment(name):
            return env_name(name)
        if self._source is not None:
            found = self._source.locate(path, exact=exact)
            if found is not None:
                return found
        return "default"

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


def load_settings(config_file: Path | None = None, *, migrating: bool = False) -> Settings:
    """Settings from a node's ``consortia.toml``, with ``CONSORTIA_*`` variables winning.

    A relative ``node_dir`` in the file is relative to the file's directory, and a
    relative SQLite path relative to ``node_dir``, so a node directory can be moved.
    A file that still names a YAML federation config (``federation_config``, or
    ``CONSORTIA_FEDERATION_CONFIG``) is refused with the command that moves it into the
    ``[node]`` section (:func:`refuse_federation_config`), unless ``migrating``: the one
    command that does so reads the file while it still names one.
    Without a file, settings come from the environment alone. A file holding
    ``secret_key`` that its group or others may read is refused outside development
    (``chmod 600`` it) and logged as a warning in development.
    """
    if config_file is None:
        if not migrating:
            refuse_federation_config(None, None)
        return Settings()
    try:
        text = config_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{config_file}: cannot read ({exc.strerror})") from None
    try:
        values: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message with "(at line L, column C)": lead with FILE:L:C instead
        at = re.search(r"\(at line (\d+), column (\d+)\)$", str(exc))
        if at is None:
            raise ConfigurationError(f"{config_file}: not valid TOML: {exc}") from None
        reason = str(exc)[: at.start()].strip()
        raise ConfigurationError(
            f"{config_file}:{at.group(1)}:{at.group(2)}: not valid TOML: {reason}"
        ) from None
    source = ConfigSource(config_file, key_lines(text))
    holds_secret = "secret_key" in values  # even when the environment overrides it
    overridden = {key for key in values if from_environment(key)}
    values = {key: value for key, value in values.items() if key not in overridden}
    base = config_file.resolve().parent
    node_dir = Path(str(values.get("node_dir", ".")))
    if "node_dir" not in overridden:
        values["node_dir"] = node_dir if node_dir.is_absolute() else base / node_dir
        node_dir = values["node_dir"]
    if isinstance(values.get("database_url"), str):
        values["database_url"] = _anchor_sqlite(values["database_url"], node_dir)
    legacy = values.pop(FEDERATION_CONFIG, None)
    if not migrating:
        refuse_federation_config(
            (source, legacy, node_dir) if legacy is not None else None, config_file
        )
    try:
        settings = Settings(**values)
    except PydanticValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error["loc"]
            name = str(loc[0]) if loc else ""
            where = (
                env_name(name)
                if name in overridden or (name not in values and from_environment(name))
                else source.locate(loc) or str(config_file)
            )
            problems.append(f"{where}: {'.'.join(str(part) for part in loc)}: {error['msg']}")
        raise ConfigurationError("\n".join(problems)) from None
    settings._source = source
    if holds_secret:
        _check_private(config_file, settings.environment)
    return settings


def refuse_federation_config(
    written: tuple[ConfigSource, Any, Path] | None, config_file: Path | None
) -> None:
    """Refuse a node that still names a YAML federation config, naming where and the fix.

    The node's federation configuration is the ``[node]`` section of consortia.toml; a
    ``federation_config`` key (its ``FILE:LINE``) or ``CONSORTIA_FEDERATION_CONFIG`` is
    refused with the ``consortia config import-node-yaml`` command that moves the YAML
    file into the section (``written``: the file's source, the key's value, ``node_dir``).
    """
    variable = next(
        (name for name in os.environ if name.upper() == env_name(FEDERATION_CONFIG)), None
    )
    if written is None and variable is None:
        return
    option = f" --config {config_file}" if config_file is not None else ""
    if written is not None:
        source, value, node_dir = written
        where = source.locate([FEDERATION_CONFIG]) or str(source.file)
        yaml_file = Path(str(value))
        yaml_file = yaml_file if yaml_file.is_absolute() else node_dir / yaml_file
    else:
        where, yaml_file = env_name(FEDERATION_CONFIG), Path(os.environ[str(variable)])
    raise ConfigurationError(
        f"{where}: {FEDERATION_CONFIG}: a node's federation configuration is the [node] "
        f"section of {CONFIG_FILE_NAME}, no longer a YAML file; run `consortia config "
        f"import-node-yaml {yaml_file}{option}` to move it there"
        + (f" (then unset {env_name(FEDERATION_CONFIG)})" if written is None else "")
    )


def _check_private(config_file: Path, environment: Environment) -> None:
    """Refuse (outside development) or warn about a secret in a file others may read.

    Anyone who can read the secret key can forge session cookies and CSRF tokens.
    """
    if os.name != "posix":
        return
    try:
        mode = stat.S_IMODE(config_file.stat().st_mode)
    except OSError:
        return
    if not mode & 0o077:
        return
    problem = (
        f"{config_file}: holds the secret key and is readable by others (mode {mode:o}); "
        f"run chmod 600 {config_file}"
    )
    if environment is Environment.DEVELOPMENT:
        log.warning("%s", problem)
        return
    raise ConfigurationError(problem)


def _anchor_sqlite(url: str, node_dir: Path) -> str:
    """``sqlite:///consortia.db`` -> ``sqlite:////abs/node/consortia.db``."""
    try:
        parsed = make_url(url)
    except Exception:  # an invalid URL is reported when the engine is made
        return url
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    if Path(database).is_absolute():
        return url
    return str(parsed.set(database=str(node_dir / database)))
