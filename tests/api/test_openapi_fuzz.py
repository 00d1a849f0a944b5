"""Schemathesis generates requests from the OpenAPI document; none gets a 5xx.

Bounded (a few examples per operation, derandomised) so it runs inside the normal suite.
Requests carry a valid API token of a person with many roles, so they reach the handlers
rather than stopping at authentication.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from node_client import BASE_URL, Node, SyncClient, running_node

from consortia.auth.principal import Grant, Principal, Role
from consortia.exceptions import ConflictError
from consortia.services import subjects, users
from consortia.storage.tables import api_token

schemathesis = pytest.importorskip("schemathesis")
pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 12
FUZZER = "fuzz@sg.example"
FUZZER_GRANTS = [
    ("*", "*", Role.NODE_ADMIN),
    ("CART01", "SG01", Role.COORDINATOR),
    ("CART01", "*", Role.AUDITOR),
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, SyncClient]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'node.db'}"
    with running_node(url) as node:
        token = node.add_user(FUZZER, *FUZZER_GRANTS)
        seeder = Principal(
            0, "seed@sg.example", "seed", frozenset({Grant("CART01", "*", Role.COORDINATOR)})
        )
        subjects.enrol_subject(
            node.engine, seeder, "CART01", subjects.SubjectInput("SG01-001", "SG01", "AL")
        )
        yield node, node.client(token, raise_app_exceptions=False)


def _restore_fuzzer(node: Node) -> None:
    """Undo what a generated DELETE did to the fuzzing person's own token and grants."""
    with node.engine.begin() as connection:
        connection.execute(api_token.update().values(revoked_at=None))
    for study, site, role in FUZZER_GRANTS:
        with contextlib.suppress(ConflictError):
            users.grant_role(
                node.engine, users.cli_operator(), email=FUZZER, study=study, site=site, role=role
            )


def _request_kwargs(case: Any) -> dict[str, Any]:
    """Schemathesis' request as httpx arguments, with our credentials instead of its own."""
    kwargs = dict(case.as_transport_kwargs(base_url=BASE_URL))
    kwargs.pop("cookies", None)
    headers = {
        key: value for key, value in kwargs.pop("headers", {}).items() if key != "Authorization"
    }
    if "data" in kwargs and isinstance(kwargs["data"], bytes | str):
        kwargs["content"] = kwargs.pop("data")
    return {**kwargs, "headers": headers}


def _operations(node: Node) -> list[Any]:
    schema = schemathesis.openapi.from_dict(node.app.openapi())
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(
    node: Node,
    operation: Any,
    client: SyncClient,
    statuses: dict[int, int],
    failures: list[str],
) -> None:
    """Send generated requests for one operation; record statuses and any 5xx."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        kwargs = _request_kwargs(case)
        method = kwargs.pop("method")
        response = client.request(method, kwargs.pop("url"), **kwargs)
        if method == "DELETE":
            _restore_fuzzer(node)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            failures.append(f"{operation.label}: {response.status_code} {kwargs}")
        elif response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"

    call()


def test_generated_requests_never_get_a_server_error(fuzzed: tuple[Node, SyncClient]) -> None:
    node, client = fuzzed
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = _operations(node)
    assert len(operations) >= 15
    for operation in operations:
        _fuzz(node, operation, client, statuses, failures)
    assert failures == []
    # the generated requests got past validation and authentication, too
    assert statuses.get(200, 0) + statuses.get(201, 0) > 20, statuses
