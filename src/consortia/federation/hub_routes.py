"""The consortium's federation endpoints: the hub's, and a member's for study versions.

At a hub (``consortia serve`` of a node with ``role = "hub"``),
:func:`create_hub_federation_router`:

* ``GET /federation/v1/identity``: name, URL, public key, fingerprint, role;
* ``POST /federation/v1/hub/join``: a node joining by invitation (signed by its new key),
  admitted by the ``admit`` use case the composition root hands in;
* ``GET /federation/tasks/next?node=NAME`` and ``POST /federation/results``: the pull
  transport, over the task queue in the hub's database (a member's signed poll token and
  result are checked against the active members: a removed member is refused).

At a member, :func:`create_member_studies_router`: ``POST /federation/v1/studies``, a study
version signed by its hub, answered by the ``receive`` use case and signed by the node.

The hub's REST API (``/api/v1/hub/...``) is :mod:`consortia.api.hub`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from consortia.federation.apps import problem_response
from consortia.federation.database_guards import DatabaseNonces
from consortia.federation.hub import JOIN_PATH, STUDIES_PATH, HubIdentity, MemberTrust
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import PROTOCOL_VERSION, WireMessage, canonical_json
from consortia.federation.pull import POLL_HEADER, POLL_PATH, RESULTS_PATH, verify_poll_token
from consortia.federation.signing import MessageRejected, Verifier, sign_message
from consortia.federation.wakeup import TaskWakeups
from consortia.storage.changes import announce_change
from consortia.storage.hub import HubRepository

__all__ = [
    "MAX_POLL_WAIT",
    "POLL_INTERVAL",
    "JoinAdmitter",
    "StudyReceiver",
    "create_hub_federation_router",
    "create_member_studies_router",
]

MAX_POLL_WAIT = 60.0
#: A long poll looks at the queue when a task for its member is committed (woken through
#: the database: :class:`~consortia.federation.wakeup.TaskWakeups`), and at the latest
#: every POLL_INTERVAL seconds, when it also notices a client that went away.
POLL_INTERVAL = 1.0

#: Admits the node whose join message this is (its wire bytes too); returns the hub's
#: signed answer, or raises the refusal (an error the app turns into its HTTP status).
JoinAdmitter = Callable[[Any, bytes], Mapping[str, Any]]
#: A member's answer to a study version (the message and its wire bytes): the reply body,
#: ``status`` ``pending``, ``accepted`` or ``refused``; the router signs it.
StudyReceiver = Callable[[Any, bytes], Mapping[str, Any]]


def _take_task(engine: Engine, node: str) -> str | None:
    """The member's next queued task (its wire text), marking it seen; None if none.

    Raises :class:`MessageRejected` once the member is removed, so that a long poll open at
    its removal ends then, refused, and not at its deadline."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
        repository = HubRepository(connection)
        if not repository.seen_active(node, now):
            raise MessageRejected("signature.untrusted_key", f"sender {node!r} is revoked")
        repository.drop_expired_tasks(now)
        return repository.take_task(node, now)


def _deliver_reply(engine: Engine, sender: str, message: WireMessage) -> bool:
    """Hand a member's signed reply to the task waiting for it; False if none waits."""
    body = message.get("body")
    task_id = str(body.get("task_id", "")) if isinstance(body, dict) else ""
    with engine.begin() as connection:
        delivered = HubRepository(connection).deliver_reply(
            task_id, sender, message.wire.decode("utf-8")
        )
        if delivered:
            announce_change(connection)  # wakes the lead waiting for it
        return delivered


def create_hub_federation_router(
    engine: Engine,
    hub: HubIdentity,
    admit: JoinAdmitter,
    *,
    clock_skew_seconds: float = 300.0,
    consortium: str = "",
) -> APIRouter:
    """The hub's federation endpoints over its database (see the module docstring)."""
    router = APIRouter()
    verifier = Verifier(
        MemberTrust(engine), clock_skew_seconds=clock_skew_seconds, nonces=DatabaseNonces(engine)
    )
    wakeups = TaskWakeups(engine)

    @router.get("/federation/v1/identity")
    async def identity() -> Response:
        return Response(
            canonical_json(
                {
                    "name": hub.name,
                    "url": hub.url,
                    "public_key": hub.public_key,
                    "fingerprint": hub.fingerprint,
                    "role": "hub",
                    "consortium": consortium,
                    "protocol": PROTOCOL_VERSION,
                }
            ),
            media_type="application/json",
        )

    @router.post(JOIN_PATH)
    async def join(request: Request) -> Response:
        wire = await request.body()
        try:
            message = json.loads(wire)
        except (ValueError, UnicodeDecodeError):
            return problem_response(400, "Bad Request", "the body is not JSON")
        answer = await run_in_threadpool(admit, message, wire)
        return Response(canonical_json(answer), media_type="application/json")

    @router.get(POLL_PATH)
    async def next_task(request: Request, node: str, wait: float = 20.0) -> Response:
        try:
            await run_in_threadpool(
                verify_poll_token, verifier, request.headers.get(POLL_HEADER), node
            )
        except MessageRejected as exc:
            return problem_response(401, "Unauthorized", str(exc))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(wait, MAX_POLL_WAIT))
        with wakeups.waiting_task(node) as queued:  # before looking: a later task wakes us
            while True:
                try:
                    task = await run_in_threadpool(_take_task, engine, node)
                except MessageRejected as exc:  # removed while it waited
                    return problem_response(401, "Unauthorized", str(exc))
                if task is not None:
                    return Response(task.encode("utf-8"), media_type="application/json")
                remaining = deadline - loop.time()
                if remaining <= 0 or await request.is_disconnected():
                    return Response(status_code=204)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queued.wait(), min(remaining, POLL_INTERVAL))
                queued.clear()

    @router.post(RESULTS_PATH)
    async def results(request: Request) -> Response:
        wire = await request.body()
        try:
            message = WireMessage.parse(wire)
        except (ValueError, UnicodeDecodeError) as exc:
            return problem_response(400, "Bad Request", f"the body is not a JSON object ({exc})")
        try:
            sender, _ = await run_in_threadpool(verifier.verify, message, wire=message.wire)
        except MessageRejected as exc:
            return problem_response(401, "Unauthorized", str(exc))
        if not await run_in_threadpool(_deliver_reply, engine, sender, message):
            return problem_response(404, "Not Found", "no task is waiting for this result")
        return Response(status_code=202)

    return router


def create_member_studies_router(node: NodeRunner, receive: StudyReceiver) -> APIRouter:
    """A member's endpoint for study versions its hub publishes (signed by the hub): the
    reply of ``receive`` (run on a worker thread), signed by the node; 401 when refused."""
    router = APIRouter()

    @router.post(STUDIES_PATH)
    async def offered(request: Request) -> Response:
        wire = await request.body()
        try:
            message = json.loads(wire)
        except (ValueError, UnicodeDecodeError):
            return problem_response(400, "Bad Request", "the body is not JSON")
        reply = dict(await run_in_threadpool(receive, message, wire))
        status = 200 if reply["status"] in ("pending", "accepted") else 401
        return Response(
            canonical_json(sign_message(reply, node.key, node.name)),
            status_code=status,
            media_type="application/json",
        )

    return router
