"""The study definition language: a whole protocol as one reviewed YAML file.

A study file has these top-level keys (see ``examples/`` and docs/study-language.md)::

    study:        id, title {en, zh}, phase, sponsor, partners, version
    sites:        CODE -> {name, country, node}
    arms:         CODE -> {label {en, zh}, ratio, code}
    randomisation: {method: permuted_blocks | minimisation, ...}   (see Randomisation)
    code_lists:   NAME -> [{code, label {en, zh}}, ...]
    events:       NAME -> {label, day, window {before, after}, repeating, forms [...]}
    forms:        NAME -> {label, groups: NAME -> {label, repeating, items: NAME -> Item},
                           checks: [{name, expression, severity, message}]}
    derived:      NAME -> {expression, type, label, unit}
    statuses:     STATUS -> {requires: [{form, event, complete, when}]}   (status gates)
    analysis_plan: NAME -> {kind, table, ...}   (the analysis request JSON of DESIGN.md)

The models are frozen pydantic models. :func:`load_study` reports *every* problem at once,
each with the file, line, column and dotted path, as a :class:`StudyDefinitionError`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from consortia.domain import expressions
from consortia.domain.yamlsource import (
    PathKey,
    YamlDocument,
    dotted,
    load_yaml_file,
    load_yaml_text,
)
from consortia.exceptions import ExpressionError, Problem, StudyDefinitionError

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Text(_Model):
    """A label in English and Simplified Chinese; both are required."""

    en: NonEmpty
    zh: NonEmpty

    def get(self, lang: str) -> str:
        return self.zh if lang.startswith("zh") else self.en


class Phase(StrEnum):
    PHASE_1 = "1"
    PHASE_1_2 = "1/2"
    PHASE_2 = "2"
    PHASE_2_3 = "2/3"
    PHASE_3 = "3"
    PHASE_4 = "4"
    PILOT = "pilot"
    PIVOTAL = "pivotal"
    OBSERVATIONAL = "observational"
    NOT_APPLICABLE = "n/a"


class StudyInfo(_Model):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    title: Text
    phase: Phase
    sponsor: NonEmpty
    partners: tuple[NonEmpty, ...] = ()
    version: NonEmpty
    description: Text | None = None


class Site(_Model):
    name: NonEmpty
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    node: Name


class Arm(_Model):
    label: Text
    ratio: Annotated[int, Field(gt=0)] = 1
    #: allocation code shown instead of the arm where the allocation is blinded (e.g. "A")
    code: Code | None = None


class CodeListEntry(_Model):
    code: Code
    label: Text


# A protocol's days and windows span at most a century; a day beyond any calendar (a
# typing slip: 1e9) is refused with the study file's line, not when a subject is enrolled.
MAX_SCHEDULE_DAYS = 36_525
ScheduleDays = Annotated[int, Field(ge=0, le=MAX_SCHEDULE_DAYS)]


class Window(_Model):
    before: ScheduleDays = 0
    after: ScheduleDays = 0


class Event(_Model):
    label: Text
    day: Annotated[int, Field(ge=-MAX_SCHEDULE_DAYS, le=MAX_SCHEDULE_DAYS)] | None = None
    window: Window = Window()
    repeating: bool = False
    unscheduled: bool = False
    forms: tuple[Name, ...]


class ItemType(StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    TIME = "time"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    MULTICHOICE = "multichoice"
    FILE = "file"


NUMERIC_TYPES = frozenset({ItemType.INTEGER, ItemType.DECIMAL})
CODED_TYPES = frozenset({ItemType.CHOICE, ItemType.MULTICHOICE})


class Range(_Model):
    min: float | None = None
    max: float | None = None


class Item(_Model):
    type: ItemType
    label: Text
    unit: str | None = None
    precision: Annotated[int, Field(ge=0, le=12)] | None = None
    range: Range | None = None
    soft_range: Range | None = None
    code_list: Name | None = None
    required: bool = False
    show_if: str | None = None
    identifier: bool = False
    help: Text | None = None
    max_length: Annotated[int, Field(gt=0)] | None = None


class ItemGroup(_Model):
    label: Text | None = None
    repeating: bool = False
    items: dict[Name, Item]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class EditCheck(_Model):
    """A rule that must hold; it fires when ``expression`` evaluates to False.

    A check does not fire while any name it reads is missing: missing data is the
    business of ``required``, and comparisons with a missing value are simply false.
    """

    name: Name
    expression: str
    severity: Severity
    message: Text
    item: Name | None = None


class Form(_Model):
    label: Text
    groups: dict[Name, ItemGroup]
    checks: tuple[EditCheck, ...] = ()


class DerivedType(StrEnum):
    INTEGER = "integer"
    DECIMAL = "decimal"
    TEXT = "text"
    BOOLEAN = "boolean"
    DATE = "date"


class Derived(_Model):
    expression: str
    type: DerivedType = DerivedType.DECIMAL
    label: Text
    unit: str | None = None


class SubjectStatus(StrEnum):
    """A subject's status; :mod:`consortia.domain.schedule` has the lifecycle."""

    SCREENING = "screening"
    ELIGIBLE = "eligible"
    SCREEN_FAILED = "screen_failed"
    ENROLLED = "enrolled"
    ON_STUDY = "on_study"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


#: Statuses that take no conditions: subjects are created in screening, and a subject may
#: always withdraw.
UNGATED_STATUSES = frozenset({SubjectStatus.SCREENING, SubjectStatus.WITHDRAWN})


class StatusGate(_Model):
    """A condition for entering a status: the subject's ``form`` has been saved (complete,
    unless ``complete: false``) and its values meet ``when``.

    ``event`` names the event the form is saved in; it may be left out when the form is in
    one event only. In a repeating event, the last instance counts. ``when`` reads only the
    form's own items outside repeating groups and holds only when it evaluates to True (a
    missing value makes a comparison false, so the gate is not met).
    """

    form: Name
    event: Name | None = None
    complete: bool = True
    when: str | None = None


class StatusRule(_Model):
    """What entering one status requires: every gate in ``requires`` met."""

    requires: tuple[StatusGate, ...] = ()


class AnalysisRequest(BaseModel):
    """A named analysis in the plan: the request JSON of DESIGN.md (``kind`` picks it)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    kind: Literal[
        "describe",
        "crosstab",
        "proportion",
        "kaplan_meier",
        "cox",
        "glm",
        "meta",
        "iso15197",
        "diagnostic",
    ]
    table: Name


# --- randomisation ---------------------------------------------------------------------
# The scheme is checked here; the allocation algorithms are in consortia.domain.randomization.
# Values are typed loosely on purpose (any int, any float): every misfit of a scheme is then
# found by the semantic pass and reported together, each at its own line.

RANDOMISATION_METHODS = ("permuted_blocks", "minimisation")
SITE_FACTOR = "site"


class MinimisationFactor(_Model):
    """One factor of a minimisation scheme: ``site`` or ``form.item`` (a choice item)."""

    factor: NonEmpty
    weight: float = 1.0


class Randomisation(_Model):
    """How subjects are allocated to the study's ``arms`` (in the ratio of their ``ratio``).

    ``permuted_blocks``: within each stratum (a combination of the levels of ``strata``),
    blocks whose size is drawn at random from ``block_sizes``; each size is a multiple of the
    sum of the ratios. ``blocks_per_stratum`` sizes the printed list (it can be extended
    without changing what came before).

    ``minimisation`` (Pocock & Simon 1975): ``factors`` with weights, ``imbalance``
    ``range`` or ``variance``, and the probability of the arm that minimises the imbalance.
    """

    method: Literal["permuted_blocks", "minimisation"]
    block_sizes: tuple[int, ...] = ()
    strata: tuple[NonEmpty, ...] = ()
    blocks_per_stratum: int = 50
    factors: tuple[MinimisationFactor, ...] = ()
    imbalance: Literal["range", "variance"] = "range"
    probability: float = 0.8

    @property
    def factor_names(self) -> tuple[str, ...]:
        """The factors the allocation depends on, in the order of the file."""
        if self.method == "minimisation":
            return tuple(factor.factor for factor in self.factors)
        return self.strata


class Study(_Model):
    """A whole protocol. Build it with :func:`load_study` to get every check."""

    study: StudyInfo
    sites: dict[Code, Site] = {}
    arms: dict[Code, Arm] = {}
    randomisation: Randomisation | None = None
    code_lists: dict[Name, tuple[CodeListEntry, ...]] = {}
    events: dict[Name, Event]
    forms: dict[Name, Form]
    derived: dict[Name, Derived] = {}
    statuses: dict[SubjectStatus, StatusRule] = {}
    analysis_plan: dict[Name, AnalysisRequest] = {}

    def iter_items(self) -> Iterator[tuple[str, str, str, Item]]:
        """Yield (form, group, item name, item) in definition order."""
        for form_name, form in self.forms.items():
            for group_name, group in form.groups.items():
                for item_name, item in group.items.items():
                    yield form_name, group_name, item_name, item

    def item(self, name: str) -> Item:
        for _, _, item_name, item in self.iter_items():
            if item_name == name:
                return item
        raise KeyError(name)

    def form_of(self, item_name: str) -> str:
        for form_name, _, name, _ in self.iter_items():
            if name == item_name:
                return form_name
        raise KeyError(item_name)

    @property
    def item_count(self) -> int:
        return sum(1 for _ in self.iter_items())

    def summary(self) -> str:
        return (
            f"{self.study.id} v{self.study.version}: {len(self.forms)} forms, "
            f"{self.item_count} items, {len(self.events)} events, {len(self.sites)} sites, "
            f"{len(self.arms)} arms, {len(self.derived)} derived variables, "
            f"{len(self.analysis_plan)} analyses"
        )


# --- loading ---------------------------------------------------------------------------

_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _field_names(loc: tuple[str | int, ...]) -> list[str]:
    """The keys a model accepts at the parent of ``loc`` (for 'unknown key' messages)."""
    annotation: Any = Study
    for part in loc[:-1]:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        else:
            origin = get_origin(annotation)
            args = [a for a in get_args(annotation) if a is not Ellipsis]
            if origin not in (dict, tuple, list) or not args:
                return []
            annotation = args[-1]
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to X."""
    for _ in range(8):
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (UnionType, Union):
            options = [a for a in get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else annotation
            if len(options) != 1:
                return annotation
        else:
            return annotation
    return annotation


def _pydantic_problems(exc: PydanticValidationError, doc: YamlDocument) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc: PathKey = tuple(error["loc"])
        bad_key = loc[-1:] == ("[key]",)  # a mapping's key is wrong, not its value
        # pydantic puts tagged-union/function names in loc; keep only real keys
        loc = tuple(part for part in loc if isinstance(part, int) or "[" not in str(part))
        kind = error["type"]
        if kind == "extra_forbidden":
            line, column = doc.key_position(loc)
            allowed = _field_names(loc)
            hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
            message = f"unknown key {loc[-1]!r}{hint}"
        elif bad_key:  # reported at the key, such as a status that does not exist
            line, column = doc.key_position(loc)
            message = f"{error['msg'][0].lower()}{error['msg'][1:]} (got {error.get('input')!r})"
        elif kind == "missing":
            line, column = doc.position(loc[:-1])
            parent = loc[-2] if len(loc) > 1 else ""
            if loc[-1] in ("en", "zh"):
                message = f"label {parent!r} needs both 'en' and 'zh' text; '{loc[-1]}' is missing"
            else:
                message = f"required key {loc[-1]!r} is missing"
        else:
            line, column = doc.position(loc)
            given = error.get("input")
            shown = repr(given) if not isinstance(given, dict | list) else type(given).__name__
            message = f"{error['msg'][0].lower()}{error['msg'][1:]} (got {shown})"
        problems.append(Problem(dotted(loc), message, doc.file, line, column))
    return problems


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


def _semantic_problems(study: Study, doc: YamlDocument) -> list[Problem]:
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

    def check_expression(path: PathKey, source: str, what: str) -> None:
        try:
            parsed = expressions.parse(source)
        except ExpressionError as parse_error:
            problems.append(_expression_problem(doc, path, parse_error, what))
            return
        found = [*expressions.check_names(parsed, known), *_check_subscripts(source, multichoice)]
        problems.extend(_expression_problem(doc, path, error, what) for error in found)

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
    for name, derived in study.derived.items():
        check_expression(("derived", name, "expression"), derived.expression, "derived variable")
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
                        doc, (*path, "when"), gate, own_items[gate.form], form_of, multichoice
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


def factor_levels(study: Study, factor: str) -> tuple[tuple[str, ...], str | None]:
    """The levels of a randomisation factor, or why it cannot be one.

    ``site`` has the study's site codes as levels; ``form.item`` names a choice item outside
    any repeating group and has its code list's codes. Returns ``(levels, None)`` or
    ``((), message)``.
    """
    if factor == SITE_FACTOR:
        if not study.sites:
            return (), "factor 'site' needs sites; this study defines none"
        return tuple(study.sites), None
    form_name, dot, item_name = factor.partition(".")
    if not dot or not form_name or not item_name or "." in item_name:
        return (), (f"{factor!r} is neither 'site' nor form.item (e.g. eligibility.disease_status)")
    form = study.forms.get(form_name)
    if form is None:
        return (), f"form {form_name!r} is not defined; defined forms: {', '.join(study.forms)}"
    for group_name, group in form.groups.items():
        item = group.items.get(item_name)
        if item is None:
            continue
        if item.type is not ItemType.CHOICE:
            what = (
                "several codes per subject"
                if item.type is ItemType.MULTICHOICE
                else "without a code list"
            )
            return (), (
                f"{factor} is {'an' if item.type.value[0] in 'aeiou' else 'a'} "
                f"{item.type.value} item ({what}); a factor must be a choice item "
                "(one code of a code list per subject)"
            )
        if group.repeating:
            return (), (
                f"{factor} is in the repeating group {group_name!r}; a factor needs one value "
                "per subject"
            )
        entries = study.code_lists.get(item.code_list or "", ())
        return tuple(entry.code for entry in entries), None
    choices = [
        name
        for group in form.groups.values()
        for name, item in group.items.items()
        if item.type is ItemType.CHOICE
    ]
    return (), (
        f"item {item_name!r} is not in form {form_name!r}; its choice items: "
        f"{', '.join(choices) or 'none'}"
    )


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


def study_from_document(doc: YamlDocument) -> Study:
    """Validate a loaded document into a :class:`Study`, reporting every problem."""
    if not isinstance(doc.value, dict):
        raise StudyDefinitionError(
            [
                Problem(
                    "",
                    "a study file is a mapping with keys study, events, forms, ...",
                    doc.file,
                    1,
                    1,
                )
            ]
        )
    try:
        study = Study.model_validate(doc.value)
    except PydanticValidationError as exc:
        problems = _pydantic_problems(exc, doc)
        raise StudyDefinitionError(sorted(problems, key=lambda p: (p.line, p.column))) from None
    problems = _semantic_problems(study, doc)
    if problems:
        raise StudyDefinitionError(sorted(problems, key=lambda p: (p.line, p.column)))
    return study


def load_study(path: str | Path) -> Study:
    """Load and check a study file; raise :class:`StudyDefinitionError` listing every problem.

    >>> study = load_study("examples/cart-tour.yaml")  # doctest: +SKIP
    >>> study.summary()  # doctest: +SKIP
    'CART-TOUR v1.0: 8 forms, ...'
    """
    return study_from_document(load_yaml_file(path))


def load_study_text(text: str, file: str = "<input>") -> Study:
    """Like :func:`load_study`, from text (used by templates and tests)."""
    return study_from_document(load_yaml_text(text, file))


def schedule_table(study: Study, lang: str = "en") -> list[list[str]]:
    """Events x forms as rows of text: header row, then one row per form with 'X' marks."""
    events = list(study.events.items())
    header = ["form", *(name for name, _ in events)]
    day_row = ["day", *("" if e.day is None else str(e.day) for _, e in events)]
    window_row = [
        "window",
        *(f"-{e.window.before}/+{e.window.after}" if e.day is not None else "" for _, e in events),
    ]
    rows = [header, day_row, window_row]
    for form_name, form in study.forms.items():
        marks = ["X" if form_name in event.forms else "" for _, event in events]
        rows.append([f"{form_name} ({form.label.get(lang)})", *marks])
    return rows


def study_to_yaml(study: Study) -> str:
    """Write a study as YAML that :func:`load_study_text` reads back to an equal study.

    Defaults are left out so the file stays short; key order follows the definition order.
    """
    import yaml

    data = study.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
