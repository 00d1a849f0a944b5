"""``consortia node ...``: a member node's federation identity, signing key, trusted peers,
the data steward's approval queue and the node's federation audit.

Registered deferred (:mod:`consortia.commands.registry`); each command imports the services
it calls when it runs. ``consortia node studies`` lives in :mod:`consortia.commands.hub`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from consortia.commands.deferred import deferring
from consortia.commands.outputs import fail
from consortia.commands.registry import NODE_GROUP_COMMANDS
from consortia.exceptions import ConsortiaError

__all__ = ["federation_config", "node_app"]

node_app = typer.Typer(
    help="A member node's federation identity, trust, approvals and server.",
    no_args_is_help=True,
    cls=deferring(NODE_GROUP_COMMANDS),
)
approvals_app = typer.Typer(
    help="The data steward's queue of analysis requests (manual approval mode).",
    no_args_is_help=True,
)
node_app.add_typer(approvals_app, name="approvals")

ConfigOption = Annotated[
    Path,
    typer.Option("--config", help="The node's consortia.toml (its [node] section)."),
]


def federation_config(config: Path) -> Any:
    """The federation config of a node: the [node] section of its consortia.toml (a YAML
    node config is refused with the command that moves it there)."""
    from consortia.services.node_admin import node_config

    return node_config(config)


@node_app.command("keygen")
def node_keygen(
    out: Annotated[Path, typer.Argument(help="Where to write the Ed25519 key (PEM, mode 0600).")],
) -> None:
    """Create a node signing key; refuses to overwrite an existing one."""
    from consortia.services.node_admin import create_node_key

    try:
        public_key = create_node_key(out)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"wrote {out}; public key {public_key}")


@node_app.command("identity")
def node_identity_command(config: ConfigOption) -> None:
    """Print this node's name, URL and public key, to give to partner nodes."""
    from consortia.services.node_admin import node_identity

    try:
        typer.echo(node_identity(federation_config(config)))
    except ConsortiaError as error:
        raise fail(error) from None


@node_app.command("trust")
def node_trust(
    name: Annotated[str, typer.Argument(help="The peer's node name.")],
    url: Annotated[str, typer.Argument(help="The peer's URL.")],
    public_key: Annotated[str, typer.Argument(help="The peer's public key (base64).")],
    config: ConfigOption,
) -> None:
    """Trust a peer: add (or replace) it in the node's trust file."""
    from pydantic import ValidationError as PeerError

    from consortia.services.node_admin import trust_peer

    try:
        node = federation_config(config)
        if node.trust_file is None:
            raise typer.BadParameter(
                f'{config} has no trust_file; add `trust_file = "trust.yaml"` to [node]'
            )
        path = trust_peer(node, name, url, public_key)
    except ConsortiaError as error:
        raise fail(error) from None
    except PeerError as error:
        typer.echo(f"error: {error.errors()[0]['msg']}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"trusted {name} at {url} ({path})")


@node_app.command("serve", hidden=True, context_settings={"ignore_unknown_options": True})
def node_serve(
    args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Removed: `consortia serve` serves the federation endpoints with the pages."""
    typer.echo(
        "error: `consortia node serve` is gone: `consortia serve` serves the federation "
        "endpoints on the same port as the pages, from the [node] section of consortia.toml; "
        "move a node.yaml there with `consortia config import-node-yaml node.yaml`",
        err=True,
    )
    raise typer.Exit(1)


@contextmanager
def _node_database(config: Path) -> Iterator[Any]:
    """The engine of the node database the federation config names (disposed after)."""
    from consortia.services.node_admin import open_node_database

    engine = open_node_database(federation_config(config))
    try:
        yield engine
    finally:
        engine.dispose()


AsOption = Annotated[
    str,
    typer.Option(
        "--as",
        help="The account deciding: an active node administrator of this node (its email).",
    ),
]


@approvals_app.command("list")
def approvals_list(
    config: ConfigOption,
    all_entries: Annotated[bool, typer.Option("--all", help="Include decided ones.")] = False,
) -> None:
    """List requests waiting for a decision (or all with --all)."""
    import json

    from consortia.services.approvals import ApprovalStatus, list_approvals
    from consortia.services.common import cli_operator

    try:
        with _node_database(config) as engine:
            status = None if all_entries else ApprovalStatus.PENDING
            entries = list_approvals(engine, cli_operator(), status)
    except ConsortiaError as error:
        raise fail(error) from None
    if not entries:
        typer.echo("no requests waiting" if not all_entries else "no requests")
    for entry in entries:
        typer.echo(
            f"{entry.id}  {entry.status.value:<8} {entry.submitted_at.isoformat()}  "
            f"from {entry.requester}: {json.dumps(entry.request, sort_keys=True)}"
        )


def _decide(config: Path, entry_id: str, email: str, approve: bool, reason: str) -> Any:
    """Decide through the one approval service, as the named account (policy-checked,
    audited on the node chain)."""
    from consortia.services.approvals import decide, decider_named

    with _node_database(config) as engine:
        return decide(engine, decider_named(engine, email), entry_id, approve, reason)


@approvals_app.command("approve")
def approvals_approve(
    entry_id: Annotated[str, typer.Argument(help="The request's id (from list).")],
    config: ConfigOption,
    decider: AsOption,
    reason: Annotated[str, typer.Option(help="Why (optional).")] = "",
) -> None:
    """Approve a waiting request; the lead's next try goes ahead."""
    try:
        entry = _decide(config, entry_id, decider, True, reason)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"{entry.id} approved by {entry.decided_by}")


@approvals_app.command("deny")
def approvals_deny(
    entry_id: Annotated[str, typer.Argument(help="The request's id (from list).")],
    config: ConfigOption,
    decider: AsOption,
    reason: Annotated[str, typer.Option(help="Why; the lead is told.")],
) -> None:
    """Deny a waiting request with a reason."""
    try:
        entry = _decide(config, entry_id, decider, False, reason)
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(f"{entry.id} denied by {entry.decided_by}: {entry.reason}")


@node_app.command("audit-verify")
def node_audit_verify(config: ConfigOption) -> None:
    """Verify the hash chain of the node's federation audit (database chain or log file)."""
    from consortia.services.node_admin import verify_node_audit

    try:
        line = verify_node_audit(federation_config(config))
    except ConsortiaError as error:
        raise fail(error) from None
    typer.echo(line)
