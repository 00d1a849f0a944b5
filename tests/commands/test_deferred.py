"""The node commands cli.py lists by summary and imports only when they run."""

from __future__ import annotations

import doctest

import pytest
import typer
from typer.core import TyperGroup
from typer.main import get_command
from typer.testing import CliRunner

import consortia.commands.deferred as deferred_module
from consortia.cli import app
from consortia.commands.deferred import Deferred, deferring, summary_of
from consortia.commands.registry import NODE_COMMANDS, STUDY_COMMANDS

runner = CliRunner()
DEFERRED = [
    *(([], name, entry) for name, entry in NODE_COMMANDS.items()),
    *((["study"], name, entry) for name, entry in STUDY_COMMANDS.items()),
]


@pytest.mark.parametrize(
    ("parent", "name", "entry"), DEFERRED, ids=lambda x: x if isinstance(x, str) else ""
)
def test_a_deferred_summary_is_the_first_paragraph_of_the_commands_own_help(
    parent: list[str], name: str, entry: Deferred
) -> None:
    command = entry.load(name)
    assert command.name == name
    assert summary_of(command.help) == entry.summary
    assert isinstance(command, TyperGroup) == entry.group


def test_the_root_help_lists_every_command_in_the_order_typer_gives_them() -> None:
    root = get_command(app)
    assert isinstance(root, TyperGroup)
    assert root.list_commands(typer.Context(root)) == [
        *("init", "serve", "backup", "restore", "analyze", "demo"),
        *("study", "audit", "node", "db", "config", "data", "user", "token", "hub", "centre"),
        "randomization",
    ]


def test_looking_a_deferred_command_up_gives_the_real_command() -> None:
    root = get_command(app)
    assert isinstance(root, TyperGroup)
    db = root.get_command(typer.Context(root), "db")
    assert isinstance(db, TyperGroup)
    assert sorted(db.commands) == ["current", "upgrade"]


def test_a_mistyped_deferred_command_is_suggested() -> None:
    result = runner.invoke(app, ["usr", "list"])
    assert result.exit_code == 2
    assert "No such command 'usr'" in result.output
    assert "'user'" in result.output


def test_a_deferred_command_that_fails_to_import_is_not_hidden() -> None:
    broken = typer.Typer(
        cls=deferring({"gone": Deferred("consortia.commands.no_such_module:app", "Gone.")})
    )

    @broken.callback()
    def root() -> None:
        """A group with one command that cannot be imported."""

    help_result = runner.invoke(broken, ["--help"])
    assert help_result.exit_code == 0
    assert "Gone." in help_result.output
    run_result = runner.invoke(broken, ["gone"])
    assert isinstance(run_result.exception, ModuleNotFoundError)


def test_docstring_examples_run() -> None:
    outcome = doctest.testmod(deferred_module, optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0
    assert outcome.attempted > 0
