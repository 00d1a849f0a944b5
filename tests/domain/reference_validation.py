"""The form check as first written: an interpreter over the study model, kept as the
reference the compiled :class:`~consortia.domain.validation.FormPlan` must agree with.

It re-reads the form's layout, re-parses every value and recomputes the derived variables
of every scope on each call; :mod:`consortia.domain.validation` compiles all of that once per
form. ``test_validation_plan.py`` checks that both give the same errors, warnings, hidden
items and values (and in the same order) on generated and corrupted forms of every template.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cached_property

from consortia.domain.derivation import derive as _derive
from consortia.domain.derivation import expression as _expression
from consortia.domain.parsing import is_missing as _is_missing
from consortia.domain.parsing import outside as _outside
from consortia.domain.parsing import parse_raw as _parse
from consortia.domain.study import (
    ALLOCATION_FILLED,
    NUMERIC_TYPES,
    EditCheck,
    Form,
    Item,
    Severity,
    Study,
)
from consortia.domain.validation import FormCheck
from consortia.exceptions import ExpressionError, NotFoundError, Problem


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
    hidden: set[str] = field(default_factory=set)

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
            if item.allocated:  # never typed: the subject's allocation fills it
                self.errors.append(Problem(f"{path}.{name}", ALLOCATION_FILLED))
                continue
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
            if shown is False:
                self.hidden.add(f"{path}.{name}")
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


def reference_validate_form(
    study: Study,
    form_name: str,
    values: Mapping[str, object],
    *,
    complete: bool,
    context: Mapping[str, object] | None = None,
    today: date | None = None,
) -> FormCheck:
    """validate_form as first written (see the module docstring)."""
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
        form_name,
        tuple(dict.fromkeys(run.errors)),
        tuple(run.warnings),
        parsed_values,
        frozenset(run.hidden),
    )
