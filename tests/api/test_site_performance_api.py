"""``GET /api/v1/studies/{study}/site-performance``: the metrics of the small study of
tests/site_performance_study.py (worked out by hand there) as JSON, at the caller's sites
only; a role without ``site_performance.read`` is refused, another study is not found."""

from __future__ import annotations

from typing import Any

import pytest
from node_client import Node

from consortia.auth.principal import Role
from consortia.services.site_performance import ALL_SITES, Ratio, metrics_json
from site_performance_study import OVERALL, SG01, SH01, STUDY, build_study, install_clock

PATH = f"/api/v1/studies/{STUDY}/site-performance"


@pytest.fixture
def study(node: Node, monkeypatch: pytest.MonkeyPatch) -> Node:
    build_study(node.engine, install_clock(monkeypatch))
    return node


def test_a_monitor_at_every_site_gets_every_hand_counted_metric(study: Node) -> None:
    client = study.client(study.add_user("mon@perf.example", (STUDY, "*", Role.MONITOR)))
    response = client.get(PATH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sites"] == [metrics_json(SG01), metrics_json(SH01)]
    assert body["overall"] == metrics_json(OVERALL)
    assert (body["study"], body["definition_version"], body["deviations_recorded"]) == (
        STUDY,
        1,
        False,
    )
    sg01 = body["sites"][0]
    # the JSON carries the exact fractions and their values
    assert sg01["enrolment_vs_target"] == {"numerator": 3, "denominator": 4, "value": 0.75}
    assert sg01["queries_per_100_values"] == 50.0
    assert sg01["days_to_entry"] == {"n": 5, "median": 3.0}
    assert sg01["enrolment_by_month"] == {"2025-01": 2, "2025-02": 1}
    assert sg01["protocol_deviations"] is None
    assert body["sites"][1]["enrolment_target"] is None


def test_a_data_manager_at_one_site_sees_that_site_only(study: Node) -> None:
    token = study.add_user(
        "dm@sg.example", (STUDY, "SG01", Role.DATA_MANAGER), (STUDY, "SH01", Role.COORDINATOR)
    )
    body = study.client(token).get(PATH).json()
    assert [site["site"] for site in body["sites"]] == ["SG01"]
    assert body["sites"] == [metrics_json(SG01)]
    pooled: dict[str, Any] = {
        **metrics_json(SG01),
        "site": ALL_SITES,
        "enrolment_target": 10,
        "enrolment_vs_target": {"numerator": 3, "denominator": 10, "value": Ratio(3, 10).value},
    }
    assert body["overall"] == pooled
    assert "SH01" not in str(body)


def test_a_coordinator_is_refused_and_a_stranger_does_not_find_the_study(study: Node) -> None:
    coordinator = study.client(study.add_user("c@sg.example", (STUDY, "SG01", Role.COORDINATOR)))
    refused = coordinator.get(PATH)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "site_performance.read" in refused.json()["detail"]
    stranger = study.client(study.add_user("s@other.example", ("OTHER", "*", Role.MONITOR)))
    assert stranger.get(PATH).status_code == 404
