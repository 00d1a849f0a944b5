"""Query assignment over the API: assign when opening or later, the assignee in every query,
the list's ``assignee`` filter (``me`` too), and the problems a wrong assignee gets."""

from __future__ import annotations

import pytest
from node_client import Node, SyncClient

from consortia.auth.principal import Role
from consortia.domain.templates import template_text
from consortia.storage.audit import iter_events

STUDY = "CART-LBCL"
BASE = f"/api/v1/studies/{STUDY}"
FORM = f"{BASE}/subjects/SG01-001/events/screening/forms/eligibility"
ELIGIBLE = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "eligible": True,
}


class Team:
    """cart-lbcl with one saved form at SG01; a data manager, two coordinators and a
    statistician at SG01, a coordinator at SH01."""

    def __init__(self, node: Node) -> None:
        sg = lambda role: (STUDY, "SG01", role)  # noqa: E731
        admin = node.client(node.add_user("admin@sg.example", (STUDY, "*", Role.STUDY_ADMIN)))
        self.data_manager = node.client(node.add_user("dm@sg.example", sg(Role.DATA_MANAGER)))
        self.coordinator = node.client(node.add_user("coord@sg.example", sg(Role.COORDINATOR)))
        self.second = node.client(node.add_user("coord2@sg.example", sg(Role.COORDINATOR)))
        node.add_user("stat@sg.example", sg(Role.STATISTICIAN), with_token=False)
        node.add_user("coord@sh.example", (STUDY, "SH01", Role.COORDINATOR), with_token=False)
        self.node = node
        assert admin.put(
            f"{BASE}/definition", json={"source": template_text("cart-lbcl")}
        ).is_success
        enrolled = self.coordinator.post(
            f"{BASE}/subjects",
            json={"subject_id": "SG01-001", "site": "SG01", "screening_date": "2025-01-06"},
        )
        assert enrolled.status_code == 201, enrolled.text
        saved = self.coordinator.put(FORM, json={"version": 0, "values": ELIGIBLE})
        assert saved.status_code == 200, saved.text

    def open(self, item: str, **extra: object) -> dict[str, object]:
        opened = self.data_manager.post(
            f"{FORM}/queries", json={"item": item, "text": f"{item} in source?", **extra}
        )
        assert opened.status_code == 201, opened.text
        body: dict[str, object] = opened.json()
        return body


@pytest.fixture
def team(node: Node) -> Team:
    return Team(node)


def _listed(client: SyncClient, **params: str) -> list[tuple[int, str | None]]:
    answer = client.get(f"{BASE}/queries", params=params)
    assert answer.status_code == 200, answer.text
    return [(q["id"], q["assignee"]) for q in answer.json()]


def test_a_query_is_assigned_when_opened_and_reassigned_and_the_list_filters_by_assignee(
    team: Team,
) -> None:
    first = team.open("ecog", assignee="Coord@SG.example")
    second = team.open("prior_lines")
    assert first["assignee"] == "coord@sg.example"
    assert second["assignee"] is None
    moved = team.data_manager.post(
        f"{BASE}/queries/{second['id']}/assign", json={"assignee": "coord2@sg.example"}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["assignee"] == "coord2@sg.example"
    assert _listed(team.coordinator, assignee="me") == [(first["id"], "coord@sg.example")]
    assert _listed(team.second, assignee="me") == [(second["id"], "coord2@sg.example")]
    assert _listed(team.data_manager, assignee="coord2@sg.example", status="open") == [
        (second["id"], "coord2@sg.example")
    ]
    assert _listed(team.data_manager, assignee="me") == []
    unassigned = team.data_manager.post(
        f"{BASE}/queries/{first['id']}/assign", json={"assignee": None}
    )
    assert unassigned.json()["assignee"] is None
    assert _listed(team.coordinator, assignee="me") == []
    with team.node.engine.connect() as connection:
        assigned = [
            (e.actor, e.before, e.after)
            for e in iter_events(connection, chain=STUDY)
            if e.action == "query.assign"
        ]
    assert assigned == [
        ("dm@sg.example", {"assignee": None}, {"assignee": "coord2@sg.example"}),
        ("dm@sg.example", {"assignee": "coord@sg.example"}, {"assignee": None}),
    ]


@pytest.mark.parametrize(
    "assignee", ["stat@sg.example", "coord@sh.example", "nobody@sg.example", "not-an-email"]
)
def test_a_wrong_assignee_gets_a_problem_on_the_field_and_changes_nothing(
    team: Team, assignee: str
) -> None:
    query = team.open("ecog", assignee="coord@sg.example")
    refused = team.data_manager.post(
        f"{BASE}/queries/{query['id']}/assign", json={"assignee": assignee}
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in refused.json()["errors"]] == ["assignee"]
    assert assignee in refused.json()["errors"][0]["message"]
    at_opening = team.data_manager.post(
        f"{FORM}/queries", json={"item": "prior_lines", "text": "?", "assignee": assignee}
    )
    assert at_opening.status_code == 422
    assert _listed(team.data_manager) == [(query["id"], "coord@sg.example")]


def test_assigning_needs_a_role_that_manages_queries_and_a_body(team: Team) -> None:
    query = team.open("ecog")
    url = f"{BASE}/queries/{query['id']}/assign"
    assert team.coordinator.post(url, json={"assignee": "coord@sg.example"}).status_code == 403
    assert team.data_manager.post(url, json={}).status_code == 422
    assert (
        team.data_manager.post(f"{BASE}/queries/999/assign", json={"assignee": None}).status_code
        == 404
    )
    assert _listed(team.data_manager) == [(query["id"], None)]
    bad_filter = team.data_manager.get(f"{BASE}/queries", params={"assignee": "x" * 321})
    assert bad_filter.status_code == 422
