from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.main import get_command
from typer.testing import CliRunner

from consortia import __version__
from consortia.cli import app
from processes import START_SECONDS

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _all_command_paths() -> list[list[str]]:
    root = get_command(app)
    paths: list[list[str]] = [[]]

    def walk(command: object, prefix: list[str]) -> None:
        if not isinstance(command, TyperGroup):
            return
        context = typer.Context(command)
        # looked up, not read from .commands: the node commands are imported when looked up
        for name in command.list_commands(context):
            paths.append([*prefix, name])
            walk(command.get_command(context, name), [*prefix, name])

    walk(root, [])
    return paths


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"consortia {__version__}"


@pytest.mark.parametrize("path", _all_command_paths(), ids=lambda p: " ".join(p) or "root")
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_the_installed_entry_point_runs() -> None:
    exe = Path(sys.executable).parent / "consortia"
    completed = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, check=False, timeout=START_SECONDS
    )
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"consortia {__version__}"


def test_validate_prints_a_one_line_summary_for_the_example() -> None:
    result = runner.invoke(app, ["study", "validate", str(ROOT / "examples" / "cart-tour.yaml")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "ok:" in lines[0]
    assert "forms" in lines[0]
    assert "items" in lines[0]
    assert "events" in lines[0]


def test_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "examples" / "cart-tour.yaml").read_text(encoding="utf-8")
    text = text.replace("ratio: 1}", "ratio: 0}", 1).replace(
        "window: {before: 3, after: 3}", "window: {before: -3, after: 3}"
    )
    bad.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["study", "validate", str(bad)])
    assert result.exit_code == 1
    problem_lines = [line for line in result.output.splitlines() if line.startswith(str(bad))]
    assert len(problem_lines) == 2
    assert any("arms.car_t.ratio" in line for line in problem_lines)
    assert any("events.day28.window.before" in line for line in problem_lines)


def test_show_prints_events_by_forms() -> None:
    result = runner.invoke(app, ["study", "show", str(ROOT / "examples" / "cart-tour.yaml")])
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[1]
    for event in ("screening", "infusion", "day28", "month3"):
        assert event in header
    assert any(line.startswith("consent") and "X" in line for line in result.output.splitlines())


def test_a_missing_file_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "consortia"
    completed = subprocess.run(
        [str(exe), "study", "validate", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=START_SECONDS,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "cannot read file" in completed.stderr
