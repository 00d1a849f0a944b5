"""Glucose-meter accuracy: ISO 15197:2013, Parkes and Clarke error grids, MARD, Bland–Altman.

All concentrations are in **mg/dL**; convert mmol/L first with :func:`mmol_to_mgdl`, which
uses 1 mmol/L = 18.0 mg/dL (the convention of error-grid software). Differences are
``device − reference``.

Node side: :func:`iso15197_node` returns additive counts and sums
(:class:`GlucoseAccuracyAggregates`). Lead side: :func:`combine_iso15197` adds them and
derives percentages, criteria, MARD and Bland–Altman limits (:class:`Iso15197Result`).
Counts are exact; the sums are floating-point sums, equal to pooled sums up to rounding
(exactly equal when readings are integers, as meters report them).

Edge rules (also in ``docs/statistics-edge-rules.md``):

* ISO limits are inclusive: ``|d| <= 15`` mg/dL when the reference is < 100 mg/dL, and
  ``|d| <= 15 %`` of the reference when it is >= 100 mg/dL.
* **Error grids: a point exactly on a boundary belongs to the better (inner) zone**, in
  both grids. For Parkes this means a point on a boundary line or vertex is inside that
  boundary. Beyond the published 0–550 mg/dL grid each polyline continues along its last
  segment. For Clarke the published inequalities are made strict or inclusive so that the
  same rule holds on every boundary (see :func:`clarke_zones`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats.aggregates import NodeAggregates, reading_aggregates
from consortia.stats.counts import Count, count_bounds, pool_counts, read_count
from consortia.stats.results import StatResult, format_table

__all__ = [
    "MGDL_PER_MMOL",
    "PARKES_TYPE1",
    "PARKES_TYPE2",
    "ZONES",
    "BlandAltmanResult",
    "GlucoseAccuracyAggregates",
    "Iso15197Result",
    "ParkesBoundary",
    "bland_altman",
    "clarke_zones",
    "combine_iso15197",
    "iso15197",
    "iso15197_node",
    "mmol_to_mgdl",
    "parkes_boundaries",
    "parkes_zones",
    "within_iso15197",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Point = tuple[float, float]
GlucoseValues = Iterable[float | None] | npt.ArrayLike
"""Glucose readings in mg/dL: a sequence of numbers (``None``/NaN = missing) or an array."""

MGDL_PER_MMOL = 18.0
"""1 mmol/L of glucose = 18.0 mg/dL (the conversion used by error-grid software)."""

ZONES: tuple[str, ...] = ("A", "B", "C", "D", "E")


def mmol_to_mgdl(values: GlucoseValues) -> FloatArray:
    """Convert glucose from mmol/L to mg/dL with the factor 18.0.

    >>> mmol_to_mgdl([5.0, 10.0]).tolist()
    [90.0, 180.0]
    """
    return np.asarray(values, dtype=np.float64) * MGDL_PER_MMOL


@dataclass(frozen=True)
class ParkesBoundary:
    """One Parkes boundary: ``upper`` lies above the identity line, ``lower`` below it.

    Points are ``(reference, meter)`` in mg/dL. ``inner``/``outer`` are the zones on
    either side; D/E has no lower line.
    """

    inner: str
    outer: str
    upper: tuple[Point, ...]
    lower: tuple[Point, ...] | None


# Parkes 2000, coordinates as given by Pfützner et al., J Diabetes Sci Technol 2013;7:1275.
PARKES_TYPE1: tuple[ParkesBoundary, ...] = (
    ParkesBoundary(
        "A", "B",
        ((0, 50), (30, 50), (140, 170), (280, 380), (430, 550)),
        ((50, 0), (50, 30), (170, 145), (385, 300), (550, 450)),
    ),
    ParkesBoundary(
        "B", "C",
        ((0, 60), (30, 60), (50, 80), (70, 110), (260, 550)),
        ((120, 0), (120, 30), (260, 130), (550, 250)),
    ),
    ParkesBoundary(
        "C", "D",
        ((0, 100), (25, 100), (50, 125), (80, 215), (125, 550)),
        ((250, 0), (250, 40), (550, 150)),
    ),
    ParkesBoundary("D", "E", ((0, 150), (35, 155), (50, 550)), None),
)  # fmt: skip

PARKES_TYPE2: tuple[ParkesBoundary, ...] = (
    ParkesBoundary(
        "A", "B",
        ((0, 50), (30, 50), (230, 330), (440, 550)),
        ((50, 0), (50, 30), (90, 80), (330, 230), (550, 450)),
    ),
    ParkesBoundary(
        "B", "C",
        ((0, 60), (30, 60), (280, 550)),
        ((90, 0), (260, 130), (550, 250)),
    ),
    ParkesBoundary(
        "C", "D",
        ((0, 80), (25, 80), (35, 90), (125, 550)),
        ((250, 0), (250, 40), (410, 110), (550, 160)),
    ),
    ParkesBoundary("D", "E", ((0, 200), (35, 200), (50, 550)), None),
)  # fmt: skip


def parkes_boundaries(diabetes_type: Literal[1, 2] = 1) -> tuple[ParkesBoundary, ...]:
    """Return the Parkes boundaries for type 1 or type 2 diabetes, innermost first.

    >>> [b.inner + "/" + b.outer for b in parkes_boundaries(2)]
    ['A/B', 'B/C', 'C/D', 'D/E']
    """
    if diabetes_type == 1:
        return PARKES_TYPE1
    if diabetes_type == 2:
        return PARKES_TYPE2
    raise StatisticsError(f"diabetes_type: {diabetes_type!r} is not 1 or 2")


def _pairs(reference: Any, device: Any) -> tuple[FloatArray, FloatArray]:
    try:
        ref = np.asarray(reference, dtype=np.float64)
        dev = np.asarray(device, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatisticsError(f"glucose values must be numbers ({exc})") from exc
    if ref.ndim != 1 or ref.shape != dev.shape:
        raise StatisticsError(
            f"reference and device must be 1-D arrays of one length, got {ref.shape}, {dev.shape}"
        )
    return ref, dev


def _checked_pairs(
    reference: Any, device: Any, *, positive_reference: bool = False
) -> tuple[FloatArray, FloatArray]:
    ref, dev = _pairs(reference, device)
    if not (np.isfinite(ref).all() and np.isfinite(dev).all()):
        raise StatisticsError("glucose values must be finite (drop missing pairs first)")
    if positive_reference and (ref <= 0).any():
        raise StatisticsError("reference glucose must be > 0 mg/dL (it divides MARD and ±15 %)")
    if (ref < 0).any() or (dev < 0).any():
        raise StatisticsError("glucose values must be >= 0 mg/dL")
    return ref, dev


def _on_or_below(x: FloatArray, y: FloatArray, line: Sequence[Point]) -> BoolArray:
    """``y`` is on or below the polyline through ``line`` (x strictly increasing).

    Cross products, not interpolated heights, so points exactly on a segment with
    integer or half-integer coordinates are decided exactly.
    """
    xs = np.array([p[0] for p in line], dtype=np.float64)
    ys = np.array([p[1] for p in line], dtype=np.float64)
    i = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 2)
    x0, y0, x1, y1 = xs[i], ys[i], xs[i + 1], ys[i + 1]
    return np.asarray((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) <= 0)


def _on_or_left(x: FloatArray, y: FloatArray, line: Sequence[Point]) -> BoolArray:
    """``x`` is on or left of the polyline through ``line`` (y strictly increasing)."""
    xs = np.array([p[0] for p in line], dtype=np.float64)
    ys = np.array([p[1] for p in line], dtype=np.float64)
    i = np.clip(np.searchsorted(ys, y, side="right") - 1, 0, len(ys) - 2)
    x0, y0, x1, y1 = xs[i], ys[i], xs[i + 1], ys[i + 1]
    return np.asarray((y1 - y0) * (x - x0) - (x1 - x0) * (y - y0) <= 0)


def _zone_codes(
    ref: FloatArray, dev: FloatArray, diabetes_type: Literal[1, 2]
) -> npt.NDArray[np.intp]:
    codes = np.full(ref.shape, len(ZONES) - 1, dtype=np.intp)
    boundaries = parkes_boundaries(diabetes_type)
    for index in reversed(range(len(boundaries))):
        boundary = boundaries[index]
        inside = _on_or_below(ref, dev, boundary.upper)
        if boundary.lower is not None:
            inside &= _on_or_left(ref, dev, boundary.lower)
        codes[inside] = index
    return codes


def parkes_zones(
    reference: GlucoseValues,
    device: GlucoseValues,
    *,
    diabetes_type: Literal[1, 2] = 1,
) -> npt.NDArray[np.str_]:
    """Parkes (consensus) error-grid zone ``'A'``–``'E'`` of each (reference, device) pair.

    A point is in zone A when it lies on or below the A/B upper polyline and on or left of
    the A/B lower polyline; otherwise in B when inside the B/C lines, and so on; E is
    outside the D/E line. **A point exactly on a boundary belongs to the inner (better)
    zone.** Beyond 550 mg/dL the lines continue along their last segment.

    >>> parkes_zones([100, 100, 50, 300], [100, 135, 50, 120]).tolist()
    ['A', 'B', 'A', 'C']
    """
    ref, dev = _checked_pairs(reference, device)
    return np.asarray(ZONES)[_zone_codes(ref, dev, diabetes_type)]


def _clarke_codes(r: FloatArray, m: FloatArray) -> npt.NDArray[np.intp]:
    # Inequalities are chosen so that boundary points fall in the better zone; integer
    # multiples (5·|d| <= r, 5·m < 7·r − 910) keep integer inputs exact.
    zone_a = ((r <= 70) & (m <= 70)) | (5 * np.abs(m - r) <= r)
    zone_c = ((r >= 70) & (r < 290) & (m > r + 110)) | (
        (r >= 130) & (r <= 180) & (5 * m < 7 * r - 910)
    )
    zone_d = ((r < 70) & (m >= 70) & (m <= 180)) | ((r > 240) & (m >= 70) & (m < 180))
    zone_e = ((r < 70) & (m > 180)) | ((r > 180) & (m < 70))
    codes = np.full(r.shape, 1, dtype=np.intp)  # B: everything else
    codes[zone_e] = 4
    codes[zone_d] = 3
    codes[zone_c] = 2
    codes[zone_a] = 0
    return codes


def clarke_zones(reference: GlucoseValues, device: GlucoseValues) -> npt.NDArray[np.str_]:
    """Clarke error-grid zone ``'A'``–``'E'`` of each (reference ``r``, meter ``m``) pair.

    Clarke et al. 1987, with every boundary point in the better zone:

    * A: ``|m − r| <= 0.2 r``, or ``r <= 70`` and ``m <= 70``;
    * C: ``70 <= r < 290`` and ``m > r + 110``, or ``130 <= r <= 180`` and ``m < 1.4 r − 182``;
    * D: ``r < 70`` and ``70 <= m <= 180``, or ``r > 240`` and ``70 <= m < 180``;
    * E: ``r < 70`` and ``m > 180``, or ``r > 180`` and ``m < 70``;
    * B: everything else. A is tested first, then C, D, E (the sets are otherwise disjoint).

    >>> clarke_zones([100, 100, 60, 200, 300], [120, 121, 150, 60, 100]).tolist()
    ['A', 'B', 'D', 'E', 'D']
    """
    ref, dev = _checked_pairs(reference, device)
    return np.asarray(ZONES)[_clarke_codes(ref, dev)]


def within_iso15197(reference: GlucoseValues, device: GlucoseValues) -> BoolArray:
    """Whether each result is within ISO 15197:2013 limits (both limits inclusive).

    ±15 mg/dL when the reference is < 100 mg/dL, ±15 % when it is >= 100 mg/dL.

    >>> within_iso15197([99, 99, 100, 200], [114, 114.5, 115, 170]).tolist()
    [True, False, True, True]
    """
    ref, dev = _checked_pairs(reference, device)
    diff = np.abs(dev - ref)
    return np.asarray(np.where(ref < 100, diff <= 15, 100 * diff <= 15 * ref))


def _zone_counts(codes: npt.NDArray[np.intp]) -> tuple[int, ...]:
    return tuple(int(c) for c in np.bincount(codes, minlength=len(ZONES)))


@dataclass(frozen=True)
class GlucoseAccuracyAggregates(NodeAggregates):
    """One node's additive accuracy aggregates (counts per zone in order A–E)."""

    n: int
    missing: Count
    within_iso: Count
    parkes_type1: tuple[Count, ...]
    parkes_type2: tuple[Count, ...]
    clarke: tuple[Count, ...]
    sum_abs_relative_difference: float
    sum_difference: float
    sum_difference_squared: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlucoseAccuracyAggregates:
        """Read aggregates produced by :meth:`to_dict` (raises StatisticsError if malformed)."""
        with reading_aggregates("iso15197"):
            aggregates = cls(
                n=int(data["n"]),
                missing=read_count(data["missing"], "iso15197.missing"),
                within_iso=read_count(data["within_iso"], "iso15197.within_iso"),
                parkes_type1=tuple(read_count(c, "parkes_type1") for c in data["parkes_type1"]),
                parkes_type2=tuple(read_count(c, "parkes_type2") for c in data["parkes_type2"]),
                clarke=tuple(read_count(c, "clarke") for c in data["clarke"]),
                sum_abs_relative_difference=float(data["sum_abs_relative_difference"]),
                sum_difference=float(data["sum_difference"]),
                sum_difference_squared=float(data["sum_difference_squared"]),
            )
        for grid in (aggregates.parkes_type1, aggregates.parkes_type2, aggregates.clarke):
            low, high = count_bounds(pool_counts(grid))
            if len(grid) != len(ZONES) or not low <= aggregates.n <= (high or aggregates.n):
                raise StatisticsError("iso15197: zone counts must be five counts adding up to n")
        return aggregates


def iso15197_node(reference: GlucoseValues, device: GlucoseValues) -> GlucoseAccuracyAggregates:
    """Compute one node's accuracy aggregates; a pair with a missing value is skipped.

    >>> agg = iso15197_node([100, 200, None], [110, 270, 90])
    >>> agg.n, agg.missing, agg.within_iso, agg.parkes_type1, agg.sum_difference
    (2, 1, 1, (1, 1, 0, 0, 0), 80.0)
    """
    ref, dev = _pairs(reference, device)
    present = ~(np.isnan(ref) | np.isnan(dev))
    ref, dev = _checked_pairs(ref[present], dev[present], positive_reference=True)
    diff = dev - ref
    return GlucoseAccuracyAggregates(
        n=int(ref.size),
        missing=int(present.size - ref.size),
        within_iso=int(within_iso15197(ref, dev).sum()),
        parkes_type1=_zone_counts(_zone_codes(ref, dev, 1)),
        parkes_type2=_zone_counts(_zone_codes(ref, dev, 2)),
        clarke=_zone_counts(_clarke_codes(ref, dev)),
        sum_abs_relative_difference=float(np.sum(np.abs(diff) / ref)),
        sum_difference=float(np.sum(diff)),
        sum_difference_squared=float(np.sum(diff * diff)),
    )


@dataclass(frozen=True)
class BlandAltmanResult(StatResult):
    """Bias (mean of device − reference) and 95 % limits of agreement, bias ± 1.96 SD.

    The SD uses ``n − 1``; it is computed from ``(n, Σd, Σd²)`` and is NaN when n < 2.
    """

    n: int
    bias: float
    sd: float
    lower_limit: float
    upper_limit: float

    def summary(self) -> str:
        """Return n, bias, SD and the limits of agreement as a table."""
        return format_table(
            ["n", "bias", "sd", "lower LoA", "upper LoA"],
            [[self.n, self.bias, self.sd, self.lower_limit, self.upper_limit]],
        )


def _bland_altman(n: int, sum_d: float, sum_d2: float) -> BlandAltmanResult:
    if n == 0:
        raise StatisticsError("Bland–Altman: no complete pairs")
    bias = sum_d / n
    sd = math.sqrt(max(sum_d2 - sum_d * sum_d / n, 0.0) / (n - 1)) if n > 1 else math.nan
    return BlandAltmanResult(n, bias, sd, bias - 1.96 * sd, bias + 1.96 * sd)


def bland_altman(reference: GlucoseValues, device: GlucoseValues) -> BlandAltmanResult:
    """Bland–Altman agreement of pooled pairs (differences are device − reference).

    >>> bland_altman([100, 120, 140], [104, 122, 144]).bias
    3.3333333333333335
    """
    node = iso15197_node(reference, device)
    return _bland_altman(node.n, node.sum_difference, node.sum_difference_squared)


@dataclass(frozen=True)
class Iso15197Result(StatResult):
    """ISO 15197:2013 system-accuracy summary across nodes.

    ``meets_accuracy_criterion``: >= 95 % within the ISO limits. ``meets_parkes_criterion``:
    >= 99 % in Parkes type 1 zones A+B. ``meets_iso15197``: both. (The standard also
    prescribes the study design — subjects, lots, concentration ranges — not checked here.)
    Zone counts are mappings zone → count; a zone a node released as suppressed (``"<5"``,
    ``">=5"``) pools to the range it lies in, and then ``parkes_ab_pct`` is NaN and the
    Parkes criterion ``None`` unless the range decides it. ``mard_pct`` is the mean absolute
    relative difference in percent.
    """

    n: int
    missing: Count
    within_iso: Count
    within_iso_pct: float
    meets_accuracy_criterion: bool | None
    parkes_type1: Mapping[str, Count]
    parkes_type2: Mapping[str, Count]
    parkes_ab_pct: float
    meets_parkes_criterion: bool | None
    meets_iso15197: bool | None
    clarke: Mapping[str, Count]
    mard_pct: float
    bland_altman: BlandAltmanResult
    nodes: int
    exact: bool = True

    def summary(self) -> str:
        """Return the criteria, the zone counts and the agreement statistics as tables."""
        ba = self.bland_altman
        criteria = format_table(
            ["statistic", "value"],
            [
                ["n", self.n],
                ["missing", self.missing],
                [
                    "within ISO limits",
                    f"{self.within_iso} ({self.within_iso_pct:.1f} %)",
                ],  # nan: a range
                ["meets >= 95 % within limits", self.meets_accuracy_criterion],
                ["Parkes type 1 A+B %", self.parkes_ab_pct],
                ["meets >= 99 % in A+B", self.meets_parkes_criterion],
                ["meets ISO 15197:2013 accuracy", self.meets_iso15197],
                ["MARD %", self.mard_pct],
                ["Bland–Altman bias (mg/dL)", ba.bias],
                ["limits of agreement", f"{ba.lower_limit:.2f} to {ba.upper_limit:.2f}"],
            ],
        )
        zones = format_table(
            ["zone", "Parkes T1", "Parkes T2", "Clarke"],
            [[z, self.parkes_type1[z], self.parkes_type2[z], self.clarke[z]] for z in ZONES],
        )
        return criteria + "\n\n" + zones


def _decided(low: int, high: int | None, percent: int, n: int) -> bool | None:
    """Whether a count known to lie in ``low … high`` is at least ``percent`` % of ``n``:
    ``None`` when the range does not decide it (a suppressed count)."""
    if 100 * low >= percent * n:
        return True
    if high is not None and 100 * high < percent * n:
        return False
    return None


def combine_iso15197(aggregates: Sequence[GlucoseAccuracyAggregates]) -> Iso15197Result:
    """Add the nodes' aggregates and derive the ISO 15197 summary.

    >>> a = iso15197_node([100, 150], [105, 150])
    >>> b = iso15197_node([80], [100])
    >>> result = combine_iso15197([a, b])
    >>> result.within_iso, result.meets_accuracy_criterion, round(result.mard_pct, 4)
    (2, False, 10.0)
    """
    n = sum(agg.n for agg in aggregates)
    if n == 0:
        raise StatisticsError("iso15197: no complete (reference, device) pairs at any node")

    def zones(counts: Iterable[tuple[Count, ...]]) -> dict[str, Count]:
        totals = [pool_counts(column) for column in zip(*counts, strict=True)]
        return dict(zip(ZONES, totals, strict=True))

    within = pool_counts(agg.within_iso for agg in aggregates)
    within_low, within_high = count_bounds(within)
    parkes1 = zones(agg.parkes_type1 for agg in aggregates)
    # A+B needs both zones; with a zone suppressed it is known only within bounds
    low, high = count_bounds(pool_counts([parkes1["A"], parkes1["B"]]))
    in_ab = float(low) if low == high else math.nan
    meets_accuracy = _decided(within_low, within_high, 95, n)
    meets_parkes = _decided(low, high, 99, n)
    return Iso15197Result(
        n=n,
        missing=pool_counts(agg.missing for agg in aggregates),
        within_iso=within,
        within_iso_pct=100.0 * within_low / n if within_low == within_high else math.nan,
        meets_accuracy_criterion=meets_accuracy,
        parkes_type1=parkes1,
        parkes_type2=zones(agg.parkes_type2 for agg in aggregates),
        parkes_ab_pct=100.0 * in_ab / n,
        meets_parkes_criterion=meets_parkes,
        meets_iso15197=(
            False
            if meets_accuracy is False or meets_parkes is False
            else None
            if meets_accuracy is None or meets_parkes is None
            else True
        ),
        clarke=zones(agg.clarke for agg in aggregates),
        mard_pct=100.0 * sum(agg.sum_abs_relative_difference for agg in aggregates) / n,
        bland_altman=_bland_altman(
            n,
            sum(agg.sum_difference for agg in aggregates),
            sum(agg.sum_difference_squared for agg in aggregates),
        ),
        nodes=len(aggregates),
    )


def iso15197(reference: GlucoseValues, device: GlucoseValues) -> Iso15197Result:
    """ISO 15197 accuracy of pooled pairs: the node step, then the combine step.

    >>> iso15197([100, 200, 300], [100, 210, 290]).within_iso_pct
    100.0
    """
    return combine_iso15197([iso15197_node(reference, device)])
