"""The ``glm`` kind: a generalised linear model with the family's canonical link, fitted
by IRLS rounds (the session it shares with ``cox`` is in :mod:`.models`)."""

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
    drive_iterative,
)
from consortia.federation.kinds.model_estimates import GlmEstimates
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
from consortia.stats.glm import GlmResult, fit_glm_federated
from consortia.stats.glm_node import GlmAggregates, GlmNodeData

__all__ = ["GlmKind", "GlmRequest"]


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


def _glm_log_weights(node: GlmNodeData, beta: FloatArray, family: str) -> FloatArray:
    """log of each row's IRLS weight at ``beta`` (binomial m·p(1−p), Poisson μ)."""
    eta = node.x @ beta + node.offset
    if family == "poisson":
        return np.asarray(eta, dtype=np.float64)
    # log p(1-p) = -|eta| - 2 log(1 + exp(-|eta|)), stable for any eta
    magnitude = np.abs(eta)
    return np.asarray(np.log(node.weights) - magnitude - 2 * np.log1p(np.exp(-magnitude)))


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


def _counted(model: ModelRows, request: GlmRequest) -> dict[str, npt.NDArray[np.bool_]]:
    """The table rows behind the outcome counts of a binomial model (one row per trial)
    and behind each pair of levels: what a per-reading table checks in people."""
    positions = np.flatnonzero(model.rows)

    def over_table(selected: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        mask = np.zeros(model.table.n_rows, dtype=np.bool_)
        mask[positions[selected]] = True
        return mask

    counted: dict[str, npt.NDArray[np.bool_]] = {}
    if request.family == "binomial" and not request.trials:
        outcome = model.numeric(request.outcome)
        counted["outcome 1"] = over_table(outcome == 1)
        counted["outcome 0"] = over_table(outcome == 0)
    own = model.own_levels(request.covariates)
    for first, second in itertools.combinations(own, 2):
        a, b = model.column(first), model.column(second)
        for i, x in enumerate(own[first], start=1):
            for j, y in enumerate(own[second], start=1):
                counted[f"level {i} of {first} with level {j} of {second}"] = over_table(
                    (a == x) & (b == y)
                )
    return counted


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
            counted=_counted(model, request),
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
