"""What the node commands share: finding the node's settings, opening its database,
reading passwords, and printing library errors as one line (never a traceback)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from consortia.auth.passwords import MIN_PASSWORD_LENGTH
from consortia.config import CONFIG_FILE_NAME, Settings, load_settings
from consortia.exceptions import ConsortiaError, _ProblemsError
from consortia.services.database import open_database

__all__ = [
    "ConfigOption",
    "PasswordFileOption",
    "fail",
    "node_settings",
    "open_engine",
    "read_password",
    "reporting",
]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=f"The node's {CONFIG_FILE_NAME} (default: ./{CONFIG_FILE_NAME} if present; "
        "CONSORTIA_* variables override it).",
    ),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="Read the password from the first line of this file instead of asking.",
    ),
]


def fail(error: ConsortiaError) -> typer.Exit:
    """Print a library error for a person and return the exit to raise."""
    if isinstance(error, _ProblemsError):
        for problem in error.problems:
            typer.echo(f"error: {problem.path}: {problem.message}", err=True)
    else:
        typer.echo(f"error: {error}", err=True)
    return typer.Exit(1)


@contextmanager
def reporting() -> Iterator[None]:
    """Turn library and database errors into one printed line and exit status 1."""
    try:
        yield
    except ConsortiaError as error:
        raise fail(error) from None
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        typer.echo(f"error: the database refused: {type(cause).__name__}: {first_line}", err=True)
        if "no such table" in first_line or (
            "relation" in first_line and "does not exist" in first_line
        ):
            typer.echo("hint: the database is not set up yet: run `consortia db upgrade`", err=True)
        raise typer.Exit(1) from None


def node_settings(config: Path | None) -> Settings:
    """The settings of the node: ``--config``, else ./consortia.toml, else the environment."""
    if config is None and Path(CONFIG_FILE_NAME).is_file():
        config = Path(CONFIG_FILE_NAME)
    return load_settings(config)


@contextmanager
def open_engine(settings: Settings) -> Iterator[Engine]:
    """An engine for the node's database, disposed afterwards."""
    engine = open_database(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def read_password(
    password_file: Path | None, *, prompt: str = "Password", min_length: int = MIN_PASSWORD_LENGTH
) -> str:
    """The password from ``password_file`` (first line), or asked twice without echo; the
    question says how long it must be, so nobody types it twice to learn the rule."""
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {password_file}: {exc.strerror}", param_hint="--password-file"
            ) from None
        if not lines or not lines[0]:
            raise typer.BadParameter(
                f"{password_file} is empty; its first line is the password",
                param_hint="--password-file",
            )
        return lines[0]
    shortest = max(min_length, MIN_PASSWORD_LENGTH)
    value: str = typer.prompt(
        f"{prompt} (at least {shortest} characters)", hide_input=True, confirmation_prompt=True
    )
    return value
