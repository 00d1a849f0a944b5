"""The function table of the expression language (:mod:`consortia.domain.expressions`).

:data:`FUNCTIONS` holds every function an expression can call: its name, arity, the doc
users see and its implementation (dates, missing values, numbers, selections, and the
ASTCT CRS/ICANS grades of :mod:`consortia.domain.cart_toxicity`). Nothing outside it is called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, NoReturn, cast

from consortia.domain import cart_toxicity, grading
from consortia.domain.expression_values import (
    ROUNDING,
    EvaluationProblem,
    arithmetic,
    as_code,
    is_number,
    kind_of,
    normalise,
    numeric,
    ordered,
    promote,
    selected,
    to_date,
)
from consortia.exceptions import ValidationError

__all__ = ["FUNCTIONS", "FunctionSpec"]


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
    start, end = promote(to_date(a, function), to_date(b, function))
    try:
        delta = end - start
    except TypeError:
        raise EvaluationProblem(
            f"{function}(): cannot mix timezone-aware and naive datetimes"
        ) from None
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
    start, end = sorted((to_date(args[0], ""), to_date(args[1], "")), key=date.toordinal)
    years = end.year - start.year - ((end.month, end.day) < (start.month, start.day))
    return years if days >= 0 else -years


@_function("today()", 0, 0)
def _today(args: _Arguments, today: date | None) -> object:
    """The day of the evaluation: evaluate(..., today=...), else the system's date."""
    return date.today() if today is None else normalise(today)


@_function("date(year, month, day)", 3, 3)
def _date(args: _Arguments, today: date | None) -> object:
    """The date with these parts."""
    if any(arg is None for arg in args):
        return None
    if not all(isinstance(arg, int) and not isinstance(arg, bool) for arg in args):
        raise EvaluationProblem("date() needs whole numbers: date(year, month, day)")
    try:
        return date(*cast(tuple[int, int, int], args))
    except (ValueError, OverflowError) as error:
        raise EvaluationProblem(f"date(): not a valid date ({error})") from None


@_function("coalesce(a, ...)", 1, None)
def _coalesce(args: _Arguments, today: date | None) -> object:
    """The first argument that is not missing."""
    return next((arg for arg in args if arg is not None), None)


def _present(args: _Arguments, function: str) -> list[object]:
    present = [arg for arg in args if arg is not None]
    for arg in present:
        if isinstance(arg, frozenset | tuple):
            raise EvaluationProblem(f"{function}() takes single values, got a {kind_of(arg)}")
    return present


def _extreme(args: _Arguments, function: str, op: str) -> object:
    present = _present(args, function)
    best = present[0] if present else None
    for arg in present[1:]:
        best = arg if ordered(op, arg, best) else best
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
        if not is_number(arg):
            raise EvaluationProblem(f"sum() needs numbers, got {kind_of(arg)}")
        total = arithmetic("+", total, arg)
    return total if present else None


@_function("abs(x)", 1, 1)
def _abs(args: _Arguments, today: date | None) -> object:
    """The absolute value of a number."""
    (value,) = args
    if value is not None and not is_number(value):
        raise EvaluationProblem(f"abs() needs a number, got {kind_of(value)}")
    return None if value is None else numeric(lambda: abs(value))


@_function("round(x, ndigits)", 1, 2)
def _round(args: _Arguments, today: date | None) -> object:
    """x rounded half away from zero on its decimal form: round(2.5) == 3,
    round(-2.5) == -3, round(2.675, 2) == 2.68. With one argument, a whole number."""
    value, digits = args if len(args) == 2 else (args[0], 0)
    if value is None or digits is None:
        return None
    if not is_number(value):
        raise EvaluationProblem(f"round() needs a number, got {kind_of(value)}")
    if not isinstance(digits, int) or isinstance(digits, bool) or not -20 <= digits <= 20:
        raise EvaluationProblem("round() needs a whole number of digits between -20 and 20")
    unit = Decimal(1).scaleb(-digits)
    if isinstance(value, int):
        return int(value) if digits >= 0 else int(ROUNDING.quantize(Decimal(value), unit))
    if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
        return value
    exact = Decimal(repr(value)) if isinstance(value, float) else value
    if exact.adjusted() > 400:
        raise EvaluationProblem("round() of a number this large is not supported")
    rounded = ROUNDING.quantize(exact, unit)
    if len(args) == 1:
        return int(rounded)
    return float(rounded) if isinstance(value, float) else rounded


@_function("len(x)", 1, 1)
def _len(args: _Arguments, today: date | None) -> object:
    """The length of a text or the number of selected codes; 0 when missing."""
    (value,) = args
    if value is not None and not isinstance(value, str | frozenset | tuple):
        raise EvaluationProblem(f"len() needs text or a selection, got {kind_of(value)}")
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
    return selection is not None and code is not None and selected(selection, as_code(code))


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
            except EvaluationProblem as problem:
                found = (False, str(problem))
            if len(memo) < _REMEMBERED:
                memo[key] = found
        done, result = found
        if not done:
            raise EvaluationProblem(result)
        return result

    remembered.__doc__ = implementation.__doc__
    return remembered


def _graded(compute: Callable[[], int]) -> object:
    try:
        return compute()
    except ValidationError as error:
        raise EvaluationProblem(
            "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in error.problems)
        ) from None


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value) in ("0", "1"):
        return str(value) == "1"
    raise EvaluationProblem(f"expected a yes/no value (True, False, 1 or 0), got {kind_of(value)}")


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
    if temp is not None and not is_number(temp):
        raise EvaluationProblem(f"crs_grade(): max_temp must be a number, got {kind_of(temp)}")
    if not is_number(vasopressors) or isinstance(vasopressors, bool):
        raise EvaluationProblem(
            f"crs_grade(): vasopressors must be a count, got {kind_of(vasopressors)}"
        )
    if flow is not None and not is_number(flow):
        raise EvaluationProblem(f"crs_grade(): oxygen_flow must be a number, got {kind_of(flow)}")
    return _graded(
        lambda: cart_toxicity.crs_grade(
            max_temperature_c=None if temp is None else float(temp),
            hypotension=_flag(hypotension),
            vasopressors=int(vasopressors),
            vasopressin=False if vasopressin is None else _flag(vasopressin),
            oxygen=grading.OxygenSupport(as_code(oxygen))
            if as_code(oxygen) in grading.OxygenSupport._value2member_map_
            else _bad_code("oxygen", oxygen, grading.OxygenSupport),
            oxygen_flow_l_min=None if flow is None else float(flow),
            fever_masked=False if masked is None else _flag(masked),
        )
    )


def _bad_code(what: str, value: object, enum: Any) -> NoReturn:
    known = ", ".join(member.value for member in enum)
    raise EvaluationProblem(f"{what} {as_code(value)!r} is not one of: {known}")


def _whole(value: object, what: str) -> int:
    if isinstance(value, bool) or not is_number(value) or value != int(value):
        raise EvaluationProblem(f"{what} must be a whole number, got {kind_of(value)}")
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
        lambda: cart_toxicity.ice_score(
            orientation=orientation,
            naming=naming,
            commands=commands,
            writing=writing,
            attention=attention,
        )
    )


def _member_of(enum: Any, value: object, what: str) -> Any:
    code = as_code(value)
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
        lambda: cart_toxicity.icans_grade(
            ice=None if ice is None else _whole(ice, "icans_grade() ice"),
            consciousness=_member_of(grading.Consciousness, consciousness, "consciousness"),
            seizure=_member_of(grading.Seizure, seizure, "seizure"),
            motor_weakness=_flag(motor),
            icp_oedema=_member_of(grading.Oedema, oedema, "icp_oedema"),
        )
    )


FUNCTIONS: Final[Mapping[str, FunctionSpec]] = MappingProxyType(_TABLE)
"""The function table: the only things an expression can call."""
