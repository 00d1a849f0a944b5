"""A subject's schedule and status: events with targets and windows, status changes.

Scheduled events are created when a subject is enrolled in a study whose definition is on
the node (see :mod:`consortia.domain.schedule` for anchors and windows); repeating and
unscheduled events get instances as forms are saved in them. Moving day 0 and changing a
subject's status are audited with their reasons. A status change also meets the study's
gates for the new status (its ``statuses`` section), read in the change's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action
from consortia.auth.principal import Principal
from consortia.domain.schedule import (
    PlannedEvent,
    SavedForm,
    SubjectStatus,
    check_transition,
    event_ref,
    plan_schedule,
    screening_anchor,
    unmet_gates,
    window_status,
)
from consortia.exceptions import NotFoundError, Problem, ValidationError
from consortia.services.common import (
    find_subject,
    require_in_study,
    utc_now,
    visible_study,
)
from consortia.services.studies import Definition, current_definition
from consortia.services.unit_of_work import reading, writing
from consortia.storage.capture import CaptureRepository, EventRecord
from consortia.storage.repositories import SubjectRecord

__all__ = [
    "EventView",
    "change_status",
    "list_events",
    "plan_subject_events",
    "reanchor_schedule",
]


@dataclass(frozen=True)
class EventView:
    """An event instance of a subject with its window and the state of each of its forms."""

    ref: str
    event: str
    instance: int
    target_date: date | None
    window_start: date | None
    window_end: date | None
    visit_date: date | None
    window_status: str | None
    forms: Mapping[str, str] = field(default_factory=dict)


def plan_subject_events(
    capture: CaptureRepository,
    definition: Definition,
    subject: SubjectRecord,
    screening_date: date,
    now: datetime,
) -> None:
    """Create the subject's scheduled events (instance 1) with targets and windows, the
    first on ``screening_date`` (a date that puts a visit off the calendar: 422)."""
    anchor = screening_anchor(definition.study, screening_date)
    schedule = plan_schedule(definition.study, anchor, field="screening_date", given=screening_date)
    capture.set_anchor(subject, anchor)
    capture.add_events(
        subject,
        [
            {
                "event": planned.event,
                "instance": 1,
                "target_date": planned.target,
                "window_start": planned.window_start,
                "window_end": planned.window_end,
                "created_at": now,
            }
            for planned in schedule
        ],
    )


def _planned(event: EventRecord) -> PlannedEvent | None:
    if event.target_date is None or event.window_start is None or event.window_end is None:
        return None
    return PlannedEvent(event.event, event.target_date, event.window_start, event.window_end)


def list_events(
    engine: Engine, principal: Principal, study: str, subject_id: str
) -> list[EventView]:
    """The subject's event instances in schedule order, with windows and form states."""
    visible_study(principal, study)
    with reading(engine, principal) as work:
        subject = find_subject(work.connection, principal, study, subject_id)
        require_in_study(principal, Action.SUBJECT_READ, study, subject.site)
        capture = work.capture()
        states: dict[int, dict[str, str]] = {}
        for form in capture.forms(subject):
            states.setdefault(form.event_pk, {})[form.form] = form.state
        events = capture.events(subject)
        order = {name: n for n, name in enumerate(_event_order(work.connection, study))}
    events.sort(
        key=lambda e: (
            e.target_date is None,
            e.target_date or date.min,
            order.get(e.event, 0),
            e.instance,
        )
    )
    return [
        EventView(
            ref=event_ref(e.event, e.instance),
            event=e.event,
            instance=e.instance,
            target_date=e.target_date,
            window_start=e.window_start,
            window_end=e.window_end,
            visit_date=e.visit_date,
            window_status=window_status(_planned(e), e.visit_date),
            forms=states.get(e.id, {}),
        )
        for e in events
    ]


def _event_order(connection: Connection, study: str) -> list[str]:
    try:
        return list(current_definition(connection, study).study.events)
    except NotFoundError:
        return []


def reanchor_schedule(
    engine: Engine, principal: Principal, study: str, subject_id: str, anchor: date, reason: str
) -> None:
    """Move day 0 of a subject's schedule; every scheduled event's target and window follow."""
    visible_study(principal, study)
    if not reason.strip():
        raise ValidationError([Problem("reason", "moving a schedule needs a reason")])
    with writing(engine, principal) as work:
        definition = current_definition(work.connection, study)
        subject = find_subject(work.connection, principal, study, subject_id)
        require_in_study(principal, Action.DATA_ENTER, study, subject.site)
        schedule = plan_schedule(definition.study, anchor)  # before anything changes
        capture = CaptureRepository(work.connection, principal)
        before = capture.subject_row(subject).anchor_date
        capture.set_anchor(subject, anchor)
        existing = {e.event: e for e in capture.events(subject) if e.instance == 1}
        now = utc_now()
        for planned in schedule:
            dates = {
                "target_date": planned.target,
                "window_start": planned.window_start,
                "window_end": planned.window_end,
            }
            if planned.event in existing:
                capture.update_event(existing[planned.event].id, **dates)
            else:
                capture.add_events(
                    subject,
                    [
                        {
                            "event": planned.event,
                            "instance": 1,
                            "created_at": now,
                            **dates,
                        }
                    ],
                )
        work.audit(
            "schedule.reanchor",
            "subject",
            f"{study}/{subject_id}",
            chain=study,
            site=subject.site,
            before={"anchor_date": None if before is None else before.isoformat()},
            after={"anchor_date": anchor.isoformat()},
            reason=reason,
        )


def _check_gates(
    connection: Connection,
    capture: CaptureRepository,
    study: str,
    subject: SubjectRecord,
    target: SubjectStatus,
) -> None:
    """Refuse (422, one problem per unmet gate) a status the study's gates do not allow,
    reading the subject's forms in the status change's own transaction."""
    try:
        definition = current_definition(connection, study)
    except NotFoundError:  # no definition on the node: no forms, and no gates to meet
        return
    rule = definition.study.statuses.get(target)
    if rule is None or not rule.requires:
        return
    saved = [
        SavedForm(event, instance, form, state == "complete", values)
        for event, instance, form, state, values in capture.saved_forms(
            subject, {gate.form for gate in rule.requires}
        )
    ]
    problems = unmet_gates(definition.study, target, saved)
    if problems:
        raise ValidationError(problems)


def change_status(
    engine: Engine,
    principal: Principal,
    study: str,
    subject_id: str,
    status: str,
    on_date: date,
    reason: str | None,
) -> str:
    """Move a subject to ``status`` on ``on_date`` (with a reason where one is needed)."""
    visible_study(principal, study)
    with writing(engine, principal) as work:
        subject = find_subject(work.connection, principal, study, subject_id)
        require_in_study(principal, Action.SUBJECT_CREATE, study, subject.site)
        capture = CaptureRepository(work.connection, principal)
        current = capture.subject_row(subject).status
        target = check_transition(current, status, reason)
        _check_gates(work.connection, capture, study, subject, target)
        capture.add_status(
            subject,
            status=target.value,
            on_date=on_date,
            reason=reason,
            recorded_at=utc_now(),
            recorded_by=principal.email,
        )
        work.audit(
            "subject.status",
            "subject",
            f"{study}/{subject_id}",
            chain=study,
            site=subject.site,
            before={"status": current},
            after={"status": target.value, "on_date": on_date.isoformat()},
            reason=reason,
        )
    return target.value
