"""A statistician never receives an identifier value, from any endpoint, in any answer."""

from __future__ import annotations

import re

from node_client import Node

from consortia.auth.principal import Grant, Principal, Role
from consortia.services import subjects

INITIALS = ["QZXA", "QZXB", "QZXC"]
PATH_VALUES = {"study": "CART01", "subject_id": "SG01-001", "token_id": "1", "grant_id": "1"}
BODIES = {
    "/api/v1/studies/{study}/subjects": {"subject_id": "SG01-009", "site": "SG01"},
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
    seeder = Principal(
        0, "seed@sg.example", "seed", frozenset({Grant("CART01", "*", Role.COORDINATOR)})
    )
    for number, (site, initials) in enumerate(zip(["SG01", "SG01", "SH01"], INITIALS, strict=True)):
        subjects.enrol_subject(
            node.engine,
            seeder,
            "CART01",
            subjects.SubjectInput(f"{site}-00{number + 1}", site, initials),
        )
    return node.add_user(
        "stat@sg.example",
        ("CART01", "*", Role.STATISTICIAN),
        ("*", "*", Role.STATISTICIAN),
        password="a long passphrase",
    )


def _operations(node: Node) -> list[tuple[str, str]]:
    schema = node.app.openapi()
    return [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "delete"}
    ]


def test_a_statistician_never_receives_an_identifier_from_any_endpoint(node: Node) -> None:
    token = _seed(node)
    by_token = node.client(token)
    by_session = node.client()
    csrf = by_session.post("/api/v1/session", json=BODIES["/api/v1/session"]).json()["csrf_token"]
    listed = by_token.get("/api/v1/studies/CART01/subjects").json()
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
            for initials in INITIALS:
                assert initials not in response.text, (method, path, response.text)
    assert {200, 201, 403} <= seen_statuses
