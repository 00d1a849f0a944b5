"""What an analysis gives back: :class:`AnalysisResult`, typed end to end.

The coordinator returns an :class:`AnalysisResult`: who took part and with how many rows,
who refused and why, rounds and bytes, and the kind's typed estimates (``DescribeResult``,
``KaplanMeierEstimates``, ``CoxEstimates`` …). It becomes JSON in one place, at the wire
(:meth:`AnalysisResult.to_dict`: the API's response, ``consortia analyze --json``, the
stored audit record), and is read back from that JSON by :meth:`AnalysisResult.from_dict`,
which hands the estimates to their kind's ``result_type``. :meth:`AnalysisResult.summary`
is how a person reads it.

The JSON::

    {"kind": "kaplan_meier", "exact": true, "complete": true,
     "nodes": [{"name": "sgh", "n": 120, "excluded": "<5"}, ...],
     "missing_nodes": [], "refusals": [],
     "rounds": 1, "bytes": 10412, "seconds": 0.02, "protocol": 1, "session": "…",
     "request": {...}, "estimates": {...}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consortia.exceptions import StatisticsError
from consortia.federation.kinds import Estimates, get_kind
from consortia.stats.counts import Count, pool_counts, read_count
from consortia.stats.results import from_jsonable

__all__ = ["AnalysisResult", "NodeCount", "Refusal"]


@dataclass(frozen=True, slots=True)
class NodeCount:
    """A node whose aggregates the estimates include, its rows, and the rows it left out
    for a missing value in the request's variables (``"<5"`` when it released that count
    as suppressed; ``None`` when it did not say)."""

    name: str
    n: int
    excluded: Count | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "n"}`` and ``"excluded"`` when the node said."""
        data: dict[str, Any] = {"name": self.name, "n": self.n}
        if self.excluded is not None:
            data["excluded"] = self.excluded
        return data


@dataclass(frozen=True, slots=True)
class Refusal:
    """A node that refused, the rule it named, and its message (never a row's value)."""

    node: str
    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """``{"node", "rule", "message"}``."""
        return {"node": self.node, "rule": self.rule, "message": self.message}


@dataclass(frozen=True, eq=False)
class AnalysisResult:
    """One analysis run: its participants and costs, and the kind's typed estimates.

    ``complete`` is false when a node was missing or refused under ``allow_partial``; the
    estimates are then exactly those of ``nodes``.
    """

    kind: str
    exact: bool
    complete: bool
    nodes: tuple[NodeCount, ...]
    missing_nodes: tuple[str, ...]
    refusals: tuple[Refusal, ...]
    rounds: int
    bytes: int
    seconds: float
    protocol: int
    session: str
    request: Mapping[str, Any]
    estimates: Estimates

    @property
    def excluded(self) -> Count | None:
        """Rows left out for missing values at all nodes (a range when a node released its
        count as suppressed); ``None`` when no node said."""
        counts = [node.excluded for node in self.nodes if node.excluded is not None]
        return pool_counts(counts) if counts else None

    @property
    def n_by_node(self) -> dict[str, int]:
        """Rows per node taking part."""
        return {node.name: node.n for node in self.nodes}

    def record(self) -> dict[str, Any]:
        """Everything but the estimates, as JSON: what the lead's audit trail keeps."""
        return {
            "kind": self.kind,
            "exact": self.exact,
            "complete": self.complete,
            "nodes": [node.to_dict() for node in self.nodes],
            "missing_nodes": list(self.missing_nodes),
            "refusals": [refusal.to_dict() for refusal in self.refusals],
            "rounds": self.rounds,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "protocol": self.protocol,
            "session": self.session,
            "request": dict(self.request),
        }

    def to_dict(self) -> dict[str, Any]:
        """The result's wire form (JSON values only)."""
        return {**self.record(), "estimates": self.estimates.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisResult:
        """Read a result back from :meth:`to_dict` (a stored or received result); a field
        missing or of the wrong type is a :class:`~consortia.exceptions.StatisticsError`
        naming it, an unknown kind an ``InvalidRequest``."""
        if not isinstance(data, Mapping):
            raise StatisticsError("an analysis result must be a JSON object")
        kind = get_kind(data.get("kind"))
        try:
            nodes = tuple(
                NodeCount(
                    from_jsonable(str, node["name"], f"nodes[{i}].name"),
                    from_jsonable(int, node["n"], f"nodes[{i}].n"),
                    None
                    if node.get("excluded") is None
                    else read_count(node["excluded"], f"nodes[{i}].excluded"),
                )
                for i, node in enumerate(_list(data, "nodes"))
            )
            refusals = tuple(
                Refusal(
                    *(
                        from_jsonable(str, refusal[key], f"refusals[{i}].{key}")
                        for key in ("node", "rule", "message")
                    )
                )
                for i, refusal in enumerate(_list(data, "refusals"))
            )
        except (KeyError, TypeError) as exc:
            raise StatisticsError(f"an analysis result's nodes or refusals: {exc}") from None
        request = data.get("request")
        estimates = data.get("estimates")
        if not isinstance(request, Mapping) or not isinstance(estimates, Mapping):
            raise StatisticsError("an analysis result needs 'request' and 'estimates' objects")
        return cls(
            kind=kind.name,
            exact=from_jsonable(bool, data.get("exact"), "exact"),
            complete=from_jsonable(bool, data.get("complete"), "complete"),
            nodes=nodes,
            missing_nodes=from_jsonable(
                tuple[str, ...], data.get("missing_nodes"), "missing_nodes"
            ),
            refusals=refusals,
            rounds=from_jsonable(int, data.get("rounds"), "rounds"),
            bytes=from_jsonable(int, data.get("bytes"), "bytes"),
            seconds=from_jsonable(float, data.get("seconds"), "seconds"),
            protocol=from_jsonable(int, data.get("protocol"), "protocol"),
            session=from_jsonable(str, data.get("session"), "session"),
            request=dict(request),
            estimates=kind.result_type.from_dict(estimates),
        )

    def summary(self) -> str:
        """The result as a person reads it: who took part, then the estimates' tables."""
        lines = [
            f"{self.kind}: {'exact (equals pooling)' if self.exact else 'not exact'}"
            f"{'' if self.complete else ' - INCOMPLETE'}",
            "nodes: " + ", ".join(_node_line(node) for node in self.nodes),
            f"rounds: {self.rounds}, bytes exchanged: {self.bytes}",
        ]
        if self.missing_nodes:
            lines.append(f"missing nodes: {', '.join(self.missing_nodes)}")
        lines += [
            f"refused by {refusal.node}: {refusal.rule}: {refusal.message}"
            for refusal in self.refusals
        ]
        return "\n".join([*lines, "", self.estimates.summary()])

    def __str__(self) -> str:
        return self.summary()


def _node_line(node: NodeCount) -> str:
    if node.excluded is None or node.excluded == 0:
        return f"{node.name} (n={node.n})"
    return f"{node.name} (n={node.n}, excluded for missing values: {node.excluded})"


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise StatisticsError(f"{key}: expected a list")
    return value
