"""``consortia init DIR``: create a node — config, database, signing key, first administrator.

It writes, in ``DIR``:

* ``consortia.toml`` (mode 0600: it holds the node's random secret key), with a ``[node]``
  section so that ``consortia serve`` also serves the federation endpoints;
* ``node_key.pem``: the node's Ed25519 signing key (mode 0600);
* ``consortia.db``: the SQLite database, migrated to the newest schema — unless
  ``CONSORTIA_DATABASE_URL`` names another database (PostgreSQL), which is migrated instead;
* the first user, a ``node_admin`` at every study and site.

It refuses to touch a directory that already holds a node, checks the administrator's
password before writing anything, and removes what it wrote (and the folders it made) if a
later step fails. A node joining a hub checks the hub's key first, builds itself, and
registers at the hub last: a node that could not be built is never a member.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortia import __version__
from consortia.auth.passwords import check_password
from consortia.auth.principal import WILDCARD, Role
from consortia.commands.common import open_engine, read_password, reporting
from consortia.config import CONFIG_FILE_NAME, Environment, load_settings
from consortia.exceptions import ConfigurationError
from consortia.services import users
from consortia.services.common import normalise_email
from consortia.services.database import current_revision, migrate
from consortia.services.node_admin import (
    create_node_key,
    hub_of_invitation,
    join_consortium,
    key_fingerprint,
    new_node_key,
)

__all__ = ["KEY_FILE_NAME", "SQLITE_FILE_NAME", "init_node", "node_config_text"]

KEY_FILE_NAME = "node_key.pem"
SQLITE_FILE_NAME = "consortia.db"


def _toml_string(value: str) -> str:
    # a JSON string with ASCII escapes is a valid TOML basic string
    return json.dumps(value, ensure_ascii=True)


def node_config_text(
    *,
    node_name: str,
    node_url: str,
    environment: Environment,
    secret_key: str,
    sqlite: bool,
    consortium: Mapping[str, str] | None = None,
) -> str:
    """The ``consortia.toml`` of a new node (every key is a setting in docs/settings.md).

    ``consortium`` makes it a hub (``{"role": "hub", "consortium": NAME}``) or a member
    that joined one (``{"hub", "hub_url", "hub_key", "transport", "accept_studies"}``).
    """
    consortium = consortium or {}
    lines = [
        "# Consortia node configuration. CONSORTIA_<SETTING> environment variables override",
        "# these values; docs/settings.md lists every setting. Keep this file private (0600):",
        "# it holds the node's secret key.",
        f"environment = {_toml_string(environment.value)}",
        f"node_name = {_toml_string(node_name)}",
        f"node_url = {_toml_string(node_url)}",
        'node_dir = "."',
        f"secret_key = {_toml_string(secret_key)}",
    ]
    if sqlite:
        lines.append(f"database_url = {_toml_string('sqlite:///' + SQLITE_FILE_NAME)}")
    else:
        lines.append("# database_url comes from CONSORTIA_DATABASE_URL")
    lines += [
        "",
        "# Federation: `consortia serve` answers signed analyses at /federation/v1 on the same",
        "# port as the pages. Add [[node.peers]] (name, url, public_key) for the nodes you",
        "# trust, [node.tables.NAME] for the tables you share, and lead_url to long-poll a lead.",
        "[node]",
        f"key_file = {_toml_string(KEY_FILE_NAME)}",
    ]
    if consortium.get("role") == "hub":
        lines += [
            "# the coordinating centre of the consortium (docs/network.md)",
            'role = "hub"',
            f"consortium = {_toml_string(consortium['consortium'])}",
        ]
    elif "hub" in consortium:
        lines += [
            "# a member of the consortium whose hub is below (docs/network.md)",
            f"hub = {_toml_string(consortium['hub'])}",
            f"transport = {_toml_string(consortium['transport'])}",
            f"accept_studies = {_toml_string(consortium['accept_studies'])}",
        ]
    lines += [
        "",
        "# The one disclosure policy of every release (federated or through the API).",
        "[node.policy]",
        "min_cell_count = 5",
        "time_bin = 7",
        "manual_approval = false",
    ]
    if "hub" in consortium:
        lines += [
            "",
            "# the hub, its key pinned when this node joined (fingerprint checked)",
            "[[node.peers]]",
            f"name = {_toml_string(consortium['hub'])}",
            f"url = {_toml_string(consortium['hub_url'])}",
            f"public_key = {_toml_string(consortium['hub_key'])}",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Joining:
    """A member's registration at its hub, made once the node is built."""

    invitation: str
    member: dict[str, str]
    hub_key: str


def _consortium(
    key: Ed25519PrivateKey,
    *,
    hub: bool,
    name: str | None,
    join: str | None,
    node_name: str,
    node_url: str,
    institution: str,
    country: str,
    transport: str,
    accept_studies: str,
) -> tuple[dict[str, str] | None, _Joining | None]:
    """The consortium part of a new node's config: a hub's, or a member's whose hub showed
    the invitation's key (pinned); the member's registration is made by the caller, last."""
    if hub and join is not None:
        raise ConfigurationError("--hub and --join: a node is a hub or joins one, not both")
    if hub:
        if not name or not name.strip():
            raise ConfigurationError('--hub needs --name "the consortium\'s name"')
        typer.echo(f"hub key fingerprint {key_fingerprint(key)}")
        return {"role": "hub", "consortium": name.strip()}, None
    if name is not None:
        raise ConfigurationError("--name names a hub's consortium: add --hub")
    if join is None:
        return None, None
    if transport not in ("push", "pull"):
        raise ConfigurationError(f"--transport {transport}: use push or pull")
    if accept_studies not in ("manual", "auto"):
        raise ConfigurationError(f"--accept-studies {accept_studies}: use manual or auto")
    if not institution.strip() or not country.strip():
        raise ConfigurationError("--join needs --institution and --country (the hub lists them)")
    member = {
        "name": node_name,
        "url": node_url,
        "institution": institution.strip(),
        "country": country.strip(),
        "transport": transport,
        "software_version": __version__,
    }
    hub_name, hub_url, hub_key = hub_of_invitation(join)
    consortium = {
        "hub": hub_name,
        "hub_url": hub_url,
        "hub_key": hub_key,
        "transport": transport,
        "accept_studies": accept_studies,
    }
    return consortium, _Joining(join, member, hub_key)


def _register(joining: _Joining, key: Ed25519PrivateKey) -> None:
    """Register the built node at its hub: the last step of ``init --join``."""
    answer = join_consortium(joining.invitation, key, joining.member)
    if answer.public_key != joining.hub_key:  # the fingerprint matched; so must the key
        raise ConfigurationError("the hub answered with another key than the one it showed")
    typer.echo(
        f"joined hub {answer.hub} at {answer.url}: its key fingerprint {answer.fingerprint} "
        "matches the invitation's and is pinned"
    )
    typer.echo(
        f"this node's key fingerprint {answer.member_fingerprint} (the hub lists it in "
        "`consortia hub members`)"
    )


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def _existing_node_files(directory: Path, sqlite: bool) -> list[Path]:
    names = [CONFIG_FILE_NAME, KEY_FILE_NAME] + ([SQLITE_FILE_NAME] if sqlite else [])
    return [directory / name for name in names if (directory / name).exists()]


def init_node(
    directory: Annotated[Path, typer.Argument(help="The node's directory (created if missing).")],
    admin_email: Annotated[
        str, typer.Option("--admin-email", prompt=True, help="The first administrator's email.")
    ],
    admin_name: Annotated[
        str, typer.Option("--admin-name", prompt=True, help="The first administrator's name.")
    ],
    admin_password_file: Annotated[
        Path | None,
        typer.Option(
            "--admin-password-file",
            help="Read the administrator's password from this file's first line.",
        ),
    ] = None,
    node_name: Annotated[str, typer.Option(help="This node's name in the consortium.")] = "local",
    node_url: Annotated[
        str, typer.Option(help="The URL peers reach this node at.")
    ] = "http://127.0.0.1:8000",
    environment: Annotated[
        Environment, typer.Option(help="development, test or production.")
    ] = Environment.PRODUCTION,
    hub: Annotated[
        bool, typer.Option("--hub", help="Create a consortium's hub (coordinating centre).")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="With --hub: the consortium's name.")
    ] = None,
    join: Annotated[
        str | None,
        typer.Option(
            "--join", help="Join a hub with the invitation `consortia hub invite` printed."
        ),
    ] = None,
    institution: Annotated[
        str, typer.Option(help="With --join: the hospital running this node.")
    ] = "",
    country: Annotated[str, typer.Option(help="With --join: its country.")] = "",
    transport: Annotated[
        str,
        typer.Option(
            help='With --join: "push" (the hub calls this node) or "pull" (this node polls '
            "the hub: outbound connections only)."
        ),
    ] = "push",
    accept_studies: Annotated[
        str,
        typer.Option(
            help='With --join: "manual" (the administrator accepts each study version the '
            'hub publishes) or "auto".'
        ),
    ] = "manual",
) -> None:
    """Create a node in DIRECTORY: config, database, signing key and first administrator;
    a consortium's hub with --hub, or a hospital's node joining one with --join."""
    sqlite = "CONSORTIA_DATABASE_URL" not in os.environ
    created: list[Path] = []
    with reporting():
        existing = _existing_node_files(directory, sqlite)
        if existing:
            raise ConfigurationError(
                f"{directory} already holds a node ({', '.join(p.name for p in existing)}); "
                "refusing to overwrite it"
            )
        email = normalise_email(admin_email)
        password = read_password(admin_password_file, prompt="Administrator password")
        check_password(password, email=email)
        key = new_node_key()
        consortium, joining = _consortium(
            key,
            hub=hub,
            name=name,
            join=join,
            node_name=node_name,
            node_url=node_url,
            institution=institution,
            country=country,
            transport=transport,
            accept_studies=accept_studies,
        )
        made = [d for d in (directory, *directory.parents) if not d.exists()]
        try:
            _create_node(
                directory,
                created,
                email=email,
                name=admin_name,
                password=password,
                text=node_config_text(
                    node_name=node_name,
                    node_url=node_url,
                    environment=environment,
                    secret_key=secrets.token_urlsafe(48),
                    sqlite=sqlite,
                    consortium=consortium,
                ),
                sqlite=sqlite,
                say=typer.echo,
                key=key,
            )
            if joining is not None:
                _register(joining, key)
        except BaseException:
            for path in reversed(created):
                path.unlink(missing_ok=True)
            for folder in made:  # the folders it made, deepest first, if left empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
    typer.echo(
        f"node ready in {directory}; start it with: consortia serve --config "
        f"{directory / CONFIG_FILE_NAME}"
    )


def _create_node(
    directory: Path,
    created: list[Path],
    *,
    email: str,
    name: str,
    password: str,
    text: str,
    sqlite: bool,
    say: Callable[[str], object],
    key: Ed25519PrivateKey | None = None,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / CONFIG_FILE_NAME
    _write_private(config_path, text)
    created.append(config_path)
    key_path = directory / KEY_FILE_NAME
    public_key = create_node_key(key_path, key)
    created.append(key_path)
    say(f"wrote {config_path} and {key_path} (public key {public_key})")
    settings = load_settings(config_path)
    if sqlite:
        # patient data: readable by the node's account only (SQLite's -wal/-shm follow)
        _write_private(directory / SQLITE_FILE_NAME, "")
        created.extend(
            directory / (SQLITE_FILE_NAME + s) for s in ("", "-wal", "-shm", "-writer.lock")
        )
    with open_engine(settings) as engine:
        if current_revision(engine) is not None:
            migrate(engine)
            if users.count_users(engine):
                raise ConfigurationError(
                    "the database already holds a node's users; refusing to reuse it"
                )
        migrate(engine)
        operator = users.cli_operator()
        users.create_user(
            engine,
            operator,
            email=email,
            name=name,
            password=password,
            min_password_length=settings.min_password_length,
        )
        users.grant_role(
            engine, operator, email=email, study=WILDCARD, site=WILDCARD, role=Role.NODE_ADMIN
        )
    say(f"database migrated; {email} is the node administrator")
