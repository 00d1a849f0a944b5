"""Load YAML safely into plain Python values while remembering where each value came from.

Study definitions are written by people; every problem must point at a line and column.
PyYAML's composer gives us nodes with positions; we build the values ourselves so we can
refuse what a study file never needs and an attacker would use:

- anchors and aliases (the "billion laughs" memory bomb) and custom tags,
- duplicate keys (YAML silently keeps the last one),
- files over ``MAX_BYTES``, nesting deeper than ``MAX_DEPTH``, bytes that are not UTF-8.

>>> doc = load_yaml_text("a:\\n  b: [1, 2]\\n", "s.yaml")
>>> doc.value
{'a': {'b': [1, 2]}}
>>> doc.position(("a", "b", 1))
(2, 10)
>>> load_yaml_text("answer: No\nat: 12:30\n").value
{'answer': 'No', 'at': '12:30'}
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from consortia.exceptions import Problem, StudyDefinitionError

MAX_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64

PathKey = tuple[str | int, ...]

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}


@dataclass(frozen=True)
class ScalarSpan:
    """Where a scalar's text starts (1-based) and how it was written."""

    line: int
    column: int
    style: str | None  # None (plain), "'", '"', "|" or ">"


@dataclass
class YamlDocument:
    """A loaded YAML document: the plain value plus a position for every path in it."""

    file: str
    value: Any
    positions: dict[PathKey, ScalarSpan] = field(default_factory=dict)
    key_positions: dict[PathKey, ScalarSpan] = field(default_factory=dict)

    def position(self, path: PathKey) -> tuple[int, int]:
        """Line and column of the value at ``path``, or of its nearest ancestor."""
        span = self.span(path)
        return (span.line, span.column) if span else (1, 1)

    def span(self, path: PathKey) -> ScalarSpan | None:
        probe = tuple(path)
        while True:
            if probe in self.positions:
                return self.positions[probe]
            if not probe:
                return None
            probe = probe[:-1]

    def key_position(self, path: PathKey) -> tuple[int, int]:
        """Line and column of the mapping key that ends ``path`` (falls back to the value)."""
        span = self.key_positions.get(tuple(path))
        return (span.line, span.column) if span else self.position(path)

    def locate(self, dotted_path: str) -> tuple[int, int]:
        """Line and column of the key (or item) a dotted path names, as :func:`dotted`
        writes it; (0, 0) for a path that is not in the document.

        >>> doc = load_yaml_text("a:\\n  b: [1, {c: 2}]\\n", "s.yaml")
        >>> doc.locate("a.b"), doc.locate("a.b[1].c"), doc.locate("a.z")
        ((2, 3), (2, 11), (0, 0))
        """
        key: PathKey = tuple(
            int(part[1:-1]) if part.startswith("[") else part
            for part in re.findall(r"\[\d+\]|[^.\[\]]+", dotted_path)
        )
        span = self.key_positions.get(key) or self.positions.get(key)
        return (span.line, span.column) if span else (0, 0)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.positions: dict[PathKey, ScalarSpan] = {}
        self.key_positions: dict[PathKey, ScalarSpan] = {}
        self._seen: set[int] = set()
        self._resolver = yaml.resolver.Resolver()
        self._constructor = yaml.constructor.SafeConstructor()

    def problem(self, node: Node, path: PathKey, message: str) -> None:
        self.problems.append(
            Problem(
                _dotted(path),
                message,
                self.file,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
            )
        )

    def build(self, node: Node, path: PathKey, depth: int) -> Any:
        self.positions[path] = ScalarSpan(
            node.start_mark.line + 1,
            node.start_mark.column + 1,
            getattr(node, "style", None),
        )
        if depth > MAX_DEPTH:
            self.problem(node, path, f"nesting deeper than {MAX_DEPTH} levels is refused")
            return None
        if id(node) in self._seen:
            self.problem(node, path, "YAML aliases (*name) are not allowed in a study file")
            return None
        self._seen.add(id(node))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                self.problem(node, path, f"YAML tag {node.tag!r} is not allowed")
                return None
            return [self.build(child, (*path, i), depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        self.problem(node, path, "unsupported YAML node")  # pragma: no cover - exhaustive above
        return None

    def _scalar(self, node: ScalarNode, path: PathKey) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.problem(node, path, f"YAML tag {node.tag!r} is not allowed")
            return None
        if node.tag == "tag:yaml.org,2002:str":
            return node.value
        # YAML 1.2 semantics where 1.1 surprises people: yes/no/on/off stay words
        # ("Norway problem") and 12:30 stays a time, not the sexagesimal number 750.
        if node.tag == "tag:yaml.org,2002:bool" and node.value.lower() not in ("true", "false"):
            return node.value
        if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and ":" in node.value:
            return node.value
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            self.problem(node, path, f"cannot read value {node.value!r}: {exc}")
            return None
        if isinstance(value, dt.datetime | dt.date):
            # Dates stay text: the study model decides what a date means.
            return node.value
        return value

    def _mapping(self, node: MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        if node.tag not in ("tag:yaml.org,2002:map",):
            self.problem(node, path, f"YAML tag {node.tag!r} is not allowed")
            return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problem(key_node, path, "YAML merge keys (<<) are not allowed")
                continue
            if not isinstance(key_node, ScalarNode):
                self.problem(key_node, path, "mapping keys must be plain text")
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                first = self.key_positions[child]
                self.problem(
                    key_node,
                    child,
                    f"duplicate key {key!r} (first defined at line {first.line})",
                )
                continue
            self.key_positions[child] = ScalarSpan(
                key_node.start_mark.line + 1, key_node.start_mark.column + 1, key_node.style
            )
            result[key] = self.build(value_node, child, depth + 1)
        return result


def _dotted(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def dotted(path: PathKey) -> str:
    """``("forms", "ae", "items", 0)`` -> ``"forms.ae.items[0]"``."""
    return _dotted(path)


def _decode(data: bytes, file: str) -> str:
    if len(data) > MAX_BYTES:
        raise StudyDefinitionError(
            [Problem("", f"file is {len(data):,} bytes; the limit is {MAX_BYTES:,}", file, 1, 1)]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise StudyDefinitionError(
            [
                Problem(
                    "",
                    f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded; save the "
                    "file as UTF-8",
                    file,
                    line,
                    column,
                )
            ]
        ) from None
    return text.removeprefix("\ufeff")


def load_yaml_text(text: str, file: str = "<input>") -> YamlDocument:
    """Parse one YAML document from text; raise StudyDefinitionError with every problem."""
    if len(text) > MAX_BYTES:
        raise StudyDefinitionError(
            [Problem("", f"file is over the {MAX_BYTES:,} character limit", file, 1, 1)]
        )
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise StudyDefinitionError(
            [Problem("", f"YAML syntax error: {message}", file, line, column)]
        ) from None
    except yaml.YAMLError as exc:
        raise StudyDefinitionError([Problem("", f"YAML error: {exc}", file, 1, 1)]) from None
    except RecursionError:
        raise StudyDefinitionError(
            [Problem("", "nesting is too deep to be a study definition", file, 1, 1)]
        ) from None
    if node is None:
        raise StudyDefinitionError([Problem("", "the file is empty", file, 1, 1)])
    builder = _Builder(file)
    value = builder.build(node, (), 0)
    if builder.problems:
        raise StudyDefinitionError(builder.problems)
    return YamlDocument(file, value, builder.positions, builder.key_positions)


def load_yaml_file(path: str | Path) -> YamlDocument:
    """Read and parse a YAML file (size-limited, UTF-8 only)."""
    file = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise StudyDefinitionError(
            [Problem("", f"cannot read file: {exc.strerror}", file)]
        ) from None
    return load_yaml_text(_decode(data, file), file)


def walk_paths(value: Any, path: PathKey = ()) -> Iterator[PathKey]:
    """Every path in a plain value, depth first (used by tests)."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk_paths(child, (*path, index))
