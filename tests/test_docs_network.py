"""docs/network.md cannot rot: every ``consortia`` command its shell blocks show exists,
with the options shown (parsed by the real command line, not run), and the walk-through
"Three hospitals in 8 commands" counts at most 8 distinct commands."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from consortia.cli import app

DOC = Path(__file__).resolve().parent.parent / "docs" / "network.md"


def _shell_lines(text: str) -> list[str]:
    """The ``consortia`` commands of the fenced ``sh`` blocks (``$ `` prompts dropped,
    ``\\`` continuations joined, comments and output left out)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.removeprefix("$ ").strip()
            if line.startswith("consortia "):
                commands.append(line)
    return commands


def _words(command: str) -> list[str]:
    """The command's words, without the shell's redirections and ``&``; a ``$(...)`` and
    an ``[--option]`` shown as optional become plain words."""
    command = re.sub(r'"\$\([^)]*\)"', "VALUE", command)
    command = re.sub(r"\[(--[^\]]+)\]", r"\1", command)
    command = command.replace("…", "VALUE").replace("...", "VALUE")
    words = shlex.split(command, comments=True)
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in (">", "2>", ">>", "<"):
            skip = True
            continue
        if word == "&" or word.startswith((">", "2>")):
            continue
        kept.append(word)
    return kept[1:]  # without "consortia"


def _parse(words: list[str]) -> str:
    """Parse ``words`` with the real command line; the command's path."""
    group = typer.main.get_command(app)
    context = group.make_context("consortia", [], resilient_parsing=True)
    command: Any = group
    path = []
    # typer ships its own click: a group is what has subcommands
    while hasattr(command, "get_command") and words and not words[0].startswith("-"):
        found = command.get_command(context, words[0])
        assert found is not None, f"no command {' '.join([*path, words[0]])!r}"
        path.append(words.pop(0))
        command = found
    try:
        command.make_context(" ".join(path), list(words), parent=context)
    except Exception as exc:
        # a value the command would check when run (a file that exists where the doc's
        # commands run, not here) is not the doc's mistake; an unknown command, option or
        # extra argument, or a missing one, is
        if type(exc).__name__ != "BadParameter":
            raise
    assert path, f"{words}: no consortia command"
    return " ".join(path)


def test_a_command_with_an_unknown_option_is_caught() -> None:
    with pytest.raises(Exception, match="--no-such-option"):
        _parse(_words("consortia hub invite sgh --no-such-option x"))
    with pytest.raises(AssertionError, match="no command"):
        _parse(_words("consortia hub frobnicate"))


def test_every_command_the_network_doc_shows_exists_with_its_options() -> None:
    commands = _shell_lines(DOC.read_text(encoding="utf-8"))
    assert len(commands) >= 10
    for command in commands:
        try:
            _parse(_words(command))
        except Exception as exc:  # typer's click: UsageError, NoSuchOption, ...
            message = exc.format_message() if hasattr(exc, "format_message") else repr(exc)
            pytest.fail(f"docs/network.md: `{command}`: {message}")


def test_three_hospitals_take_at_most_8_commands() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Three hospitals in 8 commands", 1)[1].split("\n## ", 1)[0]
    numbered = re.findall(r"^\$ (consortia .*)$", section, flags=re.MULTILINE)
    distinct = {_parse(_words(command)) for command in numbered}
    kinds = {
        (_parse(_words(c)), c.split("--config ")[-1].split("/")[0] if "--config" in c else "")
        for c in numbered
    }
    assert len(distinct) <= 8, sorted(distinct)
    assert {"init", "serve", "hub invite", "hub publish", "analyze"} <= distinct
    assert len([k for k in kinds if k[0] == "serve"]) == 4  # the hub and three hospitals
