"""Where each key of a TOML document is written: ``tomllib`` parses values but keeps no lines.

:func:`key_lines` maps every key path to its 1-based line, so a problem found in the parsed
values (``node.tables.cart.edc: ...``) can be reported as ``consortia.toml:14``. Paths use
the names and list indexes pydantic puts in an error's ``loc``: ``[[node.peers]]`` tables and
the members of an inline array are numbered from 0.

>>> lines = key_lines('a = 1\\n[node]\\nkey_file = "k.pem"\\n[[node.peers]]\\nname = "lead"\\n')
>>> lines[("node", "key_file")], lines[("node", "peers", 0, "name")]
(3, 5)
>>> line_of(lines, ("node", "peers", 0, "public_key"))
4

The scanner reads only what it needs (keys, strings, brackets) and never fails: on text
that is not valid TOML it returns what it found, and ``tomllib`` reports the error.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["KeyPath", "key_lines", "line_of"]

KeyPath = tuple[str | int, ...]
_BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.array_tables: dict[KeyPath, int] = {}

    # -- characters ------------------------------------------------------------------
    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self.pos < len(self.text):
                if self.text[self.pos] == "\n":
                    self.line += 1
                self.pos += 1

    def skip_blank(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self.peek()
            if char in " \t\r" or (newlines and char == "\n"):
                self.advance()
            elif char == "#":
                while self.pos < len(self.text) and self.peek() != "\n":
                    self.advance()
            else:
                return

    def skip_line(self) -> None:
        while self.pos < len(self.text) and self.peek() != "\n":
            self.advance()

    # -- tokens ------------------------------------------------------------------------
    def string(self) -> str:
        quote = self.peek()
        if self.text.startswith(quote * 3, self.pos):
            self.advance(3)
            end = self.text.find(quote * 3, self.pos)
            while quote == '"' and end > 0 and self._escaped(end):
                end = self.text.find(quote * 3, end + 1)
            end = len(self.text) if end < 0 else end
            value = self.text[self.pos : end]
            self.advance(end - self.pos + 3)
            while self.peek() == quote:  # up to two quotes may close the string
                self.advance()
            return value
        self.advance()
        start = self.pos
        while self.pos < len(self.text) and self.peek() not in (quote, "\n"):
            if quote == '"' and self.peek() == "\\":
                self.advance()
            self.advance()
        value = self.text[start : self.pos]
        if self.peek() == quote:
            self.advance()
        return value

    def _escaped(self, index: int) -> bool:
        backslashes = 0
        while index - 1 - backslashes >= 0 and self.text[index - 1 - backslashes] == "\\":
            backslashes += 1
        return backslashes % 2 == 1

    def key(self) -> list[str]:
        """A dotted key: ``a."b.c".d`` -> ["a", "b.c", "d"]."""
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            char = self.peek()
            if char in ('"', "'"):
                parts.append(self.string())
            else:
                start = self.pos
                while self.peek() in _BARE and self.peek():
                    self.advance()
                if self.pos == start:
                    return parts
                parts.append(self.text[start : self.pos])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.advance()

    # -- structure ---------------------------------------------------------------------
    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            line = self.line
            if self.peek() == "[":
                is_array = self.peek(1) == "["
                self.advance(2 if is_array else 1)
                table = self.table_path(self.key(), is_array)
                self.lines.setdefault(table, line)
                self.skip_line()
                continue
            parts = self.key()
            if not parts or self.peek() != "=":
                self.skip_line()
                continue
            self.advance()
            path = (*table, *parts)
            self.lines.setdefault(path, line)
            self.value(path, line)
            self.skip_line()

    def table_path(self, parts: Sequence[str], is_array: bool) -> KeyPath:
        path: KeyPath = ()
        for index, part in enumerate(parts):
            path = (*path, part)
            last = index == len(parts) - 1
            if last and is_array:
                count = self.array_tables.get(path, -1) + 1
                self.array_tables[path] = count
                self.lines.setdefault(path, self.line)
                path = (*path, count)
            elif path in self.array_tables:
                path = (*path, self.array_tables[path])
        return path

    def value(self, path: KeyPath, line: int) -> None:
        self.skip_blank(newlines=False)
        char = self.peek()
        if char in ('"', "'"):
            self.string()
        elif char == "{":
            self.inline_table(path)
        elif char == "[":
            self.array(path)
        else:
            while self.peek() and self.peek() not in ",]}\n#":
                self.advance()

    def inline_table(self, path: KeyPath) -> None:
        self.advance()  # {
        while self.pos < len(self.text):
            self.skip_blank(newlines=True)
            if self.peek() in ("}", ""):
                self.advance()
                return
            if self.peek() == ",":
                self.advance()
                continue
            line = self.line
            parts = self.key()
            if not parts or self.peek() != "=":
                self.advance()
                continue
            self.advance()
            child = (*path, *parts)
            self.lines.setdefault(child, line)
            self.value(child, line)

    def array(self, path: KeyPath) -> None:
        self.advance()  # [
        index = 0
        while self.pos < len(self.text):
            self.skip_blank(newlines=True)
            char = self.peek()
            if char in ("]", ""):
                self.advance()
                return
            if char == ",":
                index += 1
                self.advance()
                continue
            self.lines.setdefault((*path, index), self.line)
            before = self.pos
            self.value((*path, index), self.line)
            if self.pos == before:
                self.advance()


def key_lines(text: str) -> dict[KeyPath, int]:
    """Every key path of a TOML document (tables, keys, array members) and its line."""
    scanner = _Scanner(text)
    scanner.document()
    return scanner.lines


def line_of(lines: dict[KeyPath, int], path: Sequence[str | int]) -> int | None:
    """The line of ``path``, or of its nearest written ancestor (None: nowhere in the file)."""
    key = tuple(path)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None
