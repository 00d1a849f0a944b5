"""Every role x (own site, other site) x every action, through the running API.

Each person holds one role at study CART01, site SG01 (the node administrator: every
study and site). Subjects exist at SG01 (own) and SH01 (other). The expected answers are
written out by hand below — an independent statement of docs/roles.md — and the test
checks the API gives exactly those: 404 where the caller cannot see the record or study
(existence does not leak), 403 where the role lacks the action.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from node_client import Node, running_node

from consortia.auth.policy import Action
from consortia.auth.principal import Grant, Principal, Role
from consortia.services import subjects

STUDY = "/api/v1/studies/CART01"
OWN_INITIALS, OTHER_INITIALS = "QZA", "QZB"

# (method, path, the action it exercises); bodies come from _body()
ENDPOINTS: dict[str, tuple[str, str, Action]] = {
    "list": ("GET", f"{STUDY}/subjects", Action.SUBJECT_READ),
    "get_own": ("GET", f"{STUDY}/subjects/SG01-001", Action.SUBJECT_READ),
    "get_other": ("GET", f"{STUDY}/subjects/SH01-001", Action.SUBJECT_READ),
    "create_own": ("POST", f"{STUDY}/subjects", Action.SUBJECT_CREATE),
    "create_other": ("POST", f"{STUDY}/subjects", Action.SUBJECT_CREATE),
    "enrolment": ("GET", f"{STUDY}/enrolment", Action.AGGREGATE_READ),
    "audit": ("GET", f"{STUDY}/audit", Action.AUDIT_READ),
    "other_study": ("GET", "/api/v1/studies/ORTHO/subjects", Action.SUBJECT_READ),
    "users": ("GET", "/api/v1/users", Action.USER_READ),
    "create_user": ("POST", "/api/v1/users", Action.USER_MANAGE),
    "node_audit": ("GET", "/api/v1/audit", Action.NODE_AUDIT_READ),
    "grant_own": ("POST", "/api/v1/grants", Action.GRANT_MANAGE),
    "grant_other": ("POST", "/api/v1/grants", Action.GRANT_MANAGE),
}
COLUMNS = list(ENDPOINTS)

# fmt: off
EXPECTED: dict[Role, tuple[int, ...]] = {
    #                   list get_own get_other create_own create_other enrolment audit other_study users create_user node_audit grant_own grant_other
    Role.NODE_ADMIN:     (403, 403, 403, 403, 403, 403, 403, 403, 200, 201, 200, 201, 201),
    Role.STUDY_ADMIN:    (200, 200, 404, 403, 403, 200, 403, 404, 403, 403, 403, 201, 403),
    Role.INVESTIGATOR:   (200, 200, 404, 201, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.COORDINATOR:    (200, 200, 404, 201, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.MONITOR:        (200, 200, 404, 403, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.DATA_MANAGER:   (200, 200, 404, 403, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.STATISTICIAN:   (200, 200, 404, 403, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.SPONSOR_VIEWER: (403, 403, 404, 403, 403, 200, 403, 404, 403, 403, 403, 403, 403),
    Role.AUDITOR:        (200, 200, 404, 403, 403, 200, 200, 404, 403, 403, 403, 403, 403),
}
# fmt: on
SEES_IDENTIFIERS = {Role.INVESTIGATOR, Role.COORDINATOR, Role.MONITOR, Role.AUDITOR}
# actions decided by the policy but without an endpoint yet (later features add them)
NO_ENDPOINT_YET = {
    Action.STUDY_MANAGE,
    Action.DATA_ENTER,
    Action.DATA_SIGN,
    Action.DATA_VERIFY,
    Action.QUERY_READ,
    Action.QUERY_OPEN,
    Action.QUERY_ANSWER,
    Action.QUERY_CLOSE,
    Action.FORM_LOCK,
    Action.ANALYSIS_RUN,
}


@dataclass
class Consortium:
    node: Node
    tokens: dict[Role, str]


@pytest.fixture(scope="module")
def consortium(module_database_url: str) -> Iterator[Consortium]:
    with running_node(module_database_url) as node:
        tokens: dict[Role, str] = {}
        for role in Role:
            where = ("*", "*") if role is Role.NODE_ADMIN else ("CART01", "SG01")
            tokens[role] = node.add_user(f"{role.value}@sg.example", (*where, role))
            node.add_user(f"target-{role.value}@sg.example", with_token=False)
        seeder = Principal(
            0, "seed@sg.example", "seed", frozenset({Grant("CART01", "*", Role.INVESTIGATOR)})
        )
        for subject_id, site, initials in [
            ("SG01-001", "SG01", OWN_INITIALS),
            ("SH01-001", "SH01", OTHER_INITIALS),
        ]:
            subjects.enrol_subject(
                node.engine, seeder, "CART01", subjects.SubjectInput(subject_id, site, initials)
            )
        yield Consortium(node, tokens)


def _body(column: str, role: Role) -> dict[str, Any] | None:
    target = f"target-{role.value}@sg.example"
    return {
        "create_own": {"subject_id": f"SG01-{role.value}", "site": "SG01", "initials": "QZC"},
        "create_other": {"subject_id": f"SH01-{role.value}", "site": "SH01", "initials": "QZD"},
        "create_user": {"email": f"new-{role.value}@sg.example", "name": "New"},
        "grant_own": {"email": target, "study": "CART01", "site": "SG01", "role": "monitor"},
        "grant_other": {"email": target, "study": "CART01", "site": "SH01", "role": "monitor"},
    }.get(column)


def test_every_action_with_an_endpoint_is_in_the_matrix() -> None:
    covered = {action for _, _, action in ENDPOINTS.values()} | {Action.IDENTIFIER_READ}
    assert covered | NO_ENDPOINT_YET == set(Action)
    assert not covered & NO_ENDPOINT_YET


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_exactly_its_answers_at_its_own_and_the_other_site(
    consortium: Consortium, role: Role
) -> None:
    client = consortium.node.client(consortium.tokens[role])
    answers: dict[str, Any] = {}
    for column in COLUMNS:
        method, path, _ = ENDPOINTS[column]
        response = client.request(method, path, json=_body(column, role))
        answers[column] = response
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
    got = tuple(answers[column].status_code for column in COLUMNS)
    assert dict(zip(COLUMNS, got, strict=True)) == dict(zip(COLUMNS, EXPECTED[role], strict=True))
    if answers["list"].status_code == 200:
        listed = answers["list"].json()
        if role is not Role.NODE_ADMIN:
            assert {s["site"] for s in listed} == {"SG01"}
        own = next(s for s in listed if s["subject_id"] == "SG01-001")
        expected_initials = OWN_INITIALS if role in SEES_IDENTIFIERS else None
        assert own["initials"] == expected_initials
        assert own["identifiers_masked"] is (role not in SEES_IDENTIFIERS)
        assert answers["get_own"].json()["initials"] == expected_initials
    if answers["enrolment"].status_code == 200:
        assert set(answers["enrolment"].json()["sites"]) == {"SG01"}
    if answers["audit"].status_code == 200:
        assert {event["site"] for event in answers["audit"].json()} == {"SG01"}
    for column in ("get_other", "other_study"):
        assert OTHER_INITIALS not in answers[column].text


def test_nothing_but_health_and_login_answers_without_credentials(consortium: Consortium) -> None:
    anonymous = consortium.node.client()
    for (method, path, _), body_column in zip(ENDPOINTS.values(), COLUMNS, strict=True):
        response = anonymous.request(method, path, json=_body(body_column, Role.NODE_ADMIN))
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.get("/api/v1/health").status_code == 200


def test_one_person_with_roles_at_two_sites_gets_each_sites_rights(
    consortium: Consortium,
) -> None:
    token = consortium.node.add_user(
        "both@sg.example", ("CART01", "SG01", Role.COORDINATOR), ("CART01", "SH01", Role.MONITOR)
    )
    client = consortium.node.client(token)
    listed = {s["subject_id"]: s for s in client.get(f"{STUDY}/subjects").json()}
    assert {"SG01-001", "SH01-001"} <= set(listed)
    assert listed["SH01-001"]["initials"] == OTHER_INITIALS
    create = {"subject_id": "SH01-both", "site": "SH01"}
    assert client.post(f"{STUDY}/subjects", json=create).status_code == 403
    create = {"subject_id": "SG01-both", "site": "SG01"}
    assert client.post(f"{STUDY}/subjects", json=create).status_code == 201
