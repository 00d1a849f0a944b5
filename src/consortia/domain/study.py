"""The study definition language: a whole protocol as one reviewed YAML file.

A study file has these top-level keys (see ``examples/`` and docs/study-language.md)::

    study:        id, title {en, zh}, phase, sponsor, partners, version, enrolment_target
    sites:        CODE -> {name, country, node, enrolment_target}
    arms:         CODE -> {label {en, zh}, ratio, code}
    randomisation: {method: permuted_blocks | minimisation, ...}   (see Randomisation)
    code_lists:   NAME -> [{code, label {en, zh}}, ...]
    events:       NAME -> {label, day, window {before, after}, repeating, forms [...]}
    forms:        NAME -> {label, groups: NAME -> {label, repeating, items: NAME -> Item},
                           checks: [{name, expression, severity, message}]}
    derived:      NAME -> {expression, type, label, unit}
    statuses:     STATUS -> {requires: [{form, event, complete, when}]}   (status gates)
    analysis_plan: NAME -> {kind, table, ...}   (the analysis request JSON of DESIGN.md)

This module holds the study model: frozen pydantic models of the file, and questions asked of
a loaded study (:func:`factor_levels`, :func:`schedule_table`). A file is read and checked by
:func:`~consortia.domain.study_yaml.load_study`, which reports *every* problem at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


#: The ``source`` of an item that holds the subject's allocation.
ALLOCATION_SOURCE = "randomisation"
#: Why a value typed into such an item is refused.
ALLOCATION_FILLED = "filled from the subject's allocation; randomise the subject instead"


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
    #: subjects the whole study means to enrol (site performance reports against it when a
    #: site has no target of its own)
    enrolment_target: Annotated[int, Field(gt=0)] | None = None


class Site(_Model):
    name: NonEmpty
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    node: Name
    #: subjects this site means to enrol (docs/site-performance.md)
    enrolment_target: Annotated[int, Field(gt=0)] | None = None


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
    #: ``randomisation``: the item holds the subject's allocation, never typed (see
    #: :data:`ALLOCATION_SOURCE` and docs/study-language.md)
    source: Literal["randomisation"] | None = None

    @property
    def allocated(self) -> bool:
        """Whether the item is the subject's allocation (filled by randomisation)."""
        return self.source == ALLOCATION_SOURCE


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

    ``gates`` (either method): ``form.item`` boolean items that must be recorded as yes
    before a subject may be randomised (e.g. ``consent.consent_given``,
    ``eligibility.eligible``).
    """

    method: Literal["permuted_blocks", "minimisation"]
    block_sizes: tuple[int, ...] = ()
    strata: tuple[NonEmpty, ...] = ()
    blocks_per_stratum: int = 50
    factors: tuple[MinimisationFactor, ...] = ()
    imbalance: Literal["range", "variance"] = "range"
    probability: float = 0.8
    gates: tuple[NonEmpty, ...] = ()

    @property
    def factor_names(self) -> tuple[str, ...]:
        """The factors the allocation depends on, in the order of the file."""
        if self.method == "minimisation":
            return tuple(factor.factor for factor in self.factors)
        return self.strata


class Study(_Model):
    """A whole protocol. Build it with :func:`~consortia.domain.study_yaml.load_study` to get
    every check."""

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

    def allocation_items(self) -> dict[str, str]:
        """Item name -> form of each item that holds the subject's allocation."""
        return {name: form for form, _, name, item in self.iter_items() if item.allocated}

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


def gate_problem(study: Study, gate: str) -> str | None:
    """Why ``gate`` cannot be a randomisation gate (a ``form.item`` boolean item outside any
    repeating group, recorded as yes before randomising), or ``None`` if it can."""
    form_name, dot, item_name = gate.partition(".")
    if not dot or not form_name or not item_name or "." in item_name:
        return f"{gate!r} is not form.item (e.g. consent.consent_given)"
    form = study.forms.get(form_name)
    if form is None:
        return f"form {form_name!r} is not defined; defined forms: {', '.join(study.forms)}"
    for group_name, group in form.groups.items():
        item = group.items.get(item_name)
        if item is None:
            continue
        if item.type is not ItemType.BOOLEAN:
            return f"{gate} is a {item.type.value} item; a gate must be a boolean item (yes/no)"
        if group.repeating:
            return f"{gate} is in the repeating group {group_name!r}; a gate needs one value"
        return None
    booleans = [
        name
        for group in form.groups.values()
        for name, item in group.items.items()
        if item.type is ItemType.BOOLEAN
    ]
    return (
        f"item {item_name!r} is not in form {form_name!r}; its boolean items: "
        f"{', '.join(booleans) or 'none'}"
    )


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
