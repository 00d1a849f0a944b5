"""No doc or example tells anyone to write a node.yaml or to run the federation-only server.

A node is served by ``consortia serve`` from its consortia.toml (federation in its [node]
section). The YAML node config of earlier releases may be named only where the one-off
move is explained: in a paragraph that gives ``consortia config import-node-yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What a person reads: the README, the docs, the examples and the benchmarks' texts.
READ = ["README.md", "docs/**/*.md", "examples/**/*", "bench/*.md", "bench/*.py"]
#: Where the old YAML config is named: the file, the setting that pointed at it.
YAML_CONFIG = re.compile(r"node\.ya?ml|federation_config|FEDERATION_CONFIG")
MIGRATION = "import-node-yaml"
#: The removed server: ``python -m consortia.federation.serve``.
OLD_SERVER = re.compile(r"consortia\.federation\.serve\b|consortia/federation/serve\.py")
#: A YAML block that is a node's federation config (its fields, one per line).
NODE_FIELDS = re.compile(r"^\s*(key_file|trust_file|lead_url|peers|witness_interval_seconds):")


def _read_files() -> list[Path]:
    files = {path for pattern in READ for path in ROOT.glob(pattern) if path.is_file()}
    return sorted(path for path in files if path.suffix in {".md", ".py", ".yaml", ".yml", ".conf"})


def _paragraphs(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each block of lines between blank lines."""
    blocks: list[tuple[int, str]] = []
    start, lines = 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not lines:
                start = number
            lines.append(line)
        elif lines:
            blocks.append((start, "\n".join(lines)))
            lines = []
    if lines:
        blocks.append((start, "\n".join(lines)))
    return blocks


def _yaml_node_configs(text: str) -> list[int]:
    """Lines where a fenced ```yaml block starts that holds a node config's fields."""
    found = []
    for match in re.finditer(r"^```ya?ml\n(.*?)^```", text, flags=re.M | re.S):
        if any(NODE_FIELDS.match(line) for line in match.group(1).splitlines()):
            found.append(text.count("\n", 0, match.start()) + 1)
    return found


def offences(path: Path) -> list[str]:
    """Every place in ``path`` that tells the reader to use the old YAML config or server."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = [
        f"{name}:{text.count(chr(10), 0, match.start()) + 1}: runs the removed server"
        for match in OLD_SERVER.finditer(text)
    ]
    found += [
        f"{name}:{line}: names the YAML node config without `{MIGRATION}`"
        for line, paragraph in _paragraphs(text)
        if YAML_CONFIG.search(paragraph) and MIGRATION not in paragraph
    ]
    found += [f"{name}:{line}: a node config written as YAML" for line in _yaml_node_configs(text)]
    return found


def test_no_doc_or_example_tells_anyone_to_write_a_node_yaml_or_run_the_old_server() -> None:
    files = _read_files()
    assert ROOT / "README.md" in files
    assert ROOT / "docs" / "federation.md" in files
    assert [offence for path in files for offence in offences(path)] == []


def test_the_source_no_longer_runs_the_old_server() -> None:
    sources = sorted((ROOT / "src" / "consortia").rglob("*.py"))
    assert not (ROOT / "src" / "consortia" / "federation" / "serve.py").exists()
    assert [str(p) for p in sources if OLD_SERVER.search(p.read_text(encoding="utf-8"))] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Run:\n\n    python -m consortia.federation.serve node.yaml\n", "removed server"),
        ("Write a node.yaml next to the key.\n", "without `import-node-yaml`"),
        ("Set federation_config in consortia.toml.\n", "without `import-node-yaml`"),
        ("```yaml\nname: sgh\nkey_file: node.pem\n```\n", "written as YAML"),
    ],
)
def test_the_check_finds_each_kind_of_offence(tmp_path: Path, text: str, expected: str) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(text, encoding="utf-8")
    assert any(expected in offence for offence in offences(doc))
    doc.write_text(f"A node.yaml of before: run `consortia config {MIGRATION} FILE`.\n")
    assert offences(doc) == []
