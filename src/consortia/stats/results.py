"""Shared pieces of every statistical result: the warning class, the result base, JSON helpers.

Every estimator in :mod:`consortia.stats` returns a frozen dataclass that derives from
:class:`StatResult`. It gets a JSON-ready :meth:`StatResult.to_dict` for free (numpy arrays
become lists, non-finite floats become ``None``) and the typed way back,
:meth:`StatResult.from_dict` (read from its field types; ``None`` in a float comes back as
``nan``), and must say how it reads as a table in :meth:`StatResult.summary`. A result whose
JSON shape differs from its fields overrides both.

Doubts about a result (an iterative fit that did not converge) are *warnings*, not errors:
they are issued as :class:`ConvergenceWarning`. Data that cannot be analysed at all raise
:class:`consortia.exceptions.StatisticsError`.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Mean(StatResult):
...     n: int
...     mean: float
...     def summary(self) -> str:
...         return format_table(["n", "mean"], [[self.n, self.mean]])
>>> Mean(3, 2.0).to_dict()
{'n': 3, 'mean': 2.0}
>>> Mean.from_dict({'n': 3, 'mean': 2.0})
Mean(n=3, mean=2.0)
>>> print(Mean(3, 2.0).summary())
n    mean
-  ------
3  2.0000
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self, Union

import numpy as np

from consortia.exceptions import StatisticsError

__all__ = [
    "ConvergenceWarning",
    "StatResult",
    "format_number",
    "format_table",
    "from_jsonable",
    "read_fit_fields",
    "to_jsonable",
]


class ConvergenceWarning(UserWarning):
    """An iterative estimator stopped before meeting its convergence criteria.

    The result is still returned, with ``converged=False``; treat its estimates with doubt.
    """


def to_jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples, mappings and dataclasses into plain JSON values.

    Non-finite floats (``nan``, ``inf``) become ``None`` because JSON has no spelling for
    them; mapping keys become strings.

    >>> to_jsonable({"a": np.array([1.0, np.nan]), 2: (np.int64(3), np.inf)})
    {'a': [1.0, None], '2': [3, None]}
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.ndarray):
        return [to_jsonable(item) for item in value.tolist()]
    if isinstance(value, StatResult):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_jsonable(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [to_jsonable(item) for item in value]
    raise TypeError(f"cannot turn a {type(value).__name__} into JSON")


def from_jsonable(hint: Any, value: Any, where: str = "") -> Any:
    """Read a JSON value back as the type ``hint`` names: the inverse of :func:`to_jsonable`.

    Lists become tuples or numpy arrays, ``None`` in a float becomes ``nan`` (JSON wrote
    every non-finite float as ``None``), nested results are read by their own
    :meth:`StatResult.from_dict`. ``where`` names the field in an error.

    >>> from_jsonable(tuple[float, ...], [1, None])
    (1.0, nan)
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [arg for arg in args if arg is not type(None)]
        if set(inner) == {int, str}:  # a count that may have been released as suppressed
            from consortia.stats.counts import read_count

            return read_count(value, where)
        (only,) = inner
        return from_jsonable(only, value, where)
    if origin is Literal:
        if value not in args:
            raise StatisticsError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if isinstance(hint, type) and issubclass(hint, StatResult):
        if not isinstance(value, Mapping):
            raise StatisticsError(f"{where}: expected an object")
        return hint.from_dict(value)
    if hint is float:
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise StatisticsError(f"{where}: {value!r} is not a number")
        return float(value)
    if hint is int or hint is bool or hint is str:
        if type(value) is not hint:
            raise StatisticsError(f"{where}: {value!r} is not a {hint.__name__}")
        return hint(value)
    if hint is np.ndarray:  # an array of no declared dtype: floats
        return _float_array(value, where) if isinstance(value, list) else _not_a_list(where)
    if origin is np.ndarray:
        (dtype,) = typing.get_args(args[1])
        if not isinstance(value, list):
            raise StatisticsError(f"{where}: expected a list")
        if np.dtype(dtype).kind == "f":
            return _float_array(value, where)
        return np.asarray(value, dtype=dtype)
    if origin is tuple:
        if not isinstance(value, list):
            raise StatisticsError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(
                from_jsonable(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)
            )
        if len(value) != len(args):
            raise StatisticsError(f"{where}: expected {len(args)} items")
        return tuple(
            from_jsonable(arg, item, f"{where}[{i}]")
            for i, (arg, item) in enumerate(zip(args, value, strict=True))
        )
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise StatisticsError(f"{where}: expected an object")
        return {str(k): from_jsonable(args[1], item, f"{where}.{k}") for k, item in value.items()}
    raise TypeError(f"{where}: cannot read a {hint!r} from JSON")


def _not_a_list(where: str) -> Any:
    raise StatisticsError(f"{where}: expected a list")


def _float_array(value: list[Any], where: str) -> Any:
    """A (nested) list of numbers with ``None`` for non-finite ones, as a float array."""
    try:
        return np.array(_nan_for_none(value), dtype=np.float64)
    except (TypeError, ValueError):
        raise StatisticsError(f"{where}: expected a list of numbers") from None


def _nan_for_none(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, list):
        return [_nan_for_none(item) for item in value]
    return value


def format_number(value: Any, digits: int = 4) -> str:
    """Format one table cell: floats with ``digits`` decimals (small p-values in e-notation).

    >>> format_number(0.5), format_number(3e-9), format_number(7), format_number(None)
    ('0.5000', '3.00e-09', '7', '')
    """
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return str(number)
        if number != 0.0 and abs(number) < 10.0 ** (-digits):
            return f"{number:.2e}"
        return f"{number:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """Render rows as a plain-text table; the first column is left-aligned, others right.

    >>> print(format_table(["term", "coef"], [["age", 0.25], ["Intercept", -1.0]]))
    term          coef
    ---------  -------
    age         0.2500
    Intercept  -1.0000
    """
    cells = [[format_number(cell, digits) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))

    def line(items: Sequence[str]) -> str:
        parts = [
            item.ljust(widths[column]) if column == 0 else item.rjust(widths[column])
            for column, item in enumerate(items)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * width for width in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


class StatResult:
    """Base of the frozen result dataclasses returned by :mod:`consortia.stats`.

    Subclasses are ``@dataclass(frozen=True)`` and implement :meth:`summary`;
    :meth:`to_dict` walks their fields and makes them JSON-ready (override it when the
    natural JSON shape differs from the fields).
    """

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON values (lists, floats, ints, str, None, dicts)."""
        if not dataclasses.is_dataclass(self):
            raise TypeError(f"{type(self).__name__} must be a dataclass")
        return {
            field.name: to_jsonable(getattr(self, field.name)) for field in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read the result back from its :meth:`to_dict` form (raise StatisticsError naming
        the field that is missing or of the wrong type)."""
        if not isinstance(data, Mapping):
            raise StatisticsError(f"{cls.__name__}: expected an object")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            if field.name not in data:
                if field.default is not dataclasses.MISSING:
                    continue
                raise StatisticsError(f"{cls.__name__}.{field.name}: missing")
            values[field.name] = from_jsonable(
                hints[field.name], data[field.name], f"{cls.__name__}.{field.name}"
            )
        return cls(**values)

    def summary(self) -> str:
        """Return a readable plain-text table of the result."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.summary()


def read_fit_fields(
    cls: type[Any], data: Mapping[str, Any], per_term: Sequence[str]
) -> dict[str, Any]:
    """The field values of a model fit ``cls`` read back from its ``to_dict``: the fields
    named in ``per_term`` are written keyed by covariate, in the order of ``covariates``."""
    name = cls.__name__
    if not isinstance(data, Mapping) or not isinstance(data.get("covariates"), list):
        raise StatisticsError(f"{name}: 'covariates' must be a list")
    covariates = tuple(str(term) for term in data["covariates"])
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {"covariates": covariates}
    for field in dataclasses.fields(cls):
        if field.name == "covariates":
            continue
        where = f"{name}.{field.name}"
        if field.name not in data:
            raise StatisticsError(f"{where}: missing")
        raw = data[field.name]
        if field.name in per_term:
            if not isinstance(raw, Mapping) or list(raw) != list(covariates):
                raise StatisticsError(f"{where}: expected a value per covariate")
            raw = list(raw.values())
        values[field.name] = from_jsonable(hints[field.name], raw, where)
    return values
