"""Request bodies: credentials first, a size limit (413) and a nesting limit (400), counted as
they stream, so a hostile body costs the node neither memory nor time.

The bodies are generators that count what the node pulled from them: "not read" is
measured, not assumed.
"""

from __future__ import annotations

import contextlib
import doctest
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from node_client import Node, running_node

import consortia.asgi
from consortia.auth.principal import Role

LIMIT = 64 * 1024
SUBJECTS = "/api/v1/studies/CART01/subjects"
CHUNK = 16 * 1024


@dataclass
class Hostile:
    """A body of ``chunks`` pieces (nested arrays, or spaces, which JSON allows in any
    number); ``pulled`` counts those read."""

    chunks: int
    piece: bytes = b"["
    pulled: int = 0

    async def sent(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield self.piece * CHUNK

    def sent_blocking(self) -> Iterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield self.piece * CHUNK

    @property
    def size(self) -> int:
        return self.chunks * CHUNK


@pytest.fixture
def node(migrated_database_url: str) -> Iterator[Node]:
    with running_node(migrated_database_url, max_request_bytes=LIMIT) as running:
        yield running


@pytest.fixture
def token(node: Node) -> str:
    return node.add_user("ana@sg.example", ("CART01", "SG01", Role.COORDINATOR))


def _problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert isinstance(body, dict)
    return body


def test_a_huge_body_without_credentials_is_refused_before_a_byte_is_read(node: Node) -> None:
    body = Hostile(chunks=3840)  # 60 MB of nested arrays
    response = node.client().post(
        SUBJECTS,
        content=body.sent(),
        headers={"content-type": "application/json", "content-length": str(body.size)},
    )
    _problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert body.pulled == 0


def test_a_chunked_body_without_credentials_is_refused_before_a_byte_is_read(node: Node) -> None:
    body = Hostile(chunks=3840)
    response = node.client().post(
        SUBJECTS, content=body.sent(), headers={"content-type": "application/json"}
    )
    _problem(response, 401)
    assert body.pulled == 0


def test_a_large_body_with_unknown_credentials_is_refused_before_it_is_read(node: Node) -> None:
    body = Hostile(chunks=3840)
    response = node.client("cst_not-a-real-token").post(
        SUBJECTS, content=body.sent(), headers={"content-type": "application/json"}
    )
    _problem(response, 401)
    assert body.pulled == 0


def test_a_declared_length_over_the_limit_is_refused_with_413_before_reading(
    node: Node, token: str
) -> None:
    body = Hostile(chunks=LIMIT // CHUNK + 1)
    response = node.client(token).post(
        SUBJECTS,
        content=body.sent(),
        headers={"content-type": "application/json", "content-length": str(body.size)},
    )
    problem = _problem(response, 413)
    assert f"larger than {LIMIT} bytes" in str(problem["detail"])
    assert body.pulled == 0


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(node: Node, token: str) -> None:
    body = Hostile(chunks=3840)
    response = node.client(token).post(
        SUBJECTS, content=body.sent(), headers={"content-type": "text/plain"}
    )
    _problem(response, 413)
    assert body.pulled <= LIMIT // CHUNK + 1


def test_the_sign_in_route_takes_no_credentials_but_the_same_limit(node: Node) -> None:
    body = Hostile(chunks=3840, piece=b" ")
    response = node.client().post(
        "/api/v1/session", content=body.sent(), headers={"content-type": "application/json"}
    )
    _problem(response, 413)
    assert body.pulled <= LIMIT // CHUNK + 1


def test_json_nested_deeper_than_the_limit_is_refused_with_a_clear_message(
    node: Node, token: str
) -> None:
    deep = b'{"subject_id": "SG01-001", "site": "SG01", "x": ' + b"[" * 33 + b"]" * 33 + b"}"
    response = node.client(token).post(
        SUBJECTS, content=deep, headers={"content-type": "application/json"}
    )
    problem = _problem(response, 400)
    assert problem["detail"] == "the JSON body nests deeper than 32 levels"
    # brackets inside strings are text, not nesting
    text = b'{"subject_id": "SG01-001", "site": "SG01", "initials": "' + b"[" * 40 + b'"}'
    response = node.client(token).post(
        SUBJECTS, content=text, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422  # refused by the schema, not by the depth limit


def test_an_ordinary_request_still_goes_through(node: Node, token: str) -> None:
    client = node.client(token)
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    response = client.post(SUBJECTS, json={"subject_id": "SG01-001", "site": "SG01"})
    assert response.status_code != 413
    assert response.status_code != 400


@contextlib.contextmanager
def _served(node: Node) -> Iterator[str]:
    """The node's app served by uvicorn on a loopback port, in a thread of this process."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(node.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.mark.parametrize("migrated_database_url", ["sqlite"], indirect=True)
def test_a_chunked_body_over_real_http_is_cut_off_at_the_limit(node: Node, token: str) -> None:
    body = Hostile(chunks=3840, piece=b" ")  # 60 MB, sent chunked (no Content-Length)
    with _served(node) as url, httpx.Client(base_url=url, timeout=30) as client:
        started = time.monotonic()
        response = client.post(
            SUBJECTS,
            content=body.sent_blocking(),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        elapsed = time.monotonic() - started
    _problem(response, 413)
    assert response.headers["cache-control"] == "no-store"
    assert body.pulled < 3840 // 4  # the client stopped sending long before the end
    assert elapsed < 10


def test_docstring_examples_run() -> None:
    outcome = doctest.testmod(consortia.asgi, optionflags=doctest.ELLIPSIS)
    assert outcome.failed == 0
    assert outcome.attempted > 0
