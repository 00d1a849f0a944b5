"""Secure aggregation in the kinds whose combination is a sum: the crosstab.

A ``crosstab`` request with ``"secure": true`` (and its ``row_levels`` and
``column_levels`` agreed in the request, so that no node says which levels it holds) runs
two rounds: ``keys`` (each node announces its session key and the minimum cell count the
pooled table must meet) and ``sum`` (each node masks its table over the agreed levels,
with its rows left out for missing values, under every pair of participants' masks:
:mod:`consortia.federation.secure_sum`). The lead learns the pooled table only, and the
minimum cell count applies to it: a pooled cell 0 < n < k is suppressed with
complementary cells (:mod:`consortia.stats.suppression`), using the largest minimum any
node announced. A node that announced and does not send its share fails the round.

::

    {"kind": "crosstab", "table": "t", "rows": "arm", "columns": "grade", "secure": true,
     "row_levels": ["a", "b"], "column_levels": ["1", "2", "3"]}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import FederationError
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

__all__ = ["secure_crosstab_lead", "secure_crosstab_round"]


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
    announced = await exchange.round({"step": "keys"})
    try:
        keys = {name: str(reply["secure_key"]) for name, reply in announced.items()}
        minimum = max(int(reply["min_cell_count"]) for reply in announced.values())
    except (KeyError, TypeError, ValueError):
        raise FederationError("a node did not announce a secure-sum key") from None
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
