"""The checks of a study that its models alone cannot make, each problem at its own position.

Names that must refer to something defined (events to forms, items to code lists, derived
variables and checks to items), expressions that must parse and use known names, status
gates, item ranges, and the arms and randomisation scheme. :func:`semantic_problems` runs them
all on a validated :class:`~consortia.domain.study.Study` and the document it came from.
"""

from __future__ import annotations

import ast

from consortia.domain import expressions
from consortia.domain.study import (
    CODED_TYPES,
    NUMERIC_TYPES,
    UNGATED_STATUSES,
    Item,
    ItemType,
    Range,
    StatusGate,
    Study,
    SubjectStatus,
    factor_levels,
    gate_problem,
)
from consortia.domain.values import event_item_names
from consortia.domain.yamlsource import (
    PathKey,
    YamlDocument,
    dotted,
)
from consortia.exceptions import ExpressionError, Problem

__all__ = ["semantic_problems"]


def _expression_problem(
    doc: YamlDocument, path: PathKey, error: ExpressionError, what: str
) -> Problem:
    line, column = doc.position(path)
    span = doc.span(path)
    if span is not None and span.style in ("'", '"'):
        column += 1
    if error.column and span is not None and span.style not in ("|", ">"):
        column += error.column - 1
    return Problem(dotted(path), f"{what}: {error.message}", doc.file, line, column)


def _char_column(source: str, lineno: int, byte_offset: int) -> int:
    """ast reports UTF-8 byte offsets per line; turn one into a 1-based character column
    counted from the start of the whole source, as ExpressionError columns are."""
    lines = source.splitlines(keepends=True)
    before = sum(len(line) for line in lines[: lineno - 1])
    line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
    return before + len(line.encode("utf-8")[:byte_offset].decode("utf-8", "replace")) + 1


def _check_subscripts(source: str, multichoice: set[str]) -> list[ExpressionError]:
    """Subscripts are only meaningful on multichoice items (``symptoms['fever']``)."""
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    errors = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            name = node.value.id
            if name not in multichoice:
                errors.append(
                    ExpressionError(
                        f"{name!r} is not a multichoice item; only those take [code]",
                        source,
                        _char_column(source, node.lineno, node.col_offset),
                    )
                )
    return errors


def semantic_problems(study: Study, doc: YamlDocument) -> list[Problem]:
    """Every problem of a validated study that its models cannot see, each at its position."""
    problems: list[Problem] = []

    def add(path: PathKey, message: str, *, key: bool = False) -> None:
        line, column = doc.key_position(path) if key else doc.position(path)
        problems.append(Problem(dotted(path), message, doc.file, line, column))

    # names must be unique across the study: expressions refer to them bare
    defined: dict[str, PathKey] = {}
    multichoice: set[str] = set()
    for form_name, group_name, item_name, item in study.iter_items():
        path: PathKey = ("forms", form_name, "groups", group_name, "items", item_name)
        if item_name in defined:
            add(
                path,
                f"duplicate item name {item_name!r}; first defined at "
                f"{dotted(defined[item_name])} (line {doc.key_position(defined[item_name])[0]})",
                key=True,
            )
        else:
            defined[item_name] = path
        if item.type is ItemType.MULTICHOICE:
            multichoice.add(item_name)
        problems.extend(_item_problems(study, doc, path, item))
    for name in study.derived:
        path = ("derived", name)
        if name in defined:
            add(
                path,
                f"derived variable {name!r} has the name of the item at {dotted(defined[name])}",
                key=True,
            )
        else:
            defined[name] = path

    known = set(defined)
    allocated = set(study.allocation_items())
    for event_name, event in study.events.items():
        for index, form_name in enumerate(event.forms):
            if form_name not in study.forms:
                add(
                    ("events", event_name, "forms", index),
                    f"form {form_name!r} is not defined; defined forms: "
                    f"{', '.join(study.forms) or 'none'}",
                )
        if len(set(event.forms)) != len(event.forms):
            add(("events", event_name, "forms"), "a form is listed twice in this event")

    def check_expression(
        path: PathKey, source: str, what: str, names: set[str] | None = None
    ) -> None:
        try:
            parsed = expressions.parse(source)
        except ExpressionError as parse_error:
            problems.append(_expression_problem(doc, path, parse_error, what))
            return
        readable = known if names is None else names
        found = [
            *expressions.check_names(parsed, readable),
            *_check_subscripts(source, multichoice),
        ]
        problems.extend(_expression_problem(doc, path, error, what) for error in found)
        for name in sorted(parsed.names & allocated):
            add(
                path,
                f"reads {name}, the subject's allocation, which no {what} may read: it "
                "would show the arm to blinded readers",
            )

    for form_name, group_name, item_name, item in study.iter_items():
        if item.show_if is not None:
            path = ("forms", form_name, "groups", group_name, "items", item_name, "show_if")
            check_expression(path, item.show_if, "show_if")
    for form_name, form in study.forms.items():
        seen_checks: set[str] = set()
        for index, check in enumerate(form.checks):
            if check.name in seen_checks:
                add(
                    ("forms", form_name, "checks", index, "name"),
                    f"duplicate edit check name {check.name!r}",
                )
            seen_checks.add(check.name)
            check_expression(
                ("forms", form_name, "checks", index, "expression"), check.expression, "edit check"
            )
            if check.item is not None and check.item not in defined:
                add(
                    ("forms", form_name, "checks", index, "item"),
                    f"item {check.item!r} is not defined",
                )
    # a derived variable may also read an item at one of the events collecting its form
    derivable = known | set(event_item_names(study))
    for name, derived in study.derived.items():
        path = ("derived", name, "expression")
        check_expression(path, derived.expression, "derived variable", derivable)
    problems.extend(_randomisation_problems(study, doc))
    problems.extend(_status_problems(study, doc, multichoice))
    for code, site in study.sites.items():
        if not site.node:
            add(("sites", code, "node"), "a site needs the node that hosts it")
    for name, entries in study.code_lists.items():
        if not entries:
            add(("code_lists", name), "code list is empty; give at least one {code, label}")
        codes = [entry.code for entry in entries]
        for index, code in enumerate(codes):
            if code in codes[:index]:
                add(("code_lists", name, index, "code"), f"duplicate code {code!r}")
    return problems


def _status_problems(study: Study, doc: YamlDocument, multichoice: set[str]) -> list[Problem]:
    """Gates must name forms saved in one known event, and read only their form's items."""
    problems: list[Problem] = []

    def add(path: PathKey, message: str, *, key: bool = False) -> None:
        line, column = doc.key_position(path) if key else doc.position(path)
        problems.append(Problem(dotted(path), message, doc.file, line, column))

    own_items: dict[str, dict[str, str | None]] = {}  # form -> item -> repeating group or None
    for form_name, group_name, item_name, _ in study.iter_items():
        group = study.forms[form_name].groups[group_name]
        own_items.setdefault(form_name, {})[item_name] = group_name if group.repeating else None
    form_of = {item: form for form, items in own_items.items() for item in items}
    for status, rule in study.statuses.items():
        if status in UNGATED_STATUSES and rule.requires:
            why = (
                "subjects are created in screening"
                if status is SubjectStatus.SCREENING
                else "a subject may always withdraw"
            )
            add(("statuses", status.value), f"{status.value} takes no conditions: {why}", key=True)
            continue
        for index, gate in enumerate(rule.requires):
            path: PathKey = ("statuses", status.value, "requires", index)
            if gate.form not in study.forms:
                add(
                    (*path, "form"),
                    f"form {gate.form!r} is not defined; defined forms: "
                    f"{', '.join(study.forms) or 'none'}",
                )
                continue
            holding = [name for name, event in study.events.items() if gate.form in event.forms]
            if gate.event is not None:
                if gate.event not in study.events:
                    add(
                        (*path, "event"),
                        f"event {gate.event!r} is not defined; the events with form "
                        f"{gate.form}: {', '.join(holding) or 'none'}",
                    )
                elif gate.event not in holding:
                    add(
                        (*path, "event"),
                        f"event {gate.event!r} does not hold form {gate.form}; the events "
                        f"that do: {', '.join(holding) or 'none'}",
                    )
            elif not holding:
                add((*path, "form"), f"form {gate.form!r} is in no event, so it is never saved")
            elif len(holding) > 1:
                add(
                    (*path, "form"),
                    f"form {gate.form!r} is in events {', '.join(holding)}; say which with 'event'",
                )
            if gate.when is not None:
                problems.extend(
                    _gate_condition_problems(
                        doc,
                        (*path, "when"),
                        gate,
                        own_items[gate.form],
                        form_of,
                        multichoice,
                        frozenset(study.allocation_items()),
                    )
                )
    return problems


def _gate_condition_problems(
    doc: YamlDocument,
    path: PathKey,
    gate: StatusGate,
    items: dict[str, str | None],
    form_of: dict[str, str],
    multichoice: set[str],
    allocated: frozenset[str] = frozenset(),
) -> list[Problem]:
    assert gate.when is not None
    what = "status condition"
    try:
        parsed = expressions.parse(gate.when)
    except ExpressionError as parse_error:
        return [_expression_problem(doc, path, parse_error, what)]
    readable = {name for name, group in items.items() if group is None}
    found: list[ExpressionError] = []
    for name in sorted(parsed.names - readable, key=parsed.column_of):
        group = items.get(name)
        if group is not None:
            message = (
                f"{name!r} is in the repeating group {group!r}; a condition reads only items "
                "outside repeating groups"
            )
        elif name in form_of:
            message = (
                f"{name!r} is an item of form {form_of[name]}, not of {gate.form}; a condition "
                "reads only its own form's items"
            )
        else:
            (unknown,) = expressions.check_names(expressions.parse(name), readable)
            message = unknown.message
        found.append(ExpressionError(message, gate.when, parsed.column_of(name)))
    found.extend(_check_subscripts(gate.when, multichoice))
    found.extend(
        ExpressionError(
            f"reads {name}, the subject's allocation, which no condition may read: it would "
            "show the arm to blinded readers",
            gate.when,
            parsed.column_of(name),
        )
        for name in sorted(parsed.names & allocated, key=parsed.column_of)
    )
    return [_expression_problem(doc, path, error, what) for error in found]


def _item_problems(study: Study, doc: YamlDocument, path: PathKey, item: Item) -> list[Problem]:
    problems: list[Problem] = []

    def add(sub: PathKey, message: str) -> None:
        line, column = doc.position((*path, *sub))
        problems.append(Problem(dotted((*path, *sub)), message, doc.file, line, column))

    numeric = item.type in NUMERIC_TYPES
    for key in ("range", "soft_range"):
        bounds: Range | None = getattr(item, key)
        if bounds is None:
            continue
        if not numeric:
            add((key,), f"{key} applies to integer and decimal items, not {item.type.value}")
            continue
        if bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
            add((key,), f"min {bounds.min:g} is greater than max {bounds.max:g}")
    hard, soft = item.range, item.soft_range
    if numeric and hard is not None and soft is not None:
        if soft.min is not None and hard.min is not None and soft.min < hard.min:
            add(
                ("soft_range", "min"),
                f"soft min {soft.min:g} is below the hard min {hard.min:g}; it must lie inside "
                "the hard range",
            )
        if soft.max is not None and hard.max is not None and soft.max > hard.max:
            add(
                ("soft_range", "max"),
                f"soft max {soft.max:g} is above the hard max {hard.max:g}; it must lie inside "
                "the hard range",
            )
        if soft.min is not None and hard.max is not None and soft.min > hard.max:
            add(("soft_range", "min"), f"soft min {soft.min:g} is above the hard max {hard.max:g}")
        if soft.max is not None and hard.min is not None and soft.max < hard.min:
            add(("soft_range", "max"), f"soft max {soft.max:g} is below the hard min {hard.min:g}")
    if item.type in CODED_TYPES:
        if item.code_list is None:
            add(("type",), f"a {item.type.value} item needs a code_list")
        elif item.code_list not in study.code_lists:
            add(
                ("code_list",),
                f"code list {item.code_list!r} is not defined; defined: "
                f"{', '.join(study.code_lists) or 'none'}",
            )
    elif item.code_list is not None:
        add(
            ("code_list",),
            f"code_list applies to choice and multichoice items, not {item.type.value}",
        )
    if item.allocated:
        problems.extend(_allocation_problems(study, doc, path, item))
    if item.precision is not None and item.type is not ItemType.DECIMAL:
        add(("precision",), "precision applies to decimal items only")
    if item.type is ItemType.INTEGER:
        for key in ("range", "soft_range"):
            bounds = getattr(item, key)
            for end in ("min", "max"):
                value = getattr(bounds, end) if bounds else None
                if value is not None and value != int(value):
                    add((key, end), f"an integer item's {end} must be a whole number")
    return problems


def _allocation_problems(
    study: Study, doc: YamlDocument, path: PathKey, item: Item
) -> list[Problem]:
    """Why an item cannot hold the subject's allocation (``source: randomisation``)."""
    problems: list[Problem] = []

    def add(sub: PathKey, message: str) -> None:
        line, column = doc.position((*path, *sub))
        problems.append(Problem(dotted((*path, *sub)), message, doc.file, line, column))

    if study.randomisation is None:
        add(("source",), "an item filled from the allocation needs a randomisation scheme")
    arms = ", ".join(study.arms) or "none"
    if item.type is not ItemType.CHOICE:
        add(("type",), f"an item filled from the allocation is a choice item of the arms ({arms})")
    elif item.code_list in study.code_lists:
        codes = {entry.code for entry in study.code_lists[item.code_list]}
        if codes != set(study.arms):
            add(
                ("code_list",),
                f"code list {item.code_list!r} must hold exactly the arms' codes ({arms}) "
                "for an item filled from the allocation",
            )
    if item.required:
        add(("required",), "an item filled from the allocation is never typed: drop required")
    if item.show_if is not None:
        add(("show_if",), "an item filled from the allocation is always shown: drop show_if")
    return problems


def _randomisation_problems(study: Study, doc: YamlDocument) -> list[Problem]:
    """Every misfit of the arms and the randomisation scheme, each at its own position."""
    problems: list[Problem] = []

    def add(path: PathKey, message: str, *, key: bool = False) -> None:
        line, column = doc.key_position(path) if key else doc.position(path)
        problems.append(Problem(dotted(path), message, doc.file, line, column))

    codes: dict[str, str] = {}
    labels: dict[tuple[str, str], str] = {}  # (language, label folded) -> first arm
    for arm_code, arm in study.arms.items():
        if arm.code is not None:
            if arm.code in codes:
                add(
                    ("arms", arm_code, "code"),
                    f"duplicate arm: allocation code {arm.code!r} is also arm "
                    f"{codes[arm.code]!r}'s",
                )
            codes.setdefault(arm.code, arm_code)
        for lang in ("en", "zh"):
            text = arm.label.get(lang)
            first = labels.setdefault((lang, text.casefold()), arm_code)
            if first != arm_code:
                add(
                    ("arms", arm_code, "label", lang),
                    f"duplicate arm: label {text!r} is also arm {first!r}'s",
                )
    coded = [arm_code for arm_code, arm in study.arms.items() if arm.code is not None]
    if coded and len(coded) != len(study.arms):
        for arm_code, arm in study.arms.items():
            if arm.code is None:
                add(
                    ("arms", arm_code),
                    "every arm needs an allocation code once one has (given for "
                    f"{', '.join(coded)})",
                    key=True,
                )

    scheme = study.randomisation
    if scheme is None:
        return problems
    base: PathKey = ("randomisation",)
    given = scheme.model_fields_set
    own = {
        "permuted_blocks": {"block_sizes", "strata", "blocks_per_stratum"},
        "minimisation": {"factors", "imbalance", "probability"},
    }
    for method, fields in own.items():
        if method != scheme.method:
            for name in sorted(fields & given):
                add((*base, name), f"{name} applies to {method}, not {scheme.method}", key=True)
    if len(study.arms) < 2:
        add(
            base,
            f"randomisation needs at least two arms; arms defines {len(study.arms)}",
            key=True,
        )
    ratios = [arm.ratio for arm in study.arms.values()]
    ratio_text = ":".join(str(r) for r in ratios) + f" ({':'.join(study.arms)})"

    seen: dict[str, int] = {}

    def check_factor(path: PathKey, index: int, factor: str) -> None:
        if factor in seen:
            add(path, f"duplicate factor {factor!r} (also at index {seen[factor]})")
            return
        seen[factor] = index
        _, message = factor_levels(study, factor)
        if message is not None:
            add(path, message)

    for index, gate in enumerate(scheme.gates):
        path = (*base, "gates", index)
        if gate in scheme.gates[:index]:
            add(path, f"duplicate gate {gate!r}")
            continue
        message = gate_problem(study, gate)
        if message is not None:
            add(path, message)
    if scheme.method == "permuted_blocks":
        total = sum(ratios)
        if not scheme.block_sizes:
            add(
                base,
                f"permuted_blocks needs block_sizes, e.g. [{total * 2}, {total * 3}] for the arm "
                f"ratios {ratio_text}",
                key=True,
            )
        for index, size in enumerate(scheme.block_sizes):
            path = (*base, "block_sizes", index)
            if size in scheme.block_sizes[:index]:
                add(path, f"duplicate block size {size}")
            elif size <= 0 or (total and size % total):
                add(
                    path,
                    f"block size {size} is not a positive multiple of {total}, the sum of the "
                    f"arm ratios {ratio_text}; use {total * 2}, {total * 3}, …",
                )
        if scheme.blocks_per_stratum < 1:
            add(
                (*base, "blocks_per_stratum"),
                f"blocks_per_stratum must be at least 1 (got {scheme.blocks_per_stratum})",
            )
        for index, factor in enumerate(scheme.strata):
            check_factor((*base, "strata", index), index, factor)
    else:
        if not scheme.factors:
            add(base, "minimisation needs factors, e.g. [{factor: site, weight: 1}]", key=True)
        for index, entry in enumerate(scheme.factors):
            check_factor((*base, "factors", index, "factor"), index, entry.factor)
            if not (entry.weight > 0 and entry.weight < float("inf")):
                add(
                    (*base, "factors", index, "weight"),
                    f"weight must be a positive number (got {entry.weight:g})",
                )
        if not 0.5 < scheme.probability <= 1:
            add(
                (*base, "probability"),
                f"probability {scheme.probability:g} is outside (0.5, 1]: the arm that "
                "minimises the imbalance must be the more likely (0.8 is usual)",
            )
    return problems
