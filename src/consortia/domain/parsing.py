"""Parsing entered values by item type, and the messages of values outside a range.

Text from a file or a form and typed values from the API are read the same way:
:func:`parse_value` (by item name) and :func:`parse_item_value` (an :class:`Item` already
looked up) return the typed value or raise
:class:`~consortia.exceptions.ValidationError`; :func:`parse_raw` returns the value and the
problems instead, for callers that collect problems (:mod:`consortia.domain.validation`).
:func:`outside` says how a number lies outside a ``range`` or ``soft_range``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Final

from consortia.domain.study import Item, ItemType, Range, Study
from consortia.exceptions import Problem, ValidationError

__all__ = [
    "FALSE_WORDS",
    "MULTICHOICE_SEPARATOR",
    "TRUE_WORDS",
    "character_problem",
    "codes_of",
    "is_missing",
    "outside",
    "parse_item_value",
    "parse_raw",
    "parse_value",
]

TRUE_WORDS: Final = frozenset({"true", "1", "yes"})
FALSE_WORDS: Final = frozenset({"false", "0", "no"})
MULTICHOICE_SEPARATOR: Final = "|"
_INTEGER: Final = re.compile(r"[+-]?\d{1,18}")
_DECIMAL: Final = re.compile(r"[+-]?(\d{1,30}(\.\d{0,20})?|\.\d{1,20})")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?"
)
_TIME: Final = re.compile(r"\d{2}:\d{2}(:\d{2})?")
#: a character XML 1.0 cannot hold (its production Char): a control character other than
#: tab, newline and carriage return, a surrogate, U+FFFE or U+FFFF
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def character_problem(text: str) -> str | None:
    """What is wrong with the first character of ``text`` that XML 1.0 cannot hold, or None.

    Text values leave the node as ODM (XML 1.0), so they are refused where they come in
    (saves and imports) rather than breaking an export later.

    >>> character_problem("Pyrexia\\tgrade 2\\r\\n") is None
    True
    >>> character_problem("Pyr\\x00exia")
    'character U+0000 is not allowed (XML 1.0 cannot hold it); tabs and newlines are allowed'
    """
    bad = _NOT_XML_CHAR.search(text)
    if bad is None:
        return None
    return (
        f"character U+{ord(bad.group()):04X} is not allowed (XML 1.0 cannot hold it); "
        "tabs and newlines are allowed"
    )


def is_missing(raw: object) -> bool:
    if raw is None:
        return True
    if isinstance(raw, str):
        return not raw.strip()
    return isinstance(raw, list | tuple | set | frozenset) and not raw


def _number_text(value: int | Decimal | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _shown_raw(raw: object) -> str:
    return repr(raw) if isinstance(raw, str) else str(raw)


def _parse_integer(raw: object) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, Decimal) and raw.is_finite() and raw == raw.to_integral_value():
        return int(raw)
    if isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        return int(raw.strip())
    return None


def _parse_decimal(raw: object) -> Decimal | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(repr(raw)) if math.isfinite(raw) else None
    if isinstance(raw, Decimal):
        return raw if raw.is_finite() else None
    if isinstance(raw, str) and _DECIMAL.fullmatch(raw.strip()):
        try:
            return Decimal(raw.strip())
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            return None
    return None


def _decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


_TEMPORAL: Final[Mapping[ItemType, tuple[type, re.Pattern[str], Callable[[str], object], str]]] = {
    ItemType.DATE: (date, _DATE, date.fromisoformat, "a date (YYYY-MM-DD)"),
    ItemType.DATETIME: (
        datetime,
        _DATETIME,
        datetime.fromisoformat,
        "a date and time (YYYY-MM-DDTHH:MM[:SS])",
    ),
    ItemType.TIME: (time, _TIME, time.fromisoformat, "a time (HH:MM[:SS])"),
}


def _parse_temporal(raw: object, kind: ItemType) -> object:
    python_type, pattern, reader, _ = _TEMPORAL[kind]
    if type(raw) is python_type:  # exactly: a datetime is not a date item's value
        return raw
    if not (isinstance(raw, str) and pattern.fullmatch(raw.strip())):
        return None
    try:
        return reader(raw.strip())
    except ValueError:  # 2024-02-30
        return None


def _parse_boolean(raw: object) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return raw == 1
    if isinstance(raw, str):
        word = raw.strip().casefold()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    return None


def codes_of(study: Study, item: Item) -> tuple[str, ...]:
    entries = study.code_lists.get(item.code_list or "", ())
    return tuple(entry.code for entry in entries)


def _code_problem(code: str, item: Item, codes: Sequence[str]) -> str:
    return f"{code!r} is not a code of {item.code_list}: {', '.join(codes)}"


def _parse_codes(study: Study, item: Item, raw: object) -> tuple[object, list[str]]:
    codes = codes_of(study, item)
    if item.type is ItemType.CHOICE:
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            return None, [f"{_shown_raw(raw)} is not a code of {item.code_list}"]
        code = str(raw).strip()
        return (code, []) if code in codes else (None, [_code_problem(code, item, codes)])
    if isinstance(raw, str):
        elements: Iterable[object] = raw.split(MULTICHOICE_SEPARATOR)
    elif isinstance(raw, list | tuple | set | frozenset):
        elements = raw
    else:
        return None, [f"{_shown_raw(raw)} is not a list of codes of {item.code_list}"]
    chosen: set[str] = set()
    problems: list[str] = []
    for element in elements:
        if isinstance(element, bool) or not isinstance(element, str | int):
            problems.append(f"{_shown_raw(element)} is not a code of {item.code_list}")
            continue
        code = str(element).strip()
        if not code:
            continue
        if code in codes:
            chosen.add(code)
        else:
            problems.append(_code_problem(code, item, codes))
    if problems:
        return None, problems
    return tuple(code for code in codes if code in chosen) or None, []


def parse_raw(study: Study, item: Item, raw: object) -> tuple[object, list[str]]:
    """(value, problems); the value is None when ``raw`` is missing or refused."""
    if is_missing(raw):
        return None, []
    kind = item.type
    if kind in (ItemType.TEXT, ItemType.FILE):
        if not isinstance(raw, str):
            return None, [f"{_shown_raw(raw)} is not text"]
        if item.max_length is not None and len(raw) > item.max_length:
            return None, [f"is {len(raw)} characters long; at most {item.max_length} are allowed"]
        problem = character_problem(raw)
        return (raw, []) if problem is None else (None, [problem])
    if kind is ItemType.INTEGER:
        whole = _parse_integer(raw)
        return (
            (whole, [])
            if whole is not None
            else (None, [f"{_shown_raw(raw)} is not a whole number"])
        )
    if kind is ItemType.DECIMAL:
        number = _parse_decimal(raw)
        if number is None:
            return None, [f"{_shown_raw(raw)} is not a number"]
        places = _decimal_places(number)
        if item.precision is not None and places > item.precision:
            allowed = (
                "a whole number is expected"
                if item.precision == 0
                else f"at most {item.precision} {'is' if item.precision == 1 else 'are'} allowed"
            )
            plural = "place" if places == 1 else "places"
            return None, [f"{_number_text(number)} has {places} decimal {plural}; {allowed}"]
        return number, []
    if kind in _TEMPORAL:
        moment = _parse_temporal(raw, kind)
        if moment is None:
            return None, [f"{_shown_raw(raw)} is not {_TEMPORAL[kind][3]}"]
        return moment, []
    if kind is ItemType.BOOLEAN:
        flag = _parse_boolean(raw)
        if flag is None:
            return None, [f"{_shown_raw(raw)} is not yes or no; use true/false, yes/no or 1/0"]
        return flag, []
    return _parse_codes(study, item, raw)


def parse_item_value(study: Study, item: Item, raw: object) -> object:
    """:func:`parse_value` for an :class:`Item` already looked up (no search by name)."""
    value, problems = parse_raw(study, item, raw)
    if problems:
        raise ValidationError([Problem("", message) for message in problems])
    return value


def parse_value(study: Study, item_name: str, raw: object) -> object:
    """Parse one entered value of item ``item_name`` into its typed value (None if missing).

    Integers, decimals (as :class:`~decimal.Decimal`, at most ``precision`` places), ISO
    dates, datetimes and times, booleans (true/false, yes/no, 1/0), choice codes and
    multichoice codes (a list, or text separated by ``|``, returned in code-list order).
    Ranges are not checked here. A refused value raises
    :class:`~consortia.exceptions.ValidationError` with the item name as its path.

    >>> from consortia.domain.templates import load_template
    >>> study = load_template("cart-lbcl")
    >>> parse_value(study, "max_temp", "38.5"), parse_value(study, "hypotension", "yes")
    (Decimal('38.5'), True)
    >>> parse_value(study, "ae_serious_criteria", "hospitalisation|death")
    ('death', 'hospitalisation')
    """
    try:
        item = study.item(item_name)
    except KeyError:
        raise ValidationError([Problem(item_name, "is not an item of this study")]) from None
    value, problems = parse_raw(study, item, raw)
    if problems:
        raise ValidationError([Problem(item_name, message) for message in problems])
    return value


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def outside(value: int | Decimal, bounds: Range | None) -> str | None:
    """How ``value`` lies outside ``bounds`` (None when inside)."""
    if bounds is None:
        return None
    low, high, shown = bounds.min, bounds.max, _number_text(value)
    below = low is not None and value < low
    above = high is not None and value > high
    if not (below or above):
        return None
    if low is not None and high is not None:
        return f"{shown} is outside {_bound(low)}–{_bound(high)}"
    if low is not None:
        return f"{shown} is below the minimum {_bound(low)}"
    assert high is not None
    return f"{shown} is above the maximum {_bound(high)}"
