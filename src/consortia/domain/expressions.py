"""A small, safe expression language with Python syntax.

Study definitions use it for ``show_if``, edit checks and derived variables::

    age >= 18 and sex == 'F'
    days_between(infusion_date, progression_date)
    contains(symptoms, 'fever') or symptoms['2']
    coalesce(pfs_date, last_contact)

:func:`parse` reads the source with :mod:`ast` (``mode="eval"``: one expression, no
statements) and builds its own evaluator from a whitelist of constructs, refusing anything
else with an :class:`~consortia.exceptions.ExpressionError` whose ``column`` is 1-based and
counted in characters from the start of the source. Nothing is ``eval``-ed or compiled, no
attribute is read, and nothing outside :data:`FUNCTIONS` is called.

Semantics, chosen for clinical data where values are often missing:

* A missing value is ``None``. A name absent from ``values``, an empty string and an empty
  selection are missing too, and so is the literal ``''``.
* Every comparison with a missing operand is False (``==``, ``!=``, ``<``, ``in`` and
  ``not in`` alike), so ``x != 1`` is False when ``x`` is missing: ask ``is_missing(x)``.
  Comparing with a literal ``None`` or ``''`` is refused when parsing, as it is never true.
* ``and``, ``or`` and ``not`` treat a missing value as False and always give True or False
  (``not x`` is True when ``x`` is missing); ``a if c else b`` reads ``c`` the same way.
* Arithmetic with a missing operand gives None, and so does ``/``, ``//`` or ``%`` by zero.
  ``**`` takes only a constant exponent between -10 and 10 (``weight / height ** 2``).
* Numbers are ``int``, ``float``, ``Decimal`` and ``bool`` (0/1, as in Python); a Decimal
  meeting a float is computed in float. NaN is a number, not a missing value.
* Text ``+`` text concatenates. Other arithmetic on text, dates or selections, and ordering
  unrelated types (``'a' < 1``), raise ExpressionError naming the types.
* Dates are ``datetime.date`` or ``datetime.datetime``; an ISO string (``'2024-01-31'``) is
  accepted wherever it meets a date or is passed to a date function. A date meeting a
  datetime counts as its midnight. There is no date arithmetic: use ``days_between``.
* A multichoice item's value is a list, tuple, set or frozenset of codes (text or whole
  numbers, compared as text). ``symptoms['2']``, ``contains(symptoms, 2)`` and
  ``'2' in symptoms`` are True when code ``'2'`` is selected.
* Evaluation raises nothing but ExpressionError. A value of an unsupported type is refused
  when its name is read, without being touched beyond ``type()``.
"""

from __future__ import annotations

import ast
import decimal
import difflib
import math
import operator
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeGuard, cast

from consortia.domain import grading
from consortia.exceptions import ExpressionError, ValidationError

__all__ = ["FUNCTIONS", "Expression", "FunctionSpec", "check_names", "parse"]

MAX_SOURCE_LENGTH: Final = 10_000
MAX_DEPTH: Final = 50
_MAX_EXPONENT: Final = 10
_MAX_INT_BITS: Final = 100_000  # keeps `x * x * ...` and `**` on huge integers cheap
_MAX_TEXT: Final = 100_000
_DECIMALS: Final = decimal.Context(
    prec=28, traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow]
)
_ROUNDING: Final = decimal.Context(
    prec=1_000, rounding=decimal.ROUND_HALF_UP, traps=[decimal.InvalidOperation]
)


class _Problem(Exception):
    """A problem found while evaluating; the construct's evaluator adds source and column."""


# ---------------------------------------------------------------------------- values


def _kind(value: object) -> str:
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


def _is_number(value: object) -> TypeGuard[int | float | Decimal]:
    return isinstance(value, int | float | Decimal)


def _preview(text: str) -> str:
    return repr(text) if len(text) <= 30 else repr(text[:30]) + "…"


def _code(value: object) -> str:
    """A selection code as text: codes compare as text, so 2 and '2' are the same code."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # more digits than int-to-text conversion allows
            raise _Problem("a code must be a whole number of reasonable size") from None
    raise _Problem(f"a code must be text or a whole number, got {_kind(value)}")


def _normalise(value: object) -> object:
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
    raise _Problem(f"values of type {kind.__name__!r} are not supported")


def _selection(elements: Iterable[object]) -> frozenset[str] | None:
    codes: set[str] = set()
    for element in elements:
        kind = type(element)
        if kind is not bool and issubclass(kind, str | int):
            code = _normalise(element)
            codes.add("" if code is None else _code(code))
        else:
            raise _Problem(
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


def _promote(a: date, b: date) -> tuple[date, date]:
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
    return None if da is None or db is None else _promote(da, db)


def _to_date(value: object, function: str) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise _Problem(f"{function}() needs dates, got {_kind(value)}")
    parsed = _parse_iso(value)
    if parsed is None:
        raise _Problem(f"{function}(): {_preview(value)} is not an ISO date (YYYY-MM-DD)")
    return parsed


# ------------------------------------------------------------------------- operators


def _truthy(value: object) -> bool:
    return value is not None and bool(value)


def _equal(a: object, b: object) -> bool:
    pair = _temporal_pair(a, b)
    if pair is not None:
        return pair[0] == pair[1]
    if isinstance(a, tuple) and isinstance(b, frozenset):
        a, b = b, a
    if isinstance(a, frozenset) and isinstance(b, tuple):
        codes = [code for code in b if isinstance(code, str | int) and not isinstance(code, bool)]
        return len(codes) == len(b) and a == frozenset(_code(code) for code in codes)
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


def _order(op: str, a: object, b: object) -> bool:
    compare = cast(Callable[[Any, Any], bool], _OPERATORS[op])
    if _is_number(a) and _is_number(b):
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
            raise _Problem("cannot compare a timezone-aware with a naive datetime") from None
    if isinstance(a, date | str) and isinstance(b, date | str):
        text = a if isinstance(a, str) else cast(str, b)
        raise _Problem(f"cannot compare a date with {_preview(text)}, which is not an ISO date")
    raise _Problem(f"cannot compare {_kind(a)} with {_kind(b)} using {op!r}")


def _member(a: object, b: object) -> bool:
    if isinstance(b, tuple):
        return any(element is not None and _equal(a, element) for element in b)
    if isinstance(b, frozenset):
        return _code(a) in b
    if not isinstance(b, str):
        raise _Problem(f"'in' needs a list, a selection or text on the right, got {_kind(b)}")
    if not isinstance(a, str):
        raise _Problem(f"'in' text needs text on the left, got {_kind(a)}")
    return a in b


def _compare(op: str, a: object, b: object) -> bool:
    if a is None or b is None:
        return False
    if op in ("in", "not in"):
        return _member(a, b) == (op == "in")
    if op in ("==", "!="):
        return _equal(a, b) == (op == "==")
    return _order(op, a, b)


def _numeric(compute: Callable[[], object]) -> object:
    """Run one numeric operation: division by zero gives None, overflow is refused."""
    try:
        with decimal.localcontext(_DECIMALS):
            return compute()
    except ZeroDivisionError:  # includes Decimal's DivisionByZero and 0/0
        return None
    except (OverflowError, decimal.Overflow):
        raise _Problem("the result is too large") from None
    except ArithmeticError:
        raise _Problem("the result is not a number (invalid decimal operation)") from None


def _arithmetic(op: str, left: object, right: object) -> object:
    if left is None or right is None:
        return None
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > _MAX_TEXT:
            raise _Problem("the text result is too long")
        return left + right
    if not (_is_number(left) and _is_number(right)):
        hint = ""
        if isinstance(left, date) or isinstance(right, date):
            hint = "; use days_between(a, b) for the time between two dates"
        raise _Problem(f"cannot apply {op!r} to {_kind(left)} and {_kind(right)}{hint}")
    a: Any = float(left) if isinstance(left, Decimal) and isinstance(right, float) else left
    b: Any = float(right) if isinstance(right, Decimal) and isinstance(left, float) else right
    if (
        op == "*"
        and isinstance(a, int)
        and isinstance(b, int)
        and (a.bit_length() + b.bit_length() > _MAX_INT_BITS)
    ):
        raise _Problem("the result is too large")
    if op in ("/", "//", "%") and b == 0:
        return None  # also Decimal 0 / 0, which Decimal signals as an invalid operation
    return _numeric(lambda: _OPERATORS[op](a, b))


def _unary(negate: bool, value: object) -> object:
    if value is None:
        return None
    if not _is_number(value):
        raise _Problem(f"cannot apply unary {'-' if negate else '+'} to {_kind(value)}")
    return _numeric(lambda: -value if negate else +value)


def _power(base: object, exponent: int | float) -> object:
    if base is None:
        return None
    if not _is_number(base):
        raise _Problem(f"cannot raise {_kind(base)} to a power")
    number: Any = float(base) if isinstance(base, Decimal) and isinstance(exponent, float) else base
    if isinstance(number, int) and number.bit_length() * abs(exponent) > _MAX_INT_BITS:
        raise _Problem("the result is too large")
    result = _numeric(lambda: number**exponent)
    if isinstance(result, complex):
        raise _Problem("a negative number cannot be raised to a fractional power")
    return result


def _selected(value: object, code: str) -> bool:
    """Whether ``code`` is selected; a single text or whole-number value is one code."""
    if value is None:
        return False
    if isinstance(value, frozenset):
        return code in value
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return _code(value) == code
    raise _Problem(f"a selection is needed, got {_kind(value)}")


# ------------------------------------------------------------------------- functions

_Arguments = tuple[object, ...]
_Implementation = Callable[[_Arguments, date | None], object]


@dataclass(frozen=True)
class FunctionSpec:
    """One function of the expression language: its arity and what it does."""

    name: str
    min_args: int
    max_args: int | None  # None: any number
    signature: str
    doc: str
    implementation: _Implementation = field(repr=False, compare=False)


_TABLE: dict[str, FunctionSpec] = {}


def _function(
    signature: str, min_args: int, max_args: int | None
) -> Callable[[_Implementation], _Implementation]:
    """Put a function in the table; its docstring is the doc users see."""

    def register(implementation: _Implementation) -> _Implementation:
        name, doc = signature.split("(")[0], " ".join((implementation.__doc__ or "").split())
        _TABLE[name] = FunctionSpec(name, min_args, max_args, signature, doc, implementation)
        return implementation

    return register


def _days(function: str, args: _Arguments) -> int | float | None:
    a, b = args
    if a is None or b is None:
        return None
    start, end = _promote(_to_date(a, function), _to_date(b, function))
    try:
        delta = end - start
    except TypeError:
        raise _Problem(f"{function}(): cannot mix timezone-aware and naive datetimes") from None
    return delta.total_seconds() / 86_400 if isinstance(start, datetime) else delta.days


@_function("days_between(a, b)", 2, 2)
def _days_between(args: _Arguments, today: date | None) -> object:
    """Days from a to b (b - a): whole days between two dates, fractional when a datetime is
    involved. Dates may be ISO strings ('2024-01-31')."""
    return _days("days_between", args)


@_function("months_between(a, b)", 2, 2)
def _months_between(args: _Arguments, today: date | None) -> object:
    """days_between(a, b) / 30.4375: a month of 365.25 / 12 days, as in survival analyses."""
    days = _days("months_between", args)
    return None if days is None else days / 30.4375


@_function("years_between(a, b)", 2, 2)
def _years_between(args: _Arguments, today: date | None) -> object:
    """days_between(a, b) / 365.25. For an age on a date, use completed_years."""
    days = _days("years_between", args)
    return None if days is None else days / 365.25


@_function("completed_years(a, b)", 2, 2)
def _completed_years(args: _Arguments, today: date | None) -> object:
    """Whole calendar years from a to b: the age on date b of someone born on date a
    (negative when b is before a)."""
    days = _days("completed_years", args)
    if days is None:
        return None
    start, end = sorted((_to_date(args[0], ""), _to_date(args[1], "")), key=date.toordinal)
    years = end.year - start.year - ((end.month, end.day) < (start.month, start.day))
    return years if days >= 0 else -years


@_function("today()", 0, 0)
def _today(args: _Arguments, today: date | None) -> object:
    """The day of the evaluation: evaluate(..., today=...), else the system's date."""
    return date.today() if today is None else _normalise(today)


@_function("date(year, month, day)", 3, 3)
def _date(args: _Arguments, today: date | None) -> object:
    """The date with these parts."""
    if any(arg is None for arg in args):
        return None
    if not all(isinstance(arg, int) and not isinstance(arg, bool) for arg in args):
        raise _Problem("date() needs whole numbers: date(year, month, day)")
    try:
        return date(*cast(tuple[int, int, int], args))
    except (ValueError, OverflowError) as error:
        raise _Problem(f"date(): not a valid date ({error})") from None


@_function("coalesce(a, ...)", 1, None)
def _coalesce(args: _Arguments, today: date | None) -> object:
    """The first argument that is not missing."""
    return next((arg for arg in args if arg is not None), None)


def _present(args: _Arguments, function: str) -> list[object]:
    present = [arg for arg in args if arg is not None]
    for arg in present:
        if isinstance(arg, frozenset | tuple):
            raise _Problem(f"{function}() takes single values, got a {_kind(arg)}")
    return present


def _extreme(args: _Arguments, function: str, op: str) -> object:
    present = _present(args, function)
    best = present[0] if present else None
    for arg in present[1:]:
        best = arg if _order(op, arg, best) else best
    return best


@_function("min(a, ...)", 1, None)
def _min(args: _Arguments, today: date | None) -> object:
    """The smallest argument that is not missing; None when all are missing."""
    return _extreme(args, "min", "<")


@_function("max(a, ...)", 1, None)
def _max(args: _Arguments, today: date | None) -> object:
    """The largest argument that is not missing; None when all are missing."""
    return _extreme(args, "max", ">")


@_function("sum(a, ...)", 1, None)
def _sum(args: _Arguments, today: date | None) -> object:
    """The sum of the arguments that are not missing; None when all are missing."""
    present = _present(args, "sum")
    total: object = 0
    for arg in present:
        if not _is_number(arg):
            raise _Problem(f"sum() needs numbers, got {_kind(arg)}")
        total = _arithmetic("+", total, arg)
    return total if present else None


@_function("abs(x)", 1, 1)
def _abs(args: _Arguments, today: date | None) -> object:
    """The absolute value of a number."""
    (value,) = args
    if value is not None and not _is_number(value):
        raise _Problem(f"abs() needs a number, got {_kind(value)}")
    return None if value is None else _numeric(lambda: abs(value))


@_function("round(x, ndigits)", 1, 2)
def _round(args: _Arguments, today: date | None) -> object:
    """x rounded half away from zero on its decimal form: round(2.5) == 3,
    round(-2.5) == -3, round(2.675, 2) == 2.68. With one argument, a whole number."""
    value, digits = args if len(args) == 2 else (args[0], 0)
    if value is None or digits is None:
        return None
    if not _is_number(value):
        raise _Problem(f"round() needs a number, got {_kind(value)}")
    if not isinstance(digits, int) or isinstance(digits, bool) or not -20 <= digits <= 20:
        raise _Problem("round() needs a whole number of digits between -20 and 20")
    unit = Decimal(1).scaleb(-digits)
    if isinstance(value, int):
        return int(value) if digits >= 0 else int(_ROUNDING.quantize(Decimal(value), unit))
    if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
        return value
    exact = Decimal(repr(value)) if isinstance(value, float) else value
    if exact.adjusted() > 400:
        raise _Problem("round() of a number this large is not supported")
    rounded = _ROUNDING.quantize(exact, unit)
    if len(args) == 1:
        return int(rounded)
    return float(rounded) if isinstance(value, float) else rounded


@_function("len(x)", 1, 1)
def _len(args: _Arguments, today: date | None) -> object:
    """The length of a text or the number of selected codes; 0 when missing."""
    (value,) = args
    if value is not None and not isinstance(value, str | frozenset | tuple):
        raise _Problem(f"len() needs text or a selection, got {_kind(value)}")
    return 0 if value is None else len(value)


@_function("is_missing(x)", 1, 1)
def _is_missing(args: _Arguments, today: date | None) -> object:
    """True when x is missing: None, '' or nothing selected."""
    return args[0] is None


@_function("contains(selection, code)", 2, 2)
def _contains(args: _Arguments, today: date | None) -> object:
    """True when the code is selected. Codes compare as text (2 and '2' are one code); a
    single-choice value counts as one selected code."""
    selection, code = args
    return selection is not None and code is not None and _selected(selection, _code(code))


# --- clinical scores: derived variables in the templates compute grades from raw inputs ---


#: How many argument tuples a remembered function keeps the result of
_REMEMBERED: Final = 4096


def _remembered(implementation: _Implementation) -> _Implementation:
    """A function of its arguments alone, remembering results (and refusals) by argument
    type and value: a grade computed from the same inputs is computed once. Numbers count
    by their text, so 38.5 and 38.50 are remembered apart."""
    memo: dict[tuple[object, ...], tuple[bool, object]] = {}

    def remembered(args: _Arguments, today: date | None) -> object:
        key = tuple(
            [(type(arg), repr(arg) if isinstance(arg, float | Decimal) else arg) for arg in args]
        )
        found = memo.get(key)
        if found is None:
            try:
                found = (True, implementation(args, today))
            except _Problem as problem:
                found = (False, str(problem))
            if len(memo) < _REMEMBERED:
                memo[key] = found
        done, result = found
        if not done:
            raise _Problem(result)
        return result

    remembered.__doc__ = implementation.__doc__
    return remembered


def _graded(compute: Callable[[], int]) -> object:
    try:
        return compute()
    except ValidationError as error:
        raise _Problem(
            "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in error.problems)
        ) from None


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value) in ("0", "1"):
        return str(value) == "1"
    raise _Problem(f"expected a yes/no value (True, False, 1 or 0), got {_kind(value)}")


@_function(
    "crs_grade(max_temp, hypotension, vasopressors, vasopressin, oxygen, oxygen_flow, "
    "fever_masked)",
    7,
    7,
)
@_remembered
def _crs_grade(args: _Arguments, today: date | None) -> object:
    """ASTCT consensus CRS grade 0-4 from raw inputs (temperature in degrees C, oxygen as an
    OxygenSupport code such as 'low_flow_nasal_cannula'). Missing when hypotension,
    vasopressors or oxygen is missing; a missing flow, vasopressin or masking counts as
    none."""
    temp, hypotension, vasopressors, vasopressin, oxygen, flow, masked = args
    if hypotension is None or vasopressors is None or oxygen is None:
        return None
    if temp is not None and not _is_number(temp):
        raise _Problem(f"crs_grade(): max_temp must be a number, got {_kind(temp)}")
    if not _is_number(vasopressors) or isinstance(vasopressors, bool):
        raise _Problem(f"crs_grade(): vasopressors must be a count, got {_kind(vasopressors)}")
    if flow is not None and not _is_number(flow):
        raise _Problem(f"crs_grade(): oxygen_flow must be a number, got {_kind(flow)}")
    return _graded(
        lambda: grading.crs_grade(
            max_temperature_c=None if temp is None else float(temp),
            hypotension=_flag(hypotension),
            vasopressors=int(vasopressors),
            vasopressin=False if vasopressin is None else _flag(vasopressin),
            oxygen=grading.OxygenSupport(_code(oxygen))
            if _code(oxygen) in grading.OxygenSupport._value2member_map_
            else _bad_code("oxygen", oxygen, grading.OxygenSupport),
            oxygen_flow_l_min=None if flow is None else float(flow),
            fever_masked=False if masked is None else _flag(masked),
        )
    )


def _bad_code(what: str, value: object, enum: Any) -> NoReturn:
    known = ", ".join(member.value for member in enum)
    raise _Problem(f"{what} {_code(value)!r} is not one of: {known}")


def _whole(value: object, what: str) -> int:
    if isinstance(value, bool) or not _is_number(value) or value != int(value):
        raise _Problem(f"{what} must be a whole number, got {_kind(value)}")
    return int(value)


@_function("ice_score(orientation, naming, commands, writing, attention)", 5, 5)
@_remembered
def _ice_score(args: _Arguments, today: date | None) -> object:
    """The 10-point ICE score (orientation 0-4, naming 0-3, commands, writing and
    attention 0-1); missing when any part is missing."""
    if any(arg is None for arg in args):
        return None
    orientation, naming, commands, writing, attention = (
        _whole(arg, "ice_score() part") for arg in args
    )
    return _graded(
        lambda: grading.ice_score(
            orientation=orientation,
            naming=naming,
            commands=commands,
            writing=writing,
            attention=attention,
        )
    )


def _member_of(enum: Any, value: object, what: str) -> Any:
    code = _code(value)
    if code not in enum._value2member_map_:
        _bad_code(what, value, enum)
    return enum(code)


@_function("icans_grade(ice, consciousness, seizure, motor_weakness, icp_oedema)", 5, 5)
@_remembered
def _icans_grade(args: _Arguments, today: date | None) -> object:
    """ASTCT ICANS grade 0-4 (adults); the ICE score may be missing only in an unarousable
    patient. Missing when any other domain is missing."""
    ice, consciousness, seizure, motor, oedema = args
    if consciousness is None or seizure is None or motor is None or oedema is None:
        return None
    return _graded(
        lambda: grading.icans_grade(
            ice=None if ice is None else _whole(ice, "icans_grade() ice"),
            consciousness=_member_of(grading.Consciousness, consciousness, "consciousness"),
            seizure=_member_of(grading.Seizure, seizure, "seizure"),
            motor_weakness=_flag(motor),
            icp_oedema=_member_of(grading.Oedema, oedema, "icp_oedema"),
        )
    )


FUNCTIONS: Final[Mapping[str, FunctionSpec]] = MappingProxyType(_TABLE)
"""The function table: the only things an expression can call."""


# ------------------------------------------------------------------ evaluation


class _Context:
    """One evaluation: the values, the day, and each name's value once normalised."""

    __slots__ = ("cache", "source", "today", "values")

    def __init__(self, values: Mapping[str, object], today: date | None, source: str) -> None:
        self.values, self.today, self.source = values, today, source
        self.cache: dict[str, object] = {}

    def lookup(self, name: str) -> object:
        cache = self.cache
        if name in cache:
            return cache[name]
        try:
            raw = self.values[name]
        except KeyError:
            raw = None
        if type(raw) in _PLAIN:  # the common case, without a call
            cache[name] = raw
            return raw
        try:
            value = cache[name] = _normalise(raw)
        except _Problem as problem:
            raise _Problem(f"{name!r}: {problem}") from None
        return value


#: Types whose values _normalise returns unchanged
_PLAIN: Final = frozenset({type(None), bool, int, float, date, datetime})


_Evaluator = Callable[[_Context], object]


def _name(name: str, column: int) -> _Evaluator:
    """The evaluator of a name: its value (a problem with the value is reported at the name)."""

    def evaluate(context: _Context) -> object:
        try:
            return context.lookup(name)
        except _Problem as problem:
            raise ExpressionError(str(problem), context.source, column) from None

    return evaluate


def _at(column: int, compute: _Evaluator) -> _Evaluator:
    """The evaluator of one construct: problems it meets are reported at its column."""

    def evaluate(context: _Context) -> object:
        try:
            return compute(context)
        except _Problem as problem:
            raise ExpressionError(str(problem), context.source, column) from None
        except OverflowError:  # a whole number too large for a float, deep in a function
            raise ExpressionError("a number is too large", context.source, column) from None

    return evaluate


@dataclass(frozen=True)
class Expression:
    """A parsed, checked expression; evaluate it as often as needed.

    >>> e = parse("age >= 18 and sex == 'F'")
    >>> sorted(e.names), e.evaluate({"age": 30, "sex": "F"}), e.evaluate({"sex": "F"})
    (['age', 'sex'], True, False)
    """

    source: str
    names: frozenset[str]
    functions: frozenset[str]
    _evaluator: _Evaluator = field(repr=False, compare=False)
    _name_columns: tuple[tuple[str, int], ...] = field(repr=False, compare=False)

    def evaluate(self, values: Mapping[str, object], *, today: date | None = None) -> object:
        """The value of the expression for item ``values`` (a name not in them is None).

        >>> parse("days_between(start, end)").evaluate({"start": "2024-01-01",
        ...                                              "end": date(2024, 3, 1)})
        60
        """
        return self._evaluator(_Context(values, today, self.source))

    def column_of(self, name: str) -> int:
        """The 1-based column of the first use of ``name``; 0 when it is not used.

        >>> parse("a + b * b").column_of("b")
        5
        """
        return next((column for used, column in self._name_columns if used == name), 0)


# ---------------------------------------------------------------------------- parsing

_BINARY: Final = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
}
_COMPARISONS: Final = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_REFUSED: Final[dict[type[ast.AST], str]] = {
    ast.BitAnd: "'&' is not allowed; use 'and'",
    ast.BitOr: "'|' is not allowed; use 'or'",
    ast.BitXor: "'^' is not allowed; use ** for powers",
    ast.LShift: "'<<' is not allowed",
    ast.RShift: "'>>' is not allowed",
    ast.MatMult: "'@' is not allowed",
    ast.Invert: "'~' is not allowed; use 'not'",
    ast.Is: "'is' is not allowed; use == or is_missing(x)",
    ast.IsNot: "'is not' is not allowed; use != or is_missing(x)",
    ast.Lambda: "lambda is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
    **dict.fromkeys(
        (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp),
        "comprehensions are not allowed",
    ),
}
_SUBSCRIPT_RULE: Final = "subscripts are only allowed on item names with a constant code"
_LIST_RULE: Final = "lists may only hold constants, such as [1, 2, 'a']"
_LEADING_SPACE: Final = re.compile(r"[ \t\f\r\n]*")
_NEWLINE: Final = re.compile(r"\r\n|\r|\n")


class _Builder:
    """Checks an ``ast`` tree construct by construct and builds the evaluator of each."""

    def __init__(self, source: str, prefix: int) -> None:
        self.source, self.prefix = source, prefix
        text = source[prefix:]
        self.starts = [0] + [match.end() for match in _NEWLINE.finditer(text)]
        self.lines = [
            text[a:b] for a, b in zip(self.starts, [*self.starts[1:], len(text)], strict=True)
        ]
        self.name_columns: list[tuple[str, int]] = []
        self.functions: set[str] = set()

    def position(self, lineno: int, offset: int) -> int:
        """The 1-based column in the whole source of a line and a 0-based character offset."""
        if lineno > len(self.lines):
            return len(self.source) + 1
        if offset < 0:  # "at the end of this line"
            offset = len(self.lines[lineno - 1].rstrip("\r\n"))
        column = self.prefix + self.starts[lineno - 1] + offset + 1
        return max(1, min(column, len(self.source) + 1))

    def column(self, node: ast.AST, *, end: bool = False) -> int:
        lineno = cast(int, getattr(node, "end_lineno" if end else "lineno", 1))
        utf8_offset = cast(int, getattr(node, "end_col_offset" if end else "col_offset", 0))
        line = self.lines[lineno - 1] if lineno <= len(self.lines) else ""
        prefix = line.encode("utf-8", "surrogatepass")[:utf8_offset]
        return self.position(lineno, len(prefix.decode("utf-8", "ignore")))

    def fail(self, node: ast.AST, message: str) -> NoReturn:
        raise ExpressionError(message, self.source, self.column(node))

    def build(self, node: ast.expr) -> _Evaluator:
        column = self.column(node)
        if isinstance(node, ast.Constant):
            value = self.constant(node)
            return lambda _: value
        if isinstance(node, ast.Name):
            return _name(self.name(node), column)
        if isinstance(node, ast.BoolOp):
            return self.logical(isinstance(node.op, ast.And), [self.build(v) for v in node.values])
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Invert):
                self.fail(node, _REFUSED[ast.Invert])
            operand = self.build(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda context: not _truthy(operand(context))
            negate = isinstance(node.op, ast.USub)
            return _at(column, lambda context: _unary(negate, operand(context)))
        if isinstance(node, ast.BinOp):
            return self.binary(node, column)
        if isinstance(node, ast.Compare):
            return self.comparison(node, column)
        if isinstance(node, ast.IfExp):
            test, body, orelse = (
                self.build(node.test),
                self.build(node.body),
                self.build(node.orelse),
            )
            return lambda context: body(context) if _truthy(test(context)) else orelse(context)
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items = tuple(self.literal(element) for element in node.elts)
            return lambda _: items
        if isinstance(node, ast.Call):
            return self.call(node, column)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, column)
        if isinstance(node, ast.Attribute):
            dot = self.source.find(".", self.column(node.value, end=True) - 1)
            message = "attribute access is not allowed"
            raise ExpressionError(message, self.source, dot + 1 if dot >= 0 else column)
        self.fail(node, _REFUSED.get(type(node), f"{type(node).__name__} is not allowed"))

    def constant(self, node: ast.Constant) -> object:
        if isinstance(node.value, complex):
            self.fail(node, "complex numbers are not allowed")
        if isinstance(node.value, bytes):
            self.fail(node, "bytes literals are not allowed; use 'text'")
        if node.value is Ellipsis:
            self.fail(node, "'...' is not allowed")
        return None if node.value == "" else node.value

    def name(self, node: ast.Name) -> str:
        if node.id.startswith("__"):
            self.fail(node, "names starting with '__' are not allowed")
        self.name_columns.append((node.id, self.column(node)))
        return node.id

    def literal(self, node: ast.expr) -> object:
        """A constant in a list, or a signed number (``-1``)."""
        if isinstance(node, ast.Starred):
            self.fail(node, _REFUSED[ast.Starred])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            number = node.operand
            if not (isinstance(number, ast.Constant) and _is_number(number.value)):
                self.fail(node, _LIST_RULE)
            value = cast(Any, self.constant(number))
            return -value if isinstance(node.op, ast.USub) else +value
        if not isinstance(node, ast.Constant):
            self.fail(node, _LIST_RULE)
        return self.constant(node)

    @staticmethod
    def logical(is_and: bool, operands: list[_Evaluator]) -> _Evaluator:
        def evaluate(context: _Context) -> object:
            for operand in operands:
                if _truthy(operand(context)) != is_and:
                    return not is_and
            return is_and

        return evaluate

    def binary(self, node: ast.BinOp, column: int) -> _Evaluator:
        if type(node.op) in _REFUSED:
            self.fail(node, _REFUSED[type(node.op)])
        left = self.build(node.left)
        if isinstance(node.op, ast.Pow):
            exponent = None
            if isinstance(node.right, ast.Constant | ast.UnaryOp):
                exponent = self.literal(node.right)
            if (
                not isinstance(exponent, int | float)
                or isinstance(exponent, bool)
                or not (abs(exponent) <= _MAX_EXPONENT)
            ):
                self.fail(node.right, "'**' needs a constant exponent from -10 to 10, as in x ** 2")
            power = exponent
            return _at(column, lambda context: _power(left(context), power))
        op, right = _BINARY[type(node.op)], self.build(node.right)
        return _at(column, lambda context: _arithmetic(op, left(context), right(context)))

    def comparison(self, node: ast.Compare, column: int) -> _Evaluator:
        for op in node.ops:
            if type(op) in _REFUSED:
                self.fail(node, _REFUSED[type(op)])
        for operand in [node.left, *node.comparators]:
            if isinstance(operand, ast.Constant) and operand.value in (None, ""):
                shown = repr(operand.value)
                self.fail(operand, f"comparing with {shown} is never true; use is_missing(x)")
        ops = [_COMPARISONS[type(op)] for op in node.ops]
        first, rest = self.build(node.left), [self.build(other) for other in node.comparators]
        if len(ops) == 1:  # the common case, with one frame less
            only, second = ops[0], rest[0]

            def single(context: _Context) -> object:
                try:
                    return _compare(only, first(context), second(context))
                except _Problem as problem:
                    raise ExpressionError(str(problem), context.source, column) from None
                except OverflowError:
                    message = "a number is too large"
                    raise ExpressionError(message, context.source, column) from None

            return single

        def evaluate(context: _Context) -> object:
            left = first(context)
            for op, comparator in zip(ops, rest, strict=True):
                right = comparator(context)
                if not _compare(op, left, right):
                    return False
                left = right
            return True

        return _at(column, evaluate)

    def call(self, node: ast.Call, column: int) -> _Evaluator:
        if not isinstance(node.func, ast.Name):
            self.build(node.func)  # refuses attribute access, lambda... with their own message
            self.fail(node, f"only these functions can be called: {', '.join(FUNCTIONS)}")
        name, spec = node.func.id, FUNCTIONS.get(node.func.id)
        if spec is None:
            close = difflib.get_close_matches(name, list(FUNCTIONS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.fail(node, f"unknown function {name!r}; {hint}known: {', '.join(FUNCTIONS)}")
        if node.keywords:
            self.fail(
                node.keywords[0], f"keyword arguments are not allowed; write {spec.signature}"
            )
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail(arg, "starred arguments are not allowed")
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            plural = "" if count == 1 else "s"
            self.fail(node, f"{name}() got {count} argument{plural}; write {spec.signature}")
        self.functions.add(name)
        args, run = [self.build(arg) for arg in node.args], spec.implementation
        return _at(
            column, lambda context: run(tuple([arg(context) for arg in args]), context.today)
        )

    def subscript(self, node: ast.Subscript, column: int) -> _Evaluator:
        item, index = node.value, node.slice
        if not (
            isinstance(item, ast.Name)
            and isinstance(index, ast.Constant)
            and isinstance(index.value, str | int)
            and not isinstance(index.value, bool)
            and index.value != ""
        ):
            self.fail(node, _SUBSCRIPT_RULE)
        name, code = self.name(item), str(index.value)
        return _at(column, lambda context: _selected(context.lookup(name), code))


def _check_depth(tree: ast.Expression, builder: _Builder) -> None:
    """Refuse nesting deeper than MAX_DEPTH before anything walks the tree recursively."""
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            builder.fail(node, f"the expression is nested too deeply (over {MAX_DEPTH} levels)")
        stack.extend(
            (child, depth + isinstance(child, ast.expr)) for child in ast.iter_child_nodes(node)
        )


def parse(source: str) -> Expression:
    """Parse and check ``source``; ExpressionError (with its column) says what is refused.

    >>> parse("contains(symptoms, 'fever') and age >= 18").functions
    frozenset({'contains'})
    >>> parse("visit.date > 1")
    Traceback (most recent call last):
    consortia.exceptions.ExpressionError: attribute access is not allowed
    """
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be text, got {type(source).__name__}")
    if len(source) > MAX_SOURCE_LENGTH:
        message = (
            f"the expression is too long ({len(source)} characters, at most {MAX_SOURCE_LENGTH})"
        )
        raise ExpressionError(message, source, MAX_SOURCE_LENGTH + 1)
    prefix = cast(re.Match[str], _LEADING_SPACE.match(source)).end()
    builder = _Builder(source, prefix)
    if prefix == len(source):
        raise ExpressionError("the expression is empty", source, 1)
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence": not worth a warning
            warnings.simplefilter("ignore")
            tree = ast.parse(source[prefix:], mode="eval")
    except SyntaxError as error:
        column = source.find("\0") + 1
        if error.lineno is not None:
            column = builder.position(error.lineno, (error.offset or 0) - 1)
        raise ExpressionError(f"syntax error: {error.msg}", source, column) from None
    except (RecursionError, MemoryError):
        message = f"the expression is nested too deeply (over {MAX_DEPTH} levels)"
        raise ExpressionError(message, source, 0) from None
    except (ValueError, OverflowError) as error:
        raise ExpressionError(f"syntax error: {error}", source, source.find("\0") + 1) from None
    _check_depth(tree, builder)
    evaluator = builder.build(tree.body)
    columns = tuple(builder.name_columns)
    names = frozenset(name for name, _ in columns)
    return Expression(source, names, frozenset(builder.functions), evaluator, columns)


def check_names(expression: Expression, known: Collection[str]) -> list[ExpressionError]:
    """One error per name the expression uses that is not ``known``, at its first use.

    >>> [(e.message, e.column) for e in check_names(parse("agee > 18"), {"age"})]
    [("unknown name 'agee'; did you mean 'age'?", 1)]
    """
    errors: list[ExpressionError] = []
    seen: set[str] = set()
    for name, column in expression._name_columns:
        if name in known or name in seen:
            continue
        seen.add(name)
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        errors.append(ExpressionError(f"unknown name {name!r}{hint}", expression.source, column))
    return sorted(errors, key=lambda error: error.column)
