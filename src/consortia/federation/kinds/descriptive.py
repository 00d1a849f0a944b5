"""Descriptive kinds: ``describe``, ``crosstab`` and ``proportion`` (one round each).

::

    {"kind": "describe", "table": "t", "variable": "age",
     "bins": {"start": 0, "stop": 100, "width": 10}}
    {"kind": "crosstab", "table": "t", "rows": "arm", "columns": "response"}
    {"kind": "proportion", "table": "t", "outcome": "response"}

``describe`` estimates quantiles from a histogram on the agreed grid (``bins`` or
``bin_edges``), each with a bound on its distance from the sample quantile, and says
``exact: false`` when it reports any; without a grid it releases one bin (the count) and
reports no quantiles.
Every released count (n, histogram bins, successes and failures) is subject to the node's
minimum cell count; a crosstab's small cells are released as suppressed, with complementary
cells (:mod:`consortia.stats.suppression`), and the rest of the table released; rows
left out for a missing value are counted and released, as ``"<5"`` when 0 < n < the
minimum (:mod:`consortia.federation.suppression`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Exchange,
    label_column,
    label_groups,
    numeric_column,
)
from consortia.federation.kinds.secure import secure_crosstab_lead, secure_crosstab_round
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.suppression import suppress_table
from consortia.federation.tables import Table
from consortia.stats.contingency import (
    CrosstabAggregates,
    CrosstabResult,
    combine_crosstab,
    crosstab_node,
)
from consortia.stats.descriptive import (
    DescribeAggregates,
    DescribeResult,
    combine_describe,
    describe_node,
    regular_bins,
)
from consortia.stats.proportions import (
    ProportionAggregates,
    ProportionResult,
    combine_proportion,
    proportion_node,
)
from consortia.stats.suppression import released_cells

__all__ = ["CrosstabKind", "DescribeKind", "ProportionKind"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# One bin wide enough for any measurement: its count is n, so nothing beyond n is released.
_WHOLE_LINE = (-1.0e300, 1.0e300)


class BinGrid(BaseModel):
    """A regular histogram grid ``start, start + width, …, stop``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float
    stop: float
    width: float = Field(gt=0)


class DescribeRequest(AnalysisRequest):
    """Summary of one numeric column: n, missing, mean, SD and histogram quantiles."""

    kind: Literal["describe"]
    variable: str
    bins: BinGrid | None = None
    bin_edges: list[float] | None = None
    probabilities: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75])

    def edges(self) -> tuple[float, ...]:
        """The agreed bin grid (one whole-line bin when the request gives none)."""
        if self.bin_edges is not None:
            return tuple(self.bin_edges)
        if self.bins is not None:
            return regular_bins(self.bins.start, self.bins.stop, self.bins.width)
        return _WHOLE_LINE


class DescribeKind(AnalysisKind[DescribeRequest]):
    """Pooled mean/SD (Chan's parallel formula) and histogram quantiles."""

    name = "describe"
    request_model = DescribeRequest
    result_type = DescribeResult

    def columns(self, request: DescribeRequest) -> list[str]:
        return [request.variable]

    def node_round(
        self, state: Any, request: DescribeRequest, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        table: Table = state
        values = numeric_column(table, request.variable)
        edges = request.edges()
        aggregates = describe_node(values, bin_edges=edges, allow_min_max=policy.allow_min_max)
        return Release(
            aggregates.to_dict(),
            aggregates.n,
            cells={
                "n": [aggregates.n],
                "histogram": [*aggregates.bin_counts, aggregates.below, aggregates.above],
            },
            groups=_bin_groups(values, edges),
            excluded=int(aggregates.missing),
        )

    async def lead(self, request: DescribeRequest, exchange: Exchange) -> DescribeResult:
        replies = await exchange.round({})
        result = combine_describe(
            [DescribeAggregates.from_dict(replies[name]) for name in exchange.nodes],
            probabilities=request.probabilities,
        )
        if request.bins is None and request.bin_edges is None:
            # one whole-line bin was released: a count, not a histogram to report
            empty: tuple[Any, ...] = ()
            result = replace(
                result,
                probabilities=empty,
                quantiles=empty,
                bin_edges=empty,
                bin_counts=empty,
                below=0,
                above=0,
            )
        return result


def _bin_groups(values: FloatArray, edges: Sequence[float]) -> dict[str, BoolArray]:
    """The rows in each histogram bin (as numpy bins them: the last one closed), below the
    first edge and above the last."""
    bins = np.asarray(edges, dtype=np.float64)
    present = ~np.isnan(values)
    index = np.searchsorted(bins, values, side="right") - 1
    index[present & (values == bins[-1])] = bins.size - 2
    groups = {
        f"bin {number + 1}": present & (index == number) & (values <= bins[-1])
        for number in range(bins.size - 1)
    }
    groups["below the bins"] = present & (values < bins[0])
    groups["above the bins"] = present & (values > bins[-1])
    return groups


class CrosstabRequest(AnalysisRequest):
    """Contingency table of two categorical columns with chi-square (and 2×2 Fisher)."""

    kind: Literal["crosstab"]
    rows: str
    columns: str
    yates: bool = False
    secure: bool = False
    row_levels: list[str] | None = None
    column_levels: list[str] | None = None


class CrosstabKind(AnalysisKind[CrosstabRequest]):
    """Pooled contingency table: the sum of node tables over the union of levels."""

    name = "crosstab"
    request_model = CrosstabRequest
    result_type = CrosstabResult

    def columns(self, request: CrosstabRequest) -> list[str]:
        return [request.rows, request.columns]

    def node_round(
        self, state: Any, request: CrosstabRequest, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        table: Table = state
        row_labels = label_column(table, request.rows)
        column_labels = label_column(table, request.columns)
        if request.secure:
            return secure_crosstab_round(request, payload, row_labels, column_labels)
        aggregates = crosstab_node(row_labels, column_labels)
        counts = np.asarray(aggregates.counts, dtype=np.int64).reshape(
            len(aggregates.row_levels), len(aggregates.col_levels)
        )
        n = int(counts.sum())
        # small cells are suppressed, with complementary cells, rather than the table
        suppression = suppress_table(counts, policy, "crosstab")
        hidden = suppression.hidden
        by_row = label_groups(row_labels, "row level")
        by_column = label_groups(column_labels, "column level")
        present: BoolArray = np.array(
            [
                row is not None and column is not None
                for row, column in zip(row_labels, column_labels, strict=True)
            ],
            dtype=np.bool_,
        )
        # the ledger holds what is released: each released cell, and the rows of a level
        # whose total follows from released cells alone
        groups = {
            f"cell {row_name[10:]},{column_name[13:]}": row_mask & column_mask
            for i, (row_name, row_mask) in enumerate(by_row.items())
            for j, (column_name, column_mask) in enumerate(by_column.items())
            if not hidden[i, j]
        }
        for index, (name, mask) in enumerate(by_row.items()):
            if not hidden[index].any():
                groups[name] = mask & present
        for index, (name, mask) in enumerate(by_column.items()):
            if not hidden[:, index].any():
                groups[name] = mask & present
        released = aggregates.to_dict()
        released["counts"] = released_cells(counts, suppression, policy.min_cell_count)
        released["n"] = n
        return Release(
            released,
            n,
            cells={"n": [n]},
            rows=present,
            groups=groups,
            excluded=int(aggregates.missing),
        )

    async def lead(self, request: CrosstabRequest, exchange: Exchange) -> CrosstabResult:
        if request.secure:
            return await secure_crosstab_lead(request, exchange)
        replies = await exchange.round({})
        parts = [CrosstabAggregates.from_dict(replies[name]) for name in exchange.nodes]
        return combine_crosstab(parts, yates=request.yates)


class ProportionRequest(AnalysisRequest):
    """Proportion of a 0/1 outcome with Wilson and Clopper–Pearson intervals."""

    kind: Literal["proportion"]
    outcome: str
    confidence: float = Field(0.95, gt=0, lt=1)


class ProportionKind(AnalysisKind[ProportionRequest]):
    """Pooled proportion: sums of successes and trials."""

    name = "proportion"
    request_model = ProportionRequest
    result_type = ProportionResult

    def columns(self, request: ProportionRequest) -> list[str]:
        return [request.outcome]

    def node_round(
        self,
        state: Any,
        request: ProportionRequest,
        payload: Mapping[str, Any],
        policy: NodePolicy,
    ) -> Release:
        table: Table = state
        outcome = numeric_column(table, request.outcome)
        aggregates = proportion_node(outcome)
        return Release(
            aggregates.to_dict(),
            aggregates.n,
            cells={
                "successes": [aggregates.successes],
                "failures": [aggregates.n - aggregates.successes],
            },
            groups={"successes": outcome == 1, "failures": outcome == 0},
            excluded=int(aggregates.missing),
        )

    async def lead(self, request: ProportionRequest, exchange: Exchange) -> ProportionResult:
        replies = await exchange.round({})
        parts = [ProportionAggregates.from_dict(replies[name]) for name in exchange.nodes]
        return combine_proportion(parts, confidence=request.confidence)
