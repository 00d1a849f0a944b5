"""Input checks shared by the estimators: numbers, event flags, labels, time bins.

Each check raises :class:`consortia.exceptions.StatisticsError` naming the column and the
first offending row, so a node can tell its data steward what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError

__all__ = [
    "as_event_vector",
    "as_float_array",
    "as_float_vector",
    "as_labels",
    "bin_times",
    "sort_labels",
]

FloatArray = npt.NDArray[np.float64]


def sort_labels(labels: Sequence[str] | set[str]) -> tuple[str, ...]:
    """Sort labels numerically when every label is a number, otherwise as text.

    >>> sort_labels({"10", "2", "1"}), sort_labels({"b", "a"})
    (('1', '2', '10'), ('a', 'b'))
    """
    unique = set(labels)
    try:
        return tuple(sorted(unique, key=float))
    except ValueError:
        return tuple(sorted(unique))


def as_labels(values: npt.ArrayLike, what: str) -> list[str]:
    """Turn group/level values into text labels; missing values are refused.

    Messages name the column and counts, never a value nor a row (they may leave a node).
    """
    out: list[str] = []
    missing = 0
    for value in np.asarray(values, dtype=object).ravel().tolist():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            missing += 1
            continue
        out.append(str(value))
    if missing:
        raise StatisticsError(f"{what}: {missing} missing values; drop or impute them first")
    return out


def as_float_array(values: Iterable[Any] | npt.ArrayLike, name: str) -> FloatArray:
    """Return a 1-D float array; missing values (NaN) stay, infinite ones are refused."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise StatisticsError(f"{name}: values must be numbers or missing") from None
    if array.ndim != 1:
        raise StatisticsError(f"{name}: expected a one-dimensional array, got shape {array.shape}")
    if np.isinf(array).any():
        raise StatisticsError(f"{name}: infinite values cannot be summarised")
    return array


# --------------------------------------------------------------------------- describe


def as_float_vector(values: npt.ArrayLike, what: str) -> FloatArray:
    """Return a 1-D float array with no missing or infinite values."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise StatisticsError(f"{what}: values must be numbers") from None
    if array.ndim != 1:
        raise StatisticsError(f"{what}: expected one value per subject, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise StatisticsError(f"{what}: {bad.size} missing or infinite values")
    return array


def as_event_vector(values: npt.ArrayLike, n: int) -> npt.NDArray[np.bool_]:
    """Return event indicators as booleans; only 0/1 (or True/False) are accepted."""
    events = as_float_vector(values, "event")
    if events.size != n:
        raise StatisticsError(f"event: {events.size} values for {n} times")
    bad = np.flatnonzero((events != 0) & (events != 1))
    if bad.size:
        raise StatisticsError(f"event: {bad.size} values are not 0 or 1")
    return np.asarray(events == 1, dtype=np.bool_)


def bin_times(times: FloatArray, time_bin: float | None) -> FloatArray:
    """Report each time at the start of its bin: ``floor(t / time_bin) * time_bin``."""
    if time_bin is None:
        return times
    if not time_bin > 0:
        raise StatisticsError(f"time_bin: {time_bin} must be positive")
    return np.floor(times / time_bin) * time_bin
