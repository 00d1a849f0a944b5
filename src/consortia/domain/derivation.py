"""Derived variables: expressions over a subject's items, computed in dependency order.

:func:`compute_derived` evaluates every derived variable of a study; :func:`derive` only
those a caller wants (and those they read), which is what checking one form needs.
Expressions are parsed once per source text (:func:`expression`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import lru_cache

from consortia.domain import expressions
from consortia.domain.study import Study
from consortia.exceptions import ExpressionError, Problem, StudyDefinitionError, ValidationError

__all__ = ["coerce_derived", "compute_derived", "derive", "derived_closure", "expression"]


@lru_cache(maxsize=4096)
def expression(source: str) -> expressions.Expression:
    """The parsed expression of ``source`` (parsed once per text)."""
    return expressions.parse(source)


@lru_cache(maxsize=256)
def _derived_order(definitions: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Derived names in an order where each comes after the derived variables it reads."""
    names = {name for name, _ in definitions}
    reads = {name: sorted(expression(src).names & names) for name, src in definitions}
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


def coerce_derived(value: object, kind: str) -> object:
    """A derived value as its declared type: an integer variable holds no bool or float."""
    if kind == "integer" and isinstance(value, bool):
        return int(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@lru_cache(maxsize=1024)
def derived_closure(
    definitions: tuple[tuple[str, str], ...], wanted: frozenset[str]
) -> tuple[str, ...]:
    """The derived variables ``wanted`` and those they read, in evaluation order."""
    names = {name for name, _ in definitions}
    reads = {name: expression(src).names & names for name, src in definitions}
    needed: set[str] = set()
    stack = [name for name in wanted if name in names]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(reads[name])
    return tuple(name for name in _derived_order(definitions) if name in needed)


def derive(
    study: Study,
    values: Mapping[str, object],
    today: date | None,
    wanted: frozenset[str] | None = None,
) -> tuple[dict[str, object], dict[str, str]]:
    """(derived values, {name: why it could not be computed}); only ``wanted`` (and what
    they read) when given."""
    definitions = tuple((name, d.expression) for name, d in study.derived.items())
    order = _derived_order(definitions) if wanted is None else derived_closure(definitions, wanted)
    scope = dict(values)
    results: dict[str, object] = {}
    failures: dict[str, str] = {}
    for name in order:
        definition = study.derived[name]
        try:
            value = expression(definition.expression).evaluate(scope, today=today)
        except ExpressionError as error:
            failures[name] = error.message
            value = None
        results[name] = scope[name] = coerce_derived(value, definition.type.value)
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
    results, failures = derive(study, values_by_item, today)
    if failures and strict:  # not strict: a variable that cannot be computed is missing
        raise ValidationError(
            [Problem(f"derived.{name}", message) for name, message in failures.items()]
        )
    return results
