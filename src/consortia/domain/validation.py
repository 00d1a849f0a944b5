"""Checking one form's entered values against the study, and computing derived variables.

:func:`validate_form` takes the values of one form instance as a site enters them (typed
values from the API, or text from a CSV file) and returns a :class:`FormCheck`:

* ``errors`` — hard problems; the form cannot be saved with them: a value of the wrong type
  (text is parsed by item type: see :func:`parse_value`), outside the hard ``range``, a code
  not in the code list, a value in an item hidden by its ``show_if``, an item that is not in
  the form, a missing ``required`` item (only when the form is marked ``complete``), and
  edit checks of severity ``error``;
* ``warnings`` — a value outside the ``soft_range`` and edit checks of severity ``warning``:
  the form saves, and each warning opens a query;
* ``values`` — the parsed values, ready to store and to evaluate expressions on.

Every problem has a path: ``forms.<form>.<item>`` for an item of a non-repeating group and
``forms.<form>.<group>[n].<item>`` for an item of instance ``n`` of a repeating group. ``n`` is
the instance number, counted from 1 like REDCap's ``redcap_repeat_instance``.

Expressions see the form's own values, the ``context`` (values of the subject's other forms,
when the caller has them) and the derived variables computed from both. A ``show_if`` that
reads an item of another form absent from ``context`` cannot be decided: the item is then
treated as shown but not required. An edit check does not fire while any name it reads is
missing. An edit check that reads an item of a repeating group runs once per instance.

:func:`compute_derived` evaluates the study's derived variables in dependency order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache
from typing import Final

from consortia.domain import expressions
from consortia.domain.study import (
    NUMERIC_TYPES,
    EditCheck,
    Form,
    Item,
    ItemType,
    Range,
    Severity,
    Study,
)
from consortia.exceptions import (
    ExpressionError,
    NotFoundError,
    Problem,
    StudyDefinitionError,
    ValidationError,
)

__all__ = ["FormCheck", "compute_derived", "parse_item_value", "parse_value", "validate_form"]

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


@dataclass(frozen=True)
class FormCheck:
    """The outcome of :func:`validate_form`: hard errors, soft warnings and parsed values.

    ``values`` maps item names of non-repeating groups to parsed values, and each repeating
    group's name to a list of instances (each a dict of parsed values). Missing values, values
    that failed to parse and values of hidden items are left out.
    """

    form: str
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    values: Mapping[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings do not stop a save)."""
        return not self.errors


# ------------------------------------------------------------------------------- parsing


def _is_missing(raw: object) -> bool:
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


def _codes_of(study: Study, item: Item) -> tuple[str, ...]:
    entries = study.code_lists.get(item.code_list or "", ())
    return tuple(entry.code for entry in entries)


def _code_problem(code: str, item: Item, codes: Sequence[str]) -> str:
    return f"{code!r} is not a code of {item.code_list}: {', '.join(codes)}"


def _parse_codes(study: Study, item: Item, raw: object) -> tuple[object, list[str]]:
    codes = _codes_of(study, item)
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


def _parse(study: Study, item: Item, raw: object) -> tuple[object, list[str]]:
    """(value, problems); the value is None when ``raw`` is missing or refused."""
    if _is_missing(raw):
        return None, []
    kind = item.type
    if kind in (ItemType.TEXT, ItemType.FILE):
        if not isinstance(raw, str):
            return None, [f"{_shown_raw(raw)} is not text"]
        if item.max_length is not None and len(raw) > item.max_length:
            return None, [f"is {len(raw)} characters long; at most {item.max_length} are allowed"]
        return raw, []
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
    value, problems = _parse(study, item, raw)
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
    value, problems = _parse(study, item, raw)
    if problems:
        raise ValidationError([Problem(item_name, message) for message in problems])
    return value


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _outside(value: int | Decimal, bounds: Range | None) -> str | None:
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


# ---------------------------------------------------------------------------- expressions


@lru_cache(maxsize=4096)
def _expression(source: str) -> expressions.Expression:
    return expressions.parse(source)


@lru_cache(maxsize=256)
def _derived_order(definitions: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Derived names in an order where each comes after the derived variables it reads."""
    names = {name for name, _ in definitions}
    reads = {name: sorted(_expression(src).names & names) for name, src in definitions}
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" or "done"

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*trail[trail.index(name) :], name]
            raise StudyDefinitionError(
                [
                    Problem(
                        f"derived.{name}",
                        f"derived variables form a cycle: {' → '.join(cycle)}",
                    )
                ]
            )
        state[name] = "visiting"
        for dependency in reads[name]:
            visit(dependency, [*trail, name])
        state[name] = "done"
        order.append(name)

    for name, _ in definitions:
        visit(name, [])
    return tuple(order)


def _coerce_derived(value: object, kind: str) -> object:
    if kind == "integer" and isinstance(value, bool):
        return int(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@lru_cache(maxsize=1024)
def _closure(definitions: tuple[tuple[str, str], ...], wanted: frozenset[str]) -> tuple[str, ...]:
    """The derived variables ``wanted`` and those they read, in evaluation order."""
    names = {name for name, _ in definitions}
    reads = {name: _expression(src).names & names for name, src in definitions}
    needed: set[str] = set()
    stack = [name for name in wanted if name in names]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(reads[name])
    return tuple(name for name in _derived_order(definitions) if name in needed)


def _derive(
    study: Study,
    values: Mapping[str, object],
    today: date | None,
    wanted: frozenset[str] | None = None,
) -> tuple[dict[str, object], dict[str, str]]:
    """(derived values, {name: why it could not be computed}); only ``wanted`` (and what
    they read) when given."""
    definitions = tuple((name, d.expression) for name, d in study.derived.items())
    order = _derived_order(definitions) if wanted is None else _closure(definitions, wanted)
    scope = dict(values)
    results: dict[str, object] = {}
    failures: dict[str, str] = {}
    for name in order:
        definition = study.derived[name]
        try:
            value = _expression(definition.expression).evaluate(scope, today=today)
        except ExpressionError as error:
            failures[name] = error.message
            value = None
        results[name] = scope[name] = _coerce_derived(value, definition.type.value)
    return results, failures


def compute_derived(
    study: Study,
    values_by_item: Mapping[str, object],
    *,
    today: date | None = None,
    strict: bool = True,
) -> dict[str, object]:
    """Every derived variable of ``study`` from typed item values, in dependency order.

    ``values_by_item`` maps item names to typed values (as in :attr:`FormCheck.values`); a
    name it lacks is missing. A derived variable may read others; a cycle among them raises
    :class:`~consortia.exceptions.StudyDefinitionError`. A derived variable whose inputs are
    inconsistent (``crs_grade`` with a vasopressor but no hypotension) raises
    :class:`~consortia.exceptions.ValidationError` naming each one as ``derived.<name>``
    (with ``strict=False`` it is left missing instead).

    >>> from datetime import date
    >>> from consortia.domain.templates import load_template
    >>> derived = compute_derived(load_template("cart-lbcl"),
    ...     {"rand_date": date(2024, 1, 1), "last_contact": date(2024, 7, 1)})
    >>> derived["pfs_days"], derived["pfs_event"], derived["os_event"]
    (182, 0, 0)
    """
    results, failures = _derive(study, values_by_item, today)
    if failures and strict:  # not strict: a variable that cannot be computed is missing
        raise ValidationError(
            [Problem(f"derived.{name}", message) for name, message in failures.items()]
        )
    return results


# ---------------------------------------------------------------------------- forms


@dataclass
class _Run:
    """The state of one validate_form call: the form's layout and the problems found."""

    study: Study
    form_name: str
    form: Form
    context: Mapping[str, object]
    today: date | None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"forms.{self.form_name}"

    @cached_property
    def flat(self) -> dict[str, Item]:
        """Items of the non-repeating groups."""
        groups = self.form.groups.values()
        return {name: item for g in groups if not g.repeating for name, item in g.items.items()}

    @cached_property
    def repeating(self) -> dict[str, dict[str, Item]]:
        """Repeating group name -> its items."""
        return {name: dict(g.items) for name, g in self.form.groups.items() if g.repeating}

    def unknown(self, keys: Iterable[str], known: Sequence[str], path: str, where: str) -> None:
        in_groups = {name: group for group, items in self.repeating.items() for name in items}
        for key in keys:
            if key in known:
                continue
            if where.startswith("form") and key in in_groups:
                group = in_groups[key]
                message = f"belongs to the repeating group {group}; give it inside {group}[...]"
            else:
                try:
                    elsewhere = f" (it belongs to form {self.study.form_of(key)})"
                except KeyError:
                    elsewhere = ""
                message = f"is not an item of {where}{elsewhere}; its items: {', '.join(known)}"
            self.errors.append(Problem(f"{path}.{key}", message))

    def instances(self, raw: object, group: str) -> list[Mapping[str, object]]:
        path = f"{self.base}.{group}"
        if raw is None:
            return []
        if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
            message = "a repeating group takes a list of instances (mappings of item values)"
            self.errors.append(Problem(path, message))
            return []
        for number, instance in enumerate(raw, 1):
            if not isinstance(instance, Mapping):
                message = "an instance is a mapping of item names to values"
                self.errors.append(Problem(f"{path}[{number}]", message))
        return [instance if isinstance(instance, Mapping) else {} for instance in raw]

    def parse_into(
        self, items: Mapping[str, Item], raw: Mapping[str, object], path: str
    ) -> tuple[dict[str, object], set[str]]:
        """Parse the values of ``items`` present in ``raw``: (typed values, names given)."""
        typed: dict[str, object] = {}
        given = [name for name in items if name in raw and not _is_missing(raw[name])]
        for name in given:
            item = items[name]
            value, problems = _parse(self.study, item, raw[name])
            self.errors.extend(Problem(f"{path}.{name}", message) for message in problems)
            if problems:
                continue
            if item.type in NUMERIC_TYPES:
                assert isinstance(value, int | Decimal)
                hard = _outside(value, item.range)
                soft = None if hard else _outside(value, item.soft_range)
                if hard:
                    self.errors.append(Problem(f"{path}.{name}", hard))
                    continue
                if soft:
                    message = f"{soft}, the expected range; please confirm"
                    self.warnings.append(Problem(f"{path}.{name}", message))
            typed[name] = value
        return typed, set(given)

    def shown(self, item: Item, scope: Mapping[str, object], path: str) -> bool | None:
        """Whether the item is shown; None when its show_if reads an item of another form
        that the context lacks."""
        if item.show_if is None:
            return True
        expression = _expression(item.show_if)
        own = {name for group in self.form.groups.values() for name in group.items}
        known = own | set(self.study.derived) | set(self.context)
        if expression.names - known:
            return None
        try:
            return bool(expression.evaluate(scope, today=self.today))
        except ExpressionError as error:
            self.errors.append(Problem(path, f"show_if could not be evaluated: {error.message}"))
            return True

    @cached_property
    def relevant_derived(self) -> frozenset[str]:
        """Derived variables this form's expressions read, or that read its items: the
        only ones a check of this form needs (computing all of them costs most of a check)."""
        own = {name for group in self.form.groups.values() for name in group.items}
        sources = [item.show_if for group in self.form.groups.values()
                   for item in group.items.values() if item.show_if]  # fmt: skip
        sources += [check.expression for check in self.form.checks]
        read = set().union(*(_expression(source).names for source in sources))
        return frozenset(
            name
            for name, derived in self.study.derived.items()
            if name in read or _expression(derived.expression).names & own
        )

    @cached_property
    def present_context(self) -> dict[str, object]:
        """The context without its missing values (filtered once, read by every scope)."""
        return {name: value for name, value in self.context.items() if not _is_missing(value)}

    def scope(self, *layers: Mapping[str, object]) -> dict[str, object]:
        """Context, then ``layers``, then the derived variables computed from them."""
        merged = dict(self.present_context)
        for layer in layers:
            merged.update(layer)
        return merged | _derive(self.study, merged, self.today, self.relevant_derived)[0]

    def visible_scope(
        self,
        items: Mapping[str, Item],
        parsed: tuple[dict[str, object], set[str]],
        path: str,
        complete: bool,
        *outer: Mapping[str, object],
    ) -> dict[str, object]:
        """Refuse values of hidden items (removing them) and report missing required ones;
        return the scope expressions of these items see."""
        typed, given = parsed
        scope = self.scope(*outer, typed)
        hidden = False
        for name, item in items.items():
            shown = self.shown(item, scope, f"{path}.{name}")
            if shown is False and name in given:
                message = f"has a value but is hidden: its show_if ({item.show_if}) is false"
                self.errors.append(Problem(f"{path}.{name}", message))
                hidden = typed.pop(name, None) is not None or hidden
            elif complete and item.required and shown is True and name not in given:
                self.errors.append(Problem(f"{path}.{name}", "is required"))
        return self.scope(*outer, typed) if hidden else scope

    def derived_failures(self, scope: Mapping[str, object], own: Iterable[str]) -> None:
        """Derived variables reading these items that cannot be computed are errors."""
        for name, message in _derive(self.study, scope, self.today, self.relevant_derived)[
            1
        ].items():
            if _expression(self.study.derived[name].expression).names & set(own):
                self.errors.append(Problem(f"derived.{name}", f"cannot be computed: {message}"))

    def run_check(self, check: EditCheck, scope: Mapping[str, object], path: str) -> None:
        expression = _expression(check.expression)
        if any(_is_missing(scope.get(name)) for name in expression.names):
            return  # missing data is the business of `required`
        if check.item is None:
            target = path
        elif check.item in self.flat:
            target = f"{self.base}.{check.item}"
        elif any(check.item in items for items in self.repeating.values()):
            target = f"{path}.{check.item}"
        else:
            target = f"forms.{self.study.form_of(check.item)}.{check.item}"
        try:
            holds = expression.evaluate(scope, today=self.today)
        except ExpressionError as error:
            message = f"edit check {check.name} could not be evaluated: {error.message}"
            self.errors.append(Problem(target, message))
            return
        if holds is None or holds:
            return
        problem = Problem(target, f"{check.message.en} (edit check {check.name})")
        (self.errors if check.severity is Severity.ERROR else self.warnings).append(problem)


def validate_form(
    study: Study,
    form_name: str,
    values: Mapping[str, object],
    *,
    complete: bool,
    context: Mapping[str, object] | None = None,
    today: date | None = None,
) -> FormCheck:
    """Check one form's entered values; see the module docstring for every rule.

    ``values`` maps item names of non-repeating groups to values, and each repeating group's
    name to a list of instances (mappings of item names to values). ``complete`` marks the
    form as finished: only then are missing ``required`` items errors. ``context`` holds typed
    values of the subject's other forms for ``show_if`` and edit checks that read them.

    >>> from consortia.domain.templates import load_template
    >>> study = load_template("cart-lbcl")
    >>> check = validate_form(study, "response", {"response": "x", "response_date": "2024-02-30"},
    ...                       complete=True)
    >>> [str(problem) for problem in check.errors]  # doctest: +NORMALIZE_WHITESPACE
    ["<input>: forms.response.response_date: '2024-02-30' is not a date (YYYY-MM-DD)",
     "<input>: forms.response.response: 'x' is not a code of lugano: CR, PR, SD, PD",
     '<input>: forms.response.response_method: is required']
    >>> validate_form(study, "eligibility", {"ecog": "6"}, complete=False).errors[0].message
    '6 is outside 0–5'
    """
    form = study.forms.get(form_name)
    if form is None:
        raise NotFoundError(
            f"form {form_name!r} is not in study {study.study.id}; forms: {', '.join(study.forms)}"
        )
    run = _Run(study, form_name, form, context or {}, today)
    run.unknown(values, [*run.flat, *run.repeating], run.base, f"form {form_name}")
    flat = run.parse_into(run.flat, values, run.base)
    groups: dict[str, list[tuple[dict[str, object], set[str]]]] = {}
    for group, items in run.repeating.items():
        groups[group] = []
        for number, raw in enumerate(run.instances(values.get(group), group), 1):
            path = f"{run.base}.{group}[{number}]"
            run.unknown(raw, list(items), path, f"group {group}")
            groups[group].append(run.parse_into(items, raw, path))

    scope = run.visible_scope(run.flat, flat, run.base, complete)
    scopes = {
        group: [
            run.visible_scope(
                run.repeating[group], parsed, f"{run.base}.{group}[{n}]", complete, flat[0]
            )
            for n, parsed in enumerate(instances, 1)
        ]
        for group, instances in groups.items()
    }
    for check in form.checks:
        names = _expression(check.expression).names
        in_group = next((g for g, items in run.repeating.items() if names & set(items)), None)
        if in_group is None:
            run.run_check(check, scope, run.base)
        for number, instance_scope in enumerate(scopes.get(in_group or "", []), 1):
            run.run_check(check, instance_scope, f"{run.base}.{in_group}[{number}]")

    if not run.errors:  # a derived failure is usually the echo of an error above
        run.derived_failures(scope, run.flat)
        for group, instances in groups.items():
            for instance, _ in instances:
                run.derived_failures(run.scope(flat[0], instance), run.repeating[group])
    parsed_values: dict[str, object] = dict(flat[0])
    parsed_values |= {g: [typed for typed, _ in groups[g]] for g in groups if g in values}
    return FormCheck(
        form_name, tuple(dict.fromkeys(run.errors)), tuple(run.warnings), parsed_values
    )
