"""The registry of analysis kinds; a new kind is one :class:`AnalysisKind` subclass.

The built-in kinds are imported when one is first asked for (:func:`get_kind`): a command or
a page that runs no analysis does not pay for the statistics behind them (scipy, ~0.4 s of
imports on every ``consortia`` command and every server start).

>>> kind_names()[:3]
['cox', 'crosstab', 'describe']
>>> get_kind("describe").exact
True
"""

from __future__ import annotations

import importlib
from typing import Any

from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Estimates,
    Exchange,
    InvalidRequest,
)

__all__ = [
    "KINDS",
    "AnalysisKind",
    "AnalysisRequest",
    "Estimates",
    "Exchange",
    "InvalidRequest",
    "get_kind",
    "kind_names",
    "register_kind",
]

#: The built-in kinds by name: the module of this package and the class that implements it
BUILT_IN: dict[str, tuple[str, str]] = {
    "describe": ("descriptive", "DescribeKind"),
    "crosstab": ("descriptive", "CrosstabKind"),
    "proportion": ("descriptive", "ProportionKind"),
    "kaplan_meier": ("survival", "KaplanMeierKind"),
    "glm": ("glm", "GlmKind"),
    "cox": ("cox", "CoxKind"),
    "meta": ("meta", "MetaKind"),
    "iso15197": ("agreement", "Iso15197Kind"),
    "diagnostic": ("agreement", "DiagnosticKind"),
}

#: The kinds loaded so far (built-in ones once asked for) and those registered by a plug-in
KINDS: dict[str, AnalysisKind[Any]] = {}


def register_kind(kind: AnalysisKind[Any]) -> None:
    """Make ``kind`` available to nodes and the lead under ``kind.name``."""
    KINDS[kind.name] = kind


def kind_names() -> list[str]:
    """The name of every kind a request may ask for, loaded or not, in order."""
    return sorted(KINDS.keys() | BUILT_IN.keys())


def get_kind(name: object) -> AnalysisKind[Any]:
    """Return the kind called ``name``; raise :class:`InvalidRequest` listing the known ones."""
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None and isinstance(name, str) and name in BUILT_IN:
        module, implementation = BUILT_IN[name]
        loaded = importlib.import_module(f"{__name__}.{module}")
        kind = KINDS.setdefault(name, getattr(loaded, implementation)())
    if kind is None:
        raise InvalidRequest(f"kind: {name!r} is not an analysis kind; use one of {kind_names()}")
    return kind
