"""The analysis commands the documentation shows run as written.

docs/analyses.md: its data commands are run, then every JSON example through
``consortia analyze --local`` with the files of the example's table; every registered
kind has an example. README.md: the commands after "# rehearse a federated analysis" in
"A first look" run, in a fresh folder.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.domain.synthetic import ANALYSIS_TABLES
from consortia.federation.kinds import kind_names

ROOT = Path(__file__).resolve().parents[2]
ANALYSES = ROOT / "docs" / "analyses.md"
README = ROOT / "README.md"
runner = CliRunner()


def _blocks(text: str, language: str) -> list[tuple[int, str]]:
    """Fenced blocks of ``language``: (line of the opening fence, body)."""
    pattern = re.compile(rf"^```{language}\n(.*?)^```$", re.MULTILINE | re.DOTALL)
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in pattern.finditer(text)]


def _commands(block: str) -> list[list[str]]:
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def doc_tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Run the doc's synthesize commands; return {table: {node: file}}."""
    folder = tmp_path_factory.mktemp("analyses-doc")
    data_blocks = [
        b for _, b in _blocks(ANALYSES.read_text(encoding="utf-8"), "sh") if "synth" in b
    ]
    assert len(data_blocks) == 1, "docs/analyses.md has one block of data commands"
    tables: dict[str, dict[str, Path]] = defaultdict(dict)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for command in _commands(data_blocks[0]):
            assert command[:3] == ["consortia", "study", "synthesize"], command
            result = runner.invoke(app, command[1:])
            assert result.exit_code == 0, f"{shlex.join(command)}: {result.output}"
            out = Path(command[command.index("--analysis-out") + 1])
            node = out.stem.rsplit("-", 1)[-1]
            tables[ANALYSIS_TABLES[command[3]]][node] = folder / out
    return dict(tables)


def _json_examples() -> list[tuple[int, dict[str, object]]]:
    text = ANALYSES.read_text(encoding="utf-8")
    return [(line, json.loads(body)) for line, body in _blocks(text, "json")]


def test_every_registered_kind_has_an_example_in_the_analyses_doc() -> None:
    documented = {example["kind"] for _, example in _json_examples()}
    assert documented == set(kind_names())


@pytest.mark.parametrize(
    ("line", "request_json"),
    _json_examples(),
    ids=[f"analyses.md:{line}" for line, _ in _json_examples()],
)
def test_each_example_in_the_analyses_doc_runs_through_consortia_analyze(
    line: int,
    request_json: dict[str, object],
    doc_tables: dict[str, dict[str, Path]],
    tmp_path: Path,
) -> None:
    spec = tmp_path / "request.json"
    spec.write_text(json.dumps(request_json), encoding="utf-8")
    files = doc_tables[str(request_json["table"])]
    local = [arg for node, path in files.items() for arg in ("--local", f"{node}={path}")]
    result = runner.invoke(app, ["analyze", str(spec), "--json", *local])
    assert result.exit_code == 0, f"docs/analyses.md:{line}: {result.output}"
    answer = json.loads(result.output)
    assert answer["complete"] is True
    assert answer["kind"] == request_json["kind"]
    assert [node["name"] for node in answer["nodes"]] == list(files)
    assert all(node["n"] > 0 for node in answer["nodes"])


def test_the_diagnostic_examples_say_which_auc_is_exact(
    doc_tables: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    diagnostic = [example for _, example in _json_examples() if example["kind"] == "diagnostic"]
    local = [a for node, p in doc_tables["ai_cases"].items() for a in ("--local", f"{node}={p}")]
    exact = []
    for number, request_json in enumerate(diagnostic):
        spec = tmp_path / f"diagnostic{number}.json"
        spec.write_text(json.dumps(request_json), encoding="utf-8")
        answer = json.loads(runner.invoke(app, ["analyze", str(spec), "--json", *local]).output)
        exact.append((answer["exact"], answer["estimates"]["auc_max_error"] == 0))
    assert exact == [(False, False), (True, True)]


def _readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A first look") :]
    block = _blocks(section, "sh")[0][1]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# rehearse a federated"))
    commands = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        commands.append(shlex.split(line, comments=True))
    return commands


def test_the_readme_analysis_commands_run_in_a_fresh_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = _readme_commands()
    assert commands[-1][1] == "analyze"
    for command in commands:  # the files a command names under examples/ come from the clone
        for argument in command:
            if argument.startswith("examples/"):
                (tmp_path / argument).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / argument, tmp_path / argument)
    monkeypatch.chdir(tmp_path)
    outputs = []
    for command in commands:  # the console script .venv/bin/consortia runs this same app
        assert command[0] == ".venv/bin/consortia", command
        result = runner.invoke(app, command[1:])
        assert result.exit_code == 0, f"{shlex.join(command)}: {result.output}"
        outputs.append(result.output)
    assert outputs[-1].startswith("kaplan_meier: exact (equals pooling)")
    assert "nodes: sgh (n=60), ruijin (n=60)" in outputs[-1]
