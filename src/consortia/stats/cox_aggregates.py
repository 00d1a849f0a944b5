"""Aggregates that cross the network in a federated Cox fit, and the arithmetic on them.

Per Newton round a node answers with either

* :class:`CoxStratumAggregates` — its own partial log-likelihood, gradient and Hessian
  (the node is its own stratum; the lead adds them), or
* :class:`CoxTimeSums` — per distinct time, sums over the subjects whose time equals it of
  ``exp(xb)``, ``x exp(xb)``, ``x x' exp(xb)``, and for Efron ties the same sums over the tied
  events. The lead adds them by time (:func:`combine_cox_time_sums`), forms the risk sets by
  reverse cumulative sums and computes the Breslow or Efron partial likelihood
  (:func:`partial_likelihood`), exactly as on the pooled records.

To keep ``exp(xb)`` finite each node scales its sums by ``exp(-shift)``, ``shift`` being the
mean of its ``xb`` (an aggregate: its largest ``xb`` would be one subject's value); the lead
rescales all nodes to a common shift, which changes nothing else.

On the wire (:meth:`CoxTimeSums.to_dict`) the sums are packed without losing a bit: the
symmetric ``x x'`` sums carry only their upper triangle (p(p+1)/2 numbers, not p²), and the
Efron tied sums only at the event times where they differ from the sums over everyone at
that time (where every subject at a time had the event they are the same numbers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats.results import to_jsonable

__all__ = [
    "CoxAggregates",
    "CoxStratumAggregates",
    "CoxStratumRecords",
    "CoxTimeSums",
    "Ties",
    "check_ties",
    "combine_cox_time_sums",
    "partial_likelihood",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Ties = Literal["efron", "breslow"]


def check_ties(ties: str) -> Ties:
    if ties == "efron":
        return "efron"
    if ties == "breslow":
        return "breslow"
    raise StatisticsError(f"ties: {ties!r} must be 'efron' or 'breslow'")


def _array(data: Any, shape: tuple[int, ...]) -> FloatArray:
    try:
        return np.asarray(data, dtype=np.float64).reshape(shape)
    except (TypeError, ValueError):
        raise StatisticsError(f"Cox aggregates: expected numbers of shape {shape}") from None


def _wire(value: Any, arrays: bool) -> Any:
    """An array as it crosses the network: kept as numpy (packed by the federation layer)
    or turned into JSON lists."""
    if arrays and isinstance(value, np.ndarray):
        return value
    return to_jsonable(value)


def _pack(full: FloatArray) -> FloatArray:
    """The upper triangles of a stack of symmetric p × p matrices: shape (t, p(p+1)/2)."""
    upper, lower = np.triu_indices(full.shape[-1])
    return np.ascontiguousarray(full[:, upper, lower])


def _unpack(packed: FloatArray, p: int) -> FloatArray:
    """Undo :func:`_pack`: shape (t, p, p), symmetric."""
    upper, lower = np.triu_indices(p)
    full = np.empty((packed.shape[0], p, p))
    full[:, upper, lower] = packed
    full[:, lower, upper] = packed
    return full


@dataclass(frozen=True, eq=False)
class CoxStratumAggregates:
    """One node's own partial likelihood at ``beta`` (the node is its own stratum)."""

    ties: Ties
    loglik: float
    gradient: FloatArray
    hessian: FloatArray
    n: int
    n_events: int

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        """JSON-ready form for crossing the network (numpy arrays kept with ``arrays``)."""
        return {
            "kind": "cox_stratum",
            "ties": self.ties,
            "loglik": self.loglik,
            "gradient": _wire(self.gradient, arrays),
            "hessian": _wire(self.hessian, arrays),
            "n": self.n,
            "n_events": self.n_events,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CoxStratumAggregates:
        """Rebuild from :meth:`to_dict` output."""
        gradient = np.asarray(data["gradient"], dtype=np.float64).reshape(-1)
        p = gradient.size
        return cls(
            check_ties(data["ties"]),
            float(data["loglik"]),
            gradient,
            _array(data["hessian"], (p, p)),
            int(data["n"]),
            int(data["n_events"]),
        )


@dataclass(frozen=True, eq=False)
class CoxTimeSums:
    """Per-distinct-time sums of one node (or several, once combined), all × exp(−shift).

    ``risk0[j]``, ``risk1[j]``, ``risk2[j]``: Σ exp(xb), Σ x exp(xb), Σ x x' exp(xb) over
    subjects whose time is ``times[j]`` (events or censored); ``events[j]``: how many of them
    had the event; ``tied0/1/2``: the same sums over those events only (Efron ties; ``None``
    for Breslow). ``event_x`` is Σ x over all events.
    """

    ties: Ties
    times: FloatArray
    shift: float
    risk0: FloatArray
    risk1: FloatArray
    risk2: FloatArray
    events: IntArray
    event_x: FloatArray
    tied0: FloatArray | None
    tied1: FloatArray | None
    tied2: FloatArray | None
    n: int

    @property
    def n_events(self) -> int:
        """Events in all times."""
        return int(self.events.sum())

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        """Packed form for crossing the network: JSON lists, or numpy arrays with ``arrays``.

        ``risk2``/``tied2`` hold upper triangles; ``tied_rows`` lists the rows whose tied
        sums are sent, every other event row's tied sums being its ``risk`` sums.
        """
        data: dict[str, Any] = {
            "kind": "cox_time_sums",
            "layout": "packed",
            "ties": self.ties,
            "times": self.times,
            "shift": self.shift,
            "risk0": self.risk0,
            "risk1": self.risk1,
            "risk2": _pack(self.risk2),
            "events": np.asarray(self.events, dtype=np.int64),
            "event_x": self.event_x,
            "tied_rows": None,
            "tied0": None,
            "tied1": None,
            "tied2": None,
            "n": self.n,
            "n_events": self.n_events,
        }
        if self.tied0 is not None and self.tied1 is not None and self.tied2 is not None:
            rows = np.flatnonzero(self.events > 0)
            differs = (
                (self.tied0[rows] != self.risk0[rows])
                | (self.tied1[rows] != self.risk1[rows]).any(axis=1)
                | (self.tied2[rows] != self.risk2[rows]).any(axis=(1, 2))
            )
            sent = rows[differs]
            data.update(
                tied_rows=sent.astype(np.int64),
                tied0=self.tied0[sent],
                tied1=self.tied1[sent],
                tied2=_pack(self.tied2[sent]),
            )
        return {key: _wire(value, arrays) for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CoxTimeSums:
        """Rebuild from :meth:`to_dict` output (or the unpacked layout), checking shapes."""
        event_x = _array(data["event_x"], (-1,))
        times = _array(data["times"], (-1,))
        t, p = times.size, event_x.size
        ties = check_ties(data["ties"])
        try:
            events = np.asarray(data["events"], dtype=np.int64).reshape(t)
        except (TypeError, ValueError):
            raise StatisticsError(f"Cox aggregates: expected {t} event counts") from None
        if data.get("layout") != "packed":
            efron = data.get("tied0") is not None
            return cls(
                ties=ties,
                times=times,
                shift=float(data["shift"]),
                risk0=_array(data["risk0"], (t,)),
                risk1=_array(data["risk1"], (t, p)),
                risk2=_array(data["risk2"], (t, p, p)),
                events=events,
                event_x=event_x,
                tied0=_array(data["tied0"], (t,)) if efron else None,
                tied1=_array(data["tied1"], (t, p)) if efron else None,
                tied2=_array(data["tied2"], (t, p, p)) if efron else None,
                n=int(data["n"]),
            )
        m = p * (p + 1) // 2
        risk0 = _array(data["risk0"], (t,))
        risk1 = _array(data["risk1"], (t, p))
        risk2 = _unpack(_array(data["risk2"], (t, m)), p)
        tied: tuple[FloatArray | None, FloatArray | None, FloatArray | None] = (None, None, None)
        if ties == "efron":
            if data.get("tied_rows") is None:
                raise StatisticsError("Efron ties need the sums over tied events")
            try:
                sent = np.asarray(data["tied_rows"], dtype=np.int64).reshape(-1)
            except (TypeError, ValueError):
                raise StatisticsError("Cox aggregates: tied_rows must be row numbers") from None
            if sent.size and (sent.min() < 0 or sent.max() >= t):
                raise StatisticsError("Cox aggregates: tied_rows outside the times sent")
            k = sent.size
            rows = np.flatnonzero(events > 0)
            tied0, tied1, tied2 = np.zeros(t), np.zeros((t, p)), np.zeros((t, p, p))
            tied0[rows], tied1[rows], tied2[rows] = risk0[rows], risk1[rows], risk2[rows]
            tied0[sent] = _array(data["tied0"], (k,))
            tied1[sent] = _array(data["tied1"], (k, p))
            tied2[sent] = _unpack(_array(data["tied2"], (k, m)), p)
            tied = (tied0, tied1, tied2)
        return cls(
            ties=ties,
            times=times,
            shift=float(data["shift"]),
            risk0=risk0,
            risk1=risk1,
            risk2=risk2,
            events=events,
            event_x=event_x,
            tied0=tied[0],
            tied1=tied[1],
            tied2=tied[2],
            n=int(data["n"]),
        )


CoxAggregates = CoxStratumAggregates | CoxTimeSums


def _segment_starts(index: IntArray) -> IntArray:
    """Where each run of equal values starts in a sorted ``index``."""
    if not index.size:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, index[1:] != index[:-1]])


def partial_likelihood(sums: CoxTimeSums, beta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
    """Partial log-likelihood, gradient and Hessian at ``beta`` from (combined) per-time sums.

    The same function serves a node computing its own stratum and the lead computing the
    pooled model, so both give the same numbers. Vectorised over times and events: the
    second moments are weighted per event time (Σ over its events of 1/φ and of l/d · 1/φ),
    so the work is O(times × p²) plus O(events × p).
    """
    p = beta.size
    if sums.n_events == 0:
        return 0.0, np.zeros(p), np.zeros((p, p))
    # Risk set at t = everyone whose time is ≥ t: reverse cumulative sums over times.
    at_risk0 = np.cumsum(sums.risk0[::-1])[::-1]
    at_risk1 = np.cumsum(sums.risk1[::-1], axis=0)[::-1]
    at_risk2 = np.cumsum(sums.risk2[::-1], axis=0)[::-1]
    rows = np.flatnonzero(sums.events > 0)
    tied = sums.events[rows]
    risk2_rows = at_risk2[rows].reshape(rows.size, p * p)
    if sums.ties == "efron":
        if sums.tied0 is None or sums.tied1 is None or sums.tied2 is None:
            raise StatisticsError("Efron ties need the sums over tied events")
        # One term per event: the l-th of d tied events removes l/d of the tied sums.
        rep = np.repeat(np.arange(rows.size), tied)
        first = np.repeat(np.cumsum(tied) - tied, tied)
        fraction = (np.arange(rep.size) - first) / np.repeat(tied, tied)
        weight = np.ones(rep.size)
        phi = at_risk0[rows][rep] - fraction * sums.tied0[rows][rep]
        first_moment = at_risk1[rows][rep] - fraction[:, None] * sums.tied1[rows][rep]
        inverse = 1.0 / phi
        per_row = np.bincount(rep, weights=inverse, minlength=rows.size)
        per_row_tied = np.bincount(rep, weights=fraction * inverse, minlength=rows.size)
        second = per_row @ risk2_rows - per_row_tied @ sums.tied2[rows].reshape(rows.size, p * p)
    else:
        weight = tied.astype(np.float64)
        phi = at_risk0[rows]
        first_moment = at_risk1[rows]
        second = (weight / phi) @ risk2_rows
    with np.errstate(divide="ignore"):
        log_phi = np.log(phi)
    loglik = float(beta @ sums.event_x - weight @ (log_phi + sums.shift))
    mean = first_moment / phi[:, None]
    gradient = sums.event_x - weight @ mean
    hessian = (mean * weight[:, None]).T @ mean - second.reshape(p, p)
    return loglik, gradient, hessian


def combine_cox_time_sums(parts: Sequence[CoxTimeSums]) -> CoxTimeSums:
    """Add several nodes' per-time sums by time, on a common scale (lead side).

    >>> records = CoxStratumRecords(np.array([2.0, 3.0, 3.0]), np.array([True, True, False]),
    ...                             np.array([[0.5], [1.0], [0.0]]))
    >>> sums = records.time_sums(np.zeros(1), "breslow")
    >>> both = combine_cox_time_sums([sums, sums])
    >>> both.times.tolist(), both.events.tolist(), both.risk0.tolist()
    ([2.0, 3.0], [2, 2], [2.0, 4.0])
    """
    if not parts:
        raise StatisticsError("Cox: no time sums to combine")
    ties = {part.ties for part in parts}
    if len(ties) > 1:
        raise StatisticsError(f"Cox: nodes used different ties methods {sorted(ties)}")
    sizes = {part.event_x.size for part in parts}
    if len(sizes) > 1:
        raise StatisticsError(f"Cox: nodes sent different numbers of covariates {sorted(sizes)}")
    p = sizes.pop()
    shift = max(part.shift for part in parts)
    times = np.unique(np.concatenate([part.times for part in parts]))
    t = times.size
    efron = parts[0].ties == "efron"
    risk0, risk1, risk2 = np.zeros(t), np.zeros((t, p)), np.zeros((t, p, p))
    tied0, tied1, tied2 = np.zeros(t), np.zeros((t, p)), np.zeros((t, p, p))
    events = np.zeros(t, dtype=np.int64)
    for part in parts:
        at = np.searchsorted(times, part.times)
        scale = math.exp(part.shift - shift)
        risk0[at] += scale * part.risk0
        risk1[at] += scale * part.risk1
        risk2[at] += scale * part.risk2
        events[at] += part.events
        if efron:
            if part.tied0 is None or part.tied1 is None or part.tied2 is None:
                raise StatisticsError("Cox: Efron ties need the sums over tied events")
            tied0[at] += scale * part.tied0
            tied1[at] += scale * part.tied1
            tied2[at] += scale * part.tied2
    return CoxTimeSums(
        ties=parts[0].ties,
        times=times,
        shift=shift,
        risk0=risk0,
        risk1=risk1,
        risk2=risk2,
        events=events,
        event_x=np.sum([part.event_x for part in parts], axis=0),
        tied0=tied0 if efron else None,
        tied1=tied1 if efron else None,
        tied2=tied2 if efron else None,
        n=sum(part.n for part in parts),
    )


class CoxStratumRecords:
    """One stratum's records sorted by time, with what every round reuses (node side).

    >>> records = CoxStratumRecords(np.array([2.0, 3.0, 3.0]), np.array([True, True, False]),
    ...                             np.array([[0.5], [1.0], [0.0]]))
    >>> sums = records.time_sums(np.zeros(1), "efron")
    >>> sums.times.tolist(), sums.events.tolist(), sums.risk0.tolist()
    ([2.0, 3.0], [1, 1], [1.0, 2.0])
    """

    def __init__(self, time: FloatArray, event: npt.NDArray[np.bool_], x: FloatArray) -> None:
        order = np.argsort(time, kind="stable")
        self.x = x[order]
        self.event = event[order]
        self.times, index = np.unique(time[order], return_inverse=True)
        self.index = np.asarray(index, dtype=np.int64).reshape(-1)
        self.events = np.bincount(self.index[self.event], minlength=self.times.size)
        self.event_x = self.x[self.event].sum(axis=0)
        n, p = self.x.shape
        # Every round weighs the same terms 1, x and the upper triangle of x x' by exp(xb)
        # and sums them by time: keep the terms, and where each time's rows start.
        upper, lower = np.triu_indices(p)
        self._terms = np.concatenate(
            [np.ones((n, 1)), self.x, self.x[:, upper] * self.x[:, lower]], axis=1
        )
        self._starts = _segment_starts(self.index)
        event_index = self.index[self.event]
        self._event_starts = _segment_starts(event_index)
        self._event_rows = event_index[self._event_starts]

    def _by_time(self, weighted: FloatArray, starts: IntArray, rows: IntArray) -> FloatArray:
        out = np.zeros((self.times.size, weighted.shape[1]))
        if weighted.shape[0]:
            out[rows] = np.add.reduceat(weighted, starts, axis=0)
        return out

    def time_sums(self, beta: FloatArray, ties: Ties) -> CoxTimeSums:
        """Per-time sums of this stratum at ``beta``, scaled by exp(−max xb)."""
        p = self.x.shape[1]
        linear = self.x @ beta
        shift = float(linear.mean()) if linear.size else 0.0
        with np.errstate(over="ignore"):
            weight = np.exp(linear - shift)
        if not np.isfinite(weight).all():
            raise StatisticsError("Cox: the coefficients give weights too large to sum")
        weighted = self._terms * weight[:, None]
        every = self._by_time(weighted, self._starts, self.index[self._starts])
        tied: tuple[FloatArray | None, ...] = (None, None, None)
        if ties == "efron":
            events = self._by_time(weighted[self.event], self._event_starts, self._event_rows)
            tied = (events[:, 0], events[:, 1 : p + 1], _unpack(events[:, p + 1 :], p))
        return CoxTimeSums(
            ties=ties,
            times=self.times,
            shift=shift,
            risk0=every[:, 0],
            risk1=every[:, 1 : p + 1],
            risk2=_unpack(every[:, p + 1 :], p),
            events=np.asarray(self.events, dtype=np.int64),
            event_x=self.event_x,
            tied0=tied[0],
            tied1=tied[1],
            tied2=tied[2],
            n=int(self.index.size),
        )
