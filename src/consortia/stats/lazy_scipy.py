"""``scipy.stats``, imported when first used rather than when a stats module is.

Importing ``scipy.stats`` costs about a second (far more on a busy host) and half the memory
a node process starts with; a member node serving its pages, or answering an analysis that
needs no distribution, never uses it. The stats modules name :data:`stats` in its place
(``scipy.stats`` itself for the type checker), and the first attribute looked up on it
imports the real module.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["stats"]


class _Module:
    """Stands for a module until an attribute of it is asked for."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


stats: Any = _Module("scipy.stats")
