"""``consortia db``: migrate the node's database."""

from __future__ import annotations

import typer

from consortia.commands.common import ConfigOption, node_settings, open_engine, reporting
from consortia.services.database import current_revision, head_revision, migrate

__all__ = ["db_app"]

db_app = typer.Typer(help="Migrate the node's database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Migrate the database (CONSORTIA_DATABASE_URL or the node's) to the newest schema."""
    with reporting(), open_engine(node_settings(config)) as engine:
        before, after = migrate(engine)
    if before == after:
        typer.echo(f"database already at revision {after}")
    else:
        typer.echo(f"database migrated from {before or 'empty'} to revision {after}")


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Print the database's revision and the newest one; exit 1 if behind."""
    with reporting(), open_engine(node_settings(config)) as engine:
        current = current_revision(engine)
    head = head_revision()
    typer.echo(f"database at {current or 'empty'}; newest is {head}")
    if current != head:
        raise typer.Exit(1)
