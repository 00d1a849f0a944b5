"""The ``cox`` kind: a Cox proportional-hazards model by Newton rounds; stratified fits
release each node's log-likelihood, gradient and Hessian, unstratified ones per-time sums
in bins (the session it shares with ``glm`` is in :mod:`.models`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Exchange,
    drive_iterative,
)
from consortia.federation.kinds.model_estimates import CoxEstimates
from consortia.federation.kinds.models import (
    FloatArray,
    ModelRows,
    _agree_levels,
    _beta,
    _cached,
    _check_weights,
    _levels_release,
    _model_rows,
    _ModelKind,
    _term_names,
)
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.tables import Table
from consortia.stats._arrays import bin_times, sort_labels
from consortia.stats.cox import CoxNodeData, CoxResult, fit_cox_federated
from consortia.stats.cox_aggregates import CoxAggregates, CoxStratumAggregates, CoxTimeSums

__all__ = ["CoxKind", "CoxRequest"]

DEFAULT_TIME_BIN = 7.0


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


def _cox_aggregates(data: Mapping[str, Any]) -> CoxAggregates:
    if data.get("kind") == "cox_time_sums":
        return CoxTimeSums.from_dict(data)
    return CoxStratumAggregates.from_dict(data)


def _counted(model: ModelRows, request: CoxRequest) -> dict[str, npt.NDArray[np.bool_]]:
    """The table rows behind the released events and censorings (in all, per stratum, and
    per released time with the rows there when unstratified): what a per-reading table
    checks in people."""
    positions = np.flatnonzero(model.rows)

    def over_table(selected: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        mask = np.zeros(model.table.n_rows, dtype=np.bool_)
        mask[positions[selected]] = True
        return mask

    event = model.numeric(request.event) == 1
    counted = {"events": over_table(event), "censored": over_table(~event)}
    strata = model.stratum_labels()
    if strata is not None:
        for index, stratum in enumerate(sort_labels(set(strata.tolist())), start=1):
            counted[f"events of stratum {index}"] = over_table(event & (strata == stratum))
    if not request.stratified:
        binned = bin_times(model.numeric(request.time), request.effective_time_bin)
        _, at_time = np.unique(binned, return_inverse=True)
        for index in range(int(at_time.max()) + 1 if at_time.size else 0):
            here = at_time == index
            counted[f"rows at released time {index + 1}"] = over_table(here)
            counted[f"events at released time {index + 1}"] = over_table(here & event)
            counted[f"censored at released time {index + 1}"] = over_table(here & ~event)
    return counted


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
            counted=_counted(model, request),
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
