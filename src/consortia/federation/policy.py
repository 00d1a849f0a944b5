"""A node's disclosure policy: what may be asked, and what may leave the node.

The policy is the ``policy`` section of the node config. Defaults follow DESIGN.md::

    policy:
      analyses: [describe, kaplan_meier, glm]     # "*" (default) allows every kind
      tables:                                     # "*" (default) allows every table and column
        cart_efficacy: {columns: [pfs_days, pfs_event, arm], studies: [cart-lbcl]}
      identifier_columns: [mrn, name]             # never enter a table, never asked for
      min_cell_count: 5        # a released count 0 < n < 5 refuses the request (rows
                               # left out for missing values: released as "<5")
      min_model_rows: 10       # fewer complete rows refuses a model
      max_parameter_ratio: 0.33  # parameters ≤ 0.33 × n
      time_bin: 7              # the finest time bin (days) released
      manual_approval: false   # a data steward approves each new request
      secure_min_nodes: 3      # a secure sum needs at least 3 nodes (2: allowed here)

Every refusal is a :class:`~consortia.exceptions.PolicyRefusal` whose ``rule`` names the
rule; a refusal's message never contains the small count that caused it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from consortia.exceptions import PolicyRefusal

__all__ = ["NodePolicy", "Release", "TableAccess"]


class TableAccess(BaseModel):
    """Which columns of one table may be analysed, and for which studies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[str] | Literal["*"] = "*"
    studies: list[str] | None = None


@dataclass(frozen=True)
class Release:
    """What a node is about to release for one round.

    ``aggregates`` is the JSON the lead receives. ``cells`` names every released count a
    minimum cell count applies to (``{"events[arm=B]": [12, 7]}``); ``parameters`` is the
    number of model parameters (``None`` for analyses that are not models).

    ``rows`` marks the table rows the release draws on (``None``: the rows complete in
    every column the request reads) and ``groups`` the rows behind each released group (a
    level, a stratum, a cell), labelled without a value: the node's release ledger keeps
    their keys to refuse differencing (see :mod:`consortia.federation.disclosure`).

    ``counted`` marks the rows behind each other released count (an error-grid zone, a
    cell of a 2×2 table) that the ledger does not keep: in a table with a row per reading
    each must describe enough people (:mod:`consortia.federation.people`).

    ``excluded`` counts the rows left out for a missing value in the request's variables
    (complete cases; ``None``: the kind does not say). It is released, as suppressed when
    0 < n < ``min_cell_count`` (:mod:`consortia.federation.suppression`), never refused.

    ``secure`` marks a secure-sum round (:mod:`consortia.federation.secure_sum`):
    ``{"announce": True}`` to announce the node's session key, or ``{"integers": [...],
    "floats": [...]}``, the share the node masks before it leaves.
    """

    aggregates: dict[str, Any]
    n: int
    cells: Mapping[str, Sequence[int]] = field(default_factory=dict)
    parameters: int | None = None
    rows: npt.NDArray[np.bool_] | None = None
    groups: Mapping[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    counted: Mapping[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    excluded: int | None = None
    secure: Mapping[str, Any] | None = None


class NodePolicy(BaseModel):
    """The disclosure rules one node applies to every analysis request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analyses: list[str] | Literal["*"] = "*"
    tables: dict[str, TableAccess] | Literal["*"] = "*"
    identifier_columns: list[str] = []
    min_cell_count: int = Field(5, ge=1)
    min_model_rows: int = Field(10, ge=1)
    max_parameter_ratio: float = Field(0.33, gt=0, le=1)
    time_bin: float = Field(7.0, gt=0)
    allow_min_max: bool = False
    manual_approval: bool = False
    secure_min_nodes: int = Field(3, ge=2)

    def check_request(
        self,
        *,
        kind: str,
        table: str,
        columns: Iterable[str],
        study: str | None = None,
        time_bin: float | None = None,
        identifiers: Iterable[str] = (),
    ) -> None:
        """Refuse a request the policy does not allow (before any data is read).

        ``identifiers`` adds the identifier columns the node's table declarations mark.

        >>> policy = NodePolicy(analyses=["describe"])
        >>> policy.check_request(kind="cox", table="t", columns=[])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        consortia.exceptions.PolicyRefusal: analysis_not_allowed: this node does not run 'cox'...
        """
        if self.analyses != "*" and kind not in self.analyses:
            raise PolicyRefusal("analysis_not_allowed", f"this node does not run {kind!r} analyses")
        access = self._table_access(table, study)
        identifiers = {*self.identifier_columns, *identifiers}
        for column in columns:
            if column in identifiers:
                raise PolicyRefusal(
                    "identifier_column", f"{table}.{column} is an identifier and is never analysed"
                )
            if access.columns != "*" and column not in access.columns:
                raise PolicyRefusal(
                    "column_not_allowed", f"{table}.{column} is not allowed for analysis"
                )
        if time_bin is not None and time_bin < self.time_bin:
            raise PolicyRefusal(
                "time_bin",
                f"times are released in bins of at least {self.time_bin:g} days; "
                f"the request asked for {time_bin:g}",
            )

    def _table_access(self, table: str, study: str | None) -> TableAccess:
        if self.tables == "*":
            return TableAccess()
        access = self.tables.get(table)
        if access is None:
            raise PolicyRefusal("table_not_allowed", f"table {table!r} is not allowed for analysis")
        if access.studies is not None and study not in access.studies:
            label = f"study {study!r}" if study else "a request without a study"
            raise PolicyRefusal("table_not_allowed", f"table {table!r} is not allowed for {label}")
        return access

    def check_release(self, release: Release) -> None:
        """Refuse a release that breaks a disclosure threshold; nothing is ever altered.

        >>> NodePolicy().check_release(Release({}, 12, cells={"events": [7, 3, 0]}))
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        consortia.exceptions.PolicyRefusal: min_cell_count: a released count (events) is below...
        """
        for name, counts in release.cells.items():
            if any(0 < int(count) < self.min_cell_count for count in counts):
                raise PolicyRefusal(
                    "min_cell_count",
                    f"a released count ({name}) is below the minimum cell count "
                    f"{self.min_cell_count}",
                )
        if release.parameters is None:
            return
        if release.n < self.min_model_rows:
            raise PolicyRefusal(
                "min_model_rows",
                f"a model needs at least {self.min_model_rows} complete rows at this node",
            )
        if release.parameters > self.max_parameter_ratio * release.n:
            needed = math.ceil(release.parameters / self.max_parameter_ratio)
            raise PolicyRefusal(
                "max_parameters",
                f"{release.parameters} parameters need at least {needed} complete rows at this "
                f"node (parameters ≤ {self.max_parameter_ratio:g} × n)",
            )
