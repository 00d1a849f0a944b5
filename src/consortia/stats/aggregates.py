"""What a node releases: the base of every statistic's aggregates, and reading them back.

A node function turns one node's arrays into additive aggregates, a frozen dataclass that
subclasses :class:`NodeAggregates` (JSON-ready via ``to_dict()``, read back by its own
validating ``from_dict()`` inside :func:`reading_aggregates`); the lead combines the
aggregates of every node into a result. :func:`check_confidence` is the shared check of a
confidence level.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from consortia.exceptions import StatisticsError
from consortia.stats.results import to_jsonable

__all__ = ["NodeAggregates", "check_confidence", "reading_aggregates"]


class NodeAggregates:
    """Base of the frozen dataclasses a node releases: JSON-ready via :meth:`to_dict`.

    Fields are ints, floats, strings, ``None`` and (nested) tuples of those; each subclass
    reads its own JSON back with a validating ``from_dict``.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return the aggregates as plain JSON values (tuples become lists)."""
        if not dataclasses.is_dataclass(self):
            raise TypeError(f"{type(self).__name__} must be a dataclass")
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


@contextmanager
def reading_aggregates(kind: str) -> Iterator[None]:
    """Turn a malformed aggregate message into a StatisticsError naming the kind."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as exc:
        raise StatisticsError(f"{kind}: malformed aggregates ({exc!r})") from exc


def check_confidence(confidence: float) -> float:
    """The confidence level as a float; refused unless strictly between 0 and 1."""
    if not 0.0 < confidence < 1.0:
        raise StatisticsError(f"confidence: {confidence} is outside (0, 1)")
    return float(confidence)
