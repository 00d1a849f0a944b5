"""The syntax trees of source files, each parsed once per test process.

The static checks (tests/test_layers.py, test_module_sizes.py, test_hashchain.py) walk the
whole of src/ once per name or package they check; parsing is most of their time. A tree is
cached by its text and name, so a planted copy that differs in one file gets its own tree.
The trees are shared: a check reads them and never changes one.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path


@functools.cache
def parse_source(source: str, filename: str) -> ast.Module:
    """The tree of ``source`` (``filename`` names it in a syntax error)."""
    return ast.parse(source, filename=filename)


def syntax_tree(path: Path) -> ast.Module:
    """The tree of the file at ``path`` as it reads now."""
    return parse_source(path.read_text(encoding="utf-8"), str(path))
