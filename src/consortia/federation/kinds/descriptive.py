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
Every released count (n, missing, histogram bins, table cells, successes and failures) is
subject to the node's minimum cell count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Exchange,
    label_column,
    numeric_column,
)
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.tables import Table
from consortia.stats.descriptive import (
    CrosstabAggregates,
    DescribeAggregates,
    ProportionAggregates,
    combine_crosstab,
    combine_describe,
    combine_proportion,
    crosstab_node,
    describe_node,
    proportion_node,
    regular_bins,
)

__all__ = ["CrosstabKind", "DescribeKind", "ProportionKind"]

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

    def columns(self, request: DescribeRequest) -> list[str]:
        return [request.variable]

    def node_round(
        self, state: Any, request: DescribeRequest, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        table: Table = state
        values = numeric_column(table, request.variable)
        aggregates = describe_node(
            values, bin_edges=request.edges(), allow_min_max=policy.allow_min_max
        )
        return Release(
            aggregates.to_dict(),
            aggregates.n,
            cells={
                "n": [aggregates.n],
                "missing": [aggregates.missing],
                "histogram": [*aggregates.bin_counts, aggregates.below, aggregates.above],
            },
        )

    async def lead(self, request: DescribeRequest, exchange: Exchange) -> dict[str, Any]:
        replies = await exchange.round({})
        result = combine_describe(
            [DescribeAggregates.from_dict(replies[name]) for name in exchange.nodes],
            probabilities=request.probabilities,
        ).to_dict()
        if request.bins is None and request.bin_edges is None:
            for key in ("probabilities", "quantiles", "bin_edges", "bin_counts", "below", "above"):
                result.pop(key, None)
        return result


class CrosstabRequest(AnalysisRequest):
    """Contingency table of two categorical columns with chi-square (and 2×2 Fisher)."""

    kind: Literal["crosstab"]
    rows: str
    columns: str
    yates: bool = False


class CrosstabKind(AnalysisKind[CrosstabRequest]):
    """Pooled contingency table: the sum of node tables over the union of levels."""

    name = "crosstab"
    request_model = CrosstabRequest

    def columns(self, request: CrosstabRequest) -> list[str]:
        return [request.rows, request.columns]

    def node_round(
        self, state: Any, request: CrosstabRequest, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        table: Table = state
        aggregates = crosstab_node(
            label_column(table, request.rows), label_column(table, request.columns)
        )
        counts = [count for row in aggregates.counts for count in row]
        return Release(
            aggregates.to_dict(),
            sum(counts),
            cells={"table": counts, "missing": [aggregates.missing]},
        )

    async def lead(self, request: CrosstabRequest, exchange: Exchange) -> dict[str, Any]:
        replies = await exchange.round({})
        parts = [CrosstabAggregates.from_dict(replies[name]) for name in exchange.nodes]
        return combine_crosstab(parts, yates=request.yates).to_dict()


class ProportionRequest(AnalysisRequest):
    """Proportion of a 0/1 outcome with Wilson and Clopper–Pearson intervals."""

    kind: Literal["proportion"]
    outcome: str
    confidence: float = Field(0.95, gt=0, lt=1)


class ProportionKind(AnalysisKind[ProportionRequest]):
    """Pooled proportion: sums of successes and trials."""

    name = "proportion"
    request_model = ProportionRequest

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
        aggregates = proportion_node(numeric_column(table, request.outcome))
        return Release(
            aggregates.to_dict(),
            aggregates.n,
            cells={
                "successes": [aggregates.successes],
                "failures": [aggregates.n - aggregates.successes],
                "missing": [aggregates.missing],
            },
        )

    async def lead(self, request: ProportionRequest, exchange: Exchange) -> dict[str, Any]:
        replies = await exchange.round({})
        parts = [ProportionAggregates.from_dict(replies[name]) for name in exchange.nodes]
        return combine_proportion(parts, confidence=request.confidence).to_dict()
