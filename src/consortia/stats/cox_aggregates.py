"""Aggregates that cross the network in a federated Cox fit, and the arithmetic on them.

Per Newton round a node answers with either

* :class:`CoxStratumAggregates` — its own partial log-likelihood, gradient and Hessian
  (the node is its own stratum; the lead adds them), or
* :class:`CoxTimeSums` — per distinct time, sums over the subjects whose time equals it of
  ``exp(xb)``, ``x exp(xb)``, ``x x' exp(xb)``, and for Efron ties the same sums over the tied
  events. The lead adds them by time (:func:`combine_cox_time_sums`), forms the risk sets by
  reverse cumulative sums and computes the Breslow or Efron partial likelihood
  (:func:`partial_likelihood`), exactly as on the pooled records.

To keep ``exp(xb)`` finite each node scales its sums by ``exp(-shift)``, ``shift`` being its
largest ``xb``; the lead rescales all nodes to a common shift, which changes nothing else.
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
    return np.asarray(data, dtype=np.float64).reshape(shape)


@dataclass(frozen=True, eq=False)
class CoxStratumAggregates:
    """One node's own partial likelihood at ``beta`` (the node is its own stratum)."""

    ties: Ties
    loglik: float
    gradient: FloatArray
    hessian: FloatArray
    n: int
    n_events: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for crossing the network."""
        return {
            "kind": "cox_stratum",
            "ties": self.ties,
            "loglik": self.loglik,
            "gradient": to_jsonable(self.gradient),
            "hessian": to_jsonable(self.hessian),
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for crossing the network."""
        return {
            "kind": "cox_time_sums",
            "ties": self.ties,
            "times": to_jsonable(self.times),
            "shift": self.shift,
            "risk0": to_jsonable(self.risk0),
            "risk1": to_jsonable(self.risk1),
            "risk2": to_jsonable(self.risk2),
            "events": to_jsonable(self.events),
            "event_x": to_jsonable(self.event_x),
            "tied0": to_jsonable(self.tied0),
            "tied1": to_jsonable(self.tied1),
            "tied2": to_jsonable(self.tied2),
            "n": self.n,
            "n_events": self.n_events,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CoxTimeSums:
        """Rebuild from :meth:`to_dict` output, checking shapes."""
        event_x = np.asarray(data["event_x"], dtype=np.float64).reshape(-1)
        times = np.asarray(data["times"], dtype=np.float64).reshape(-1)
        t, p = times.size, event_x.size
        efron = data.get("tied0") is not None
        return cls(
            ties=check_ties(data["ties"]),
            times=times,
            shift=float(data["shift"]),
            risk0=_array(data["risk0"], (t,)),
            risk1=_array(data["risk1"], (t, p)),
            risk2=_array(data["risk2"], (t, p, p)),
            events=np.asarray(data["events"], dtype=np.int64).reshape(t),
            event_x=event_x,
            tied0=_array(data["tied0"], (t,)) if efron else None,
            tied1=_array(data["tied1"], (t, p)) if efron else None,
            tied2=_array(data["tied2"], (t, p, p)) if efron else None,
            n=int(data["n"]),
        )


CoxAggregates = CoxStratumAggregates | CoxTimeSums


def _sums_by_time(values: FloatArray, index: IntArray, size: int) -> FloatArray:
    """Sum rows of ``values`` sharing a (sorted, non-decreasing) time ``index``."""
    out = np.zeros((size, *values.shape[1:]))
    if index.size:
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        out[index[starts]] = np.add.reduceat(values, starts, axis=0)
    return out


def partial_likelihood(sums: CoxTimeSums, beta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
    """Partial log-likelihood, gradient and Hessian at ``beta`` from (combined) per-time sums.

    The same function serves a node computing its own stratum and the lead computing the
    pooled model, so both give the same numbers.
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
    if sums.ties == "efron":
        if sums.tied0 is None or sums.tied1 is None or sums.tied2 is None:
            raise StatisticsError("Efron ties need the sums over tied events")
        # One term per event: the l-th of d tied events removes l/d of the tied sums.
        rep = np.repeat(rows, tied)
        first = np.repeat(np.cumsum(tied) - tied, tied)
        fraction = (np.arange(rep.size) - first) / np.repeat(tied, tied)
        weight = np.ones(rep.size)
        phi = at_risk0[rep] - fraction * sums.tied0[rep]
        first_moment = at_risk1[rep] - fraction[:, None] * sums.tied1[rep]
        second_moment = at_risk2[rep] - fraction[:, None, None] * sums.tied2[rep]
    else:
        weight = tied.astype(np.float64)
        phi = at_risk0[rows]
        first_moment = at_risk1[rows]
        second_moment = at_risk2[rows]
    with np.errstate(divide="ignore"):
        log_phi = np.log(phi)
    loglik = float(beta @ sums.event_x - weight @ (log_phi + sums.shift))
    mean = first_moment / phi[:, None]
    gradient = sums.event_x - weight @ mean
    hessian = -(
        np.einsum("k,kij->ij", weight / phi, second_moment)
        - np.einsum("k,ki,kj->ij", weight, mean, mean)
    )
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
        self.outer = np.einsum("ni,nj->nij", self.x, self.x)
        self.events = np.bincount(self.index[self.event], minlength=self.times.size)
        self.event_x = self.x[self.event].sum(axis=0)

    def time_sums(self, beta: FloatArray, ties: Ties) -> CoxTimeSums:
        """Per-time sums of this stratum at ``beta``, scaled by exp(−max xb)."""
        t = self.times.size
        linear = self.x @ beta
        shift = float(linear.max()) if linear.size else 0.0
        weight = np.exp(linear - shift)
        wx = self.x * weight[:, None]
        wxx = self.outer * weight[:, None, None]
        tied: tuple[FloatArray | None, ...] = (None, None, None)
        if ties == "efron":
            at, ev = self.index[self.event], self.event
            tied = (
                _sums_by_time(weight[ev], at, t),
                _sums_by_time(wx[ev], at, t),
                _sums_by_time(wxx[ev], at, t),
            )
        return CoxTimeSums(
            ties=ties,
            times=self.times,
            shift=shift,
            risk0=_sums_by_time(weight, self.index, t),
            risk1=_sums_by_time(wx, self.index, t),
            risk2=_sums_by_time(wxx, self.index, t),
            events=np.asarray(self.events, dtype=np.int64),
            event_x=self.event_x,
            tied0=tied[0],
            tied1=tied[1],
            tied2=tied[2],
            n=int(self.index.size),
        )
