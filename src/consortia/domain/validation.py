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

A form's checks are compiled once per study and form into a :class:`FormPlan`
(:func:`form_plan`): item readers, show_if and edit-check expressions with their targets,
and the derived variables it needs, in evaluation order. A plan belongs to one
:class:`~consortia.domain.study.Study` object: a new study version never meets an old plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Final

from consortia.domain.derivation import (
    coerce_derived,
    compute_derived,
    derived_closure,
    expression,
)
from consortia.domain.expressions import Expression
from consortia.domain.parsing import (
    is_missing,
    outside,
    parse_item_value,
    parse_raw,
    parse_value,
)
from consortia.domain.study import ALLOCATION_FILLED as _FILLED
from consortia.domain.study import NUMERIC_TYPES, EditCheck, Form, Item, Severity, Study
from consortia.exceptions import ExpressionError, NotFoundError, Problem

__all__ = [
    "FormCheck",
    "FormPlan",
    "compute_derived",
    "form_plan",
    "parse_item_value",
    "parse_value",
    "typed_value",
    "validate_form",
]

#: Texts up to _MEMO_TEXT long are parsed once per item, _MEMO_SIZE at most: files repeat;
#: plans are kept for _PLAN_STUDIES studies (a node holds a few; a version is a new study).
_MEMO_TEXT, _MEMO_SIZE, _PLAN_STUDIES = 64, 8192, 16


@dataclass(frozen=True)
class FormCheck:
    """The outcome of :func:`validate_form`: hard errors, soft warnings and parsed values.

    ``values`` maps item names of non-repeating groups to parsed values, and each repeating
    group's name to a list of instances (each a dict of parsed values). Missing values, values
    that failed to parse and values of hidden items are left out. ``hidden`` holds the paths
    of the items whose ``show_if`` is false for these values (the page hides them).
    """

    form: str
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    values: Mapping[str, object] = field(default_factory=dict)
    hidden: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings do not stop a save)."""
        return not self.errors


# ---------------------------------------------------------------------------- the plan
#: What reading one entered value gives: (missing, parsed value, errors, soft-range
#: warning). The parsed value is kept when only its range is refused (see typed_value).
_Outcome = tuple[bool, object, tuple[str, ...], str | None]
_MISSING: Final[_Outcome] = (True, None, (), None)
#: The parsed value of a value that could not be parsed.
_REFUSED: Final = object()
#: Values of these types are never missing (the context is mostly made of them).
_PRESENT_TYPES: Final = frozenset({int, float, Decimal, bool, date, datetime, time})


class _Reader:
    """Parses and range-checks one item's entered values; remembers short texts."""

    __slots__ = ("item", "memo", "numeric", "study")

    def __init__(self, study: Study, item: Item) -> None:
        self.study, self.item = study, item
        self.numeric = item.type in NUMERIC_TYPES
        self.memo: dict[str, _Outcome] = {}

    def __call__(self, raw: object) -> _Outcome:
        if type(raw) is not str or len(raw) > _MEMO_TEXT:
            return self.read(raw)
        outcome = self.memo.get(raw)
        if outcome is None:
            outcome = self.read(raw)
            if len(self.memo) < _MEMO_SIZE:
                self.memo[raw] = outcome
        return outcome

    def read(self, raw: object) -> _Outcome:
        if is_missing(raw):
            return _MISSING
        if self.item.allocated:  # never typed: the allocation fills it
            return False, _REFUSED, (_FILLED,), None
        value, problems = parse_raw(self.study, self.item, raw)
        if problems:
            return False, _REFUSED, tuple(problems), None
        if not self.numeric:
            return False, value, (), None
        assert isinstance(value, int | Decimal)
        hard = outside(value, self.item.range)
        if hard:
            return False, value, (hard,), None
        soft = outside(value, self.item.soft_range)
        warning = None if soft is None else f"{soft}, the expected range; please confirm"
        return False, value, (), warning


@dataclass(frozen=True, slots=True)
class _ItemPlan:
    name: str
    read: _Reader
    required: bool
    show_if: Expression | None
    show_source: str | None
    #: names the show_if reads that are neither the form's items nor derived variables:
    #: items of other forms, which the context must hold for the show_if to be decided
    foreign: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _GroupPlan:
    name: str
    items: tuple[_ItemPlan, ...]
    names: frozenset[str]
    known: str  # the item names, joined, for "its items: ..."
    #: derived variables (of the form's) that read an item of this group
    reads_own: frozenset[str]


@dataclass(frozen=True, slots=True)
class _CheckPlan:
    check: EditCheck
    expression: Expression
    names: tuple[str, ...]
    group: str | None  # the repeating group whose items it reads: runs once per instance
    #: the problem path: fixed, or None for the path of the scope it runs in, or a suffix
    #: added to that path (an item of a repeating group)
    target: str | None
    per_path: bool
    message: str


@dataclass(frozen=True, slots=True)
class _Derived:
    name: str
    expression: Expression
    kind: str


def _items(study: Study, items: Mapping[str, Item], own: frozenset[str]) -> tuple[_ItemPlan, ...]:
    derived = frozenset(study.derived)
    plans = []
    for name, item in items.items():
        show_if = None if item.show_if is None else expression(item.show_if)
        foreign = () if show_if is None else tuple(sorted(show_if.names - own - derived))
        plans.append(
            _ItemPlan(name, _Reader(study, item), item.required, show_if, item.show_if, foreign)
        )
    return tuple(plans)


class FormPlan:
    """One form's checks, compiled: :meth:`check` is :func:`validate_form` for this form.

    Build it with :func:`form_plan` (one per study object and form).
    """

    def __init__(self, plans: _StudyPlans, form_name: str, form: Form) -> None:
        study = plans.study
        self.study, self.form_name, self.form = study, form_name, form
        self.base = f"forms.{form_name}"
        own = frozenset(name for group in form.groups.values() for name in group.items)
        flat = {n: i for g in form.groups.values() if not g.repeating for n, i in g.items.items()}
        repeating = {name: g.items for name, g in form.groups.items() if g.repeating}
        self.own = own  # every item of the form
        self.flat_names = frozenset(flat)
        self.flat = _items(study, flat, own)
        # derived variables this form's expressions read, or that read its items: the only
        # ones a check of this form needs (computing all of them costs most of a check)
        sources = [item.show_if for group in form.groups.values()
                   for item in group.items.values() if item.show_if]  # fmt: skip
        sources += [check.expression for check in form.checks]
        read = set().union(*(expression(source).names for source in sources))
        relevant = frozenset(
            name
            for name, derived in study.derived.items()
            if name in read or expression(derived.expression).names & own
        )
        definitions = tuple((name, d.expression) for name, d in study.derived.items())
        self.derived = tuple(
            _Derived(
                name, expression(study.derived[name].expression), study.derived[name].type.value
            )
            for name in derived_closure(definitions, relevant)
        )
        reads = {d.name: d.expression.names for d in self.derived}
        self.flat_reads_own = frozenset(n for n, names in reads.items() if names & self.flat_names)
        self.groups = tuple(
            _GroupPlan(
                name,
                _items(study, items, own),
                frozenset(items),
                ", ".join(items),
                frozenset(n for n, names in reads.items() if names & set(items)),
            )
            for name, items in repeating.items()
        )
        self.form_known = [*flat, *repeating]
        self.form_known_set = frozenset(self.form_known)
        self.form_known_text = ", ".join(self.form_known)
        # an item name -> its repeating group (the last group wins, as a dict would have it)
        self.in_groups = {n: g.name for g in self.groups for n in g.names}
        self.form_of = {name: place[0] for name, place in plans.items.items()}
        self.checks = tuple(self._check_plan(check) for check in form.checks)

    def _check_plan(self, check: EditCheck) -> _CheckPlan:
        compiled = expression(check.expression)
        group = next((g.name for g in self.groups if compiled.names & g.names), None)
        target: str | None = None
        per_path = False
        if check.item is None:
            per_path = True
        elif check.item in self.flat_names:
            target = f"{self.base}.{check.item}"
        elif any(check.item in g.names for g in self.groups):
            target, per_path = f".{check.item}", True
        elif check.item in self.form_of:
            target = f"forms.{self.form_of[check.item]}.{check.item}"
        else:  # pragma: no cover - a study load refuses a check on an unknown item
            raise KeyError(check.item)
        message = f"{check.message.en} (edit check {check.name})"
        return _CheckPlan(check, compiled, tuple(compiled.names), group, target, per_path, message)

    # ------------------------------------------------------------------------ checking

    def check(
        self,
        values: Mapping[str, object],
        *,
        complete: bool,
        context: Mapping[str, object] | None = None,
        today: date | None = None,
        present: bool = False,
    ) -> FormCheck:
        """Check one form's entered values; see :func:`validate_form`.

        ``present=True`` promises that no context value is missing (as with values from
        :func:`typed_value`), which spares filtering the context on every call.
        """
        return _Run(self, context or {}, today, present).check(values, complete)


class _Run:
    """The state of one check: the plan, the context and the problems found."""

    __slots__ = ("context", "errors", "hidden", "plan", "present", "today", "warnings")
    present: Mapping[str, object]

    def __init__(
        self, plan: FormPlan, context: Mapping[str, object], today: date | None, present: bool
    ) -> None:
        self.plan, self.context, self.today = plan, context, today
        self.present = (
            context
            if present
            else {
                name: value
                for name, value in context.items()
                if type(value) in _PRESENT_TYPES or not is_missing(value)
            }
        )
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.hidden: set[str] = set()

    def check(self, values: Mapping[str, object], complete: bool) -> FormCheck:
        plan = self.plan
        base = plan.base
        self.unknown(values, plan.form_known_set, plan.form_known_text, base, None)
        flat = self.parse_into(plan.flat, values, base)
        groups: list[tuple[_GroupPlan, list[tuple[dict[str, object], set[str]]]]] = []
        for group in plan.groups:
            parsed = []
            for number, raw in enumerate(self.instances(values.get(group.name), group.name), 1):
                path = f"{base}.{group.name}[{number}]"
                self.unknown(raw, group.names, group.known, path, group.name)
                parsed.append(self.parse_into(group.items, raw, path))
            groups.append((group, parsed))

        scope, failures = self.visible_scope(plan.flat, flat, base, complete, None)
        scopes: dict[str, list[tuple[str, dict[str, object], dict[str, str]]]] = {}
        for group, instances in groups:
            scopes[group.name] = []
            for number, parsed_instance in enumerate(instances, 1):
                path = f"{base}.{group.name}[{number}]"
                shown = self.visible_scope(group.items, parsed_instance, path, complete, flat[0])
                scopes[group.name].append((path, *shown))
        for check in plan.checks:
            if check.group is None:
                self.run_check(check, scope, base)
            for path, instance_scope, _ in scopes.get(check.group or "", ()):
                self.run_check(check, instance_scope, path)

        if not self.errors:  # a derived failure is usually the echo of an error above
            self.derived_failures(failures, plan.flat_reads_own)
            for group, _ in groups:
                for _, _, instance_failures in scopes[group.name]:
                    self.derived_failures(instance_failures, group.reads_own)
        parsed_values: dict[str, object] = dict(flat[0])
        parsed_values |= {
            group.name: [typed for typed, _ in instances]
            for group, instances in groups
            if group.name in values
        }
        errors = tuple(dict.fromkeys(self.errors))
        hidden = frozenset(self.hidden)
        return FormCheck(plan.form_name, errors, tuple(self.warnings), parsed_values, hidden)

    def unknown(
        self,
        keys: Iterable[str],
        known: frozenset[str],
        known_text: str,
        path: str,
        group: str | None,
    ) -> None:
        plan = self.plan
        for key in keys:
            if key in known:
                continue
            if group is None and key in plan.in_groups:
                in_group = plan.in_groups[key]
                message = (
                    f"belongs to the repeating group {in_group}; give it inside {in_group}[...]"
                )
            else:
                where = f"form {plan.form_name}" if group is None else f"group {group}"
                other = plan.form_of.get(key)
                elsewhere = "" if other is None else f" (it belongs to form {other})"
                message = f"is not an item of {where}{elsewhere}; its items: {known_text}"
            self.errors.append(Problem(f"{path}.{key}", message))

    def instances(self, raw: object, group: str) -> list[Mapping[str, object]]:
        path = f"{self.plan.base}.{group}"
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
        self, items: tuple[_ItemPlan, ...], raw: Mapping[str, object], path: str
    ) -> tuple[dict[str, object], set[str]]:
        """Parse the values of ``items`` present in ``raw``: (typed values, names given)."""
        typed: dict[str, object] = {}
        given: set[str] = set()
        for item in items:
            name = item.name
            if name not in raw:
                continue
            missing, value, problems, soft = item.read(raw[name])
            if missing:
                continue
            given.add(name)
            if problems:
                self.errors.extend(Problem(f"{path}.{name}", message) for message in problems)
                continue
            if soft is not None:
                self.warnings.append(Problem(f"{path}.{name}", soft))
            typed[name] = value
        return typed, given

    def scope(self, *layers: Mapping[str, object]) -> tuple[dict[str, object], dict[str, str]]:
        """Context, then ``layers``, then the derived variables computed from them; and why
        derived variables could not be computed."""
        scope = dict(self.present)
        for layer in layers:
            scope.update(layer)
        failures: dict[str, str] = {}
        today = self.today
        for derived in self.plan.derived:
            try:
                value = derived.expression.evaluate(scope, today=today)
            except ExpressionError as error:
                failures[derived.name] = error.message
                value = None
            scope[derived.name] = coerce_derived(value, derived.kind)
        return scope, failures

    def visible_scope(
        self,
        items: tuple[_ItemPlan, ...],
        parsed: tuple[dict[str, object], set[str]],
        path: str,
        complete: bool,
        outer: Mapping[str, object] | None,
    ) -> tuple[dict[str, object], dict[str, str]]:
        """Refuse values of hidden items (removing them) and report missing required ones;
        return the scope expressions of these items see."""
        typed, given = parsed
        layers = (typed,) if outer is None else (outer, typed)
        scope = self.scope(*layers)
        hidden = False
        for item in items:
            shown = self.shown(item, scope[0], path)
            name = item.name
            if shown is False:
                self.hidden.add(f"{path}.{name}")
            if shown is False and name in given:
                message = f"has a value but is hidden: its show_if ({item.show_source}) is false"
                self.errors.append(Problem(f"{path}.{name}", message))
                hidden = typed.pop(name, None) is not None or hidden
            elif complete and item.required and shown is True and name not in given:
                self.errors.append(Problem(f"{path}.{name}", "is required"))
        return self.scope(*layers) if hidden else scope

    def shown(self, item: _ItemPlan, scope: Mapping[str, object], path: str) -> bool | None:
        """Whether the item is shown; None when its show_if reads an item of another form
        that the context lacks."""
        if item.show_if is None:
            return True
        context = self.context
        if any(name not in context for name in item.foreign):
            return None
        try:
            return bool(item.show_if.evaluate(scope, today=self.today))
        except ExpressionError as error:
            message = f"show_if could not be evaluated: {error.message}"
            self.errors.append(Problem(f"{path}.{item.name}", message))
            return True

    def derived_failures(self, failures: Mapping[str, str], reads_own: frozenset[str]) -> None:
        """Derived variables reading these items that cannot be computed are errors."""
        for name, message in failures.items():
            if name in reads_own:
                self.errors.append(Problem(f"derived.{name}", f"cannot be computed: {message}"))

    def run_check(self, check: _CheckPlan, scope: Mapping[str, object], path: str) -> None:
        if any(is_missing(scope.get(name)) for name in check.names):
            return  # missing data is the business of `required`
        if check.per_path:
            target = path if check.target is None else path + check.target
        else:
            assert check.target is not None
            target = check.target
        try:
            holds = check.expression.evaluate(scope, today=self.today)
        except ExpressionError as error:
            message = f"edit check {check.check.name} could not be evaluated: {error.message}"
            self.errors.append(Problem(target, message))
            return
        if holds is None or holds:
            return
        problem = Problem(target, check.message)
        (self.errors if check.check.severity is Severity.ERROR else self.warnings).append(problem)


class _StudyPlans:
    """What is compiled for one study object: form plans and item readers."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.forms: dict[str, FormPlan] = {}
        self.readers: dict[str, _Reader] = {}
        #: each item name's first definition (and its form), as StudyIndex finds it
        self.items: dict[str, tuple[str, Item]] = {}
        for form, _, name, item in study.iter_items():
            self.items.setdefault(name, (form, item))


_PLANS: dict[int, _StudyPlans] = {}


def _plans(study: Study) -> _StudyPlans:
    """Plans are kept per study *object* (frozen; a new protocol version is a new object;
    the entry holds the study, so its id is not reused while the entry lives)."""
    entry = _PLANS.get(id(study))
    if entry is None or entry.study is not study:
        while len(_PLANS) >= _PLAN_STUDIES:
            del _PLANS[next(iter(_PLANS))]
        entry = _PLANS[id(study)] = _StudyPlans(study)
    return entry


def form_plan(study: Study, form_name: str) -> FormPlan:
    """The compiled checks of one form of ``study`` (built on first use, then kept).

    >>> from consortia.domain.templates import load_template
    >>> study = load_template("cart-lbcl")
    >>> form_plan(study, "eligibility") is form_plan(study, "eligibility")
    True
    """
    plans = _plans(study)
    plan = plans.forms.get(form_name)
    if plan is None:
        form = study.forms.get(form_name)
        if form is None:
            raise NotFoundError(
                f"form {form_name!r} is not in study {study.study.id}; "
                f"forms: {', '.join(study.forms)}"
            )
        plan = plans.forms[form_name] = FormPlan(plans, form_name, form)
    return plan


def typed_value(study: Study, item_name: str, raw: object) -> object:
    """The typed value of one entered value (ranges are not checked); None when it is
    missing, cannot be parsed, or no item has that name. Short texts are parsed once.

    >>> from consortia.domain.templates import load_template
    >>> study = load_template("cart-lbcl")
    >>> typed_value(study, "max_temp", "38.5"), typed_value(study, "max_temp", "hot")
    (Decimal('38.5'), None)
    """
    plans = _plans(study)
    reader = plans.readers.get(item_name)
    if reader is None:
        place = plans.items.get(item_name)
        if place is None:
            return None
        reader = plans.readers[item_name] = _Reader(study, place[1])
    missing, value, _, _ = reader(raw)
    return None if missing or value is _REFUSED else value


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
    return form_plan(study, form_name).check(
        values, complete=complete, context=context, today=today
    )
