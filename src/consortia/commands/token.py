"""``consortia token``: personal API tokens (shown once, stored hashed, revocable)."""

from __future__ import annotations

from typing import Annotated

import typer

from consortia.auth.tokens import parse_lifetime
from consortia.commands.common import ConfigOption, node_settings, open_engine, reporting
from consortia.services import tokens, users

__all__ = ["token_app"]

token_app = typer.Typer(help="Create, list and revoke personal API tokens.", no_args_is_help=True)

Email = Annotated[str, typer.Argument(help="The token owner's email address.")]


@token_app.command("create")
def token_create(
    email: Email,
    name: Annotated[str, typer.Option("--name", help="What the token is for.")],
    expires: Annotated[str, typer.Option("--expires", help="Lifetime: 90d, 12h, 30m.")] = "90d",
    study: Annotated[
        list[str] | None,
        typer.Option("--study", help="A study the token may act in (repeat for several)."),
    ] = None,
    all_studies: Annotated[
        bool,
        typer.Option("--all-studies", help="Let the token act in all of the owner's studies."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a token and print it once; it is stored only as a hash."""
    if bool(study) == all_studies:
        raise typer.BadParameter("give --study S (repeatable) or --all-studies, not both")
    with reporting():
        lifetime = parse_lifetime(expires)
        with open_engine(node_settings(config)) as engine:
            created = tokens.create_token(
                engine,
                users.cli_operator(),
                email=email,
                name=name,
                lifetime=lifetime,
                studies=None if all_studies else study,
            )
    record = created.record
    scope = "all studies" if record.studies is None else ", ".join(record.studies)
    typer.echo(created.secret)
    typer.echo(
        f"token {record.id} '{record.name}' for {email.strip().lower()} ({scope}), "
        f"expires {record.expires_at:%Y-%m-%d %H:%M} UTC. It is shown only now.",
        err=True,
    )


@token_app.command("list")
def token_list(email: Email, config: ConfigOption = None) -> None:
    """List a person's tokens (never their secrets)."""
    with reporting(), open_engine(node_settings(config)) as engine:
        records = tokens.list_tokens(engine, users.cli_operator(), email=email)
    if not records:
        typer.echo("no tokens")
    for record in records:
        state = "revoked" if record.revoked_at else f"expires {record.expires_at:%Y-%m-%d}"
        scope = "all studies" if record.studies is None else ",".join(record.studies)
        typer.echo(f"{record.id}  {record.prefix}...  {record.name}  [{scope}]  {state}")


@token_app.command("revoke")
def token_revoke(
    email: Email,
    token_id: Annotated[int, typer.Argument(help="The token's id (from token list).")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token; requests with it are refused from now on."""
    with reporting(), open_engine(node_settings(config)) as engine:
        record = tokens.revoke_token(engine, users.cli_operator(), token_id, email=email)
    typer.echo(f"revoked token {record.id} '{record.name}'")
