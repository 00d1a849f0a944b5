"""The line of each key of a TOML document (tomllib keeps none)."""

from __future__ import annotations

import tomllib

from consortia.tomllines import key_lines, line_of

DOCUMENT = '''# a node
environment = "production"  # trailing comment
secret_key = """multi
fake = "not a key"
"""
[node]
key_file = "node_key.pem"
policy = { min_cell_count = 5, time_bin = 7 }
peers = [
  {name = "a", url = "http://a"},
  {name = "b", "public_key" = "x"},
]
[node.tables."cart efficacy"]
file = "data/cart.csv"
[[node.extra]]
name = "first"
[[node.extra]]
name = "second"
[node.extra.more]
deep = 1
'''


def test_every_key_path_is_found_on_its_line() -> None:
    tomllib.loads(DOCUMENT)  # the document is valid TOML
    lines = key_lines(DOCUMENT)
    assert lines[("environment",)] == 2
    assert lines[("secret_key",)] == 3
    assert ("fake",) not in lines  # inside a multi-line string
    assert lines[("node", "key_file")] == 7
    assert lines[("node", "policy", "min_cell_count")] == 8
    assert lines[("node", "policy", "time_bin")] == 8
    assert lines[("node", "peers", 0, "url")] == 10
    assert lines[("node", "peers", 1, "public_key")] == 11
    assert lines[("node", "tables", "cart efficacy", "file")] == 14
    assert lines[("node", "extra", 0, "name")] == 16
    assert lines[("node", "extra", 1, "name")] == 18
    assert lines[("node", "extra", 1, "more", "deep")] == 20


def test_a_key_not_written_is_placed_at_its_nearest_written_ancestor() -> None:
    lines = key_lines(DOCUMENT)
    assert line_of(lines, ("node", "peers", 1, "url")) == 11
    assert line_of(lines, ("node", "lead_url")) == 6
    assert line_of(lines, ("database_url",)) is None


def test_text_that_is_not_toml_gives_what_was_found_and_never_fails() -> None:
    for text in ["a = [1, 2", 'b = "open', "[unclosed\nc = 1", "= 3\nd = 4", '"""', "{{{"]:
        key_lines(text)
    assert key_lines("= 3\nd = 4")[("d",)] == 2
