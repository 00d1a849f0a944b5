"""Design matrices for regression models, with categorical levels agreed across nodes.

A categorical covariate must be dummy-coded the same way on every node, even when a node
has not seen every level. The protocol is:

1. each node reports :func:`level_counts` for each categorical covariate (counts per level,
   which a disclosure policy can check);
2. the lead calls :func:`union_levels`: the levels seen anywhere, sorted (numerically when
   they are all numbers); the first is the reference level;
3. each node builds its rows with :func:`design_matrix` using those levels. Dummy columns are
   named as patsy/statsmodels name them: ``arm[T.car_t]``.

>>> levels = union_levels([level_counts(["soc", "car_t"]), level_counts(["soc", "soc"])])
>>> design = design_matrix({"age": [50, 61], "arm": ["soc", "car_t"]}, ["age", "arm"],
...                        {"arm": levels})
>>> design.names
('Intercept', 'age', 'arm[T.soc]')
>>> design.matrix.tolist()
[[1.0, 50.0, 1.0], [1.0, 61.0, 0.0]]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from consortia.exceptions import StatisticsError
from consortia.stats._arrays import as_float_vector, as_labels, sort_labels

__all__ = ["Design", "LevelCounts", "design_matrix", "level_counts", "union_levels"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LevelCounts:
    """How many rows of one node have each level of a categorical covariate."""

    counts: Mapping[str, int]

    @property
    def levels(self) -> tuple[str, ...]:
        """The levels, sorted."""
        return sort_labels(set(self.counts))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"counts": {level: int(self.counts[level]) for level in self.levels}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LevelCounts:
        """Rebuild from :meth:`to_dict` output."""
        return cls({str(level): int(count) for level, count in data["counts"].items()})


def level_counts(values: npt.ArrayLike) -> LevelCounts:
    """Count rows per level of one categorical column (node side).

    >>> level_counts(["b", "a", "b"]).to_dict()
    {'counts': {'a': 1, 'b': 2}}
    """
    return LevelCounts(dict(Counter(as_labels(values, "levels"))))


def union_levels(parts: Sequence[LevelCounts | Mapping[str, int]]) -> tuple[str, ...]:
    """Levels seen on any node, sorted; the first is the reference level (lead side).

    >>> union_levels([{"2": 4, "10": 1}, {"1": 7}])
    ('1', '2', '10')
    """
    seen: set[str] = set()
    for part in parts:
        counts = part.counts if isinstance(part, LevelCounts) else part
        seen.update(level for level, count in counts.items() if count > 0)
    if not seen:
        raise StatisticsError("levels: no level was seen on any node")
    return sort_labels(seen)


@dataclass(frozen=True, eq=False)
class Design:
    """A design matrix and the names of its columns."""

    matrix: FloatArray
    names: tuple[str, ...]


def _is_categorical(values: npt.ArrayLike) -> bool:
    kind = np.asarray(values).dtype.kind
    return kind not in "biuf"


def design_matrix(
    columns: Mapping[str, npt.ArrayLike],
    covariates: Sequence[str],
    levels: Mapping[str, Sequence[str]] | None = None,
    *,
    intercept: bool = True,
) -> Design:
    """Build a design matrix from named columns.

    Covariates named in ``levels`` are categorical and get one dummy column per level after
    the first. With ``levels=None`` (local analyses), text and boolean columns are
    categorical with the levels found in the data; in a federated analysis pass the levels
    from :func:`union_levels` so every node codes alike.

    >>> design_matrix({"x": [1.5, 2.0]}, ["x"], intercept=False).matrix.tolist()
    [[1.5], [2.0]]
    """
    agreed: dict[str, tuple[str, ...]] = {
        name: tuple(str(level) for level in values) for name, values in (levels or {}).items()
    }
    if levels is None:
        for name in covariates:
            if name in columns and _is_categorical(columns[name]):
                agreed[name] = union_levels([level_counts(columns[name])])
    n_rows: int | None = None
    blocks: list[FloatArray] = []
    names: list[str] = []
    for name in covariates:
        if name not in columns:
            raise StatisticsError(f"covariates: {name!r} is not a column of the table")
        if name in agreed:
            labels = as_labels(columns[name], name)
            unknown = sum(label not in set(agreed[name]) for label in labels)
            if unknown:
                # a count, never the values: this message may leave a node
                raise StatisticsError(
                    f"{name}: {unknown} rows have a level that is not among the "
                    f"{len(agreed[name])} agreed levels"
                )
            label_array = np.array(labels, dtype=object)
            for level in agreed[name][1:]:
                blocks.append((label_array == level).astype(np.float64))
                names.append(f"{name}[T.{level}]")
            size = len(labels)
        else:
            column = as_float_vector(columns[name], name)
            blocks.append(column)
            names.append(name)
            size = column.size
        if n_rows is not None and size != n_rows:
            raise StatisticsError(f"{name}: {size} values, but other columns have {n_rows}")
        n_rows = size
    if n_rows is None:
        if not intercept:
            raise StatisticsError("design: no covariates and no intercept")
        lengths = {np.asarray(values).size for values in columns.values()}
        n_rows = lengths.pop() if len(lengths) == 1 else 0
    if intercept:
        blocks.insert(0, np.ones(n_rows))
        names.insert(0, "Intercept")
    matrix = np.column_stack(blocks) if blocks else np.zeros((n_rows, 0))
    return Design(np.asarray(matrix, dtype=np.float64), tuple(names))
