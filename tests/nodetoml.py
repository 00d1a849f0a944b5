"""Test support: a node's federation config as a node has it, the [node] section of its
consortia.toml, or as a :class:`NodeConfig` built in Python when a test needs only the object;
and the command that serves such a node (``consortia serve``) as a real process.

``fields`` are a node config's fields as one mapping (``name``, ``url``, ``database_url``,
``key_file``, ``peers``, ``tables``, ``policy`` ...). :func:`write_node_toml` puts the node's
name, URL, database and clock skew at the top of the file, as the settings of those names,
and the rest in ``[node]``.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> print(toml_text({"name": "sgh", "database_url": "sqlite:///n.db",
...                  "policy": {"min_cell_count": 7}}))
node_name = "sgh"
database_url = "sqlite:///n.db"
<BLANKLINE>
[node]
policy = {min_cell_count = 7}
<BLANKLINE>
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consortia.config import CONFIG_FILE_NAME, load_settings
from consortia.federation.nodeconfig import NodeConfig, node_config_from_settings

__all__ = [
    "free_port",
    "node_config",
    "serve_args",
    "toml_text",
    "toml_value",
    "write_node_toml",
]

#: Fields of a node config that are the node's settings, and the setting each is.
SETTINGS = {
    "name": "node_name",
    "url": "node_url",
    "database_url": "database_url",
    "clock_skew_seconds": "clock_skew_seconds",
}


def toml_value(value: Any) -> str:
    """A TOML value (inline tables and arrays) for JSON-like data; paths as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"{value!r} has no TOML form")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def toml_text(fields: Mapping[str, Any], **settings: Any) -> str:
    """consortia.toml's text for a node config's ``fields`` (and other ``settings``)."""
    top = {SETTINGS[key]: value for key, value in fields.items() if key in SETTINGS}
    top.update(settings)
    section = {
        key: value
        for key, value in fields.items()
        if key not in SETTINGS and key != "audit_log" and value is not None
    }
    lines = [f"{key} = {toml_value(value)}" for key, value in top.items()]
    lines += ["", "[node]"]
    lines += [f"{_key(key)} = {toml_value(value)}" for key, value in section.items()]
    return "\n".join(lines) + "\n"


def write_node_toml(folder: Path, fields: Mapping[str, Any], **settings: Any) -> Path:
    """Write ``folder/consortia.toml`` (mode 0600) holding ``fields``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE_NAME
    path.write_text(toml_text(fields, **settings), encoding="utf-8")
    path.chmod(0o600)
    return path


def node_config(folder: Path, fields: Mapping[str, Any]) -> NodeConfig:
    """The node config of ``fields``: read back from the consortia.toml written in
    ``folder`` for a node with a database; built in Python (relative paths against
    ``folder``, its federation audit in the JSON-lines ``audit_log``) for one without."""
    if fields.get("database_url") is None:
        return NodeConfig.model_validate({**fields, "base_dir": folder.resolve()})
    config = node_config_from_settings(load_settings(write_node_toml(folder, fields)))
    assert config is not None
    return config


def free_port() -> int:
    """A loopback port that is free now: ``consortia serve --port`` binds it a moment later
    (another process could take it in between; the server then exits, saying so)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_args(config: Path, port: int) -> list[str]:
    """The command that serves the node of ``config`` (pages, API, federation) on ``port``."""
    return [
        sys.executable,
        "-m",
        "consortia",
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
