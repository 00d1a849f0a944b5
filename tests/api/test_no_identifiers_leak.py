"""A statistician never receives an identifier value, from any endpoint, in any answer."""

from __future__ import annotations

import re

from node_client import Node

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.services import data_entry, queries, studies, subjects

STUDY = "CART-LBCL"
INITIALS = ["QZXA", "QZXB", "QZXC"]
PATH_VALUES = {
    "study": STUDY,
    "subject_id": "SG01-001",
    "token_id": "1",
    "grant_id": "1",
    "user_id": "1",
    "event": "screening",
    "form": "demographics",
    "item": "initials",
    "query_id": "1",
    "step": "answer",
    "approval_id": "0123456789abcdef",
}
FORM = "/api/v1/studies/{study}/subjects/{subject_id}/events/{event}/forms/{form}"
BODIES = {
    "/api/v1/studies/{study}/subjects": {"subject_id": "SG01-009", "site": "SG01"},
    FORM: {"version": 1, "values": {"age": 50, "sex": "M"}, "reason": "x"},
    FORM + "/queries": {"item": "initials", "text": "?"},
    "/api/v1/studies/{study}/exports": {"table": "demographics", "format": "csv"},
    "/api/v1/studies/{study}/analyses": {"kind": "describe", "table": "edc", "variable": "age"},
    "/api/v1/studies/{study}/queries/{query_id}/{step}": {"text": "x"},
    "/api/v1/users": {"email": "x@sg.example", "name": "X"},
    "/api/v1/grants": {
        "email": "x@sg.example",
        "study": "CART01",
        "site": "SG01",
        "role": "monitor",
    },
    "/api/v1/me/tokens": {"name": "mine"},
    "/api/v1/session": {"email": "stat@sg.example", "password": "a long passphrase"},
}


def _seed(node: Node) -> str:
    roles = (Role.COORDINATOR, Role.STUDY_ADMIN, Role.MONITOR)
    seeder = Principal(
        0, "seed@sg.example", "seed", frozenset(Grant(STUDY, "*", role) for role in roles)
    )
    studies.load_definition(node.engine, seeder, template_text("cart-lbcl"))
    for number, (site, initials) in enumerate(zip(["SG01", "SG01", "SH01"], INITIALS, strict=True)):
        subject_id = f"{site}-00{number + 1}"
        subjects.enrol_subject(
            node.engine, seeder, STUDY, subjects.SubjectInput(subject_id, site, initials)
        )
        values = {"initials": initials, "hospital_number": initials, "age": 50, "sex": "M"}
        save = data_entry.FormSave(version=0, values=values)
        data_entry.save_form(
            node.engine, seeder, STUDY, subject_id, "screening", "demographics", save
        )
        queries.open_query(
            node.engine,
            seeder,
            STUDY,
            subject_id,
            "screening",
            "demographics",
            "initials",
            f"is {initials} right?",
        )
    return node.add_user(
        "stat@sg.example",
        (STUDY, "*", Role.STATISTICIAN),
        ("*", "*", Role.STATISTICIAN),
        password="a long passphrase",
    )


def _operations(node: Node) -> list[tuple[str, str]]:
    schema = node.app.openapi()
    operations = [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete"}
    ]
    # signing out last, so that the session's own requests (creating a token: 201) count
    return sorted(operations, key=lambda op: op == ("DELETE", "/api/v1/session"))


def test_a_statistician_never_receives_an_identifier_from_any_endpoint(node: Node) -> None:
    token = _seed(node)
    by_token = node.client(token)
    by_session = node.client()
    csrf = by_session.post("/api/v1/session", json=BODIES["/api/v1/session"]).json()["csrf_token"]
    listed = by_token.get(f"/api/v1/studies/{STUDY}/subjects").json()
    assert len(listed) == 3
    assert all(s["initials"] is None and s["identifiers_masked"] for s in listed)
    seen_statuses = set()
    for method, template in _operations(node):
        path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m[1]], template)
        for client in (by_token, by_session):
            response = client.request(
                method, path, json=BODIES.get(template), headers={"X-CSRF-Token": csrf}
            )
            seen_statuses.add(response.status_code)
            if client is by_session and (method, template) == ("POST", "/api/v1/session"):
                csrf = response.json()["csrf_token"]  # signed in again: a new session
            for initials in INITIALS:
                assert initials not in response.text, (method, path, response.text)
    assert {200, 201, 403} <= seen_statuses
