"""The typed estimates of the model kinds (``glm``, ``cox``, ``meta``): the fit and what
the nodes agreed for it. Each is JSON only at the wire (``to_dict``: the fit's JSON with
the agreement beside it) and is read back by its ``from_dict``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consortia.exceptions import StatisticsError
from consortia.stats.cox import CoxResult
from consortia.stats.glm import GlmResult
from consortia.stats.meta import MetaResult
from consortia.stats.results import from_jsonable

__all__ = ["CoxEstimates", "GlmEstimates", "MetaEstimates"]


def _read_levels(data: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    levels = data.get("levels")
    if not isinstance(levels, Mapping):
        raise StatisticsError("levels: expected an object of level lists")
    return {
        str(name): from_jsonable(tuple[str, ...], values, f"levels.{name}")
        for name, values in levels.items()
    }


@dataclass(frozen=True, eq=False)
class GlmEstimates:
    """A federated GLM fit and the levels the nodes agreed (the first is the reference).

    On the wire: the fit's JSON with ``"levels"`` beside it.
    """

    fit: GlmResult
    levels: Mapping[str, tuple[str, ...]]

    @property
    def exact(self) -> bool:
        """IRLS on summed aggregates: the pooled fit."""
        return True

    def to_dict(self) -> dict[str, Any]:
        return {**self.fit.to_dict(), "levels": {k: list(v) for k, v in self.levels.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlmEstimates:
        return cls(GlmResult.from_dict(data), _read_levels(data))

    def summary(self) -> str:
        return self.fit.summary()


@dataclass(frozen=True, eq=False)
class CoxEstimates:
    """A federated Cox fit, the agreed levels and the bin of released event times.

    On the wire: the fit's JSON with ``"levels"`` and ``"time_bin"`` beside it.
    """

    fit: CoxResult
    levels: Mapping[str, tuple[str, ...]]
    time_bin: float | None

    @property
    def exact(self) -> bool:
        """Newton rounds on summed per-time (or per-stratum) sums: the pooled fit."""
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.fit.to_dict(),
            "levels": {k: list(v) for k, v in self.levels.items()},
            "time_bin": self.time_bin,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CoxEstimates:
        return cls(
            CoxResult.from_dict(data),
            _read_levels(data),
            from_jsonable(float | None, data.get("time_bin"), "time_bin"),
        )

    def summary(self) -> str:
        return self.fit.summary()


@dataclass(frozen=True, eq=False)
class MetaEstimates:
    """The meta-analysis of one model term over the nodes' own fits (not exact).

    On the wire: the meta-analysis's JSON with ``"term"`` beside it.
    """

    meta: MetaResult
    term: str

    @property
    def exact(self) -> bool:
        """Pooled estimates of local fits are not the pooled fit."""
        return self.meta.exact

    def to_dict(self) -> dict[str, Any]:
        return {**self.meta.to_dict(), "term": self.term}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetaEstimates:
        return cls(MetaResult.from_dict(data), from_jsonable(str, data.get("term"), "term"))

    def summary(self) -> str:
        return f"term {self.term}\n{self.meta.summary()}"
