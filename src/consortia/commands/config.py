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
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from consortia.commands.common import ConfigOption, node_settings, reporting
from consortia.config import (
    CONFIG_FILE_NAME,
    FEDERATION_CONFIG,
    Settings,
    env_name,
    from_environment,
    load_settings,
)
from consortia.exceptions import ConfigurationError, ConsortiaError

__all__ = ["config_app", "config_problems", "effective_config", "node_section_text"]

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
    "role",
    "consortium",
    "hub",
    "transport",
    "accept_studies",
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
    from consortia.services.node_admin import node_config_of

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
    node = node_config_of(settings) if settings.node is not None else None
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
    from consortia.services.node_admin import node_config_of

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
        node = node_config_of(settings)
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
    from consortia.services.node_admin import node_problems

    return [f"{where(path)}: {problem}" for path, problem in node_problems(node)]


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


_SECTION_KEYS = (
    "key_file",
    "lead_url",
    "trust_file",
    "witness_interval_seconds",
    "max_message_bytes",
)


def _toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    """A TOML value for JSON-like data (strings as JSON strings: valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"{value!r} has no TOML form")  # None is left out by the caller


def node_section_text(node: Any) -> str:
    """The ``[node]`` section of consortia.toml holding a YAML node config's federation
    fields (paths made absolute, so they mean what they meant next to the YAML file)."""
    data: dict[str, Any] = node.model_dump(mode="json", exclude_unset=True)
    data["key_file"] = str(node.resolve(node.key_file))
    if node.trust_file is not None:
        data["trust_file"] = str(node.resolve(node.trust_file))
    lines = ["[node]"]
    lines += [
        f"{key} = {_toml_value(data[key])}" for key in _SECTION_KEYS if data.get(key) is not None
    ]
    if data.get("policy"):
        lines += ["", "[node.policy]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data["policy"].items()]
    for peer in data.get("peers", []):
        lines += ["", "[[node.peers]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in peer.items() if v is not None]
    for name, spec in data.get("tables", {}).items():
        lines += ["", f"[node.tables.{_toml_key(name)}]"]
        if "file" in spec:
            spec["file"] = str(node.resolve(Path(spec["file"])))
        lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items() if v is not None]
    return "\n".join(lines) + "\n"


@config_app.command("import-node-yaml")
def config_import_node_yaml(
    node_yaml: Annotated[Path, typer.Argument(help="The node's federation config (YAML).")],
    config: ConfigOption = None,
) -> None:
    """Write a node.yaml's federation config into consortia.toml as its [node] section.

    The one-off move of a node set up before the section existed (a YAML file, named by
    ``federation_config``): a consortia.toml still naming one is read here only.
    Refuses (and changes nothing) when the YAML's name, URL or database differ from the
    node's settings, or consortia.toml already has a [node] section.
    """
    from consortia.services.node_admin import node_config_of, read_node_yaml

    with reporting():
        if config is None and Path(CONFIG_FILE_NAME).is_file():
            config = Path(CONFIG_FILE_NAME)
        settings = load_settings(config, migrating=True)
        if settings.source is None:
            raise ConfigurationError(f"no {CONFIG_FILE_NAME} found: pass --config FILE")
        path = settings.source.file
        node = read_node_yaml(node_yaml)
        problems = _import_conflicts(settings, node, node_yaml)
        if problems:
            raise ConfigurationError("\n".join(problems))
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        federation_line = settings.source.lines.get((FEDERATION_CONFIG,))
        if federation_line is not None:  # the section replaces the YAML file
            lines[federation_line - 1] = "# federation_config: moved into [node] below"
        top = (
            [f"node_name = {_toml_value(node.name)}"] if not _in_file(settings, "node_name") else []
        )
        if node.url and not _in_file(settings, "node_url"):
            top.append(f"node_url = {_toml_value(node.url)}")
        new_text = "\n".join(top + lines) + "\n\n" + node_section_text(node)
        staged = path.with_name(path.name + ".import")
        staged.write_text(new_text, encoding="utf-8")
        staged.chmod(path.stat().st_mode & 0o777)
        try:
            node_config_of(load_settings(staged, migrating=True))
        except BaseException:
            staged.unlink()
            raise
        staged.replace(path)
    typer.echo(
        f"wrote the [node] section of {path} from {node_yaml}; run `consortia config check`, "
        "then serve the node with `consortia serve` alone"
    )
    if from_environment(FEDERATION_CONFIG):
        typer.echo(f"unset {env_name(FEDERATION_CONFIG)}: the node no longer reads it")


def _in_file(settings: Settings, name: str) -> bool:
    return settings.source is not None and (name,) in settings.source.lines


def _import_conflicts(settings: Settings, node: Any, node_yaml: Path) -> list[str]:
    problems: list[str] = []
    if settings.node is not None:
        problems.append(f"{settings.locate(['node'])}: node: the file already has a [node] section")
    if _in_file(settings, "node_name") and settings.node_name != node.name:
        problems.append(
            f"{settings.locate(['node_name'])}: node_name: {settings.node_name!r}, but "
            f"{node_yaml} names the node {node.name!r}; make them the same first"
        )
    if node.url and _in_file(settings, "node_url") and settings.node_url != node.url:
        problems.append(
            f"{settings.locate(['node_url'])}: node_url: {settings.node_url!r}, but "
            f"{node_yaml} gives {node.url!r}; make them the same first"
        )
    database = node.database()
    if database is not None and database != settings.database_url:
        problems.append(
            f"{node_yaml}: database_url: the YAML names another database than the node's "
            f"({settings.locate(['database_url'])}); the [node] section uses the node's"
        )
    return problems
