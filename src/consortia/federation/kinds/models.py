"""Regression kinds: ``glm`` and ``cox`` by Newton/IRLS rounds, ``meta`` of local fits.

::

    {"kind": "glm", "family": "binomial", "table": "t", "outcome": "response",
     "covariates": ["age", "arm"]}
    {"kind": "cox", "table": "rossi", "time": "week", "event": "arrest",
     "covariates": ["fin", "age", "prio"], "ties": "efron", "strata": ["node"]}
    {"kind": "meta", "table": "t", "term": "arm[T.car_t]",
     "model": {"kind": "cox", "time": "pfs_days", "event": "pfs_event", "covariates": ["arm"]}}

Round 1 agrees the design: each node reports which covariates are text (categorical) and
how many rows have each level; the lead takes the union of levels (the first sorted level
is the reference) so every node dummy-codes alike. Then every Newton round sends ``beta``
and the node answers from its session's rows (kept in memory; a round is arithmetic).

``cox`` with ``strata: ["node"]`` (or any strata) makes each node its own stratum and
releases only its log-likelihood, gradient and Hessian; unstratified, nodes release
per-time sums, so times leave the node only in bins of ``time_bin`` days (default 7).

Disclosure: the model rule (at least ``min_model_rows`` rows and parameters ≤ ratio × n)
applies at every round; level counts, outcome counts (binomial/Poisson sums) and event
counts are subject to the minimum cell count.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from consortia.exceptions import PolicyRefusal, StatisticsError
from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Exchange,
    InvalidRequest,
    complete_rows,
    drive_iterative,
    label_column,
    label_groups,
    numeric_column,
)
from consortia.federation.kinds.model_estimates import CoxEstimates, GlmEstimates, MetaEstimates
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.protocol import canonical_json, sha256_hex
from consortia.federation.tables import ColumnType, Table
from consortia.stats._arrays import bin_times, sort_labels
from consortia.stats.cox import CoxNodeData, CoxResult, fit_cox, fit_cox_federated
from consortia.stats.cox_aggregates import CoxAggregates, CoxStratumAggregates, CoxTimeSums
from consortia.stats.design import design_matrix, union_levels
from consortia.stats.glm import GlmResult, fit_glm, fit_glm_federated
from consortia.stats.glm_node import GlmAggregates, GlmNodeData
from consortia.stats.meta import MetaInput, combine_meta

__all__ = ["CoxKind", "CoxRequest", "GlmKind", "GlmRequest", "MetaKind", "MetaRequest"]

FloatArray = npt.NDArray[np.float64]
DEFAULT_TIME_BIN = 7.0
Levels = dict[str, list[str]]


class GlmRequest(AnalysisRequest):
    """A generalised linear model with the family's canonical link."""

    kind: Literal["glm"]
    outcome: str
    covariates: list[str] = Field(default_factory=list)
    family: Literal["gaussian", "binomial", "poisson"] = "gaussian"
    categorical: list[str] = Field(default_factory=list)
    trials: str | None = None
    offset: str | None = None
    intercept: bool = True
    alpha: float = Field(0.05, gt=0, lt=1)


class CoxRequest(AnalysisRequest):
    """A Cox proportional-hazards model; ``strata`` may name ``"node"`` and local columns."""

    kind: Literal["cox"]
    time: str
    event: str
    covariates: list[str] = Field(min_length=1)
    categorical: list[str] = Field(default_factory=list)
    ties: Literal["efron", "breslow"] = "efron"
    strata: list[str] = Field(default_factory=list)
    time_bin: float | None = Field(None, gt=0)
    alpha: float = Field(0.05, gt=0, lt=1)

    @property
    def stratified(self) -> bool:
        """Each node (and each local stratum) is its own stratum."""
        return bool(self.strata)

    @property
    def local_strata(self) -> list[str]:
        """Strata columns other than the node itself."""
        return [name for name in self.strata if name != "node"]

    @property
    def effective_time_bin(self) -> float | None:
        """Unstratified fits release times, binned (default 7); stratified ones do not."""
        if self.stratified:
            return self.time_bin
        return self.time_bin if self.time_bin is not None else DEFAULT_TIME_BIN


# --------------------------------------------------------------------------- node side


@dataclass
class ModelRows:
    """One node's complete rows for a model session, and designs built from them.

    ``strata`` are the local strata columns (Cox) and ``events`` the event column, whose
    per-stratum counts the node checks and agrees like the levels' counts.
    """

    table: Table
    rows: npt.NDArray[np.bool_]
    missing: int
    categorical: set[str]
    designs: dict[bytes, Any] = field(default_factory=dict)
    strata: Sequence[str] = ()
    events: str | None = None
    _agreed: dict[str, Any] | None = None
    _groups: dict[str, npt.NDArray[np.bool_]] | None = None

    @property
    def n(self) -> int:
        """Complete rows."""
        return int(self.rows.sum())

    def column(self, name: str) -> Any:
        """A covariate's values: labels when categorical, else floats."""
        if name in self.categorical:
            return label_column(self.table, name, self.rows)
        return numeric_column(self.table, name, self.rows)

    def numeric(self, name: str) -> FloatArray:
        """A numeric column over the complete rows."""
        return numeric_column(self.table, name, self.rows)

    def level_report(self, covariates: Sequence[str]) -> dict[str, Any]:
        """Which covariates are categorical here, with rows per level."""
        report: dict[str, Any] = {}
        for name in covariates:
            if name in self.categorical:
                labels = [label for label in self.column(name) if label is not None]
                counts: dict[str, int] = {}
                for label in labels:
                    counts[label] = counts.get(label, 0) + 1
                report[name] = {"categorical": True, "counts": counts}
            else:
                report[name] = {"categorical": False}
        return report

    def design(self, covariates: Sequence[str], levels: Levels, intercept: bool) -> FloatArray:
        """The design matrix with the agreed levels."""
        columns = {name: self.column(name) for name in covariates}
        return design_matrix(columns, covariates, levels, intercept=intercept).matrix

    def stratum_labels(self) -> npt.NDArray[np.object_] | None:
        """Each complete row's local stratum (``None`` without local strata)."""
        if not self.strata:
            return None
        parts = [label_column(self.table, name, self.rows) for name in self.strata]
        return np.array(
            ["|".join(str(v) for v in values) for values in zip(*parts, strict=True)],
            dtype=object,
        )

    def own_levels(self, covariates: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """This node's levels (with rows) of each categorical covariate, sorted."""
        report = self.level_report(covariates)
        return {
            name: sort_labels(set(entry["counts"]))
            for name, entry in report.items()
            if entry["categorical"]
        }

    def groups(self, covariates: Sequence[str]) -> dict[str, npt.NDArray[np.bool_]]:
        """The table rows behind each level and each stratum, labelled without a value."""
        if self._groups is None:
            groups: dict[str, npt.NDArray[np.bool_]] = {}
            positions = np.flatnonzero(self.rows)
            for name, levels in self.own_levels(covariates).items():
                labels = self.column(name)
                for index, level in enumerate(levels, start=1):
                    mask = np.zeros(self.table.n_rows, dtype=np.bool_)
                    mask[positions[labels == level]] = True
                    groups[f"level {index} of {name}"] = mask
            strata = self.stratum_labels()
            if strata is not None:
                for index, stratum in enumerate(sort_labels(set(strata.tolist())), start=1):
                    mask = np.zeros(self.table.n_rows, dtype=np.bool_)
                    mask[positions[strata == stratum]] = True
                    groups[f"stratum {index}"] = mask
            self._groups = groups
        return self._groups

    def stratum_counts(self) -> list[list[int]]:
        """Rows and events of each local stratum, in stratum order."""
        strata = self.stratum_labels()
        if strata is None:
            return []
        events = self.numeric(self.events) if self.events else np.zeros(self.n)
        return [
            [int((strata == stratum).sum()), int(events[strata == stratum].sum())]
            for stratum in sort_labels(set(strata.tolist()))
        ]

    def agreed_design(self, covariates: Sequence[str]) -> dict[str, Any]:
        """What this node agrees for the session: its rows (count and a digest of their
        keys), rows left out, each categorical covariate's levels with their counts, and
        its strata's rows and events. JSON values only; computed once per session."""
        if self._agreed is None:
            keys = self.table.keys(self.rows)
            report = self.level_report(covariates)
            self._agreed = {
                "dataset": self.table.dataset,
                "rows": self.n,
                "row_keys_sha256": sha256_hex(np.asarray(keys, dtype="<i8").tobytes()),
                "missing": self.missing,
                "categorical": {
                    name: {
                        level: entry["counts"][level] for level in sort_labels(set(entry["counts"]))
                    }
                    for name, entry in report.items()
                    if entry["categorical"]
                },
                "strata": self.stratum_counts(),
            }
        return self._agreed

    def check_levels(self, covariates: Sequence[str], payload: Mapping[str, Any]) -> Levels:
        """The levels a model round carries, refused unless they fit this node's own.

        They must name exactly this node's categorical covariates, each as distinct labels
        in the agreed (sorted) order that include every level this node has rows of; a
        level this node has no rows of (another node's) gives an all-zero column.
        """
        levels = payload.get("levels")
        own = self.own_levels(covariates)
        if not isinstance(levels, Mapping) or set(levels) != set(own):
            named = ", ".join(sorted(own)) or "none"
            raise PolicyRefusal(
                "session_mismatch",
                f"a model round must carry levels for exactly this node's categorical "
                f"covariates ({named})",
            )
        agreed: Levels = {}
        for name in sorted(own):
            values = levels[name]
            if (
                not isinstance(values, list)
                or not all(isinstance(value, str) for value in values)
                or tuple(values) != sort_labels(set(values))
            ):
                raise PolicyRefusal(
                    "session_mismatch",
                    f"{name}: the round's levels must be distinct labels in the agreed order",
                )
            absent = len(set(own[name]) - set(values))
            if absent:
                raise PolicyRefusal(
                    "session_mismatch",
                    f"{name}: {absent} of this node's levels are not among the round's levels",
                )
            agreed[name] = list(values)
        return agreed

    def round_cells(self, covariates: Sequence[str]) -> dict[str, list[int]]:
        """The counts every round re-checks: rows left out, rows per level and per stratum."""
        cells: dict[str, list[int]] = {"rows with missing values": [self.missing]}
        for name, counts in self.agreed_design(covariates)["categorical"].items():
            cells[f"rows per level of {name}"] = list(counts.values())
        strata = self.agreed_design(covariates)["strata"]
        if strata:
            cells["rows per stratum"] = [rows for rows, _ in strata]
            cells["events per stratum"] = [events for _, events in strata]
        return cells


def _model_rows(
    table: Table,
    needed: Sequence[str],
    covariates: Sequence[str],
    categorical: Sequence[str],
    *,
    strata: Sequence[str] = (),
    events: str | None = None,
) -> ModelRows:
    rows, missing = complete_rows(table, needed)
    text = {name for name in covariates if table.types[name] is ColumnType.TEXT}
    return ModelRows(
        table, rows, missing, text | set(categorical), strata=tuple(strata), events=events
    )


def _parameters(report: Mapping[str, Any], intercept: bool) -> int:
    """Parameters implied by one node's own levels (a lower bound of the agreed design)."""
    count = int(intercept)
    for entry in report.values():
        count += max(len(entry["counts"]) - 1, 0) if entry["categorical"] else 1
    return count


def _levels_release(model: ModelRows, covariates: Sequence[str], intercept: bool) -> Release:
    report = model.level_report(covariates)
    return Release(
        {"step": "levels", "levels": report, "n": model.n},
        model.n,
        cells=model.round_cells(covariates),
        parameters=_parameters(report, intercept),
        rows=model.rows,
        groups=model.groups(covariates),
    )


class _ModelKind:
    """The session agreement both model kinds share (mixed into their AnalysisKind)."""

    def design(self, state: Any, request: Any) -> dict[str, Any] | None:
        model: ModelRows = state
        return model.agreed_design(request.covariates)

    def agreement_round(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("step") == "levels"

    def round_levels(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        levels = payload.get("levels")
        return dict(levels) if isinstance(levels, Mapping) else None


def _beta(payload: Mapping[str, Any], size: int) -> FloatArray:
    """The round's coefficients: ``size`` finite numbers (none: the starting round)."""
    try:
        beta = np.asarray(payload.get("beta"), dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidRequest("payload.beta: a list of numbers is needed") from None
    if beta.shape not in ((size,), (0,)) or not np.isfinite(beta).all():
        raise InvalidRequest(f"payload.beta: {size} finite numbers are needed")
    return beta


def _glm_log_weights(node: GlmNodeData, beta: FloatArray, family: str) -> FloatArray:
    """log of each row's IRLS weight at ``beta`` (binomial m·p(1−p), Poisson μ)."""
    eta = node.x @ beta + node.offset
    if family == "poisson":
        return np.asarray(eta, dtype=np.float64)
    # log p(1-p) = -|eta| - 2 log(1 + exp(-|eta|)), stable for any eta
    magnitude = np.abs(eta)
    return np.asarray(np.log(node.weights) - magnitude - 2 * np.log1p(np.exp(-magnitude)))


def _check_weights(log_weights: FloatArray, policy: NodePolicy) -> None:
    """Refuse coefficients that put nearly all the weight on a few rows.

    The lead chooses the coefficients a round is evaluated at; coefficients that make a few
    rows' weights dwarf the rest would release those rows' values almost alone. The
    effective number of rows, (Σw)² / Σw², must reach the minimum cell count.
    """
    if log_weights.size == 0:
        return
    weights = np.exp(log_weights - log_weights.max())
    effective = float(weights.sum() ** 2 / (weights**2).sum())
    if effective < policy.min_cell_count:
        raise PolicyRefusal(
            "weight_concentration",
            f"at the round's coefficients fewer than {policy.min_cell_count} rows carry the "
            "weight of this node's answer",
        )


def _cached(model: ModelRows, key: Mapping[str, Any], build: Any) -> Any:
    token = canonical_json(dict(key))
    if token not in model.designs:
        model.designs.clear()
        model.designs[token] = build()
    return model.designs[token]


# --------------------------------------------------------------------------- lead side


def _agree_levels(replies: Mapping[str, Mapping[str, Any]], covariates: Sequence[str]) -> Levels:
    levels: Levels = {}
    for name in covariates:
        kinds = {
            node: bool(reply["levels"][name]["categorical"]) for node, reply in replies.items()
        }
        if len(set(kinds.values())) > 1:
            text = sorted(node for node, is_text in kinds.items() if is_text)
            raise InvalidRequest(
                f"covariate {name!r} is text at {text} but numeric elsewhere; declare its "
                "type in the node configs or list it in 'categorical'"
            )
        if any(kinds.values()):
            counts = [reply["levels"][name]["counts"] for reply in replies.values()]
            levels[name] = list(union_levels(counts))
    return levels


def _term_names(covariates: Sequence[str], levels: Levels, intercept: bool) -> tuple[str, ...]:
    """Names of the design's columns, built exactly as the nodes build them."""
    example = {name: ([levels[name][0]] if name in levels else [0.0]) for name in covariates}
    return design_matrix(example, covariates, levels, intercept=intercept).names


def _level_cells(model: ModelRows, request: GlmRequest) -> dict[str, list[int]]:
    """The rows with a level of each of two categorical covariates: an entry of X'X (of
    X'WX at β = 0), released beside the level counts the policy checks."""
    labels = {
        name: (model.column(name), levels)
        for name, levels in model.own_levels(request.covariates).items()
    }
    cells: dict[str, list[int]] = {}
    for (first, (a, a_levels)), (second, (b, b_levels)) in itertools.combinations(
        labels.items(), 2
    ):
        cells[f"rows per pair of levels of {first} and {second}"] = [
            int(np.sum((a == x) & (b == y))) for x in a_levels for y in b_levels
        ]
    return cells


class GlmKind(_ModelKind, AnalysisKind[GlmRequest]):
    """Pooled-equivalent GLM by IRLS rounds (``fit_glm_federated``)."""

    name = "glm"
    request_model = GlmRequest
    result_type = GlmEstimates

    def columns(self, request: GlmRequest) -> list[str]:
        extra = [name for name in (request.trials, request.offset) if name]
        return [request.outcome, *request.covariates, *extra]

    def prepare(self, table: Table, request: GlmRequest, policy: NodePolicy) -> ModelRows:
        return _model_rows(table, self.columns(request), request.covariates, request.categorical)

    def node_round(
        self, state: Any, request: GlmRequest, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        model: ModelRows = state
        if payload.get("step") == "levels":
            return _levels_release(model, request.covariates, request.intercept)
        levels = model.check_levels(request.covariates, payload)

        def build() -> GlmNodeData:
            return GlmNodeData(
                model.numeric(request.outcome),
                model.design(request.covariates, levels, request.intercept),
                family=request.family,
                trials=model.numeric(request.trials) if request.trials else None,
                offset=model.numeric(request.offset) if request.offset else None,
            )

        node: GlmNodeData = _cached(model, {"levels": levels}, build)
        beta = _beta(payload, node.x.shape[1])
        if beta.size and request.family != "gaussian":
            _check_weights(_glm_log_weights(node, beta, request.family), policy)
        aggregates = node.round(beta)
        cells = model.round_cells(request.covariates)
        if request.family != "gaussian":
            successes = round(aggregates.sum_y)
            cells["outcome counts"] = [successes]
            if request.family == "binomial":
                cells["outcome counts"].append(round(aggregates.sum_weights) - successes)
        cells.update(_level_cells(model, request))
        return Release(
            aggregates.to_dict(arrays=True),
            model.n,
            cells=cells,
            parameters=int(node.x.shape[1]),
            rows=model.rows,
            groups=model.groups(request.covariates),
        )

    async def lead(self, request: GlmRequest, exchange: Exchange) -> GlmEstimates:
        replies = await exchange.round({"step": "levels"})
        levels = _agree_levels(replies, request.covariates)
        names = _term_names(request.covariates, levels, request.intercept)

        def driver(nodes: list[Any]) -> GlmResult:
            return fit_glm_federated(nodes, names, alpha=request.alpha)

        result = await drive_iterative(
            exchange,
            driver,
            lambda beta: {"step": "round", "levels": levels, "beta": beta.tolist()},
            GlmAggregates.from_dict,
        )
        return GlmEstimates(result, {name: tuple(values) for name, values in levels.items()})


def _cox_aggregates(data: Mapping[str, Any]) -> CoxAggregates:
    if data.get("kind") == "cox_time_sums":
        return CoxTimeSums.from_dict(data)
    return CoxStratumAggregates.from_dict(data)


class CoxKind(_ModelKind, AnalysisKind[CoxRequest]):
    """Pooled-equivalent Cox model by Newton rounds (``fit_cox_federated``)."""

    name = "cox"
    request_model = CoxRequest
    result_type = CoxEstimates

    def columns(self, request: CoxRequest) -> list[str]:
        return [request.time, request.event, *request.covariates, *request.local_strata]

    def released_time_bin(self, request: CoxRequest) -> float | None:
        return None if request.stratified else request.effective_time_bin

    def prepare(self, table: Table, request: CoxRequest, policy: NodePolicy) -> ModelRows:
        return _model_rows(
            table,
            self.columns(request),
            request.covariates,
            request.categorical,
            strata=request.local_strata,
            events=request.event,
        )

    def node_round(
        self, state: Any, request: CoxRequest, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        model: ModelRows = state
        if payload.get("step") == "levels":
            return _levels_release(model, request.covariates, intercept=False)
        levels = model.check_levels(request.covariates, payload)

        def build() -> tuple[CoxNodeData, FloatArray]:
            labels = model.stratum_labels()
            strata = None if labels is None else labels.tolist()
            x = model.design(request.covariates, levels, intercept=False)
            node = CoxNodeData(
                model.numeric(request.time),
                model.numeric(request.event),
                x,
                ties=request.ties,
                stratified=request.stratified,
                strata=strata,
                time_bin=request.effective_time_bin,
            )
            return node, x

        node, x = _cached(model, {"levels": levels}, build)
        beta = _beta(payload, node.n_covariates)
        if beta.size:
            _check_weights(x @ beta, policy)
        aggregates = node.round(beta)
        cells = {
            "events": [node.n_events],
            "censored": [node.n - node.n_events],
            **model.round_cells(request.covariates),
        }
        if not request.stratified:
            # per-time sums: the subjects (and events) at each released time are a group
            binned = bin_times(model.numeric(request.time), request.effective_time_bin)
            _, at_time = np.unique(binned, return_inverse=True)
            rows_at = np.bincount(at_time)
            cells["rows per released time"] = rows_at.tolist()
            events = np.bincount(at_time, weights=model.numeric(request.event))
            cells["events per released time"] = [round(float(e)) for e in events]
            # rows minus events: the lead subtracts the two (or two adjacent risk sets
            # and the events) to get the censorings at each released time
            cells["censored per released time"] = [
                int(rows) - round(float(e)) for rows, e in zip(rows_at, events, strict=True)
            ]
        return Release(
            aggregates.to_dict(arrays=True),
            model.n,
            cells=cells,
            parameters=node.n_covariates,
            rows=model.rows,
            groups=model.groups(request.covariates),
        )

    async def lead(self, request: CoxRequest, exchange: Exchange) -> CoxEstimates:
        replies = await exchange.round({"step": "levels"})
        levels = _agree_levels(replies, request.covariates)
        names = _term_names(request.covariates, levels, intercept=False)

        def driver(nodes: list[Any]) -> CoxResult:
            return fit_cox_federated(nodes, names, alpha=request.alpha)

        result = await drive_iterative(
            exchange,
            driver,
            lambda beta: {"step": "round", "levels": levels, "beta": beta.tolist()},
            _cox_aggregates,
        )
        return CoxEstimates(
            result,
            {name: tuple(values) for name, values in levels.items()},
            request.effective_time_bin,
        )


class MetaRequest(AnalysisRequest):
    """Meta-analysis of one term of a model each node fits on its own rows."""

    kind: Literal["meta"]
    term: str
    model: dict[str, Any]
    confidence: float = Field(0.95, gt=0, lt=1)


class MetaKind(AnalysisKind[MetaRequest]):
    """Inverse-variance and DerSimonian–Laird pooling of node estimates (not exact)."""

    name = "meta"
    exact = False
    request_model = MetaRequest
    result_type = MetaEstimates

    def _model(self, request: MetaRequest) -> GlmRequest | CoxRequest:
        spec = {**request.model, "table": request.table}
        if spec.get("kind") == "glm":
            return GlmKind().parse(spec)
        if spec.get("kind") == "cox":
            return CoxKind().parse(spec)
        raise InvalidRequest("meta request: model.kind must be 'glm' or 'cox'")

    def parse(self, request: Mapping[str, Any]) -> MetaRequest:
        parsed = super().parse(request)
        self._model(parsed)
        return parsed

    def columns(self, request: MetaRequest) -> list[str]:
        model = self._model(request)
        if isinstance(model, GlmRequest):
            return GlmKind().columns(model)
        return CoxKind().columns(model)

    def released_time_bin(self, request: MetaRequest) -> float | None:
        return None

    def node_round(
        self, state: Any, request: MetaRequest, payload: Mapping[str, Any], policy: NodePolicy
    ) -> Release:
        table: Table = state
        model = self._model(request)
        rows, missing = complete_rows(table, self.columns(request))
        columns = {
            name: (
                label_column(table, name, rows)
                if table.types[name] is ColumnType.TEXT or name in model.categorical
                else numeric_column(table, name, rows)
            )
            for name in model.covariates
        }
        n = int(rows.sum())
        if isinstance(model, GlmRequest):
            glm = fit_glm(
                numeric_column(table, model.outcome, rows),
                columns,
                model.covariates,
                family=model.family,
                trials=numeric_column(table, model.trials, rows) if model.trials else None,
                offset=numeric_column(table, model.offset, rows) if model.offset else None,
                intercept=model.intercept,
            )
            names, coef, se = glm.covariates, glm.coef, glm.se
        else:
            cox = fit_cox(
                numeric_column(table, model.time, rows),
                numeric_column(table, model.event, rows),
                columns,
                ties=model.ties,
                time_bin=model.time_bin,
            )
            names, coef, se = cox.covariates, cox.coef, cox.se
        if request.term not in names:
            raise StatisticsError(f"meta: term {request.term!r} is not in this node's model")
        at = names.index(request.term)
        estimate, error = float(coef[at]), float(se[at])
        if not (math.isfinite(estimate) and math.isfinite(error)):
            raise StatisticsError(f"meta: {request.term!r} cannot be estimated at this node")
        # A local fit's coefficient of a level is that level's rows' contrast: levels are
        # released groups, as in a federated model.
        cells: dict[str, list[int]] = {"rows with missing values": [missing]}
        groups: dict[str, npt.NDArray[np.bool_]] = {}
        for name, values in columns.items():
            if values.dtype == object:
                levels = label_groups(np.asarray(values, dtype=object), f"level of {name}", rows)
                cells[f"rows per level of {name}"] = [int(mask.sum()) for mask in levels.values()]
                groups.update(levels)
        if isinstance(model, GlmRequest) and model.family == "binomial" and not model.trials:
            outcome = numeric_column(table, model.outcome, rows)
            cells["outcome counts"] = [int(outcome.sum()), int(n - outcome.sum())]
        return Release(
            {"estimate": estimate, "standard_error": error, "n": n},
            n,
            cells=cells,
            rows=rows,
            groups=groups,
            parameters=len(names),
        )

    async def lead(self, request: MetaRequest, exchange: Exchange) -> MetaEstimates:
        replies = await exchange.round({})
        inputs = [
            MetaInput(name, float(r["estimate"]), float(r["standard_error"]), n=int(r["n"]))
            for name, r in ((name, replies[name]) for name in exchange.nodes)
        ]
        return MetaEstimates(combine_meta(inputs, confidence=request.confidence), request.term)
