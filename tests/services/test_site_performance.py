"""Site performance from the node's own EDC: every metric of docs/site-performance.md on
the small study of tests/site_performance_study.py (its docstring works each number out by
hand), on SQLite and PostgreSQL; and a reader sees only the sites where it holds the action.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.exceptions import NotFoundError, PermissionDeniedError
from consortia.services import studies
from consortia.services.site_performance import (
    ALL_SITES,
    Median,
    Ratio,
    SiteMetrics,
    read_site_performance,
)
from site_performance_study import (
    DEFINITION,
    OVERALL,
    SG01,
    SH01,
    STAFF,
    STUDY,
    build_study,
    install_clock,
)


@pytest.fixture
def study(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    return build_study(engine, install_clock(monkeypatch))


def test_every_metric_equals_the_hand_count_at_each_site_and_overall(study: sa.Engine) -> None:
    performance = read_site_performance(study, STAFF, STUDY)
    assert performance.sites == (SG01, SH01)
    assert performance.overall == OVERALL
    assert performance.definition_version == 1
    assert performance.deviations_recorded is False
    assert SG01.queries_per_100_values == 50.0
    assert SH01.queries_per_100_values == 100 / 3
    assert SG01.screen_failure.value == 0.25


def test_a_reader_sees_only_the_sites_where_it_holds_the_action(study: sa.Engine) -> None:
    # a data manager at SG01 who is a coordinator (no site_performance.read) at SH01
    reader = Principal(
        22,
        "dm@sg.example",
        "DM",
        frozenset(
            {Grant(STUDY, "SG01", Role.DATA_MANAGER), Grant(STUDY, "SH01", Role.COORDINATOR)}
        ),
    )
    performance = read_site_performance(study, reader, STUDY)
    assert performance.sites == (SG01,)
    # the pooled row is SG01's own numbers, against the study's target
    assert performance.overall == SiteMetrics(
        **{
            **{name: getattr(SG01, name) for name in SiteMetrics.__dataclass_fields__},
            "site": ALL_SITES,
            "enrolment_target": 10,
            "enrolment_vs_target": Ratio(3, 10),
        }
    )


def test_a_role_without_the_action_is_refused_and_another_study_is_not_found(
    study: sa.Engine,
) -> None:
    coordinator = Principal(
        23, "c@sg.example", "C", frozenset({Grant(STUDY, "SG01", Role.COORDINATOR)})
    )
    with pytest.raises(PermissionDeniedError):
        read_site_performance(study, coordinator, STUDY)
    outsider = Principal(24, "o@sg.example", "O", frozenset({Grant("OTHER", "*", Role.MONITOR)}))
    with pytest.raises(NotFoundError):
        read_site_performance(study, outsider, STUDY)


def test_a_study_without_subjects_lists_its_sites_with_zero_counts_and_no_made_up_rates(
    engine: sa.Engine,
) -> None:
    studies.load_definition(engine, STAFF, DEFINITION)
    performance = read_site_performance(engine, STAFF, STUDY)
    assert [metrics.site for metrics in performance.sites] == ["SG01", "SH01"]
    empty = performance.sites[0]
    assert (empty.enrolled, empty.enrolment_vs_target) == (0, Ratio(0, 4))
    assert empty.enrolment_by_month == ()
    for ratio in (empty.screen_failure, empty.queries_per_value, empty.missing_required):
        assert (ratio, ratio.value) == (Ratio(0, 0), None)
    assert empty.days_to_entry == empty.days_to_resolve == Median(0, None)
    assert empty.queries_per_100_values is None
    assert performance.overall.protocol_deviations is None
