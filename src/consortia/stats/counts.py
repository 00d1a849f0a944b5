"""Released counts that may be suppressed: a count is an ``int``, or ``"<k"`` when a node
(or the lead, for a pooled count) released it as suppressed under a minimum cell count k.

>>> pool_counts([3, 4])
7
>>> pool_counts([3, "<5"])
'4-7'
>>> pool_counts([0, "<5"])
'<5'
>>> pool_counts([">=5", "<5", 10])
'>=16'
>>> read_count("<5", "missing"), read_count(2, "missing")
('<5', 2)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from consortia.exceptions import StatisticsError

__all__ = [
    "Count",
    "complementary",
    "count_bounds",
    "is_suppressed",
    "pool_counts",
    "read_count",
    "suppressed",
]

Count = int | str
"""A count as released: the number; ``"<k"`` (a small count, 1 to k − 1, suppressed);
``">=k"`` (a count suppressed so that a small one cannot be recovered from the margins:
complementary suppression); or, for a pool of counts some of which were suppressed, the
range it lies in, ``"a-b"`` or ``">=a"``."""

_SUPPRESSED = re.compile(r"^<([1-9][0-9]{0,8})$")
_AT_LEAST = re.compile(r"^>=([0-9]{1,12})$")
_RANGE = re.compile(r"^([0-9]{1,12})-([0-9]{1,12})$")


def suppressed(minimum: int) -> str:
    """The released form of a count 0 < n < ``minimum``: ``"<5"`` for a minimum of 5."""
    return f"<{minimum}"


def complementary(minimum: int) -> str:
    """The released form of a count suppressed to protect a small one: ``">=5"``."""
    return f">={minimum}"


def is_suppressed(count: Count) -> bool:
    """Whether ``count`` was released as suppressed (not as a number)."""
    return isinstance(count, str)


def count_bounds(count: Count) -> tuple[int, int | None]:
    """The smallest and largest value a released count can stand for (``None``: no
    largest)."""
    if isinstance(count, int):
        return count, count
    match = _SUPPRESSED.match(count)
    if match is not None:
        return 1, int(match.group(1)) - 1
    match = _AT_LEAST.match(count)
    if match is not None:
        return int(match.group(1)), None
    match = _RANGE.match(count)
    if match is None:
        raise StatisticsError(f"{count!r} is not a count")
    return int(match.group(1)), int(match.group(2))


def read_count(value: object, where: str) -> Count:
    """A count read from JSON: a non-negative integer, ``"<k"`` or ``"a-b"``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise StatisticsError(f"{where}: {value!r} is not a count")
    if isinstance(value, int):
        if value < 0:
            raise StatisticsError(f"{where}: a count cannot be negative")
        return value
    if not any(pattern.match(value) for pattern in (_SUPPRESSED, _AT_LEAST, _RANGE)):
        raise StatisticsError(f"{where}: {value!r} is not a count (a number, '<5', '>=5' or '3-9')")
    return value


def pool_counts(counts: Iterable[Count]) -> Count:
    """The sum of released counts: exact when each is, else the range it lies in
    (``"<k"`` when that range is 1 … k − 1 for one suppressed part and nothing else)."""
    parts = list(counts)
    if all(isinstance(count, int) for count in parts):
        return sum(int(count) for count in parts)
    low, high = 0, 0
    bounded = True
    for count in parts:
        lower, upper = count_bounds(count)
        low += lower
        if upper is None:
            bounded = False
        else:
            high += upper
    if not bounded:
        return f">={low}"
    if low == 1 and sum(1 for count in parts if count != 0) == 1:
        return suppressed(high + 1)
    return f"{low}-{high}"
