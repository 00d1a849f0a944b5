"""The HTTP faces: the node's identity and bad bodies, and the lead's authenticated polls."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from consortia.federation.apps import create_lead_app, create_node_app
from consortia.federation.pull import POLL_HEADER, poll_token
from consortia.federation.signing import generate_key, sign_message


def call(app: Any, method: str, path: str, **options: Any) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            return await client.request(method, path, **options)

    return asyncio.run(main())


def test_a_node_publishes_its_name_url_and_public_key(make_federation: Any) -> None:
    node = make_federation().runners["sgh"]
    response = call(create_node_app(node), "GET", "/federation/v1/identity")
    assert response.json() == {
        "name": "sgh",
        "url": "http://sgh.test",
        "public_key": node.public_key,
        "protocol": 1,
    }


def test_a_body_that_is_not_json_gets_a_problem_response(make_federation: Any) -> None:
    node = make_federation().runners["sgh"]
    response = call(create_node_app(node), "POST", "/federation/v1/analyze", content=b"{nope")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith("the body is not JSON")


def test_the_lead_answers_polls_only_with_a_valid_token_of_that_node(
    make_federation: Any,
) -> None:
    federation = make_federation()
    app = create_lead_app(federation.coordinator)
    sgh, nuh = federation.runners["sgh"], federation.runners["nuh"]
    path = "/federation/tasks/next"
    missing = call(app, "GET", path, params={"node": "sgh", "wait": 0})
    assert missing.status_code == 401
    assert "signature.unsigned" in missing.json()["detail"]
    borrowed = call(
        app, "GET", path, params={"node": "sgh", "wait": 0}, headers={POLL_HEADER: poll_token(nuh)}
    )
    assert borrowed.status_code == 401
    assert "not 'sgh'" in borrowed.json()["detail"]
    idle = call(
        app, "GET", path, params={"node": "sgh", "wait": 0}, headers={POLL_HEADER: poll_token(sgh)}
    )
    assert idle.status_code == 204


def test_the_lead_refuses_results_nobody_waits_for_or_nobody_signed(
    make_federation: Any,
) -> None:
    federation = make_federation()
    app = create_lead_app(federation.coordinator)
    sgh = federation.runners["sgh"]
    stray = sign_message({"task_id": "0" * 32}, sgh.key, "sgh")
    assert call(app, "POST", "/federation/results", json=stray).status_code == 404
    forged = sign_message({"task_id": "0" * 32}, generate_key(), "sgh")
    response = call(app, "POST", "/federation/results", json=forged)
    assert response.status_code == 401
    assert "signature.bad_signature" in response.json()["detail"]
