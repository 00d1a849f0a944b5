"""The ``kaplan_meier`` kind: Kaplan–Meier curves and the log-rank test in one round.

::

    {"kind": "kaplan_meier", "table": "cart_efficacy", "time": "pfs_days",
     "event": "pfs_event", "group": "arm", "time_bin": 7}

Each node releases per-group, per-time-bin counts of events and censorings; the lead adds
them and computes the curves (and, with a ``group``, the log-rank test, optionally
stratified by node) exactly as on the pooled records with the same binning. Event times
leave a node only in bins of ``time_bin`` days (default 7; the node's policy sets the
finest bin it allows). The per-group subject and event totals are subject to the minimum
cell count; the rows left out for a missing value are counted and released (as ``"<5"``
when 0 < n < the minimum).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from consortia.exceptions import StatisticsError
from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Exchange,
    InvalidRequest,
    complete_rows,
    label_column,
    label_groups,
    numeric_column,
)
from consortia.federation.kinds.secure import secure_kaplan_meier_lead, secure_kaplan_meier_round
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.tables import Table
from consortia.stats.logrank import LogRankResult, logrank_from_counts
from consortia.stats.survival import (
    KaplanMeierResult,
    SurvivalCounts,
    kaplan_meier_from_counts,
    survival_counts,
)

__all__ = ["KaplanMeierEstimates", "KaplanMeierKind", "KaplanMeierRequest"]

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
    secure: bool = False
    groups: list[str] | None = None
    horizon: float | None = Field(None, ge=0)


@dataclass(frozen=True, eq=False)
class KaplanMeierEstimates:
    """The curves, and the log-rank test when there are groups to compare.

    On the wire: the curves' JSON with ``"logrank"`` beside it (``null`` without a test).
    """

    curves: KaplanMeierResult
    logrank: LogRankResult | None = None

    @property
    def exact(self) -> bool:
        """Counts add up exactly: the curves are the pooled records' curves."""
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.curves.to_dict(),
            "logrank": None if self.logrank is None else self.logrank.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KaplanMeierEstimates:
        if not isinstance(data, Mapping):
            raise StatisticsError("kaplan_meier estimates: expected an object")
        logrank = data.get("logrank")
        return cls(
            KaplanMeierResult.from_dict(data),
            None if logrank is None else LogRankResult.from_dict(logrank),
        )

    def summary(self) -> str:
        parts = [self.curves.summary()]
        if self.logrank is not None:
            parts.append(self.logrank.summary())
        return "\n\n".join(parts)


class KaplanMeierKind(AnalysisKind[KaplanMeierRequest]):
    """Pooled-equivalent Kaplan–Meier and log-rank from additive per-time counts."""

    name = "kaplan_meier"
    request_model = KaplanMeierRequest
    result_type = KaplanMeierEstimates

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
        if request.secure:
            return secure_kaplan_meier_round(request, payload, counts, missing, rows)
        # Per-bin event and censoring counts are the curve itself (small by nature); the
        # ledger holds each group's subjects.
        by_group = label_groups(groups, "group", rows) if groups is not None else {}
        happened = np.zeros(table.n_rows, dtype=np.bool_)
        happened[np.flatnonzero(rows)[events == 1]] = True
        counted = {f"events of {name}": mask & happened for name, mask in by_group.items()}
        return Release(
            counts.to_dict(),
            counts.n,
            cells={
                "subjects per group": [int(n) for n in counts.n_at_start],
                "events per group": [int(e) for e in counts.events.sum(axis=1)],
            },
            rows=rows,
            groups=by_group,
            counted=counted or {"events": happened},
            excluded=missing,
        )

    async def lead(self, request: KaplanMeierRequest, exchange: Exchange) -> KaplanMeierEstimates:
        if request.secure:
            if request.stratify_by_node:
                raise InvalidRequest("kaplan_meier: a secure analysis is not stratified by node")
            parts = [(await secure_kaplan_meier_lead(request, exchange))[0]]
        else:
            replies = await exchange.round({})
            parts = [SurvivalCounts.from_dict(replies[name]) for name in exchange.nodes]
        groups = {group for part in parts for group in part.groups}
        return KaplanMeierEstimates(
            kaplan_meier_from_counts(parts, alpha=request.alpha),
            logrank_from_counts(parts, stratified=request.stratify_by_node)
            if request.group and request.logrank and len(groups) > 1
            else None,
        )
