"""The registry of analysis kinds; a new kind is one :class:`AnalysisKind` subclass.

>>> sorted(KINDS)[:3]
['cox', 'crosstab', 'describe']
>>> get_kind("describe").exact
True
"""

from __future__ import annotations

from typing import Any

from consortia.federation.kinds.agreement import DiagnosticKind, Iso15197Kind
from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Estimates,
    Exchange,
    InvalidRequest,
)
from consortia.federation.kinds.cox import CoxKind
from consortia.federation.kinds.descriptive import CrosstabKind, DescribeKind, ProportionKind
from consortia.federation.kinds.glm import GlmKind
from consortia.federation.kinds.meta import MetaKind
from consortia.federation.kinds.survival import KaplanMeierKind

__all__ = [
    "KINDS",
    "AnalysisKind",
    "AnalysisRequest",
    "Estimates",
    "Exchange",
    "InvalidRequest",
    "get_kind",
    "register_kind",
]

KINDS: dict[str, AnalysisKind[Any]] = {}


def register_kind(kind: AnalysisKind[Any]) -> None:
    """Make ``kind`` available to nodes and the lead under ``kind.name``."""
    KINDS[kind.name] = kind


def get_kind(name: object) -> AnalysisKind[Any]:
    """Return the kind called ``name``; raise :class:`InvalidRequest` listing the known ones."""
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise InvalidRequest(f"kind: {name!r} is not an analysis kind; use one of {sorted(KINDS)}")
    return kind


for _kind in (
    DescribeKind(),
    CrosstabKind(),
    ProportionKind(),
    KaplanMeierKind(),
    GlmKind(),
    CoxKind(),
    MetaKind(),
    Iso15197Kind(),
    DiagnosticKind(),
):
    register_kind(_kind)
