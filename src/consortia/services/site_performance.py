"""Site performance: how each site of a study is doing, computed from the node's own EDC.

Per study and site: enrolment against target and per calendar month, the screen-failure
rate, the median days from a visit to the entry of its forms, queries per 100 values, the
median days to resolve a query, the missing-data rate of required items, out-of-window
visits, and protocol deviations (not recorded by this version: ``None``). Every metric is
defined in docs/site-performance.md; this module follows those definitions word for word.

It is the node's own view, at the sites where the reader holds ``site_performance.read``,
read in one read-only unit of work. Sharing it with the hub is not done here: it will go
through the node's disclosure policy (minimum cell count) like every release.

>>> Ratio(2, 6).value == 1 / 3
True
>>> Ratio(0, 0).value is None
True
>>> Median.of([0, 10, 3])
Median(n=3, median=3.0)
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import Engine

from consortia.auth.policy import Action
from consortia.auth.principal import Principal
from consortia.domain.schedule import event_ref
from consortia.domain.study import Study, SubjectStatus
from consortia.services.common import require_in_study, utc_now, visible_study
from consortia.services.form_events import form_audit_id
from consortia.services.studies import current_definition
from consortia.services.unit_of_work import reading
from consortia.storage.repositories.site_performance import (
    EventFact,
    FormFact,
    QueryFact,
    SitePerformanceRepository,
    StatusFact,
    SubjectFact,
)

__all__ = [
    "ALL_SITES",
    "Median",
    "Ratio",
    "SiteMetrics",
    "SitePerformance",
    "metrics_json",
    "performance_json",
    "performance_table",
    "read_site_performance",
]

#: the ``site`` of the row that pools the sites shown
ALL_SITES: Final = "*"
_SECONDS_PER_DAY: Final = 86_400


@dataclass(frozen=True, slots=True)
class Ratio:
    """A count over a count; ``value`` is ``None`` when there is nothing to count."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return None if self.denominator == 0 else self.numerator / self.denominator


@dataclass(frozen=True, slots=True)
class Median:
    """The median of ``n`` durations in days (``None`` when ``n`` is 0)."""

    n: int
    median: float | None

    @classmethod
    def of(cls, days: Iterable[float]) -> Median:
        values = list(days)
        return cls(len(values), float(statistics.median(values)) if values else None)


@dataclass(frozen=True, slots=True)
class SiteMetrics:
    """The metrics of one site (or of every site shown: ``site`` is ``*``)."""

    site: str
    #: subjects that ever entered ``enrolled``
    enrolled: int
    #: the site's target, or for ``*`` the study's; ``None`` when the study sets none
    enrolment_target: int | None
    #: enrolled / target (``None`` without a target)
    enrolment_vs_target: Ratio | None
    #: (``YYYY-MM``, subjects enrolled that month), months with none left out, in order
    enrolment_by_month: tuple[tuple[str, int], ...]
    #: subjects that became ``screen_failed`` / subjects screened (every subject)
    screen_failure: Ratio
    #: days from a visit's date to the first save of each of its forms
    days_to_entry: Median
    #: queries raised / values stored
    queries_per_value: Ratio
    #: days from opening to (last) closing, of the queries closed now
    days_to_resolve: Median
    #: required items without a value / required items expected
    missing_required: Ratio
    #: visits dated outside their window / visits dated that have a window
    out_of_window: Ratio
    #: protocol deviations: not recorded by this version, so ``None`` (never 0)
    protocol_deviations: int | None = None

    @property
    def queries_per_100_values(self) -> float | None:
        ratio = self.queries_per_value
        return None if ratio.denominator == 0 else 100 * ratio.numerator / ratio.denominator


@dataclass(frozen=True, slots=True)
class SitePerformance:
    """A study's site performance as the reader may see it."""

    study: str
    #: the study version whose events, forms and targets the metrics use
    definition_version: int
    as_of: datetime
    sites: tuple[SiteMetrics, ...]
    #: the sites shown, pooled
    overall: SiteMetrics
    #: whether the node records protocol deviations (not yet: the counts are ``None``)
    deviations_recorded: bool = False


@dataclass(frozen=True, slots=True)
class _Facts:
    subjects: list[SubjectFact]
    statuses: list[StatusFact]
    events: list[EventFact]
    forms: list[FormFact]
    first_saves: Mapping[str, datetime]
    queries: list[QueryFact]


def read_site_performance(engine: Engine, principal: Principal, study: str) -> SitePerformance:
    """The study's metrics per site, at the sites where the principal holds
    ``site_performance.read``, and pooled over those sites."""
    visible_study(principal, study)
    require_in_study(principal, Action.SITE_PERFORMANCE_READ, study)
    with reading(engine, principal) as work:
        definition = current_definition(work.connection, study)
        facts_of = SitePerformanceRepository(work.connection, principal, study)
        facts = _Facts(
            subjects=facts_of.subjects(),
            statuses=facts_of.statuses(
                (SubjectStatus.ENROLLED.value, SubjectStatus.SCREEN_FAILED.value)
            ),
            events=facts_of.events(),
            forms=facts_of.forms(_all_required(definition.study)),
            first_saves=facts_of.first_saves(),
            queries=facts_of.queries(),
        )
        scope = facts_of.scope
        as_of = utc_now()
    shown = {site for site in definition.study.sites if scope.allows(site)}
    shown |= {fact.site for fact in facts.subjects}
    sites = tuple(_metrics(definition.study, study, facts, site, {site}) for site in sorted(shown))
    overall = _metrics(definition.study, study, facts, ALL_SITES, shown)
    return SitePerformance(study, definition.version, as_of, sites, overall)


def _metrics(study: Study, code: str, facts: _Facts, site: str, sites: set[str]) -> SiteMetrics:
    subjects = {fact.key for fact in facts.subjects if fact.site in sites}
    enrolled_on: dict[int, date] = {}
    failed: set[int] = set()
    for status in facts.statuses:
        if status.subject_key not in subjects:
            continue
        if status.status == SubjectStatus.SCREEN_FAILED.value:
            failed.add(status.subject_key)
        else:  # the first time a subject entered "enrolled" is its enrolment
            known = enrolled_on.get(status.subject_key)
            enrolled_on[status.subject_key] = min(status.on_date, known or status.on_date)
    months: dict[str, int] = {}
    for day in enrolled_on.values():
        months[f"{day:%Y-%m}"] = months.get(f"{day:%Y-%m}", 0) + 1
    if site == ALL_SITES:
        target = study.study.enrolment_target
    else:
        defined = study.sites.get(site)
        target = None if defined is None else defined.enrolment_target
    events = {fact.key: fact for fact in facts.events if fact.site in sites}
    forms = [fact for fact in facts.forms if fact.event_key in events]
    queries = [fact for fact in facts.queries if fact.site in sites]
    windowed = [w for w in map(_window, events.values()) if w is not None]
    outside = [visit for visit, start, end in windowed if not start <= visit <= end]
    return SiteMetrics(
        site=site,
        enrolled=len(enrolled_on),
        enrolment_target=target,
        enrolment_vs_target=None if target is None else Ratio(len(enrolled_on), target),
        enrolment_by_month=tuple(sorted(months.items())),
        screen_failure=Ratio(len(failed), len(subjects)),
        days_to_entry=Median.of(_entry_days(code, events, forms, facts.first_saves)),
        queries_per_value=Ratio(len(queries), sum(form.values for form in forms)),
        days_to_resolve=Median.of(
            (query.closed_at - query.opened_at).total_seconds() / _SECONDS_PER_DAY
            for query in queries
            if query.closed_at is not None
        ),
        missing_required=_missing_required(study, events, forms),
        out_of_window=Ratio(len(outside), len(windowed)),
    )


def _window(event: EventFact) -> tuple[date, date, date] | None:
    """(visit date, window start, window end) of a dated visit that has a window."""
    if event.visit_date is None or event.window_start is None or event.window_end is None:
        return None
    return event.visit_date, event.window_start, event.window_end


def _entry_days(
    code: str,
    events: Mapping[int, EventFact],
    forms: list[FormFact],
    first_saves: Mapping[str, datetime],
) -> list[int]:
    """Calendar days (UTC) from each dated visit to the first save of each of its forms."""
    days = []
    for form in forms:
        event = events[form.event_key]
        if event.visit_date is None:
            continue
        ref = event_ref(event.event, event.instance)
        first = first_saves.get(form_audit_id(code, event.subject_id, ref, form.form))
        if first is not None:
            days.append((first.date() - event.visit_date).days)
    return days


def _required(study: Study, form: str) -> frozenset[str]:
    """The required items of a form that are always expected: outside repeating groups and
    without a ``show_if`` (whether those are expected depends on other values)."""
    definition = study.forms.get(form)
    if definition is None:
        return frozenset()
    return frozenset(
        name
        for group in definition.groups.values()
        if not group.repeating
        for name, item in group.items.items()
        if item.required and item.show_if is None
    )


def _all_required(study: Study) -> frozenset[str]:
    """The items :func:`_required` counts, of every form."""
    return frozenset(name for form in study.forms for name in _required(study, form))


def _missing_required(
    study: Study, events: Mapping[int, EventFact], forms: list[FormFact]
) -> Ratio:
    """Required items without a value / required items expected, over the forms due (every
    form of an event that has a visit date) and the forms started (saved at least once)."""
    saved = {(form.event_key, form.form): form.items for form in forms}
    due: dict[tuple[int, str], frozenset[str]] = dict(saved)
    for key, event in events.items():
        defined = study.events.get(event.event)
        if event.visit_date is None or defined is None:
            continue
        for form in defined.forms:
            due.setdefault((key, form), frozenset())
    expected = missing = 0
    for (_, form), items in due.items():
        required = _required(study, form)
        expected += len(required)
        missing += len(required - items)
    return Ratio(missing, expected)


def _ratio_json(ratio: Ratio | None) -> dict[str, Any] | None:
    if ratio is None:
        return None
    return {"numerator": ratio.numerator, "denominator": ratio.denominator, "value": ratio.value}


def metrics_json(metrics: SiteMetrics) -> dict[str, Any]:
    """One site's metrics as JSON (the API's and ``consortia study performance --json``'s)."""
    return {
        "site": metrics.site,
        "enrolled": metrics.enrolled,
        "enrolment_target": metrics.enrolment_target,
        "enrolment_vs_target": _ratio_json(metrics.enrolment_vs_target),
        "enrolment_by_month": dict(metrics.enrolment_by_month),
        "screen_failure": _ratio_json(metrics.screen_failure),
        "days_to_entry": {"n": metrics.days_to_entry.n, "median": metrics.days_to_entry.median},
        "queries_per_value": _ratio_json(metrics.queries_per_value),
        "queries_per_100_values": metrics.queries_per_100_values,
        "days_to_resolve": {
            "n": metrics.days_to_resolve.n,
            "median": metrics.days_to_resolve.median,
        },
        "missing_required": _ratio_json(metrics.missing_required),
        "out_of_window": _ratio_json(metrics.out_of_window),
        "protocol_deviations": metrics.protocol_deviations,
    }


def performance_json(performance: SitePerformance) -> dict[str, Any]:
    """The whole result as JSON."""
    return {
        "study": performance.study,
        "definition_version": performance.definition_version,
        "as_of": performance.as_of.isoformat(),
        "deviations_recorded": performance.deviations_recorded,
        "sites": [metrics_json(site) for site in performance.sites],
        "overall": metrics_json(performance.overall),
    }


def _cell(ratio: Ratio | None, *, percent: bool = True) -> str:
    if ratio is None:
        return "-"
    value = ratio.value
    shown = "-" if value is None else f"{100 * value:.1f}%" if percent else f"{value:.2f}"
    return f"{ratio.numerator}/{ratio.denominator} ({shown})"


def _days(median: Median) -> str:
    return "-" if median.median is None else f"{median.median:g} (n={median.n})"


def performance_table(performance: SitePerformance) -> list[list[str]]:
    """The result as rows of text, a header first (``consortia study performance``)."""
    header = [
        "site",
        "enrolled/target",
        "by month",
        "screen failures",
        "days to entry",
        "queries/100 values",
        "days to resolve",
        "missing required",
        "out of window",
        "deviations",
    ]
    rows = [header]
    for metrics in (*performance.sites, performance.overall):
        per_100 = metrics.queries_per_100_values
        target = metrics.enrolment_vs_target
        rows.append(
            [
                "all shown" if metrics.site == ALL_SITES else metrics.site,
                f"{metrics.enrolled}" if target is None else _cell(target),
                " ".join(f"{month}:{n}" for month, n in metrics.enrolment_by_month) or "-",
                _cell(metrics.screen_failure),
                _days(metrics.days_to_entry),
                "-" if per_100 is None else f"{per_100:.1f}",
                _days(metrics.days_to_resolve),
                _cell(metrics.missing_required),
                _cell(metrics.out_of_window),
                "not recorded"
                if metrics.protocol_deviations is None
                else str(metrics.protocol_deviations),
            ]
        )
    return rows
