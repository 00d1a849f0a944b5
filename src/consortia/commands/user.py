"""``consortia user``: accounts and roles on this node (run by the node operator)."""

from __future__ import annotations

from typing import Annotated

import typer

from consortia.commands.common import (
    ConfigOption,
    PasswordFileOption,
    node_settings,
    open_engine,
    read_password,
    reporting,
)
from consortia.services import users

__all__ = ["user_app"]

user_app = typer.Typer(
    help="Create, deactivate and activate accounts; grant and revoke roles.",
    no_args_is_help=True,
)

Email = Annotated[str, typer.Argument(help="The person's email address.")]
Study = Annotated[str, typer.Option("--study", help="The study code, or '*' for every study.")]
Site = Annotated[str, typer.Option("--site", help="The site code, or '*' for every site.")]
RoleName = Annotated[
    str, typer.Option("--role", help="node_admin, study_admin, investigator, coordinator, ...")
]


@user_app.command("add")
def user_add(
    email: Email,
    name: Annotated[str, typer.Option("--name", help="The person's full name.")],
    password_file: PasswordFileOption = None,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="No password: API tokens only.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create an account; the password is asked for unless --password-file is given."""
    with reporting():
        settings = node_settings(config)
        password = (
            None
            if no_password
            else read_password(password_file, min_length=settings.min_password_length)
        )
        with open_engine(settings) as engine:
            record = users.create_user(
                engine,
                users.cli_operator(),
                email=email,
                name=name,
                password=password,
                min_password_length=settings.min_password_length,
            )
    typer.echo(f"created user {record.email} ({record.name})")


@user_app.command("password")
def user_password(
    email: Email, password_file: PasswordFileOption = None, config: ConfigOption = None
) -> None:
    """Set a person's password (and unlock the account); ends their sessions and revokes
    their tokens."""
    with reporting():
        settings = node_settings(config)
        password = read_password(
            password_file, prompt="New password", min_length=settings.min_password_length
        )
        with open_engine(settings) as engine:
            users.set_password(
                engine,
                users.cli_operator(),
                email=email,
                password=password,
                min_password_length=settings.min_password_length,
            )
    typer.echo(
        f"password set for {email.strip().lower()}: their sessions ended, their tokens revoked"
    )


@user_app.command("deactivate")
def user_deactivate(email: Email, config: ConfigOption = None) -> None:
    """Deactivate an account: it cannot sign in nor use a token; its sessions end and its
    tokens are revoked at once."""
    with reporting(), open_engine(node_settings(config)) as engine:
        record = users.deactivate_user(engine, users.cli_operator(), email)
    typer.echo(f"deactivated {record.email}: sessions ended, tokens revoked")


@user_app.command("activate")
def user_activate(email: Email, config: ConfigOption = None) -> None:
    """Activate a deactivated account again (its old sessions and tokens stay ended)."""
    with reporting(), open_engine(node_settings(config)) as engine:
        record = users.activate_user(engine, users.cli_operator(), email)
    typer.echo(f"activated {record.email}")


@user_app.command("grant")
def user_grant(
    email: Email, study: Study, site: Site, role: RoleName, config: ConfigOption = None
) -> None:
    """Give a person a role at a study and site."""
    with reporting(), open_engine(node_settings(config)) as engine:
        record = users.grant_role(
            engine, users.cli_operator(), email=email, study=study, site=site, role=role
        )
    typer.echo(f"granted {record.grant} to {record.email}")


@user_app.command("revoke")
def user_revoke(
    email: Email, study: Study, site: Site, role: RoleName, config: ConfigOption = None
) -> None:
    """Take a role away (named exactly as it was granted)."""
    with reporting(), open_engine(node_settings(config)) as engine:
        record = users.revoke_role(
            engine, users.cli_operator(), email=email, study=study, site=site, role=role
        )
    typer.echo(f"revoked {record.grant} from {record.email}")


@user_app.command("list")
def user_list(config: ConfigOption = None) -> None:
    """List accounts with their roles."""
    with reporting(), open_engine(node_settings(config)) as engine:
        operator = users.cli_operator()
        people = users.list_users(engine, operator)
        grants = users.list_grants(engine, operator)
    if not people:
        typer.echo("no users")
        return
    by_email: dict[str, list[str]] = {}
    for grant in grants:
        by_email.setdefault(grant.email, []).append(str(grant.grant))
    for person in people:
        state = "" if person.active else " (inactive)"
        roles = ", ".join(by_email.get(person.email, [])) or "no roles"
        typer.echo(f"{person.email}  {person.name}{state}: {roles}")
