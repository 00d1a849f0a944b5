"""The HTTP faces of federation: the member node's app and the lead's pull endpoints.

* :func:`create_node_app` — ``POST /federation/v1/analyze`` (push: the lead posts a signed
  task, the node answers with a signed reply) and ``GET /federation/v1/identity``; with
  ``pull_from`` set it also runs :func:`~consortia.federation.pull.run_pull_worker` for its
  whole lifespan.
* :func:`create_lead_app` — ``GET /federation/tasks/next?node=NAME`` (long poll, signed poll
  token required) and ``POST /federation/results`` (a node's signed reply).

Both are plain FastAPI apps; ``consortia.app.create_app`` can mount their routers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from consortia.asgi import BodyLimit
from consortia.federation.coordinator import Coordinator
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import WireMessage, canonical_json
from consortia.federation.pull import (
    POLL_HEADER,
    POLL_PATH,
    RESULTS_PATH,
    TaskHandler,
    run_pull_worker,
    verify_poll_token,
)
from consortia.federation.signing import MessageRejected, Verifier
from consortia.federation.transport import ANALYZE_PATH
from consortia.federation.witness import (
    HELD_PATH,
    WITNESS_PATH,
    HeadWitness,
    WitnessRefused,
    run_witness_pusher,
)

__all__ = [
    "create_lead_app",
    "create_lead_router",
    "create_node_app",
    "create_node_router",
    "create_witness_router",
    "mount_node",
    "running_node",
]

MAX_POLL_WAIT = 60.0
#: The largest task a node reads by default (``max_message_bytes`` in its config).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: The deepest nesting of a task's JSON (a task nests a handful of levels).
MAX_MESSAGE_DEPTH = 64


def problem_response(status: int, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem response (the federation endpoints' refusals)."""
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def _json(value: Any) -> Response:
    return Response(canonical_json(value), media_type="application/json")


def _parse_json(wire: bytes) -> Any:
    try:
        return json.loads(wire)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not JSON ({exc})") from None


def create_node_router(node: NodeRunner) -> APIRouter:
    """The member node's federation routes (push endpoint and identity)."""
    router = APIRouter()

    @router.post(ANALYZE_PATH)
    async def analyze(request: Request) -> Response:
        # read under the app's BodyLimit: a body too large or too deeply nested is refused
        # (413, 400) before it is parsed, and nothing of it is logged
        wire = await request.body()
        try:
            message = _parse_json(wire)
        except ValueError as exc:
            return problem_response(400, "Bad Request", str(exc))
        source = request.client.host if request.client is not None else None
        reply = await node.handle_wire(message, wire=wire, source=source)
        return Response(reply, media_type="application/json")

    @router.get("/federation/v1/identity")
    async def identity() -> Response:
        return _json(node.identity())

    return router


def create_witness_router(witness: HeadWitness) -> APIRouter:
    """Where peers hand this node their signed chain heads and read what it kept of ours
    (:mod:`consortia.federation.witness`)."""
    router = APIRouter()

    @router.post(WITNESS_PATH)
    async def witness_heads(request: Request) -> Response:
        wire = await request.body()
        try:
            message = _parse_json(wire)
            stored = await witness.receive(message, wire=wire)
        except ValueError as exc:
            return problem_response(400, "Bad Request", str(exc))
        except MessageRejected as exc:
            return problem_response(401, "Unauthorized", str(exc))
        except WitnessRefused as exc:
            return problem_response(exc.status, "Refused", str(exc))
        answer = canonical_json({"stored": stored, "node": witness.name})
        # 201: kept now; 200: the same heads were already kept
        return Response(answer, status_code=201 if stored else 200, media_type="application/json")

    @router.post(HELD_PATH)
    async def witnessed_heads(request: Request) -> Response:
        wire = await request.body()
        try:
            message = _parse_json(wire)
            held = await witness.held_for(message, wire=wire)
        except ValueError as exc:
            return problem_response(400, "Bad Request", str(exc))
        except MessageRejected as exc:
            return problem_response(401, "Unauthorized", str(exc))
        except WitnessRefused as exc:
            return problem_response(exc.status, "Refused", str(exc))
        return _json({"statement": held})

    return router


def create_node_app(
    node: NodeRunner,
    *,
    pull_from: str | None = None,
    pull_wait: float = 20.0,
    witness: HeadWitness | None = None,
    witness_interval: float = 0.0,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> FastAPI:
    """A member node's federation app; with ``pull_from`` it also long-polls that lead.

    With ``witness`` (a node with a database) peers may hand it their chain heads and read
    what it kept of theirs; with ``witness_interval`` > 0 it also pushes its own heads to
    its peers at that interval for its whole lifespan.

    A task larger than ``max_message_bytes`` is refused with 413 (before it is read, when
    its ``Content-Length`` says so) and one nested deeper than :data:`MAX_MESSAGE_DEPTH`
    with 400, as it streams: neither reaches the node's verification or its audit.

    >>> from consortia.federation.signing import TrustStore, generate_key
    >>> app = create_node_app(NodeRunner("a", generate_key(), TrustStore(), {}))
    >>> sorted(app.openapi()["paths"])
    ['/federation/v1/analyze', '/federation/v1/identity']
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running_node(
            node,
            pull_from=pull_from,
            pull_wait=pull_wait,
            witness=witness,
            witness_interval=witness_interval,
        ):
            yield

    app = FastAPI(title=f"Consortia node {node.name}", lifespan=lifespan)
    mount_node(app, node, witness=witness, max_message_bytes=max_message_bytes)
    return app


def mount_node(
    app: FastAPI,
    node: NodeRunner,
    *,
    witness: HeadWitness | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> None:
    """Add a member node's federation endpoints to ``app`` (the node's own app, or the
    whole node's :func:`consortia.app.create_app`), their bodies under the limits of
    :func:`create_node_app`."""
    app.include_router(create_node_router(node))
    if witness is not None:
        app.include_router(create_witness_router(witness))
    app.add_middleware(
        BodyLimit,
        max_bytes=max_message_bytes,
        max_json_depth=MAX_MESSAGE_DEPTH,
        paths=(ANALYZE_PATH, WITNESS_PATH),
    )


@contextlib.asynccontextmanager
async def running_node(
    node: NodeRunner,
    *,
    pull_from: str | None = None,
    pull_wait: float = 20.0,
    witness: HeadWitness | None = None,
    witness_interval: float = 0.0,
    handle: TaskHandler | None = None,
) -> AsyncIterator[None]:
    """What a served node runs in the background for an app's lifespan: long-polling the
    lead at ``pull_from`` and handing its chain heads to its peers every
    ``witness_interval`` seconds; both stop, and are awaited, when the app shuts down."""
    stop = asyncio.Event()
    workers = []
    if pull_from is not None:
        workers.append(
            asyncio.create_task(
                run_pull_worker(pull_from, node, wait=pull_wait, stop=stop, handle=handle)
            )
        )
    if witness is not None and witness_interval > 0:
        workers.append(asyncio.create_task(run_witness_pusher(witness, witness_interval, stop)))
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            await worker


def create_lead_router(coordinator: Coordinator) -> APIRouter:
    """The lead's pull routes over ``coordinator.broker``."""
    router = APIRouter()
    verifier = Verifier(coordinator.trust, clock_skew_seconds=coordinator.clock_skew_seconds)

    @router.get(POLL_PATH)
    async def next_task(request: Request, node: str, wait: float = 20.0) -> Response:
        try:
            verify_poll_token(verifier, request.headers.get(POLL_HEADER), node)
        except MessageRejected as exc:
            return problem_response(401, "Unauthorized", str(exc))
        if coordinator.broker.closed:
            return problem_response(503, "Service Unavailable", "the lead is shutting down")
        message = await coordinator.broker.next_task(node, max(0.0, min(wait, MAX_POLL_WAIT)))
        if message is None:
            return Response(status_code=204)
        return _json(message)

    @router.post(RESULTS_PATH)
    async def results(request: Request) -> Response:
        wire = await request.body()
        try:
            message = WireMessage.parse(wire)
        except (ValueError, UnicodeDecodeError) as exc:
            return problem_response(400, "Bad Request", f"the body is not a JSON object ({exc})")
        try:
            sender, _ = verifier.verify(message, wire=message.wire)
        except MessageRejected as exc:
            return problem_response(401, "Unauthorized", str(exc))
        if not coordinator.broker.deliver(sender, message):
            return problem_response(404, "Not Found", "no analysis is waiting for this result")
        return Response(status_code=202)

    return router


def create_lead_app(coordinator: Coordinator) -> FastAPI:
    """The lead's pull endpoints as an app (member nodes poll it for tasks)."""
    app = FastAPI(title=f"Consortia lead {coordinator.name}")
    app.include_router(create_lead_router(coordinator))
    return app
