"""A subject's schedule planned from day 0: targets and windows, and anchors the calendar
cannot hold (years 1 to 9999) refused with the field and the visit that would fall off."""

from __future__ import annotations

import doctest
from datetime import date

import pytest

import consortia.domain.schedule
from consortia.domain.schedule import plan_schedule, screening_anchor
from consortia.domain.templates import TEMPLATE_NAMES, load_template
from consortia.exceptions import ValidationError

CART = load_template("cart-lbcl")


def _problem(error: pytest.ExceptionInfo[ValidationError]) -> tuple[str, str]:
    (problem,) = error.value.problems
    return problem.path, problem.message


def test_the_modules_examples_hold() -> None:
    result = doctest.testmod(consortia.domain.schedule)
    assert result.attempted > 0
    assert result.failed == 0


def test_an_anchor_near_the_calendars_end_is_refused_naming_the_field_and_the_visit() -> None:
    with pytest.raises(ValidationError) as late:
        plan_schedule(CART, date(9999, 10, 1))
    # month3 is day 91: its target is 9999-12-31, its window ends 14 days later
    assert _problem(late) == (
        "anchor_date",
        "9999-10-01 puts the window of visit month3 (day 91, -14/+14 days) after 9999-12-31",
    )
    with pytest.raises(ValidationError) as later:
        plan_schedule(CART, date(9999, 12, 31))
    assert _problem(later) == (
        "anchor_date",
        "9999-12-31 puts visit crs_daily (day 1) after 9999-12-31",
    )
    with pytest.raises(ValidationError) as early:
        plan_schedule(CART, date(1, 1, 1))
    assert _problem(early) == (
        "anchor_date",
        "0001-01-01 puts visit screening (day -35) before 0001-01-01",
    )


def test_a_screening_date_that_puts_a_visit_off_the_calendar_names_screening_date() -> None:
    with pytest.raises(ValidationError) as off:
        screening_anchor(CART, date(9999, 12, 31))
    assert _problem(off) == (
        "screening_date",
        "9999-12-31 puts day 0, 35 days later, after 9999-12-31",
    )
    screened = date(9999, 6, 1)
    anchor = screening_anchor(CART, screened)
    with pytest.raises(ValidationError) as visit:
        plan_schedule(CART, anchor, field="screening_date", given=screened)
    assert _problem(visit) == (
        "screening_date",
        "9999-06-01 puts visit month6 (day 182) after 9999-12-31",
    )


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_plans_from_the_first_and_the_last_anchor_the_calendar_allows(
    name: str,
) -> None:
    """Between the refused anchors, every date plans: the checks refuse no more than they
    must (the earliest and latest anchors that keep every window on the calendar)."""
    study = load_template(name)
    scheduled = [e for e in study.events.values() if e.day is not None and not e.unscheduled]
    first = min(e.day - e.window.before for e in scheduled if e.day is not None)
    last = max(e.day + e.window.after for e in scheduled if e.day is not None)
    earliest = date.fromordinal(date.min.toordinal() - first)
    latest = date.fromordinal(date.max.toordinal() - last)
    for anchor in (earliest, latest):
        planned = plan_schedule(study, anchor)
        assert len(planned) == len(scheduled)
    assert min(p.window_start for p in plan_schedule(study, earliest)) == date.min
    assert max(p.window_end for p in plan_schedule(study, latest)) == date.max
    outside = []  # a schedule of day 0 alone fits from the calendar's first to last day
    if earliest > date.min:
        outside.append(date.fromordinal(earliest.toordinal() - 1))
    if latest < date.max:
        outside.append(date.fromordinal(latest.toordinal() + 1))
    for anchor in outside:
        with pytest.raises(ValidationError):
            plan_schedule(study, anchor)
