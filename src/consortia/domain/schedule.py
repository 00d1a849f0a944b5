"""A subject's path through a study: statuses, the visit schedule, windows, event references.

Statuses follow the usual life of a trial participant::

    screening ─► eligible ─► enrolled ─► on_study ─► completed
        │            │           │           │
        ├─► screen_failed        └───────────┴─► withdrawn   (from any open status)

A subject is created in ``screening``. ``screen_failed`` and ``withdrawn`` need a reason;
``screen_failed``, ``completed`` and ``withdrawn`` are final.

A study may also state what entering a status requires (its ``statuses`` section, see
:class:`~consortia.domain.study.StatusGate`): forms saved, complete, with values that meet a
condition. :func:`unmet_gates` says which of them a subject's saved forms do not meet.

Scheduled events (those with a ``day``) get a target date ``anchor + day`` and a window
``[target - before, target + after]``. The anchor is day 0 of the protocol; when a subject
is created it is placed so that the first scheduled event falls on the screening date, and
it can be moved later (to the real day 0: infusion, surgery) with a reason. Events without a
``day`` (unscheduled, such as an adverse-event log) have no target and no window.

An event is referred to as ``name`` (instance 1) or ``name.N`` (instance N of a repeating or
unscheduled event), as in ``ae_log.3``.

>>> from datetime import date
>>> from consortia.domain.templates import load_template
>>> study = load_template("cart-lbcl")
>>> anchor = screening_anchor(study, date(2025, 1, 6))
>>> anchor
datetime.date(2025, 2, 10)
>>> day28 = next(p for p in plan_schedule(study, anchor) if p.event == "day28")
>>> day28.target, day28.window_start, day28.window_end
(datetime.date(2025, 3, 10), datetime.date(2025, 3, 7), datetime.date(2025, 3, 17))
>>> window_status(day28, date(2025, 3, 20))
'late'
>>> parse_event_ref("ae_log.3")
('ae_log', 3)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, Literal

from consortia.domain.derivation import expression
from consortia.domain.study import StatusGate, Study, SubjectStatus
from consortia.domain.validation import typed_value
from consortia.exceptions import ExpressionError, NotFoundError, Problem, ValidationError

__all__ = [
    "FINAL_STATUSES",
    "REASON_REQUIRED",
    "TRANSITIONS",
    "PlannedEvent",
    "SavedForm",
    "SubjectStatus",
    "check_transition",
    "event_ref",
    "parse_event_ref",
    "plan_schedule",
    "screening_anchor",
    "unmet_gates",
    "window_status",
]


_S = SubjectStatus
TRANSITIONS: Final[Mapping[SubjectStatus, frozenset[SubjectStatus]]] = {
    _S.SCREENING: frozenset({_S.ELIGIBLE, _S.SCREEN_FAILED, _S.WITHDRAWN}),
    _S.ELIGIBLE: frozenset({_S.ENROLLED, _S.SCREEN_FAILED, _S.WITHDRAWN}),
    _S.ENROLLED: frozenset({_S.ON_STUDY, _S.WITHDRAWN}),
    _S.ON_STUDY: frozenset({_S.COMPLETED, _S.WITHDRAWN}),
    _S.SCREEN_FAILED: frozenset(),
    _S.COMPLETED: frozenset(),
    _S.WITHDRAWN: frozenset(),
}
FINAL_STATUSES: Final = frozenset(status for status, nexts in TRANSITIONS.items() if not nexts)
REASON_REQUIRED: Final = frozenset({_S.SCREEN_FAILED, _S.WITHDRAWN})


def check_transition(current: str, new: str, reason: str | None) -> SubjectStatus:
    """The new status, if a subject in ``current`` may move to it; else a ValidationError."""
    try:
        target = SubjectStatus(new)
    except ValueError:
        choices = ", ".join(s.value for s in SubjectStatus)
        raise ValidationError([Problem("status", f"{new!r} is not a status: {choices}")]) from None
    allowed = TRANSITIONS[SubjectStatus(current)]
    if target not in allowed:
        nexts = ", ".join(sorted(s.value for s in allowed)) or "none: it is final"
        raise ValidationError(
            [Problem("status", f"a subject in {current} cannot become {new}; allowed: {nexts}")]
        )
    if target in REASON_REQUIRED and not (reason and reason.strip()):
        raise ValidationError([Problem("reason", f"becoming {new} needs a reason")])
    return target


@dataclass(frozen=True, slots=True)
class SavedForm:
    """A saved form instance of a subject, as status gates read it: stored texts of the
    items outside repeating groups."""

    event: str
    instance: int
    form: str
    complete: bool
    values: Mapping[str, str]


def _gate_text(status: SubjectStatus, gate: StatusGate, event: str) -> str:
    needs = "complete" if gate.complete else "saved"
    condition = f" with {gate.when.strip()}" if gate.when else ""
    return f"becoming {status.value} needs form {gate.form} ({event}) {needs}{condition}"


def unmet_gates(study: Study, status: SubjectStatus, forms: Sequence[SavedForm]) -> list[Problem]:
    """One problem per gate of ``status`` that the subject's saved ``forms`` do not meet.

    Each problem's path is the gate's form (``forms.consent``) and its message names the
    status, the form, its event and the condition, then what is wrong.

    >>> from consortia.domain.templates import load_template
    >>> study = load_template("cart-lbcl")
    >>> consent = SavedForm("screening", 1, "consent", True, {"consent_given": "0"})
    >>> [p.message for p in unmet_gates(study, SubjectStatus.ELIGIBLE, [consent])]
    ... # doctest: +NORMALIZE_WHITESPACE
    ['becoming eligible needs form consent (screening) complete with consent_given == True:
      consent_given == True does not hold',
     'becoming eligible needs form eligibility (screening) complete with eligible == True:
      the form has not been saved']
    """
    rule = study.statuses.get(status)
    if rule is None:
        return []
    problems = []
    for gate in rule.requires:
        events = (
            [gate.event]
            if gate.event
            else [name for name, event in study.events.items() if gate.form in event.forms]
        )
        saved = [f for f in forms if f.form == gate.form and f.event in events]
        last = max(saved, key=lambda f: f.instance) if saved else None
        where = " or ".join(events) if last is None else event_ref(last.event, last.instance)
        why = _unmet(study, gate, last)
        if why:
            text = _gate_text(status, gate, where)
            problems.append(Problem(f"forms.{gate.form}", f"{text}: {why}"))
    return problems


def _unmet(study: Study, gate: StatusGate, saved: SavedForm | None) -> str:
    """Why ``saved`` does not meet ``gate``; empty when it does."""
    if saved is None:
        return "the form has not been saved"
    if gate.complete and not saved.complete:
        return "the form is in progress, not complete"
    if gate.when is None:
        return ""
    condition = expression(gate.when)
    values = {name: typed_value(study, name, saved.values.get(name)) for name in condition.names}
    try:
        held = condition.evaluate(values)
    except ExpressionError as error:
        return f"{gate.when.strip()} cannot be evaluated: {error.message}"
    return "" if held is True else f"{gate.when.strip()} does not hold"


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """A scheduled event's target date and window for one subject."""

    event: str
    target: date
    window_start: date
    window_end: date


def _shifted(origin: date, days: int) -> date | None:
    """``origin`` moved by ``days``, or None where the calendar ends (years 1 to 9999)."""
    try:
        return origin + timedelta(days=days)
    except OverflowError:
        return None


def _beyond(days: int) -> str:
    return f"after {date.max.isoformat()}" if days > 0 else f"before {date.min.isoformat()}"


def screening_anchor(study: Study, screening_date: date) -> date:
    """Day 0 such that the first scheduled event falls on ``screening_date``.

    A date so near the calendar's end that day 0 falls off it is refused, naming
    ``screening_date``.
    """
    days = [event.day for event in study.events.values() if event.day is not None]
    if not days:
        return screening_date
    first = min(days)
    anchor = _shifted(screening_date, -first)
    if anchor is None:
        later = f"{-first} days later" if first < 0 else f"{first} days earlier"
        problem = f"{screening_date.isoformat()} puts day 0, {later}, {_beyond(-first)}"
        raise ValidationError([Problem("screening_date", problem)])
    return anchor


def plan_schedule(
    study: Study, anchor: date, *, field: str = "anchor_date", given: date | None = None
) -> list[PlannedEvent]:
    """Target dates and windows of every scheduled event, in the study's order.

    An anchor that puts an event or its window off the calendar (before 0001-01-01 or after
    9999-12-31) is refused: the problem names ``field``, the date the person gave
    (``given``, default ``anchor``) and the first event that would fall off.

    >>> from consortia.domain.templates import load_template
    >>> try:
    ...     plan_schedule(load_template("cart-lbcl"), date(9999, 10, 1))
    ... except ValidationError as error:
    ...     (problem,) = error.problems
    ...     print(f"{problem.path}: {problem.message}")
    anchor_date: 9999-10-01 puts the window of visit month3 (day 91, -14/+14 days) after 9999-12-31
    """
    planned = []
    for name, event in study.events.items():
        if event.day is None or event.unscheduled:
            continue
        target = _shifted(anchor, event.day)
        start = None if target is None else _shifted(target, -event.window.before)
        end = None if target is None else _shifted(target, event.window.after)
        if target is None or start is None or end is None:
            window = event.window
            what = (
                f"visit {name} (day {event.day})"
                if target is None
                else f"the window of visit {name} (day {event.day}, "
                f"-{window.before}/+{window.after} days)"
            )
            days = event.day if target is None else (1 if end is None else -1)
            problem = f"{(given or anchor).isoformat()} puts {what} {_beyond(days)}"
            raise ValidationError([Problem(field, problem)])
        planned.append(PlannedEvent(name, target, start, end))
    return planned


def window_status(
    planned: PlannedEvent | None, visit_date: date | None
) -> Literal["in_window", "early", "late"] | None:
    """Where a visit fell against its window (None without a window or a visit date)."""
    if planned is None or visit_date is None:
        return None
    if visit_date < planned.window_start:
        return "early"
    if visit_date > planned.window_end:
        return "late"
    return "in_window"


_REF = re.compile(r"^([A-Za-z][A-Za-z0-9_]{0,63})(?:\.([1-9][0-9]{0,5}))?$")


def parse_event_ref(ref: str) -> tuple[str, int]:
    """``name`` or ``name.N`` as (name, instance); anything else is not found."""
    match = _REF.fullmatch(ref)
    if match is None:
        raise NotFoundError(f"event {ref!r} not found: use NAME or NAME.N (N >= 1)")
    return match.group(1), int(match.group(2) or 1)


def event_ref(name: str, instance: int) -> str:
    """The reference of an event instance: ``name`` for instance 1, else ``name.N``."""
    return name if instance == 1 else f"{name}.{instance}"
