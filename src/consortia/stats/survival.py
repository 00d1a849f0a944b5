"""Kaplan–Meier curves and log-rank tests from additive per-time counts.

A node computes :func:`survival_counts` from its own records: for each group and each
(binned) time, how many events and how many censorings happened there. Counts add across
nodes, so the lead combines them (:func:`combine_survival_counts`) and computes exactly the
curve and test it would get from the pooled records:

* :func:`kaplan_meier_from_counts` — survival, Greenwood SE, log(-log) ("exponential
  Greenwood") confidence intervals and median survival with its CI, as lifelines'
  ``KaplanMeierFitter`` reports them;
* :func:`consortia.stats.logrank.logrank_from_counts` — the k-group log-rank test,
  optionally stratified (one stratum per node: the per-stratum O−E and variances are summed).

:func:`kaplan_meier` is the same code on one node's arrays; the log-rank test on the same
counts is in :mod:`consortia.stats.logrank`.

Times are released in bins: a time ``t`` is reported at the start of its bin,
``floor(t / time_bin) * time_bin``; ``time_bin=1`` with integer times, or ``None``, is exact.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats._arrays import (
    as_event_vector,
    as_float_vector,
    as_labels,
    bin_times,
    sort_labels,
)
from consortia.stats.results import (
    StatResult,
    format_number,
    format_table,
    from_jsonable,
    to_jsonable,
)

if TYPE_CHECKING:
    from scipy import stats as scipy_stats
else:
    from consortia.stats.lazy_scipy import stats as scipy_stats

__all__ = [
    "KaplanMeierCurve",
    "KaplanMeierResult",
    "SurvivalCounts",
    "combine_survival_counts",
    "kaplan_meier",
    "kaplan_meier_from_counts",
    "survival_counts",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# --------------------------------------------------------------------------- node side


def _plain(values: npt.NDArray[Any]) -> Any:
    """An array as JSON lists: ``tolist`` when every number is finite (as fast as it gets),
    else :func:`to_jsonable` (non-finite numbers become ``None``)."""
    if values.dtype.kind in "iub" or bool(np.isfinite(values).all()):
        return values.tolist()
    return to_jsonable(values)


@dataclass(frozen=True, eq=False)
class SurvivalCounts:
    """Additive per-time counts of one node (or of several, once combined).

    ``events[g, j]`` and ``censored[g, j]`` count subjects of ``groups[g]`` whose (binned)
    time is ``times[j]``; ``n_at_start`` is each group's number of subjects. These are the
    cells a disclosure policy checks.
    """

    groups: tuple[str, ...]
    times: FloatArray
    events: IntArray
    censored: IntArray
    time_bin: float | None

    @property
    def n_at_start(self) -> IntArray:
        """Subjects per group at time zero."""
        return np.asarray(self.events.sum(axis=1) + self.censored.sum(axis=1), dtype=np.int64)

    @property
    def n(self) -> int:
        """Subjects in all groups."""
        return int(self.n_at_start.sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists and numbers) for crossing the network."""
        return {
            "groups": list(self.groups),
            "times": _plain(self.times),
            "events": _plain(self.events),
            "censored": _plain(self.censored),
            "time_bin": self.time_bin,
            "n_at_start": _plain(self.n_at_start),
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SurvivalCounts:
        """Rebuild counts from :meth:`to_dict` output, checking their shapes."""
        groups = tuple(str(group) for group in data["groups"])
        times = np.asarray(data["times"], dtype=np.float64).reshape(-1)
        shape = (len(groups), times.size)
        events = np.asarray(data["events"], dtype=np.int64).reshape(shape)
        censored = np.asarray(data["censored"], dtype=np.int64).reshape(shape)
        if (events < 0).any() or (censored < 0).any():
            raise StatisticsError("survival counts: negative count")
        time_bin = data.get("time_bin")
        return cls(groups, times, events, censored, None if time_bin is None else float(time_bin))


def survival_counts(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    group: npt.ArrayLike | None = None,
    *,
    time_bin: float | None = 1.0,
) -> SurvivalCounts:
    """Count events and censorings per group and binned time on one node.

    >>> counts = survival_counts([3, 5, 5, 8], [1, 0, 1, 1], ["a", "a", "b", "b"])
    >>> counts.groups, counts.times.tolist(), counts.events.tolist()
    (('a', 'b'), [3.0, 5.0, 8.0], [[1, 0, 0], [0, 1, 1]])
    """
    times = as_float_vector(time, "time")
    if (times < 0).any():
        raise StatisticsError(f"time: {int((times < 0).sum())} negative times")
    events = as_event_vector(event, times.size)
    groups, group_index = _group_codes(group, times.size)
    binned = bin_times(times, time_bin)
    grid, time_index = np.unique(binned, return_inverse=True)
    # One bincount per kind of count over the flattened (group, time) cells.
    cell = group_index * grid.size + np.asarray(time_index, dtype=np.int64).reshape(-1)
    size = len(groups) * grid.size
    shape = (len(groups), grid.size)
    event_counts = np.bincount(cell[events], minlength=size).astype(np.int64).reshape(shape)
    censored_counts = np.bincount(cell[~events], minlength=size).astype(np.int64).reshape(shape)
    return SurvivalCounts(groups, grid, event_counts, censored_counts, time_bin)


def _group_codes(group: npt.ArrayLike | None, n: int) -> tuple[tuple[str, ...], IntArray]:
    """The sorted group labels and each row's position among them.

    Text groups (the usual case) are coded by comparing the rows with each distinct label;
    anything else goes through :func:`as_labels` (``str`` of each value, missing refused).
    """
    if group is None:
        return ("all",), np.zeros(n, dtype=np.int64)
    values = np.asarray(group, dtype=object).reshape(-1)
    if values.size != n:
        raise StatisticsError(f"group: {values.size} values for {n} times")
    distinct = set(values.tolist())
    if distinct and len(distinct) <= 64 and all(type(value) is str for value in distinct):
        groups = sort_labels(distinct)
        codes = np.zeros(n, dtype=np.int64)
        for position, label in enumerate(groups[1:], start=1):
            codes[np.asarray(np.equal(values, label), dtype=np.bool_)] = position
        return groups, codes
    labels = as_labels(values, "group")
    groups = sort_labels(labels)
    position_of = {label: index for index, label in enumerate(groups)}
    return groups, np.array([position_of[label] for label in labels], dtype=np.int64)


# --------------------------------------------------------------------------- lead side


def combine_survival_counts(parts: Sequence[SurvivalCounts]) -> SurvivalCounts:
    """Add counts from several nodes over the union of their groups and times.

    >>> a = survival_counts([1, 2], [1, 0], time_bin=1)
    >>> b = survival_counts([2, 4], [1, 1], time_bin=1)
    >>> combine_survival_counts([a, b]).events.tolist()
    [[1, 1, 1]]
    """
    if not parts:
        raise StatisticsError("no survival counts to combine")
    bins = {part.time_bin for part in parts}
    if len(bins) > 1:
        raise StatisticsError(f"survival counts use different time bins: {sorted(map(str, bins))}")
    groups = sort_labels({label for part in parts for label in part.groups})
    grid = np.unique(np.concatenate([part.times for part in parts]))
    events = np.zeros((len(groups), grid.size), dtype=np.int64)
    censored = np.zeros((len(groups), grid.size), dtype=np.int64)
    for part in parts:
        rows = np.array([groups.index(label) for label in part.groups], dtype=np.int64)
        columns = np.searchsorted(grid, part.times)
        events[np.ix_(rows, columns)] += part.events
        censored[np.ix_(rows, columns)] += part.censored
    return SurvivalCounts(groups, grid, events, censored, parts[0].time_bin)


def _as_counts(counts: SurvivalCounts | Sequence[SurvivalCounts]) -> SurvivalCounts:
    if isinstance(counts, SurvivalCounts):
        return counts
    return combine_survival_counts(counts)


def at_risk_counts(events: IntArray, censored: IntArray) -> IntArray:
    """Subjects still at risk just before each time (rows are groups, columns times)."""
    removed = events + censored
    total = removed.sum(axis=-1, keepdims=True)
    before = np.cumsum(removed, axis=-1) - removed
    return np.asarray(total - before, dtype=np.int64)


def _first_time_at_or_below(times: FloatArray, curve: FloatArray, level: float) -> float:
    """First time the curve is ≤ ``level`` (lifelines' ``qth_survival_time``); inf if never."""
    below = np.flatnonzero(curve <= level)
    return float(times[below[0]]) if below.size else math.inf


@dataclass(frozen=True, eq=False)
class KaplanMeierCurve(StatResult):
    """One group's Kaplan–Meier curve; times start at 0 as in lifelines' timeline."""

    group: str
    time: FloatArray
    at_risk: IntArray
    events: IntArray
    censored: IntArray
    survival: FloatArray
    se: FloatArray
    ci_lower: FloatArray
    ci_upper: FloatArray
    median: float
    median_ci_lower: float
    median_ci_upper: float

    @property
    def n(self) -> int:
        """Subjects in the group."""
        return int(self.at_risk[0]) if self.at_risk.size else 0

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON values (arrays as lists; non-finite numbers as ``None``)."""
        return {
            field.name: (_plain(value) if isinstance(value, np.ndarray) else to_jsonable(value))
            for field in dataclasses.fields(self)
            for value in (getattr(self, field.name),)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KaplanMeierCurve:
        """Read a curve back from :meth:`to_dict`; a median JSON gives as ``null`` (the
        curve never falls to 0.5) comes back as infinity, as :func:`kaplan_meier` gives it."""
        curve = super().from_dict(data)

        def reached(name: str) -> float:
            return math.inf if data.get(name) is None else float(getattr(curve, name))

        return dataclasses.replace(
            curve,
            median=reached("median"),
            median_ci_lower=reached("median_ci_lower"),
            median_ci_upper=reached("median_ci_upper"),
        )

    def at_risk_at(self, when: float) -> int:
        """Subjects still under observation at ``when`` (those with time ≥ ``when``)."""
        later = np.flatnonzero(self.time >= when)
        return int(self.at_risk[later[0]]) if later.size else 0

    def summary(self) -> str:
        rows = [
            [int(t) if float(t).is_integer() else t, r, e, c, s, se, lo, hi]
            for t, r, e, c, s, se, lo, hi in zip(
                self.time.tolist(),
                self.at_risk.tolist(),
                self.events.tolist(),
                self.censored.tolist(),
                self.survival.tolist(),
                self.se.tolist(),
                self.ci_lower.tolist(),
                self.ci_upper.tolist(),
                strict=True,
            )
        ]
        head = (
            f"group {self.group}: n={self.n}, median {format_number(self.median)} "
            f"({format_number(self.median_ci_lower)}, {format_number(self.median_ci_upper)})"
        )
        table = format_table(
            ["time", "at_risk", "events", "censored", "survival", "se", "ci_lower", "ci_upper"],
            rows,
        )
        return f"{head}\n{table}"


@dataclass(frozen=True, eq=False)
class KaplanMeierResult(StatResult):
    """Kaplan–Meier curves per group, with log(-log) confidence intervals."""

    curves: tuple[KaplanMeierCurve, ...]
    alpha: float
    time_bin: float | None

    @property
    def groups(self) -> dict[str, KaplanMeierCurve]:
        """Curves keyed by group label."""
        return {curve.group: curve for curve in self.curves}

    @property
    def n(self) -> int:
        """Subjects in all groups."""
        return sum(curve.n for curve in self.curves)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "kaplan_meier",
            "alpha": self.alpha,
            "time_bin": self.time_bin,
            "n": self.n,
            "groups": {curve.group: curve.to_dict() for curve in self.curves},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KaplanMeierResult:
        """Read the curves back from :meth:`to_dict` (a federated result's estimates), so
        whoever holds the JSON can draw or print them as the lead computed them."""
        groups = data.get("groups") if isinstance(data, Mapping) else None
        if not isinstance(groups, Mapping) or not groups:
            raise StatisticsError("a Kaplan-Meier result needs 'groups' with at least one curve")
        curves = []
        for name, raw in groups.items():
            if not isinstance(raw, Mapping):
                raise StatisticsError(f"groups.{name}: expected an object")
            curves.append(KaplanMeierCurve.from_dict({**raw, "group": str(name)}))
        return cls(
            curves=tuple(curves),
            alpha=from_jsonable(float, data.get("alpha", 0.05), "alpha"),
            time_bin=from_jsonable(float | None, data.get("time_bin"), "time_bin"),
        )

    def summary(self) -> str:
        rows = [
            [c.group, c.n, int(c.events.sum()), c.median, c.median_ci_lower, c.median_ci_upper]
            for c in self.curves
        ]
        level = f"{100 * (1 - self.alpha):g}%"
        return "Kaplan–Meier estimate\n" + format_table(
            ["group", "n", "events", "median", f"{level} CI lower", f"{level} CI upper"], rows
        )


def _curve(
    group: str, times: FloatArray, events: IntArray, censored: IntArray, alpha: float
) -> KaplanMeierCurve:
    observed = (events + censored) > 0
    times, events, censored = times[observed], events[observed], censored[observed]
    if times.size == 0 or times[0] > 0:
        times = np.concatenate([[0.0], times])
        events = np.concatenate([[0], events]).astype(np.int64)
        censored = np.concatenate([[0], censored]).astype(np.int64)
    at_risk = at_risk_counts(events, censored)
    n_at_risk = at_risk.astype(np.float64)
    died = events.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Same arithmetic as lifelines, so that S(t) == 0.5 ties resolve the same way.
        log_survival = np.cumsum(np.log(n_at_risk - died) - np.log(n_at_risk))
        survival = np.exp(log_survival)
        greenwood_terms = died / (n_at_risk * (n_at_risk - died))
        greenwood = np.cumsum(np.where(np.isinf(greenwood_terms), 0.0, greenwood_terms))
        z = float(scipy_stats.norm.ppf(1 - alpha / 2))
        log_s = np.log(survival)
        spread = z * np.sqrt(greenwood) / log_s
        lower = np.exp(-np.exp(np.log(-log_s) - spread))
        upper = np.exp(-np.exp(np.log(-log_s) + spread))
    lower = np.where(np.isnan(lower), 1.0, lower)
    upper = np.where(np.isnan(upper), 1.0, upper)
    return KaplanMeierCurve(
        group=group,
        time=times,
        at_risk=at_risk,
        events=events,
        censored=censored,
        survival=survival,
        se=survival * np.sqrt(greenwood),
        ci_lower=lower,
        ci_upper=upper,
        median=_first_time_at_or_below(times, survival, 0.5),
        median_ci_lower=_first_time_at_or_below(times, lower, 0.5),
        median_ci_upper=_first_time_at_or_below(times, upper, 0.5),
    )


def kaplan_meier_from_counts(
    counts: SurvivalCounts | Sequence[SurvivalCounts], *, alpha: float = 0.05
) -> KaplanMeierResult:
    """Kaplan–Meier curves from one node's counts or from several nodes' (added first).

    >>> part = survival_counts([2, 4, 4, 7], [1, 1, 0, 1])
    >>> kaplan_meier_from_counts([part]).groups["all"].survival.round(4).tolist()
    [1.0, 0.75, 0.5, 0.0]
    """
    if not 0 < alpha < 1:
        raise StatisticsError(f"alpha: {alpha} must be between 0 and 1")
    combined = _as_counts(counts)
    if combined.n == 0:
        raise StatisticsError("Kaplan–Meier: no subjects")
    curves = tuple(
        _curve(label, combined.times, combined.events[g], combined.censored[g], alpha)
        for g, label in enumerate(combined.groups)
        if combined.n_at_start[g] > 0
    )
    return KaplanMeierResult(curves, alpha, combined.time_bin)


def kaplan_meier(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    group: npt.ArrayLike | None = None,
    *,
    time_bin: float | None = 1.0,
    alpha: float = 0.05,
) -> KaplanMeierResult:
    """Kaplan–Meier curves of local records (one node's counts, then the combine step).

    >>> result = kaplan_meier([5, 6, 6, 2, 4, 4], [0, 1, 1, 1, 1, 0], ["x"] * 6)
    >>> result.groups["x"].survival.round(4).tolist(), result.groups["x"].median
    ([1.0, 0.8333, 0.6667, 0.6667, 0.0], 6.0)
    """
    return kaplan_meier_from_counts(
        survival_counts(time, event, group, time_bin=time_bin), alpha=alpha
    )
