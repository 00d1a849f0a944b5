"""Method-comparison kinds: ``iso15197`` (glucose meters) and ``diagnostic`` (ROC/AUC).

::

    {"kind": "iso15197", "table": "glucose_pairs", "reference": "ref_mgdl", "device": "meter_mgdl"}
    {"kind": "diagnostic", "table": "reads", "score": "ai_score", "truth": "biopsy",
     "threshold": 0.5, "thresholds": [0, 0.25, 0.5, 0.75, 1]}

Both are one round of additive counts and sums. Zone counts, the 2×2 table and the
per-threshold ROC counts are released counts, so the minimum cell count applies to each: a
small zone is released as ``"<5"`` with complementary zones (``">=5"``) so that it cannot be
recovered from the pairs' total (:mod:`consortia.stats.suppression`).
The ROC counts are cumulative, so the difference of two adjacent ones is a count too: a
node releases only the grid thresholds between which each class has 0 or at least the
minimum (:func:`~consortia.stats.diagnostic.releasable_thresholds`), and the lead
combines on the thresholds every node released.

The diagnostic AUC is the trapezoid over the grid. It equals the Mann–Whitney AUC only
when no grid bin mixes distinct scores; each node says whether all its scores lie on the
grid (``on_grid``, one yes/no), and the result says ``exact`` and bounds the difference
otherwise (``auc_max_error``; see :mod:`consortia.stats.diagnostic`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Exchange,
    numeric_column,
)
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.suppression import suppress_table
from consortia.federation.tables import Table
from consortia.stats.agreement import (
    ZONES,
    GlucoseAccuracyAggregates,
    Iso15197Result,
    clarke_zones,
    combine_iso15197,
    iso15197_node,
    mmol_to_mgdl,
    parkes_zones,
    within_iso15197,
)
from consortia.stats.counts import Count, suppressed
from consortia.stats.diagnostic import (
    DEFAULT_THRESHOLDS,
    DiagnosticAggregates,
    DiagnosticResult,
    combine_diagnostic,
    diagnostic_node,
    releasable_thresholds,
)
from consortia.stats.suppression import released_cells

__all__ = ["DiagnosticKind", "Iso15197Kind"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class Iso15197Request(AnalysisRequest):
    """Paired device and reference glucose readings."""

    kind: Literal["iso15197"]
    reference: str
    device: str
    units: Literal["mg/dL", "mmol/L"] = "mg/dL"


class Iso15197Kind(AnalysisKind[Iso15197Request]):
    """ISO 15197:2013 accuracy, Parkes and Clarke zones, MARD and Bland–Altman."""

    name = "iso15197"
    request_model = Iso15197Request
    result_type = Iso15197Result

    def columns(self, request: Iso15197Request) -> list[str]:
        return [request.reference, request.device]

    def node_round(
        self, state: Any, request: Iso15197Request, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        table: Table = state
        reference = numeric_column(table, request.reference)
        device = numeric_column(table, request.device)
        if request.units == "mmol/L":
            reference, device = mmol_to_mgdl(reference), mmol_to_mgdl(device)
        aggregates = iso15197_node(reference, device)
        released = aggregates.to_dict()
        rows = _pair_rows(reference, device)
        counted: dict[str, BoolArray] = {}
        for grid, name in (
            ("parkes_type1", "Parkes type 1 zones"),
            ("parkes_type2", "Parkes type 2 zones"),
            ("clarke", "Clarke zones"),
        ):
            # a small zone is suppressed, with complementary zones, not the analysis
            zones = np.asarray(released[grid], dtype=np.int64)
            suppression = suppress_table(zones, policy, name)
            released[grid] = released_cells(zones, suppression, policy.min_cell_count)
            for index, zone in enumerate(ZONES):
                if not suppression.hidden[index]:  # the rows behind each released zone
                    counted[f"{name}, zone {zone}"] = rows[grid] == zone
        released["within_iso"] = _within(int(aggregates.within_iso), aggregates.n, policy)
        if isinstance(released["within_iso"], int):
            counted["pairs within the ISO limits"] = rows["within"] == "1"
            counted["pairs outside the ISO limits"] = rows["within"] == "0"
        return Release(
            released,
            aggregates.n,
            cells={"pairs": [aggregates.n]},
            counted=counted,
            excluded=int(aggregates.missing),
        )

    async def lead(self, request: Iso15197Request, exchange: Exchange) -> Iso15197Result:
        replies = await exchange.round({})
        parts = [GlucoseAccuracyAggregates.from_dict(replies[name]) for name in exchange.nodes]
        return combine_iso15197(parts)


def _pair_rows(reference: FloatArray, device: FloatArray) -> dict[str, npt.NDArray[np.str_]]:
    """Each row's zone in each grid and whether it is within the ISO limits ("1"/"0"; ""
    for a row without a complete pair): the rows behind each released count."""
    present = ~(np.isnan(reference) | np.isnan(device))
    ref, dev = reference[present], device[present]
    found = {
        "parkes_type1": parkes_zones(ref, dev, diabetes_type=1),
        "parkes_type2": parkes_zones(ref, dev, diabetes_type=2),
        "clarke": clarke_zones(ref, dev),
        "within": np.where(within_iso15197(ref, dev), "1", "0"),
    }
    rows: dict[str, npt.NDArray[np.str_]] = {}
    for name, values in found.items():
        column = np.full(reference.shape, "", dtype="<U1")
        column[present] = values
        rows[name] = column
    return rows


def _within(within: int, n: int, policy: NodePolicy) -> Count:
    """Pairs within the ISO limits as released: with the pairs outside them (n − within)
    small, the range the count lies in (a small count of either follows from the other)."""
    minimum = policy.min_cell_count
    if 0 < n - within < minimum:
        return f"{max(n - minimum + 1, 0)}-{n - 1}"
    if 0 < within < minimum:
        return suppressed(minimum)
    return within


class DiagnosticRequest(AnalysisRequest):
    """A continuous score against a 0/1 reference standard."""

    kind: Literal["diagnostic"]
    score: str
    truth: str
    threshold: float = 0.5
    thresholds: list[float] = Field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
    confidence: float = Field(0.95, gt=0, lt=1)


class DiagnosticKind(AnalysisKind[DiagnosticRequest]):
    """Sensitivity, specificity, predictive values, ROC and AUC from pooled counts."""

    name = "diagnostic"
    request_model = DiagnosticRequest
    result_type = DiagnosticResult

    def columns(self, request: DiagnosticRequest) -> list[str]:
        return [request.score, request.truth]

    def node_round(
        self,
        state: Any,
        request: DiagnosticRequest,
        payload: Mapping[str, Any],
        policy: NodePolicy,
    ) -> Release:
        table: Table = state
        scores = numeric_column(table, request.score)
        truth = numeric_column(table, request.truth)
        aggregates = diagnostic_node(
            scores, truth, threshold=request.threshold, thresholds=request.thresholds
        )
        cells = {
            "2×2 table": [aggregates.tp, aggregates.fp, aggregates.fn, aggregates.tn],
        }
        policy.check_release(Release({}, 0, cells=cells))  # before the grid is coarsened
        kept = releasable_thresholds(
            scores,
            truth,
            threshold=request.threshold,
            thresholds=request.thresholds,
            min_count=policy.min_cell_count,
        )
        aggregates = diagnostic_node(scores, truth, threshold=request.threshold, thresholds=kept)
        per_threshold = [
            count
            for column in (aggregates.tp_at, aggregates.fp_at, aggregates.fn_at, aggregates.tn_at)
            for count in column
        ]
        present = ~(np.isnan(scores) | np.isnan(truth))
        called = present & (scores >= float(request.threshold))
        return Release(
            aggregates.to_dict(),
            aggregates.tp + aggregates.fp + aggregates.fn + aggregates.tn,
            counted={
                "true positives": called & (truth == 1),
                "false positives": called & (truth == 0),
                "false negatives": present & ~called & (truth == 1),
                "true negatives": present & ~called & (truth == 0),
            },
            cells={
                **cells,
                "ROC counts": per_threshold,
                "ROC bins": _bins(aggregates),
            },
            excluded=int(aggregates.missing),
        )

    async def lead(self, request: DiagnosticRequest, exchange: Exchange) -> DiagnosticResult:
        replies = await exchange.round({})
        parts = [DiagnosticAggregates.from_dict(replies[name]) for name in exchange.nodes]
        return combine_diagnostic(parts, confidence=request.confidence)


def _bins(aggregates: DiagnosticAggregates) -> list[int]:
    """Each class's count between consecutive released cuts (the grid and the 2×2
    threshold): what the lead gets by subtracting two released cumulative counts."""
    cuts = sorted({*aggregates.thresholds, aggregates.threshold})
    counts: list[int] = []
    for above, at_threshold, total in (
        (aggregates.tp_at, aggregates.tp, aggregates.tp + aggregates.fn),
        (aggregates.fp_at, aggregates.fp, aggregates.fp + aggregates.tn),
    ):
        at = dict(zip(aggregates.thresholds, above, strict=True))
        at[aggregates.threshold] = at_threshold
        cumulative = [total, *(at[cut] for cut in cuts), 0]
        counts.extend(a - b for a, b in itertools.pairwise(cumulative))
    return counts
