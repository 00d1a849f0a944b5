"""Every API response, errors included, is kept out of caches and never content-sniffed; the
API's reference page loads nothing from another site and runs under the pages' CSP."""

from __future__ import annotations

import re

import pytest
from node_client import Node

from consortia.auth.principal import Role

SUBJECTS = "/api/v1/studies/CART01/subjects"


@pytest.fixture
def token(node: Node) -> str:
    return node.add_user("ana@sg.example", ("CART01", "SG01", Role.COORDINATOR))


def test_api_responses_and_errors_carry_no_store_and_nosniff(node: Node, token: str) -> None:
    client, anonymous = node.client(token), node.client()
    answers = {
        "health": client.get("/api/v1/health"),
        "me": client.get("/api/v1/me"),
        "subjects": client.get(SUBJECTS),
        "created": client.post(SUBJECTS, json={"subject_id": "SG01-001", "site": "SG01"}),
        "openapi": client.get("/api/v1/openapi.json"),
        "401": anonymous.get("/api/v1/me"),
        "401 before the body": anonymous.post(SUBJECTS, json={"subject_id": "SG01-002"}),
        "404": client.get("/api/v1/nothing-here"),
        "405": client.put(SUBJECTS),
        "422": client.post(SUBJECTS, json={"subject_id": "bad id!", "site": "SG01"}),
        "400 too deep": client.post(
            SUBJECTS, content=b"[" * 64, headers={"content-type": "application/json"}
        ),
    }
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses["401"] == statuses["401 before the body"] == 401
    assert (statuses["404"], statuses["405"], statuses["422"]) == (404, 405, 422)
    assert statuses["400 too deep"] == 400
    headers = {
        name: (
            response.headers.get("cache-control"),
            response.headers.get("x-content-type-options"),
        )
        for name, response in answers.items()
    }
    assert headers == dict.fromkeys(answers, ("no-store", "nosniff"))


def test_the_api_reference_page_loads_nothing_from_anywhere_else(node: Node) -> None:
    response = node.client().get("/api/v1/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "/api/v1/studies/{study}/subjects" in page  # it documents the API
    assert "<script" not in page.lower()
    links = re.findall(r"""(?:src|href|url)\s*[=(]\s*["']?([^"' >)]+)""", page, re.IGNORECASE)
    assert links
    assert all(link.startswith("/") and not link.startswith("//") for link in links)
    assert not re.search(r"https?://", page)
    assert response.headers["cache-control"] == "no-store"


def test_the_api_reference_page_gets_the_pages_content_security_policy(node: Node) -> None:
    docs = node.client().get("/api/v1/docs")
    login = node.client().get("/login")
    assert login.status_code == 200
    policy = docs.headers["content-security-policy"]
    assert policy == login.headers["content-security-policy"]
    assert "default-src 'none'" in policy
