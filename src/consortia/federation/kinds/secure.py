"""Secure aggregation in the kinds whose combination is a sum: crosstab, Kaplan–Meier.

A ``crosstab`` request with ``"secure": true`` (and its ``row_levels`` and
``column_levels`` agreed in the request, so that no node says which levels it holds) runs
two rounds: ``keys`` (each node announces its session key and the minimum cell count the
pooled table must meet) and ``sum`` (each node masks its table over the agreed levels,
with its rows left out for missing values, under every pair of participants' masks:
:mod:`consortia.federation.secure_sum`). The lead learns the pooled table only, and the
minimum cell count applies to it: a pooled cell 0 < n < k is suppressed with
complementary cells (:mod:`consortia.stats.suppression`), using the largest minimum any
node announced. A node that announced and does not send its share fails the round.

A ``kaplan_meier`` request with ``"secure": true`` agrees its grid in the request: the
groups (``groups``) and the last time (``horizon``; the bins are ``0, time_bin, …``); each
node masks its events and censorings per group and bin. The lead keeps the bins where
something happened, as on pooled records, so the curves and the log-rank test are those
of the pooled records; a group whose pooled subjects are 0 < n < k refuses the analysis.

::

    {"kind": "crosstab", "table": "t", "rows": "arm", "columns": "grade", "secure": true,
     "row_levels": ["a", "b"], "column_levels": ["1", "2", "3"]}
    {"kind": "kaplan_meier", "table": "t", "time": "days", "event": "died", "group": "arm",
     "secure": true, "groups": ["a", "b"], "horizon": 1825}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import FederationError, PolicyRefusal, StatisticsError
from consortia.federation.kinds.base import Exchange, InvalidRequest
from consortia.federation.policy import Release
from consortia.federation.secure_sum import unmask
from consortia.stats.contingency import (
    CrosstabAggregates,
    CrosstabResult,
    combine_crosstab,
    crosstab_node,
)
from consortia.stats.counts import Count, suppressed
from consortia.stats.suppression import Suppression, released_cells, suppress_cells
from consortia.stats.survival import SurvivalCounts

__all__ = [
    "secure_crosstab_lead",
    "secure_crosstab_round",
    "secure_kaplan_meier_lead",
    "secure_kaplan_meier_round",
]


def _levels(request: Any) -> tuple[list[str], list[str]]:
    if not request.row_levels or not request.column_levels:
        raise InvalidRequest(
            "crosstab: a secure crosstab needs row_levels and column_levels in the request"
        )
    return list(request.row_levels), list(request.column_levels)


def secure_crosstab_round(
    request: Any,
    payload: Mapping[str, Any],
    row_labels: npt.NDArray[np.object_],
    column_labels: npt.NDArray[np.object_],
) -> Release:
    """A node's answer to a secure crosstab round: its key, or its masked table."""
    rows, columns = _levels(request)
    aggregates = crosstab_node(row_labels, column_labels, row_levels=rows, col_levels=columns)
    present = np.array(
        [r is not None and c is not None for r, c in zip(row_labels, column_labels, strict=True)],
        dtype=np.bool_,
    )
    n = int(present.sum())
    if payload.get("step") == "keys":
        return Release(
            {"step": "keys"}, n, cells={"n": [n]}, rows=present, secure={"announce": True}
        )
    if payload.get("step") != "sum":
        raise InvalidRequest("payload.step: a secure crosstab has the steps 'keys' and 'sum'")
    share = [int(count) for row in aggregates.counts for count in row] + [int(aggregates.missing)]
    return Release({"step": "sum"}, n, cells={"n": [n]}, rows=present, secure={"integers": share})


def _pooled_cells(table: npt.NDArray[np.int64], minimum: int) -> Any:
    suppression = suppress_cells(table, minimum)
    if not suppression.protected:  # nothing short of hiding every non-zero cell protects
        hidden = table > 0
        suppression = Suppression(hidden, hidden & (table < minimum), True)
    return released_cells(table, suppression, minimum)


async def secure_crosstab_lead(request: Any, exchange: Exchange) -> CrosstabResult:
    """Drive the two rounds and return the pooled table under the pooled cell rule."""
    rows, columns = _levels(request)
    labels = crosstab_node([], [], row_levels=rows, col_levels=columns)
    keys, minimum = _announced(await exchange.round({"step": "keys"}))
    shares = await exchange.round({"step": "sum", "keys": keys})
    integers, _ = unmask(shares, keys)
    size = len(labels.row_levels) * len(labels.col_levels)
    if integers.size != size + 1:
        raise FederationError("secure crosstab: the shares do not match the agreed levels")
    table = integers[:size].reshape(len(labels.row_levels), len(labels.col_levels))
    missing = int(integers[-1])
    pooled_missing: Count = suppressed(minimum) if 0 < missing < minimum else missing
    pooled = CrosstabAggregates(
        labels.row_levels,
        labels.col_levels,
        tuple(tuple(row) for row in _pooled_cells(table, minimum)),
        pooled_missing,
        n=int(table.sum()),
    )
    return dataclasses.replace(combine_crosstab([pooled], yates=request.yates), nodes=len(keys))


# --------------------------------------------------------------------------- Kaplan–Meier


def _km_grid(request: Any) -> tuple[list[str], npt.NDArray[np.float64]]:
    if request.horizon is None or (request.group is not None and not request.groups):
        raise InvalidRequest(
            "kaplan_meier: a secure analysis needs horizon (and groups, with a group)"
        )
    groups = list(request.groups) if request.group is not None else ["all"]
    bins = int(np.floor(request.horizon / request.time_bin)) + 1
    return groups, np.arange(bins, dtype=np.float64) * request.time_bin


def secure_kaplan_meier_round(
    request: Any, payload: Mapping[str, Any], counts: SurvivalCounts, missing: int, rows: Any
) -> Release:
    """A node's answer to a secure Kaplan–Meier round: its key, or its events and
    censorings per agreed group and time bin (and rows left out), masked."""
    groups, grid = _km_grid(request)
    n = counts.n
    if payload.get("step") == "keys":
        announce = {"announce": True}
        return Release({"step": "keys"}, n, cells={"n": [n]}, rows=rows, secure=announce)
    if payload.get("step") != "sum":
        raise InvalidRequest("payload.step: a secure analysis has the steps 'keys' and 'sum'")
    if set(counts.groups) - set(groups) - ({"all"} if request.group is None else set()):
        raise StatisticsError("kaplan_meier: a group is not among the request's groups")
    if counts.times.size and counts.times.max() > grid[-1]:
        raise StatisticsError("kaplan_meier: a time lies beyond the request's horizon")
    events = np.zeros((len(groups), grid.size), dtype=np.int64)
    censored = np.zeros_like(events)
    columns = np.rint(counts.times / request.time_bin).astype(np.int64)
    for index, group in enumerate(counts.groups):
        events[groups.index(group), columns] = counts.events[index]
        censored[groups.index(group), columns] = counts.censored[index]
    share = [*events.ravel().tolist(), *censored.ravel().tolist(), missing]
    return Release({"step": "sum"}, n, cells={"n": [n]}, rows=rows, secure={"integers": share})


async def secure_kaplan_meier_lead(request: Any, exchange: Exchange) -> tuple[SurvivalCounts, int]:
    """The pooled per-time counts (only times where something happened, as on pooled
    records) and the pooled rows left out; a group whose pooled subjects are 0 < n < k
    refuses the analysis (``min_cell_count``)."""
    groups, grid = _km_grid(request)
    keys, minimum = _announced(await exchange.round({"step": "keys"}))
    integers, _ = unmask(await exchange.round({"step": "sum", "keys": keys}), keys)
    size = len(groups) * grid.size
    if integers.size != 2 * size + 1:
        raise FederationError("secure Kaplan–Meier: the shares do not match the agreed grid")
    events = integers[:size].reshape(len(groups), grid.size)
    censored = integers[size : 2 * size].reshape(len(groups), grid.size)
    subjects = events.sum(axis=1) + censored.sum(axis=1)
    if ((subjects > 0) & (subjects < minimum)).any():
        raise PolicyRefusal(
            "min_cell_count",
            f"a group's pooled subjects are below the minimum cell count {minimum}",
        )
    used = (events + censored).sum(axis=0) > 0
    kept = subjects > 0
    pooled = SurvivalCounts(
        tuple(group for group, keep in zip(groups, kept, strict=True) if keep),
        grid[used],
        events[kept][:, used],
        censored[kept][:, used],
        request.time_bin,
    )
    return pooled, int(integers[-1])


def _announced(replies: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, str], int]:
    try:
        keys = {name: str(reply["secure_key"]) for name, reply in replies.items()}
        minimum = max(int(reply["min_cell_count"]) for reply in replies.values())
    except (KeyError, TypeError, ValueError):
        raise FederationError("a node did not announce a secure-sum key") from None
    return keys, minimum
