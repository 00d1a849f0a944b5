"""The ``meta`` kind: each node fits a ``glm`` or ``cox`` model on its own rows; the lead
pools one term (inverse-variance and DerSimonian–Laird)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from consortia.exceptions import StatisticsError
from consortia.federation.kinds.base import (
    AnalysisKind,
    AnalysisRequest,
    Exchange,
    InvalidRequest,
    complete_rows,
    label_column,
    label_groups,
    numeric_column,
)
from consortia.federation.kinds.cox import CoxKind, CoxRequest
from consortia.federation.kinds.glm import GlmKind, GlmRequest
from consortia.federation.kinds.model_estimates import MetaEstimates
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.tables import ColumnType, Table
from consortia.stats.cox import fit_cox
from consortia.stats.glm import fit_glm
from consortia.stats.meta import MetaInput, combine_meta

__all__ = ["MetaKind", "MetaRequest"]


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
        cells: dict[str, list[int]] = {}
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
            excluded=missing,
        )

    async def lead(self, request: MetaRequest, exchange: Exchange) -> MetaEstimates:
        replies = await exchange.round({})
        inputs = [
            MetaInput(name, float(r["estimate"]), float(r["standard_error"]), n=int(r["n"]))
            for name, r in ((name, replies[name]) for name in exchange.nodes)
        ]
        return MetaEstimates(combine_meta(inputs, confidence=request.confidence), request.term)
