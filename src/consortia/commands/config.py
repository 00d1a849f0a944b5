"""``consortia config show`` and ``consortia config check``: the node's one configuration.

``show`` prints the effective configuration (``consortia.toml`` with ``CONSORTIA_*``
variables winning) with secrets masked and, for each value, where it came from: the file
and line, the environment variable, or the default. ``check`` reports every problem it
finds as ``FILE:LINE: setting: message`` (or the environment variable that set it) and
exits 1; it never prints a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from consortia.commands.common import ConfigOption, node_settings, reporting
from consortia.config import CONFIG_FILE_NAME, Settings
from consortia.exceptions import ConsortiaError

__all__ = ["config_app", "config_problems", "effective_config"]

config_app = typer.Typer(
    help=f"Show and check the node's configuration ({CONFIG_FILE_NAME} and CONSORTIA_*).",
    no_args_is_help=True,
)
MASK = "********"
#: Fields of the [node] section shown by ``config show`` (the others are settings).
_NODE_FIELDS = (
    "key_file",
    "trust_file",
    "peers",
    "lead_url",
    "tables",
    "policy",
    "witness_interval_seconds",
    "max_message_bytes",
)


def _masked_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: show nothing of it, it may hold a password
        return MASK


def _render(value: Any) -> str:
    if isinstance(value, SecretStr):
        return json.dumps(MASK)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if value is None:
        return "(none)"
    return json.dumps(value, default=str, sort_keys=True)


def effective_config(settings: Settings) -> list[tuple[str, str, str]]:
    """``(key, value, source)`` for every setting and every field of the ``[node]``
    section, secrets masked: ``source`` is ``FILE:LINE``, ``CONSORTIA_X`` or ``default``."""
    from consortia.federation.nodeconfig import node_config_from_settings

    entries: list[tuple[str, str, str]] = []
    for name in Settings.model_fields:
        if name == "node":
            continue
        value: Any = getattr(settings, name)
        if name == "database_url":
            value = _masked_url(value)
        elif hasattr(value, "value") and not isinstance(value, SecretStr):
            value = value.value  # an enum
        entries.append((name, _render(value), settings.locate([name], exact=True)))
    node = node_config_from_settings(settings) if settings.node is not None else None
    if node is not None:
        dumped = node.model_dump(mode="json")
        for field in _NODE_FIELDS:
            entries.append(
                (
                    f"node.{field}",
                    _render(dumped[field]),
                    settings.locate(["node", field], exact=True),
                )
            )
    return entries


def config_problems(config: Path | None) -> list[str]:
    """Every problem of the node's configuration, each ``WHERE: setting: message``."""
    from consortia.federation.nodeconfig import node_config_from_settings

    try:
        settings = node_settings(config)
    except ConsortiaError as error:
        return str(error).splitlines()
    where = _where(settings)
    problems: list[str] = []
    try:
        settings.check_safe()
    except ConsortiaError as error:
        problems.append(f"{where(['secret_key'])}: secret_key: {error}")
    try:
        node = node_config_from_settings(settings)
    except ConsortiaError as error:
        return problems + str(error).splitlines()
    if node is not None and settings.node is not None:
        problems += _node_problems(node, where)
    return problems


def _where(settings: Settings) -> Any:
    def where(path: list[str | int]) -> str:
        found = settings.locate(path)
        if found != "default":
            return found
        return str(settings.source.file) if settings.source is not None else "environment"

    return where


def _node_problems(node: Any, where: Any) -> list[str]:
    """What the [node] section names that cannot be used: a key, trust file or table file."""
    from consortia.federation.signing import TrustStore, load_key
    from consortia.federation.tables import TableSpec, load_table

    problems: list[str] = []
    try:
        load_key(node.resolve(node.key_file))
    except ConsortiaError as error:
        problems.append(f"{where(['node', 'key_file'])}: node.key_file: {error}")
    if node.trust_file is not None:
        try:
            TrustStore.load(node.resolve(node.trust_file))
        except ConsortiaError as error:
            problems.append(f"{where(['node', 'trust_file'])}: node.trust_file: {error}")
    for name, spec in node.tables.items():
        if not isinstance(spec, TableSpec):
            continue  # built from the database when the node starts
        try:
            load_table(
                name, spec, base_dir=node.base_dir, identifiers=node.policy.identifier_columns
            )
        except ConsortiaError as error:
            problems.append(f"{where(['node', 'tables', name])}: node.tables.{name}: {error}")
    return problems


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration, secrets masked, each value with its source."""
    with reporting():
        settings = node_settings(config)
        entries = effective_config(settings)
    origin = settings.source.file if settings.source is not None else "no config file"
    typer.echo(f"# node {settings.node_name}: {origin}; CONSORTIA_* variables win over the file")
    width = min(48, max(len(f"{key} = {value}") for key, value, _ in entries))
    for key, value, source in entries:
        typer.echo(f"{f'{key} = {value}':<{width}}  # {source}")


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration; print every problem as FILE:LINE: setting: message."""
    problems = config_problems(config)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        count = len(problems)
        typer.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        raise typer.Exit(1)
    typer.echo("configuration is valid")
