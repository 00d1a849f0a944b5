"""Diagnostic accuracy of a score against a reference standard: 2×2 table, ROC and AUC.

Node side (:func:`diagnostic_node`): the 2×2 table at one threshold and TP/FP/FN/TN at
every threshold of an agreed grid (default ``0.00, 0.01, …, 1.00``). A case is called
*positive* when ``score >= threshold``; ``truth`` is 1/True for the condition present.
Lead side (:func:`combine_diagnostic`): adds the counts (exact), then derives

* sensitivity, specificity, PPV and NPV, each with **both** Wilson score and
  Clopper–Pearson (exact) intervals;
* ROC points ``(1 − specificity, sensitivity)`` per grid threshold, plus the end points
  (1, 1) and (0, 0);
* AUC by the trapezoid rule over those points, computed as an exact ratio of integers,
  with a bound on how far it can be from the Mann–Whitney AUC ``U / (n₁ n₀)`` (ties ½);
* an AUC confidence interval from DeLong's (1988) standard error computed on the grid
  bins; the normal interval is clipped to [0, 1].

Exactness of the AUC. The grid splits the score line into bins ``(−∞, t₀), [t₀, t₁), …,
[t_K, ∞)``; the counts released are the cumulative ones above, from which the lead gets
each bin's ``pos_b`` positives and ``neg_b`` negatives. A positive–negative pair in
different bins is ordered the same by the bins as by the scores; a pair in the same bin
is counted ½ by the trapezoid but may really count 0, ½ or 1. So

    |AUC_trapezoid − U / (n₁ n₀)| <= ½ Σ_b pos_b · neg_b / (n₁ n₀)  (``auc_max_error``)

and the bound is reached only when every same-bin pair is ordered the same way. The bound
is 0, and the AUC exact, when no bin holds both classes, or when every node reports
``on_grid`` — each of its scores *equals* a grid threshold (the node checks this locally;
it releases that one yes/no, not a score). Then every bin holds one distinct score across
all nodes, same-bin pairs are true ties, and the trapezoid *is* ``U / (n₁ n₀)``. A node's
scores being equal within each of its own bins would not be enough: two nodes may hold
different values in one bin. ``exact`` is true only when ``auc_max_error`` is 0.

Merged bins. A node may release only part of the grid (:func:`releasable_thresholds`):
its cumulative counts give per-bin counts by subtraction, so it drops thresholds until
every bin holds 0 or at least the minimum cell count of each class. The lead combines on
the thresholds every node released; the bound above, computed on those bins, stays exact.
``on_grid`` counts only when every node released the same thresholds (it is then said of
those): a merged bin holds several grid values, so the AUC is exact only when no merged
bin holds both classes.

Standard error. DeLong, DeLong & Clarke-Pearson (1988) need each case's placement value
(the share of the other class it outranks, ties ½). Computed on the binned scores (every
case takes its bin's placement), the variance is
``S₁₀/n₁ + S₀₁/n₀`` with ``S₁₀ = Σ_b pos_b (V₁₀,b − A)² / (n₁ − 1)`` and ``S₀₁`` likewise —
an exact function of the released counts, equal to DeLong's variance of the original
scores when the AUC is exact, and an approximation (``auc_se_method`` says which) when not.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import PolicyRefusal, StatisticsError
from consortia.stats.aggregates import NodeAggregates, check_confidence, reading_aggregates
from consortia.stats.counts import Count, pool_counts, read_count
from consortia.stats.proportions import ProportionAggregates, ProportionResult, combine_proportion
from consortia.stats.results import StatResult, format_table

if TYPE_CHECKING:
    from scipy import stats as sps
else:
    from consortia.stats.lazy_scipy import stats as sps

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DiagnosticAggregates",
    "DiagnosticResult",
    "combine_diagnostic",
    "diagnostic_accuracy",
    "diagnostic_node",
    "releasable_thresholds",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(k / 100 for k in range(101))
"""The default agreed grid: 0.00, 0.01, …, 1.00 (each the correctly rounded ``k/100``)."""


def _check_grid(thresholds: Sequence[float]) -> tuple[float, ...]:
    grid = tuple(float(t) for t in thresholds)
    if not grid:
        raise StatisticsError("thresholds: the grid is empty")
    if not all(math.isfinite(t) for t in grid):
        raise StatisticsError("thresholds: grid values must be finite")
    if any(b <= a for a, b in itertools.pairwise(grid)):
        raise StatisticsError("thresholds: the grid must be strictly increasing")
    return grid


@dataclass(frozen=True)
class DiagnosticAggregates(NodeAggregates):
    """One node's 2×2 table at ``threshold`` and per-threshold counts over the grid."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    thresholds: tuple[float, ...]
    tp_at: tuple[int, ...]
    fp_at: tuple[int, ...]
    fn_at: tuple[int, ...]
    tn_at: tuple[int, ...]
    missing: Count = 0
    on_grid: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiagnosticAggregates:
        """Read aggregates produced by :meth:`to_dict` (raises StatisticsError if malformed)."""

        def counts(key: str) -> tuple[int, ...]:
            return tuple(int(c) for c in data[key])

        with reading_aggregates("diagnostic"):
            aggregates = cls(
                threshold=float(data["threshold"]),
                tp=int(data["tp"]),
                fp=int(data["fp"]),
                fn=int(data["fn"]),
                tn=int(data["tn"]),
                thresholds=_check_grid(data["thresholds"]),
                tp_at=counts("tp_at"),
                fp_at=counts("fp_at"),
                fn_at=counts("fn_at"),
                tn_at=counts("tn_at"),
                missing=read_count(data.get("missing", 0), "diagnostic.missing"),
                on_grid=data.get("on_grid", False) is True,
            )
        size = len(aggregates.thresholds)
        per_threshold = (aggregates.tp_at, aggregates.fp_at, aggregates.fn_at, aggregates.tn_at)
        if any(len(column) != size for column in per_threshold):
            raise StatisticsError("diagnostic: one count per grid threshold is required")
        positives, negatives = aggregates.tp + aggregates.fn, aggregates.fp + aggregates.tn
        for tp, fp, fn, tn in zip(*per_threshold, strict=True):
            if tp + fn != positives or fp + tn != negatives:
                raise StatisticsError(
                    "diagnostic: per-threshold counts disagree with the 2×2 table"
                )
        return aggregates


def _as_array(values: Iterable[Any] | npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatisticsError(f"{name}: values must be numbers or missing ({exc})") from exc
    if array.ndim != 1:
        raise StatisticsError(f"{name}: expected a one-dimensional array")
    return array


def diagnostic_node(
    scores: Iterable[Any] | npt.ArrayLike,
    truth: Iterable[Any] | npt.ArrayLike,
    *,
    threshold: float = 0.5,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> DiagnosticAggregates:
    """Count one node's TP/FP/FN/TN at ``threshold`` and at every grid threshold.

    A case is positive when ``score >= threshold``. Pairs with a missing score or truth
    (``None``/NaN) are skipped and counted in ``missing``. ``on_grid`` says whether every
    score equals one of the grid thresholds (then the pooled AUC is exact).

    >>> agg = diagnostic_node([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0], thresholds=[0.5])
    >>> agg.tp, agg.fp, agg.fn, agg.tn, agg.tp_at, agg.on_grid
    (1, 1, 1, 1, (1,), False)
    >>> diagnostic_node([0.25, 0.5, 0.5], [1, 0, 1], thresholds=[0, 0.25, 0.5]).on_grid
    True
    """
    grid = _check_grid(thresholds)
    score, state = _as_array(scores, "scores"), _as_array(truth, "truth")
    if score.shape != state.shape:
        raise StatisticsError(f"diagnostic: {score.size} scores but {state.size} truth values")
    present = ~(np.isnan(score) | np.isnan(state))
    score, state = score[present], state[present]
    if np.isinf(score).any():
        raise StatisticsError("scores: values must be finite")
    if not np.isin(state, (0.0, 1.0)).all():
        raise StatisticsError("truth: values must be 0/1 or True/False (or missing)")
    diseased = state == 1.0
    n_pos, n_neg = int(diseased.sum()), int((~diseased).sum())
    # Count scores >= t for every t at once: sort each class and search from the left.
    pos_sorted = np.sort(score[diseased])
    neg_sorted = np.sort(score[~diseased])
    grid_array = np.asarray(grid)
    tp_at = n_pos - np.searchsorted(pos_sorted, grid_array, side="left")
    fp_at = n_neg - np.searchsorted(neg_sorted, grid_array, side="left")
    called = score >= float(threshold)
    tp = int(np.sum(called & diseased))
    fp = int(np.sum(called & ~diseased))
    return DiagnosticAggregates(
        threshold=float(threshold),
        tp=tp,
        fp=fp,
        fn=n_pos - tp,
        tn=n_neg - fp,
        thresholds=grid,
        tp_at=tuple(int(c) for c in tp_at),
        fp_at=tuple(int(c) for c in fp_at),
        fn_at=tuple(int(n_pos - c) for c in tp_at),
        tn_at=tuple(int(n_neg - c) for c in fp_at),
        missing=int(present.size - score.size),
        on_grid=bool(np.isin(score, grid_array).all()),
    )


def _releasable(count: int, minimum: int) -> bool:
    return count == 0 or count >= minimum


def releasable_thresholds(
    scores: Iterable[Any] | npt.ArrayLike,
    truth: Iterable[Any] | npt.ArrayLike,
    *,
    threshold: float = 0.5,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    min_count: int = 1,
) -> tuple[float, ...]:
    """The grid thresholds a node may release: between any two consecutive cuts (the kept
    thresholds and the 2×2 ``threshold``) each class has 0 or at least ``min_count`` cases.

    The per-threshold counts are cumulative: the lead subtracts two of them to get a bin's
    count, so a bin of 1 to ``min_count − 1`` cases of one class would be released though
    every cumulative count is large. Bins are merged greedily from the low end, on each
    side of ``threshold``; a small remainder at the top of a side is merged back into the
    bins below it. Raises :class:`PolicyRefusal` (``small_cells``) when no grid threshold
    can be kept (a side of the 2×2 split is itself small, or the grid would be one bin).

    >>> releasable_thresholds([0.1] * 5 + [0.425] + [0.9] * 5, [1] * 11,
    ...                       threshold=0.5, thresholds=[0.2, 0.42, 0.43, 0.6], min_count=5)
    (0.6,)
    """
    grid = _check_grid(thresholds)
    score, state = _as_array(scores, "scores"), _as_array(truth, "truth")
    present = ~(np.isnan(score) | np.isnan(state))
    score, state = score[present], state[present]
    cuts = sorted({*grid, float(threshold)})
    edges = np.asarray(cuts)
    # bin b holds scores in [cuts[b-1], cuts[b]); bin 0 is below the first cut
    bins = [
        np.bincount(np.searchsorted(edges, score[state == value], side="right"),
                    minlength=len(cuts) + 1)
        for value in (1.0, 0.0)
    ]  # fmt: skip
    forced = cuts.index(float(threshold)) + 1  # the first bin at or above the threshold
    kept: list[float] = []
    for start, stop in ((0, forced), (forced, len(cuts) + 1)):
        kept.extend(_merge_side(cuts, bins, start, stop, min_count))
    released = tuple(cut for cut in cuts if cut in kept and cut in grid)
    if not released:
        raise PolicyRefusal(
            "small_cells",
            f"the ROC grid cannot be split into bins of 0 or at least {min_count} cases "
            "of each class at this node",
        )
    return released


def _merge_side(
    cuts: Sequence[float],
    bins: Sequence[npt.NDArray[np.int64]],
    start: int,
    stop: int,
    minimum: int,
) -> list[float]:
    """Cuts kept between bins ``start`` … ``stop − 1`` (and the cut below ``start``)."""
    groups: list[tuple[int, list[int]]] = []  # (first bin, counts per class)
    pending: list[int] = [0, 0]
    first = start
    for b in range(start, stop):
        pending = [pending[c] + int(bins[c][b]) for c in range(2)]
        if all(_releasable(count, minimum) for count in pending):
            groups.append((first, pending))
            pending, first = [0, 0], b + 1
    while any(pending) and groups:
        first, counts = groups.pop()
        pending = [pending[c] + counts[c] for c in range(2)]
        if all(_releasable(count, minimum) for count in pending):
            groups.append((first, pending))
            pending = [0, 0]
    if not all(_releasable(count, minimum) for count in pending):
        raise PolicyRefusal(
            "small_cells",
            f"a side of the 2×2 table has 1 to {minimum - 1} cases of one class at this node",
        )
    return [cuts[first - 1] for first, _ in groups if first > 0]


@dataclass(frozen=True)
class DiagnosticResult(StatResult):
    """Accuracy at one threshold, the ROC curve over the grid and the AUC.

    ``ppv``/``npv`` are ``None`` when nothing was called positive/negative. ``roc_fpr`` and
    ``roc_tpr`` start at (1, 1), follow the grid thresholds in increasing order, and end at
    (0, 0). ``auc`` is the trapezoid AUC over the grid; ``auc_max_error`` bounds its
    distance from the Mann–Whitney AUC of the scores, and ``exact`` is true only when that
    bound is 0. ``auc_ci`` uses ``auc_se``, computed as ``auc_se_method`` says.
    """

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    missing: Count
    sensitivity: ProportionResult
    specificity: ProportionResult
    ppv: ProportionResult | None
    npv: ProportionResult | None
    thresholds: tuple[float, ...]
    roc_fpr: tuple[float, ...]
    roc_tpr: tuple[float, ...]
    auc: float
    auc_se: float
    auc_ci: tuple[float, float]
    auc_max_error: float
    auc_se_method: str
    confidence: float
    nodes: int
    exact: bool = False

    def summary(self) -> str:
        """Return the 2×2 table and the accuracy measures with both intervals."""
        table = format_table(
            [f"score >= {self.threshold:g}", "condition present", "condition absent"],
            [["positive", self.tp, self.fp], ["negative", self.fn, self.tn]],
        )
        level = f"{self.confidence:.0%}"
        rows: list[list[Any]] = []
        measures = [
            ("sensitivity", self.sensitivity),
            ("specificity", self.specificity),
            ("PPV", self.ppv),
            ("NPV", self.npv),
        ]
        for name, measure in measures:
            if measure is None:
                rows.append([name, None, "", ""])
                continue
            wilson, exact = measure.wilson, measure.clopper_pearson
            rows.append(
                [name, measure.estimate, f"{wilson[0]:.4f}–{wilson[1]:.4f}",
                 f"{exact[0]:.4f}–{exact[1]:.4f}"]
            )  # fmt: skip
        label = "AUC (exact)" if self.exact else f"AUC (grid, ± {self.auc_max_error:.4f})"
        rows.append([label, self.auc, f"{self.auc_ci[0]:.4f}–{self.auc_ci[1]:.4f} (DeLong)", ""])
        measures_table = format_table(
            ["measure", "estimate", f"Wilson {level}", f"Clopper–Pearson {level}"], rows
        )
        return f"{table}\n\n{measures_table}"


def _rate(successes: int, n: int, confidence: float) -> ProportionResult | None:
    if n == 0:
        return None
    return combine_proportion([ProportionAggregates(successes, n)], confidence=confidence)


def _bin_counts(total: int, at_or_above: Sequence[int]) -> list[int]:
    """Cases per bin, lowest first: below the first threshold, between thresholds, above."""
    cumulative = [total, *at_or_above, 0]
    return [cumulative[i] - cumulative[i + 1] for i in range(len(cumulative) - 1)]


def _delong_se(auc: float, positives: Sequence[int], negatives: Sequence[int]) -> float:
    """DeLong's standard error with every case at its bin's placement value."""
    n_pos, n_neg = sum(positives), sum(negatives)
    below = list(itertools.accumulate([0, *negatives[:-1]]))  # negatives in lower bins
    above = list(itertools.accumulate([0, *positives[:0:-1]]))[::-1]  # positives in higher bins
    s10 = sum(
        pos * ((below[b] + 0.5 * negatives[b]) / n_neg - auc) ** 2
        for b, pos in enumerate(positives)
    ) / max(n_pos - 1, 1)
    s01 = sum(
        neg * ((above[b] + 0.5 * positives[b]) / n_pos - auc) ** 2
        for b, neg in enumerate(negatives)
    ) / max(n_neg - 1, 1)
    return math.sqrt(s10 / n_pos + s01 / n_neg)


def _on_common_grid(aggregates: Sequence[DiagnosticAggregates]) -> list[DiagnosticAggregates]:
    """Each node's counts at the thresholds every node released.

    A node releases the thresholds of the agreed grid it can (see
    :func:`releasable_thresholds`); a threshold it dropped is dropped for all. Cumulative
    counts at the common thresholds are the node's own released counts, so the pooled
    ROC stays exact on the common grid; ``on_grid`` no longer applies (it is cleared).
    """
    common = set(aggregates[0].thresholds).intersection(*(a.thresholds for a in aggregates))
    if not common:
        raise StatisticsError(
            "diagnostic: the nodes released no grid threshold in common; agree on a coarser grid"
        )
    restricted = []
    for agg in aggregates:
        keep = [i for i, t in enumerate(agg.thresholds) if t in common]
        restricted.append(
            replace(
                agg,
                thresholds=tuple(agg.thresholds[i] for i in keep),
                tp_at=tuple(agg.tp_at[i] for i in keep),
                fp_at=tuple(agg.fp_at[i] for i in keep),
                fn_at=tuple(agg.fn_at[i] for i in keep),
                tn_at=tuple(agg.tn_at[i] for i in keep),
                on_grid=False,
            )
        )
    return restricted


def combine_diagnostic(
    aggregates: Sequence[DiagnosticAggregates], *, confidence: float = 0.95
) -> DiagnosticResult:
    """Add the nodes' counts and derive accuracy, ROC and AUC on the thresholds all nodes
    released (each released a subset of the agreed grid).

    >>> a = diagnostic_node([0.9, 0.2], [1, 0], thresholds=[0.0, 0.5, 1.0])
    >>> b = diagnostic_node([0.7, 0.6], [1, 0], thresholds=[0.0, 0.5, 1.0])
    >>> result = combine_diagnostic([a, b])
    >>> result.sensitivity.estimate, result.specificity.estimate, result.auc
    (1.0, 0.5, 0.75)
    """
    if not aggregates:
        raise StatisticsError("diagnostic: no node aggregates to combine")
    check_confidence(confidence)
    first = aggregates[0]
    grids = {agg.thresholds for agg in aggregates}
    same_grid = len(grids) == 1
    if not same_grid:
        aggregates = _on_common_grid(aggregates)
        first = aggregates[0]
    if any(agg.threshold != first.threshold for agg in aggregates):
        raise StatisticsError("diagnostic: nodes used different thresholds for the 2×2 table")
    tp = sum(agg.tp for agg in aggregates)
    fp = sum(agg.fp for agg in aggregates)
    fn = sum(agg.fn for agg in aggregates)
    tn = sum(agg.tn for agg in aggregates)
    n_pos, n_neg = tp + fn, fp + tn
    if n_pos == 0 or n_neg == 0:
        raise StatisticsError(
            f"diagnostic: need cases with and without the condition (got {n_pos} and {n_neg})"
        )
    tp_at = [sum(column) for column in zip(*(agg.tp_at for agg in aggregates), strict=True)]
    fp_at = [sum(column) for column in zip(*(agg.fp_at for agg in aggregates), strict=True)]
    # ROC vertices from "everyone positive" to "nobody positive"; counts never increase.
    tps = [n_pos, *tp_at, 0]
    fps = [n_neg, *fp_at, 0]
    twice_area = sum(
        (fps[i] - fps[i + 1]) * (tps[i] + tps[i + 1]) for i in range(len(tps) - 1)
    )  # an exact integer
    auc = twice_area / (2 * n_pos * n_neg)
    positives, negatives = _bin_counts(n_pos, tp_at), _bin_counts(n_neg, fp_at)
    same_bin_pairs = sum(p * n for p, n in zip(positives, negatives, strict=True))
    # on_grid is each node's word about the grid it released: it says nothing once the
    # lead merges that grid's bins into the common one
    exact = same_bin_pairs == 0 or (same_grid and all(agg.on_grid for agg in aggregates))
    auc_se = _delong_se(auc, positives, negatives)
    z = float(sps.norm.isf((1.0 - confidence) / 2))
    return DiagnosticResult(
        threshold=first.threshold,
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        missing=pool_counts(agg.missing for agg in aggregates),
        sensitivity=combine_proportion([ProportionAggregates(tp, n_pos)], confidence=confidence),
        specificity=combine_proportion([ProportionAggregates(tn, n_neg)], confidence=confidence),
        ppv=_rate(tp, tp + fp, confidence),
        npv=_rate(tn, tn + fn, confidence),
        thresholds=first.thresholds,
        roc_fpr=tuple(count / n_neg for count in fps),
        roc_tpr=tuple(count / n_pos for count in tps),
        auc=auc,
        auc_se=auc_se,
        auc_ci=(max(0.0, auc - z * auc_se), min(1.0, auc + z * auc_se)),
        auc_max_error=0.0 if exact else same_bin_pairs / (2 * n_pos * n_neg),
        auc_se_method="DeLong" if exact else "DeLong on the grid bins (approximate)",
        confidence=confidence,
        nodes=len(aggregates),
        exact=exact,
    )


def diagnostic_accuracy(
    scores: Iterable[Any] | npt.ArrayLike,
    truth: Iterable[Any] | npt.ArrayLike,
    *,
    threshold: float = 0.5,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    confidence: float = 0.95,
) -> DiagnosticResult:
    """Diagnostic accuracy of pooled data: the node step, then the combine step.

    >>> diagnostic_accuracy([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0]).auc
    1.0
    """
    node = diagnostic_node(scores, truth, threshold=threshold, thresholds=thresholds)
    return combine_diagnostic([node], confidence=confidence)
