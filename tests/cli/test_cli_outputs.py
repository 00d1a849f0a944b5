"""Every option that names a file to write: a path that will not do is one line saying what
is wrong, exit status 1, no "internal error", and nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.domain.templates import template_text

runner = CliRunner()

#: the commands with an output file, each with its arguments before ``--out``-style option
#: (``{study}``, ``{odm}``, ``{dictionary}`` are files the fixture writes) and the option
SYNTHESIZE = ["study", "synthesize", "ai-diagnostic", "--subjects", "3", "--site", "SG01"]
COMMANDS = {
    "synthesize --out": [*SYNTHESIZE, "--seed", "1", "--out"],
    "synthesize --analysis-out": [*SYNTHESIZE, "--seed", "1", "--out", "r.csv", "--analysis-out"],
    "export-odm": ["study", "export-odm", "{study}", "--out"],
    "import-odm": ["study", "import-odm", "{odm}", "--out"],
    "export-redcap": ["study", "export-redcap", "{study}", "--out"],
    "import-redcap": ["study", "import-redcap", "{dictionary}", "--out"],
    "new": ["study", "new", "--template", "ai-diagnostic", "--out"],
}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(template_text("ai-diagnostic"), encoding="utf-8")
    for command in (
        ["study", "export-odm", "study.yaml", "--out", "odm.xml"],
        ["study", "export-redcap", "study.yaml", "--out", "dictionary.csv"],
    ):
        assert runner.invoke(app, command).exit_code == 0
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    return tmp_path


def _run(command: str, out: str) -> tuple[int, str]:
    names = {"{study}": "study.yaml", "{odm}": "odm.xml", "{dictionary}": "dictionary.csv"}
    arguments = [names.get(argument, argument) for argument in COMMANDS[command]]
    result = runner.invoke(app, [*arguments, out])
    return result.exit_code, result.output


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("out", "message"),
    [
        (
            "missing/dir/x.csv",
            "error: missing/dir/x.csv: the folder missing does not exist; create it first, "
            "or write somewhere that exists",
        ),
        (".", "error: . is a folder; give the name of a file (inside it, or elsewhere)"),
        ("a-file/x.csv", "error: a-file/x.csv: a-file is a file, not a folder"),
    ],
    ids=["missing folder", "a folder", "under a file"],
)
def test_an_output_path_that_will_not_do_says_what_is_wrong_and_writes_nothing(
    folder: Path, command: str, out: str, message: str
) -> None:
    before = _files(folder)
    code, output = _run(command, out)
    assert code == 1, output
    assert output.splitlines()[-1] == message
    assert "internal error" not in output
    assert "Traceback" not in output
    assert _files(folder) == before  # no file, no folder, no .partial


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_path_this_user_may_not_write_says_so(folder: Path, command: str) -> None:
    # sysfs refuses new files to every user, root included
    assert Path("/sys").is_dir()
    code, output = _run(command, "/sys/x.csv")
    assert code == 1, output
    last = output.splitlines()[-1]
    assert last.startswith("error: /sys/x.csv: "), output
    assert any(word in last for word in ("permission denied", "read-only")), last
    assert "internal error" not in output
    assert not [name for name in os.listdir("/sys") if name.endswith(".partial")]


def test_a_full_disk_is_named_with_its_file(folder: Path) -> None:
    code, output = _run("synthesize --out", "/dev/full")
    assert code == 1, output
    last = output.splitlines()[-1]
    assert last.startswith("error: /dev/full: "), output
    assert "internal error" not in output
