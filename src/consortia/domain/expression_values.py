"""Values and operators of the expression language (:mod:`consortia.domain.expressions`).

Which Python values an expression reads and how they are normalised to the language's own
builtins, how a missing value behaves in comparisons and arithmetic, how selections, dates
and numbers meet, and the limits that keep evaluation cheap on hostile input. A problem is
raised as :class:`EvaluationProblem`; the evaluator adds the source and column.
"""

from __future__ import annotations

import decimal
import math
import operator
from collections.abc import Callable, Iterable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Final, TypeGuard, cast

MAX_EXPONENT: Final = 10
_MAX_INT_BITS: Final = 100_000  # keeps `x * x * ...` and `**` on huge integers cheap
_MAX_TEXT: Final = 100_000
_DECIMALS: Final = decimal.Context(
    prec=28, traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow]
)
ROUNDING: Final = decimal.Context(
    prec=1_000, rounding=decimal.ROUND_HALF_UP, traps=[decimal.InvalidOperation]
)


class EvaluationProblem(Exception):
    """A problem found while evaluating; the construct's evaluator adds source and column."""


# ---------------------------------------------------------------------------- values


def kind_of(value: object) -> str:
    """The language's name for the kind of a value, for messages: 'number', 'date', ..."""
    if value is None:
        return "missing value"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, date):
        return "datetime" if isinstance(value, datetime) else "date"
    return "selection" if isinstance(value, frozenset) else "list"


def is_number(value: object) -> TypeGuard[int | float | Decimal]:
    """Whether ``value`` is a number (a bool counts, as in Python)."""
    return isinstance(value, int | float | Decimal)


def _preview(text: str) -> str:
    return repr(text) if len(text) <= 30 else repr(text[:30]) + "…"


def as_code(value: object) -> str:
    """A selection code as text: codes compare as text, so 2 and '2' are the same code."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # more digits than int-to-text conversion allows
            raise EvaluationProblem("a code must be a whole number of reasonable size") from None
    raise EvaluationProblem(f"a code must be text or a whole number, got {kind_of(value)}")


def normalise(value: object) -> object:
    """An input value as an exact builtin of the language; other types are refused.

    Only ``type(value)`` is consulted until the value is known to be a supported builtin,
    and subclasses are copied with the base class's own methods, so no code of the value's
    class ever runs.
    """
    if value is None:
        return None
    kind, any_value = type(value), cast(Any, value)
    if kind is bool:
        return value
    if issubclass(kind, int):
        return value if kind is int else int.__int__(any_value)
    if issubclass(kind, float):
        return value if kind is float else float.__float__(any_value)
    if issubclass(kind, Decimal):
        number = value if kind is Decimal else Decimal(Decimal.__str__(any_value))
        return math.nan if cast(Decimal, number).is_nan() else number
    if issubclass(kind, str):
        return (value if kind is str else str.__str__(any_value)) or None
    if issubclass(kind, datetime):
        return value if kind is datetime else datetime.fromisoformat(datetime.isoformat(any_value))
    if issubclass(kind, date):
        return value if kind is date else date.fromordinal(date.toordinal(any_value))
    for base in (list, tuple, set, frozenset):
        if issubclass(kind, base):
            return _selection(base.__iter__(any_value))
    raise EvaluationProblem(f"values of type {kind.__name__!r} are not supported")


def _selection(elements: Iterable[object]) -> frozenset[str] | None:
    codes: set[str] = set()
    for element in elements:
        kind = type(element)
        if kind is not bool and issubclass(kind, str | int):
            code = normalise(element)
            codes.add("" if code is None else as_code(code))
        else:
            raise EvaluationProblem(
                "a selection may hold only codes (text or whole numbers), "
                f"found a value of type {kind.__name__!r}"
            )
    return frozenset(codes - {""}) or None


def _parse_iso(text: str) -> date | None:
    for reader in (date.fromisoformat, datetime.fromisoformat):
        try:
            return reader(text) if len(text) <= 40 else None
        except ValueError:
            pass
    return None


def promote(a: date, b: date) -> tuple[date, date]:
    """A date meeting a datetime counts as its midnight (in the datetime's time zone)."""
    if isinstance(a, datetime) and not isinstance(b, datetime):
        b = datetime.combine(b, time(), tzinfo=a.tzinfo)
    elif isinstance(b, datetime) and not isinstance(a, datetime):
        a = datetime.combine(a, time(), tzinfo=b.tzinfo)
    return a, b


def _temporal_pair(a: object, b: object) -> tuple[date, date] | None:
    """Both operands as dates, when one is a date and the other a date or ISO string."""
    if not (isinstance(a, date) or isinstance(b, date)):
        return None
    da = a if isinstance(a, date) else _parse_iso(a) if isinstance(a, str) else None
    db = b if isinstance(b, date) else _parse_iso(b) if isinstance(b, str) else None
    return None if da is None or db is None else promote(da, db)


def to_date(value: object, function: str) -> date:
    """An argument of a date ``function`` as a date (an ISO string is read); refused otherwise."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise EvaluationProblem(f"{function}() needs dates, got {kind_of(value)}")
    parsed = _parse_iso(value)
    if parsed is None:
        raise EvaluationProblem(f"{function}(): {_preview(value)} is not an ISO date (YYYY-MM-DD)")
    return parsed


# ------------------------------------------------------------------------- operators


def truthy(value: object) -> bool:
    """The truth of a condition: a missing value is False."""
    return value is not None and bool(value)


def _equal(a: object, b: object) -> bool:
    pair = _temporal_pair(a, b)
    if pair is not None:
        return pair[0] == pair[1]
    if isinstance(a, tuple) and isinstance(b, frozenset):
        a, b = b, a
    if isinstance(a, frozenset) and isinstance(b, tuple):
        codes = [code for code in b if isinstance(code, str | int) and not isinstance(code, bool)]
        return len(codes) == len(b) and a == frozenset(as_code(code) for code in codes)
    return a == b


_OPERATORS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def ordered(op: str, a: object, b: object) -> bool:
    """``a op b`` for an ordering ``op`` (``<``, ``<=``, ``>``, ``>=``); related types only."""
    compare = cast(Callable[[Any, Any], bool], _OPERATORS[op])
    if is_number(a) and is_number(b):
        if (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
            return False  # as for floats; Decimal would raise
        return compare(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return compare(a, b)
    pair = _temporal_pair(a, b)
    if pair is not None:
        try:
            return compare(*pair)
        except TypeError:
            raise EvaluationProblem(
                "cannot compare a timezone-aware with a naive datetime"
            ) from None
    if isinstance(a, date | str) and isinstance(b, date | str):
        text = a if isinstance(a, str) else cast(str, b)
        raise EvaluationProblem(
            f"cannot compare a date with {_preview(text)}, which is not an ISO date"
        )
    raise EvaluationProblem(f"cannot compare {kind_of(a)} with {kind_of(b)} using {op!r}")


def _member(a: object, b: object) -> bool:
    if isinstance(b, tuple):
        return any(element is not None and _equal(a, element) for element in b)
    if isinstance(b, frozenset):
        return as_code(a) in b
    if not isinstance(b, str):
        raise EvaluationProblem(
            f"'in' needs a list, a selection or text on the right, got {kind_of(b)}"
        )
    if not isinstance(a, str):
        raise EvaluationProblem(f"'in' text needs text on the left, got {kind_of(a)}")
    return a in b


def compare_values(op: str, a: object, b: object) -> bool:
    """``a op b`` for any comparison; False when either operand is missing."""
    if a is None or b is None:
        return False
    if op in ("in", "not in"):
        return _member(a, b) == (op == "in")
    if op in ("==", "!="):
        return _equal(a, b) == (op == "==")
    return ordered(op, a, b)


def numeric(compute: Callable[[], object]) -> object:
    """Run one numeric operation: division by zero gives None, overflow is refused."""
    try:
        with decimal.localcontext(_DECIMALS):
            return compute()
    except ZeroDivisionError:  # includes Decimal's DivisionByZero and 0/0
        return None
    except (OverflowError, decimal.Overflow):
        raise EvaluationProblem("the result is too large") from None
    except ArithmeticError:
        raise EvaluationProblem("the result is not a number (invalid decimal operation)") from None


def arithmetic(op: str, left: object, right: object) -> object:
    """``left op right`` for a binary arithmetic ``op``; None when an operand is missing."""
    if left is None or right is None:
        return None
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > _MAX_TEXT:
            raise EvaluationProblem("the text result is too long")
        return left + right
    if not (is_number(left) and is_number(right)):
        hint = ""
        if isinstance(left, date) or isinstance(right, date):
            hint = "; use days_between(a, b) for the time between two dates"
        raise EvaluationProblem(
            f"cannot apply {op!r} to {kind_of(left)} and {kind_of(right)}{hint}"
        )
    a: Any = float(left) if isinstance(left, Decimal) and isinstance(right, float) else left
    b: Any = float(right) if isinstance(right, Decimal) and isinstance(left, float) else right
    if (
        op == "*"
        and isinstance(a, int)
        and isinstance(b, int)
        and (a.bit_length() + b.bit_length() > _MAX_INT_BITS)
    ):
        raise EvaluationProblem("the result is too large")
    if op in ("/", "//", "%") and b == 0:
        return None  # also Decimal 0 / 0, which Decimal signals as an invalid operation
    return numeric(lambda: _OPERATORS[op](a, b))


def unary(negate: bool, value: object) -> object:
    """``-value`` (or ``+value``) of a number; None when it is missing."""
    if value is None:
        return None
    if not is_number(value):
        raise EvaluationProblem(f"cannot apply unary {'-' if negate else '+'} to {kind_of(value)}")
    return numeric(lambda: -value if negate else +value)


def raise_to_power(base: object, exponent: int | float) -> object:
    """``base ** exponent`` for a constant exponent; None when ``base`` is missing."""
    if base is None:
        return None
    if not is_number(base):
        raise EvaluationProblem(f"cannot raise {kind_of(base)} to a power")
    number: Any = float(base) if isinstance(base, Decimal) and isinstance(exponent, float) else base
    if isinstance(number, int) and number.bit_length() * abs(exponent) > _MAX_INT_BITS:
        raise EvaluationProblem("the result is too large")
    result = numeric(lambda: number**exponent)
    if isinstance(result, complex):
        raise EvaluationProblem("a negative number cannot be raised to a fractional power")
    return result


def selected(value: object, code: str) -> bool:
    """Whether ``code`` is selected; a single text or whole-number value is one code."""
    if value is None:
        return False
    if isinstance(value, frozenset):
        return code in value
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return as_code(value) == code
    raise EvaluationProblem(f"a selection is needed, got {kind_of(value)}")
