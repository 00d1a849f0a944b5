"""The ``kaplan_meier`` kind: Kaplan–Meier curves and the log-rank test in one round.

::

    {"kind": "kaplan_meier", "table": "cart_efficacy", "time": "pfs_days",
     "event": "pfs_event", "group": "arm", "time_bin": 7}

Each node releases per-group, per-time-bin counts of events and censorings; the lead adds
them and computes the curves (and, with a ``group``, the log-rank test, optionally
stratified by node) exactly as on the pooled records with the same binning. Event times
leave a node only in bins of ``time_bin`` days (default 7; the node's policy sets the
finest bin it allows). The per-group subject and event totals and the rows left out for
missing values are subject to the minimum cell count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Exchange,
    complete_rows,
    label_column,
    label_groups,
    numeric_column,
)
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.tables import Table
from consortia.stats.survival import (
    SurvivalCounts,
    kaplan_meier_from_counts,
    logrank_from_counts,
    survival_counts,
)

__all__ = ["KaplanMeierKind", "KaplanMeierRequest"]

DEFAULT_TIME_BIN = 7.0


class KaplanMeierRequest(AnalysisRequest):
    """Kaplan–Meier curves per group, with the log-rank test when there are groups."""

    kind: Literal["kaplan_meier"]
    time: str
    event: str
    group: str | None = None
    time_bin: float = Field(DEFAULT_TIME_BIN, gt=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    logrank: bool = True
    stratify_by_node: bool = False


class KaplanMeierKind(AnalysisKind[KaplanMeierRequest]):
    """Pooled-equivalent Kaplan–Meier and log-rank from additive per-time counts."""

    name = "kaplan_meier"
    request_model = KaplanMeierRequest

    def columns(self, request: KaplanMeierRequest) -> list[str]:
        return [request.time, request.event, *([request.group] if request.group else [])]

    def released_time_bin(self, request: KaplanMeierRequest) -> float | None:
        return request.time_bin

    def node_round(
        self,
        state: Any,
        request: KaplanMeierRequest,
        payload: Mapping[str, Any],
        policy: NodePolicy,
    ) -> Release:
        table: Table = state
        rows, missing = complete_rows(table, self.columns(request))
        groups = label_column(table, request.group, rows) if request.group else None
        events = numeric_column(table, request.event, rows)
        counts = survival_counts(
            numeric_column(table, request.time, rows),
            events,
            groups,
            time_bin=request.time_bin,
        )
        # Per-bin event and censoring counts are the curve itself (small by nature); the
        # ledger holds each group's subjects.
        by_group = label_groups(groups, "group", rows) if groups is not None else {}
        return Release(
            counts.to_dict(),
            counts.n,
            cells={
                "subjects per group": [int(n) for n in counts.n_at_start],
                "events per group": [int(e) for e in counts.events.sum(axis=1)],
                "rows with missing values": [missing],
            },
            rows=rows,
            groups=by_group,
        )

    async def lead(self, request: KaplanMeierRequest, exchange: Exchange) -> dict[str, Any]:
        replies = await exchange.round({})
        parts = [SurvivalCounts.from_dict(replies[name]) for name in exchange.nodes]
        result = kaplan_meier_from_counts(parts, alpha=request.alpha).to_dict()
        groups = {group for part in parts for group in part.groups}
        result["logrank"] = (
            logrank_from_counts(parts, stratified=request.stratify_by_node).to_dict()
            if request.group and request.logrank and len(groups) > 1
            else None
        )
        return result
