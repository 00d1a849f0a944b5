"""Commands whose code is imported only when they run, so ``consortia --help`` is instant.

A node command's module imports the services, SQLAlchemy, Alembic or the federation code.
The group that holds it lists it by name and one-line summary (a :class:`Deferred`) and
imports it only when the command is invoked or its own ``--help`` is asked for: ``consortia
--version`` and ``consortia --help`` import none of them. This is how pip keeps its start
quick (a table of command modules and summaries); a test checks every summary against the
command's own help, so the two cannot drift apart.

>>> db = Deferred("consortia.commands.db:db_app", "Migrate the node's database.", group=True)
>>> sorted(deferring({"db": db}).deferred)
['db']
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_group

from consortia.commands.outputs import CommandGroup

__all__ = ["Deferred", "DeferringGroup", "deferring", "summary_of"]


@dataclass(frozen=True, slots=True)
class Deferred:
    """A command kept in ``target`` (``"module:attribute"``: a function, or a ``typer.Typer``
    when ``group``) and listed, until it is needed, by its ``summary`` (the first paragraph
    of its help)."""

    target: str
    summary: str
    group: bool = False

    def load(self, name: str) -> Any:
        """Import the target and build its command as ``name``, as ``app.command(name)`` or
        ``app.add_typer(..., name=name)`` would have at start."""
        module_name, _, attribute = self.target.partition(":")
        implementation = getattr(importlib.import_module(module_name), attribute)
        holder = typer.Typer()
        if isinstance(implementation, typer.Typer):
            holder.add_typer(implementation, name=name)
        else:
            holder.command(name)(implementation)
        return get_group(holder).commands[name]


def summary_of(help_text: str | None) -> str:
    """The first paragraph of a command's help on one line, as a command list shows it.

    >>> summary_of('''Serve the node: the pages and,
    ...     the API.
    ...
    ...     More.''')
    'Serve the node: the pages and, the API.'
    """
    first = (help_text or "").strip().split("\n\n")[0]
    return " ".join(first.split())


class _Listed(TyperCommand):
    """What a group's help shows for a command not imported yet: its name and summary."""

    def __init__(self, name: str, summary: str) -> None:
        super().__init__(name=name, callback=None, help=summary, short_help=summary)


class DeferringGroup(CommandGroup):
    """A command group that also holds the :attr:`deferred` commands, each imported the
    first time it is looked up, except by the group's own help (which lists summaries).

    Commands the group already holds keep their place; deferred commands come before them
    and deferred groups after them, as typer orders commands before groups.
    """

    deferred: ClassVar[Mapping[str, Deferred]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        loaded = dict(self.commands)
        listed = {name: _Listed(name, entry.summary) for name, entry in self.deferred.items()}
        groups = {name for name, command in loaded.items() if isinstance(command, TyperGroup)}
        ordered: dict[str, Any] = {}
        ordered.update((n, c) for n, c in listed.items() if not self.deferred[n].group)
        ordered.update((n, c) for n, c in loaded.items() if n not in groups)
        ordered.update((n, c) for n, c in loaded.items() if n in groups)
        ordered.update((n, c) for n, c in listed.items() if self.deferred[n].group)
        self.commands.clear()
        self.commands.update(ordered)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Listed) and not self._listing:
            command = self.deferred[cmd_name].load(cmd_name)
            self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True  # the list of commands needs summaries only
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def deferring(
    commands: Mapping[str, Deferred], base: type[DeferringGroup] = DeferringGroup
) -> type[DeferringGroup]:
    """A group class (for ``typer.Typer(cls=...)``) that holds ``commands`` deferred."""
    return type(base.__name__, (base,), {"deferred": dict(commands)})
