"""A small study for the site performance tests (services, API, command line), built
through the services with hand-chosen dates and values, and its metrics worked out by hand.

The study PERF: sites SG01 (target 4) and SH01 (no target); the study's target is 10. Every
subject is screened on 2025-01-02, so the schedule is the same for all:

    screening  day 0   window 2025-01-02 .. 2025-01-05   forms: visit
    week4      day 28  window 2025-01-27 .. 2025-02-02   forms: visit, labs

Required items counted: visit.weight; labs.hb, labs.crp (visit.pregnancy is required but has
a show_if, labs.extra.marker is required but in a repeating group: neither is counted).

    subject  site  statuses (date)                        visits (date, window)   forms first saved
    A1       SG01  eligible, enrolled 01-10, on_study     screening 01-03 in      visit 01-03 (0 d)
                                                          week4 01-30 in          visit 02-02 (3 d), labs 02-09 (10 d)
    A2       SG01  eligible, enrolled 01-20               screening 01-08 OUT     visit 01-08 (0 d)
    A3       SG01  screen_failed 01-08                    -
    A4       SG01  eligible, enrolled 02-03               screening 01-04 in      visit 01-14 (10 d)
    B1       SH01  eligible, enrolled 02-14               screening 01-02 in      visit 01-05 (3 d)
                                                          week4 02-05 OUT         visit 02-05 (0 d); labs not started
    B2       SH01  screen_failed 02-01                    -

Values stored: A1 screening visit {weight} 1 (corrected later: still 1), A1 week4 visit
{weight, note} 2, A1 labs {hb, marker x2} 3, A2 visit {note} 1, A4 visit {weight} 1: SG01 8;
B1 screening {weight} 1, B1 week4 {weight, note} 2: SH01 3.

Queries: SG01 Q1 01-10 -> closed 01-12 (2 d); Q2 02-10 00:00 -> closed 02-15 12:00 (5.5 d);
Q3 01-09 open; Q4 01-15 08:00 -> closed 01-16 08:00, re-opened 01-17 (open: not resolved).
SH01 Q5 01-06 -> answered 01-07 -> closed 01-10 (4 d).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.services import data_entry, queries, studies, subjects
from consortia.services.data_entry import FormSave
from consortia.services.schedule import change_status
from consortia.services.site_performance import ALL_SITES, Median, Ratio, SiteMetrics

STUDY = "PERF"
DEFINITION = """\
study:
  id: PERF
  title: {en: Site performance, zh: 中心表现}
  phase: pilot
  sponsor: Test
  version: "1"
  enrolment_target: 10
sites:
  SG01: {name: Singapore, country: SG, node: sgh, enrolment_target: 4}
  SH01: {name: Shanghai, country: CN, node: rjh}
events:
  screening: {label: {en: Screening, zh: 筛选}, day: 0, window: {after: 3}, forms: [visit]}
  week4:
    label: {en: Week 4, zh: 第4周}
    day: 28
    window: {before: 3, after: 3}
    forms: [visit, labs]
forms:
  visit:
    label: {en: Visit, zh: 访视}
    groups:
      main:
        items:
          weight: {type: decimal, required: true, label: {en: Weight, zh: 体重}}
          note: {type: text, label: {en: Note, zh: 备注}}
          pregnancy:
            type: boolean
            required: true
            show_if: "weight < 40"
            label: {en: Pregnancy, zh: 妊娠}
  labs:
    label: {en: Labs, zh: 化验}
    groups:
      main:
        items:
          hb: {type: decimal, required: true, label: {en: Hb, zh: 血红蛋白}}
          crp: {type: decimal, required: true, label: {en: CRP, zh: C反应蛋白}}
      extra:
        repeating: true
        items:
          marker: {type: decimal, required: true, label: {en: Marker, zh: 标志物}}
"""
STAFF = Principal(
    21,
    "staff@perf.example",
    "Staff",
    frozenset(
        Grant(STUDY, "*", role)
        for role in (Role.STUDY_ADMIN, Role.COORDINATOR, Role.MONITOR, Role.DATA_MANAGER)
    ),
)
SCREENED = date(2025, 1, 2)


@dataclass
class Clock:
    """The time the audit trail and the query steps read, set by the test."""

    now: datetime = datetime(2025, 1, 2, tzinfo=UTC)

    def at(self, year: int, month: int, day: int, hour: int = 0) -> None:
        self.now = datetime(year, month, day, hour, tzinfo=UTC)


def install_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Make the audit trail and the query steps read the returned clock."""
    clock = Clock()
    monkeypatch.setattr(
        "consortia.storage.audit.audit_timestamp",
        lambda: clock.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )
    monkeypatch.setattr("consortia.services.queries.utc_now", lambda: clock.now)
    return clock


def _save(
    engine: sa.Engine,
    subject: str,
    event: str,
    form: str,
    values: dict[str, Any],
    *,
    visit: date | None = None,
    complete: bool = False,
    version: int = 0,
    reason: str | None = None,
) -> None:
    save = FormSave(version, values, complete=complete, visit_date=visit, reason=reason)
    data_entry.save_form(engine, STAFF, STUDY, subject, event, form, save)


def _query(engine: sa.Engine, subject: str, event: str, form: str, item: str) -> int:
    return queries.open_query(engine, STAFF, STUDY, subject, event, form, item, "check").record.id


def build_study(engine: sa.Engine, clock: Clock) -> sa.Engine:
    """Load PERF and capture the subjects, visits, forms and queries of the docstring."""
    studies.load_definition(engine, STAFF, DEFINITION)
    for subject, site in [
        ("A1", "SG01"),
        ("A2", "SG01"),
        ("A3", "SG01"),
        ("A4", "SG01"),
        ("B1", "SH01"),
        ("B2", "SH01"),
    ]:
        subjects.enrol_subject(
            engine, STAFF, STUDY, subjects.SubjectInput(subject, site, screening_date=SCREENED)
        )
    for subject, steps in {
        "A1": [("eligible", 5), ("enrolled", 10), ("on_study", 11)],
        "A2": [("eligible", 15), ("enrolled", 20)],
        "A3": [("screen_failed", 8)],
        "A4": [("eligible", 30), ("enrolled", 34)],  # 2025-02-03
        "B1": [("eligible", 40), ("enrolled", 45)],  # 2025-02-14
        "B2": [("screen_failed", 31)],  # 2025-02-01
    }.items():
        for status, day in steps:
            on = date.fromordinal(date(2024, 12, 31).toordinal() + day)
            reason = "not eligible" if status == "screen_failed" else None
            change_status(engine, STAFF, STUDY, subject, status, on, reason)

    clock.at(2025, 1, 3)
    _save(engine, "A1", "screening", "visit", {"weight": 70}, visit=date(2025, 1, 3), complete=True)
    clock.at(2025, 2, 2)
    _save(engine, "A1", "week4", "visit", {"weight": 72, "note": "ok"}, visit=date(2025, 1, 30))
    clock.at(2025, 2, 9)
    labs = {"hb": 13, "extra": [{"marker": 1.5}, {"marker": 2.5}]}
    _save(engine, "A1", "week4", "labs", labs)
    clock.at(2025, 1, 8)
    _save(engine, "A2", "screening", "visit", {"note": "scale broken"}, visit=date(2025, 1, 8))
    clock.at(2025, 1, 14)
    _save(engine, "A4", "screening", "visit", {"weight": 60}, visit=date(2025, 1, 4))
    clock.at(2025, 1, 5)
    _save(engine, "B1", "screening", "visit", {"weight": 80}, visit=date(2025, 1, 2))
    clock.at(2025, 2, 5)
    _save(engine, "B1", "week4", "visit", {"weight": 81, "note": "late"}, visit=date(2025, 2, 5))
    # a correction long after: the first save is what counts
    clock.at(2025, 3, 1)
    _save(
        engine,
        "A1",
        "screening",
        "visit",
        {"weight": 71},
        complete=True,
        version=1,
        reason="transcription error",
    )

    def close(query: int, text: str = "resolved") -> None:
        queries.close_query(engine, STAFF, STUDY, query, text)

    clock.at(2025, 1, 10)
    q1 = _query(engine, "A1", "screening", "visit", "weight")
    clock.at(2025, 1, 12)
    close(q1)
    clock.at(2025, 2, 10)
    q2 = _query(engine, "A1", "week4", "labs", "hb")
    clock.at(2025, 2, 15, 12)
    close(q2)
    clock.at(2025, 1, 9)
    _query(engine, "A2", "screening", "visit", "note")
    clock.at(2025, 1, 15, 8)
    q4 = _query(engine, "A4", "screening", "visit", "weight")
    clock.at(2025, 1, 16, 8)
    close(q4)
    clock.at(2025, 1, 17)
    queries.reopen_query(engine, STAFF, STUDY, q4, "source says 66")
    clock.at(2025, 1, 6)
    q5 = _query(engine, "B1", "screening", "visit", "weight")
    clock.at(2025, 1, 7)
    queries.answer_query(engine, STAFF, STUDY, q5, "weighed again")
    clock.at(2025, 1, 10)
    close(q5)
    return engine


SG01 = SiteMetrics(
    site="SG01",
    enrolled=3,  # A1 (now on_study), A2, A4
    enrolment_target=4,
    enrolment_vs_target=Ratio(3, 4),
    enrolment_by_month=(("2025-01", 2), ("2025-02", 1)),
    screen_failure=Ratio(1, 4),  # A3 of A1-A4
    days_to_entry=Median(5, 3.0),  # 0, 0, 3, 10, 10
    queries_per_value=Ratio(4, 8),  # Q1-Q4 over 8 values: 50 per 100
    days_to_resolve=Median(2, 3.75),  # 2 and 5.5 (Q4 re-opened, Q3 open)
    # A1 visit 0/1, A1 week4 visit 0/1, A1 labs crp 1/2, A2 visit weight 1/1, A4 visit 0/1
    missing_required=Ratio(2, 6),
    out_of_window=Ratio(1, 4),  # A2 screening of A1 x2, A2, A4
    protocol_deviations=None,
)
SH01 = SiteMetrics(
    site="SH01",
    enrolled=1,
    enrolment_target=None,  # SH01 sets none
    enrolment_vs_target=None,
    enrolment_by_month=(("2025-02", 1),),
    screen_failure=Ratio(1, 2),
    days_to_entry=Median(2, 1.5),  # 3, 0
    queries_per_value=Ratio(1, 3),
    days_to_resolve=Median(1, 4.0),
    # B1 visit 0/1, B1 week4 visit 0/1, B1 labs (due, not started) 2/2
    missing_required=Ratio(2, 4),
    out_of_window=Ratio(1, 2),  # B1 week4 of B1 x2
    protocol_deviations=None,
)
OVERALL = SiteMetrics(
    site=ALL_SITES,
    enrolled=4,
    enrolment_target=10,  # the study's
    enrolment_vs_target=Ratio(4, 10),
    enrolment_by_month=(("2025-01", 2), ("2025-02", 2)),
    screen_failure=Ratio(2, 6),
    days_to_entry=Median(7, 3.0),  # 0, 0, 0, 3, 3, 10, 10
    queries_per_value=Ratio(5, 11),
    days_to_resolve=Median(3, 4.0),  # 2, 4, 5.5
    missing_required=Ratio(4, 10),
    out_of_window=Ratio(2, 6),
    protocol_deviations=None,
)
