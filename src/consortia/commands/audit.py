"""``consortia audit verify|witness``: recompute the audit trail's hash chain, compare it
with the heads the node's peers witnessed, and hand this node's heads to them.

Registered deferred (:mod:`consortia.commands.registry`); each command imports the services
it calls when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from consortia.commands.node import federation_config
from consortia.commands.outputs import fail
from consortia.exceptions import ConsortiaError

__all__ = ["audit_app"]

audit_app = typer.Typer(help="Inspect and verify the audit trail.", no_args_is_help=True)

NodeConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--node-config",
        help="The node's consortia.toml ([node] section): name, key, peers.",
    ),
]


@audit_app.command("verify")
def audit_verify(
    database_url: Annotated[
        str | None,
        typer.Option(help="Database URL (default: CONSORTIA_DATABASE_URL or the node's)."),
    ] = None,
    chain: Annotated[str | None, typer.Option(help="Verify one chain (a study) only.")] = None,
    node_config: NodeConfigOption = None,
    state: Annotated[
        bool,
        typer.Option(
            "--state", help="Also replay the trail and compare it with the current tables."
        ),
    ] = False,
) -> None:
    """Recompute the audit trail's hash chain; report the first broken link (exit 1).

    With --node-config, also compare the chains with the heads the node's peers witnessed
    (truncated, forked or missing chains: exit 1; no peer answered: exit 3). With --state,
    replay the trail and report every difference with the tables (exit 1).
    """
    from consortia.config import Settings
    from consortia.services.audit_trail import verify_trail
    from consortia.services.database import open_database

    exit_code = 0
    try:
        config = federation_config(node_config) if node_config is not None else None
        url = database_url or (config.database() if config is not None else None)
        engine = open_database(url or Settings().database_url)
        try:
            report = verify_trail(engine, chain=chain)
            typer.echo(str(report))
            if not report.ok:
                exit_code = 1
            if config is not None:
                exit_code = max(exit_code, _verify_witnessed(config, engine))
            if state:
                exit_code = max(exit_code, _verify_state(engine))
        finally:
            engine.dispose()
    except ConsortiaError as error:
        raise fail(error) from None
    if exit_code:
        raise typer.Exit(1 if exit_code == 1 else 3)


def _verify_witnessed(config: Any, engine: Any) -> int:
    """Print the comparison with the witnessed heads; 1 for a finding, 3 for no witness."""
    from consortia.services.node_admin import verify_witnessed_heads

    report = verify_witnessed_heads(config, engine)
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        return 1
    return 0 if report.witnessed else 3


def _verify_state(engine: Any) -> int:
    from consortia.services.audit_trail import state_differences

    differences = state_differences(engine)
    for difference in differences:
        typer.echo(str(difference))
    if differences:
        typer.echo(f"state differs from the audit trail: {len(differences)} differences")
        return 1
    typer.echo("state matches the audit trail")
    return 0


@audit_app.command("witness")
def audit_witness(
    node_config: Annotated[
        Path,
        typer.Option("--node-config", help="The node's consortia.toml ([node] section)."),
    ],
) -> None:
    """Sign this node's chain heads and hand them to its peers, which keep them (exit 3 if
    a peer did not take them)."""
    from consortia.services.node_admin import witness_heads

    try:
        outcomes = witness_heads(federation_config(node_config))
    except ConsortiaError as error:
        raise fail(error) from None
    if not outcomes:
        typer.echo("no trusted peer with a URL to hand the heads to")
        raise typer.Exit(3)
    for outcome in outcomes:
        typer.echo(f"peer {outcome.peer}: {outcome.detail}")
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(3)
