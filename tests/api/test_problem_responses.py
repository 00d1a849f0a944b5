"""Every error is an RFC 9457 problem; no stack trace and no rejected value comes back."""

from __future__ import annotations

import pytest
from node_client import Node

from consortia.app import create_app
from consortia.auth.principal import Role
from consortia.config import Settings
from consortia.exceptions import ConfigurationError
from consortia.services import subjects

SUBJECTS = "/api/v1/studies/CART01/subjects"


@pytest.fixture
def token(node: Node) -> str:
    return node.add_user("ana@sg.example", ("CART01", "SG01", Role.COORDINATOR))


def _is_problem(response_json: dict[str, object], status: int) -> bool:
    return {"type", "title", "status", "detail"} <= set(response_json) and (
        response_json["status"] == status
    )


@pytest.mark.parametrize("environment", ["production", "test"])
def test_the_app_refuses_to_start_with_the_default_secret(environment: str) -> None:
    with pytest.raises(ConfigurationError, match="CONSORTIA_SECRET_KEY"):
        create_app(Settings(environment=environment, database_url="sqlite://"))  # type: ignore[arg-type]


def test_unknown_paths_and_methods_are_problems(node: Node, token: str) -> None:
    client = node.client(token)
    for method, path, status in [
        ("GET", "/api/v1/nothing-here", 404),
        ("PUT", SUBJECTS, 405),
        ("GET", "/api/v1/studies/bad code!/subjects", 422),
    ]:
        response = client.request(method, path)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert _is_problem(response.json(), status)


def test_invalid_input_names_each_field_but_never_echoes_its_value(node: Node, token: str) -> None:
    response = node.client(token).post(
        SUBJECTS, json={"subject_id": "SG01 001", "site": "SG01", "initials": "Tan Ah Kow 1962"}
    )
    assert response.status_code == 422
    problem = response.json()
    assert {error["path"] for error in problem["errors"]} == {"body.subject_id", "body.initials"}
    assert "Tan Ah Kow" not in response.text
    assert "SG01 001" not in response.text


def test_a_body_that_is_not_json_is_a_problem(node: Node, token: str) -> None:
    response = node.client(token).post(
        SUBJECTS, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert _is_problem(response.json(), 422)


def test_an_unexpected_failure_is_a_500_problem_without_a_trace(
    node: Node, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals at /srv/consortia/db.py line 12")

    monkeypatch.setattr(subjects, "list_subjects", broken)
    response = node.client(token, raise_app_exceptions=False).get(SUBJECTS)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text


def test_a_request_without_credentials_is_refused_before_its_body_is_judged(node: Node) -> None:
    form = "/api/v1/studies/CART01/subjects/SG01-001/events/screening/forms/eligibility"
    anonymous = node.client(None)
    for method, path, body in [
        ("PUT", form, {"version": "not a number"}),
        ("GET", form, None),
        ("POST", SUBJECTS, {"subject_id": "SG01 001"}),
    ]:
        response = anonymous.request(method, path, json=body)
        assert response.status_code == 401, (method, path)
        assert _is_problem(response.json(), 401)
