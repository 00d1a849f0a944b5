"""The model session ``glm`` and ``cox`` share (``meta`` fits either on each node's rows):
each node's complete rows and designs, the round that agrees the levels, and the checks
every round repeats. The kinds themselves are in :mod:`.glm`, :mod:`.cox` and :mod:`.meta`.

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
counts are subject to the minimum cell count. Rows with a missing value in the request's
variables are left out (complete cases) and their count released by the levels round, as
``"<5"`` when 0 < n < the minimum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import PolicyRefusal
from consortia.federation.kinds.base import (
    InvalidRequest,
    complete_rows,
    label_column,
    numeric_column,
)
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.protocol import canonical_json, sha256_hex
from consortia.federation.tables import ColumnType, Table
from consortia.stats._arrays import sort_labels
from consortia.stats.design import design_matrix, union_levels

__all__ = ["FloatArray", "Levels", "ModelRows"]

FloatArray = npt.NDArray[np.float64]
Levels = dict[str, list[str]]


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
        """The counts every round re-checks: rows per level and per stratum (the rows left
        out for missing values are released, suppressed when small, by the levels round)."""
        cells: dict[str, list[int]] = {}
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
        excluded=model.missing,
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
