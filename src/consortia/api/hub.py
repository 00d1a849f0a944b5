"""The consortium over HTTP: the hub's federation endpoints and its API, and a member's
endpoint for the study versions its hub publishes.

At a hub (``consortia serve`` of a node with ``role = "hub"``):

* ``GET /federation/v1/identity``: name, URL, public key, fingerprint, role;
* ``POST /federation/v1/hub/join``: a node joining by invitation (signed by its new key);
* ``GET /federation/tasks/next?node=NAME`` and ``POST /federation/results``: the pull
  transport, over the task queue in the hub's database (a member's signed poll token and
  result are checked against the active members: a removed member is refused);
* ``GET /api/v1/hub/members``, ``/api/v1/hub/studies``, ``/api/v1/hub/analyses`` and
  ``/api/v1/hub/analyses/{id}`` (``hub.manage``).

At a member: ``POST /federation/v1/studies``, a study version signed by its hub.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from consortia.api.deps import CurrentPrincipal, EngineDep
from consortia.federation.database_guards import DatabaseNonces
from consortia.federation.hub import JOIN_PATH, STUDIES_PATH, MemberTrust
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import PROTOCOL_VERSION, WireMessage, canonical_json
from consortia.federation.pull import POLL_HEADER, POLL_PATH, RESULTS_PATH, verify_poll_token
from consortia.federation.signing import MessageRejected, Verifier, sign_message
from consortia.services import hub as hub_service
from consortia.services.common import utc_now
from consortia.services.hub import HubIdentity
from consortia.storage.hub import AnalysisRecord, HubRepository, MemberRecord

__all__ = [
    "AnalysisPublic",
    "MemberPublic",
    "create_hub_federation_router",
    "create_member_studies_router",
    "receive_study",
    "router",
]

MAX_POLL_WAIT = 60.0
POLL_INTERVAL = 0.05


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def create_hub_federation_router(
    engine: Engine, hub: HubIdentity, *, clock_skew_seconds: float = 300.0, consortium: str = ""
) -> APIRouter:
    """The hub's federation endpoints over its database (see the module docstring)."""
    router = APIRouter()
    verifier = Verifier(
        MemberTrust(engine), clock_skew_seconds=clock_skew_seconds, nonces=DatabaseNonces(engine)
    )

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
            return _problem(400, "Bad Request", "the body is not JSON")
        answer = await run_in_threadpool(hub_service.admit_member, engine, hub, message, wire=wire)
        return Response(canonical_json(answer), media_type="application/json")

    def _take(node: str) -> str | None:
        now = utc_now()
        with engine.begin() as connection:
            repository = HubRepository(connection)
            repository.seen(node, now)
            repository.drop_expired_tasks(now)
            return repository.take_task(node, now)

    @router.get(POLL_PATH)
    async def next_task(request: Request, node: str, wait: float = 20.0) -> Response:
        try:
            await run_in_threadpool(
                verify_poll_token, verifier, request.headers.get(POLL_HEADER), node
            )
        except MessageRejected as exc:
            return _problem(401, "Unauthorized", str(exc))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(wait, MAX_POLL_WAIT))
        while True:
            task = await run_in_threadpool(_take, node)
            if task is not None:
                return Response(task.encode("utf-8"), media_type="application/json")
            if loop.time() >= deadline or await request.is_disconnected():
                return Response(status_code=204)
            await asyncio.sleep(POLL_INTERVAL)

    def _deliver(sender: str, message: WireMessage) -> bool:
        body = message.get("body")
        task_id = str(body.get("task_id", "")) if isinstance(body, dict) else ""
        with engine.begin() as connection:
            return HubRepository(connection).deliver_reply(
                task_id, sender, message.wire.decode("utf-8")
            )

    @router.post(RESULTS_PATH)
    async def results(request: Request) -> Response:
        wire = await request.body()
        try:
            message = WireMessage.parse(wire)
        except (ValueError, UnicodeDecodeError) as exc:
            return _problem(400, "Bad Request", f"the body is not a JSON object ({exc})")
        try:
            sender, _ = await run_in_threadpool(verifier.verify, message, wire=message.wire)
        except MessageRejected as exc:
            return _problem(401, "Unauthorized", str(exc))
        if not await run_in_threadpool(_deliver, sender, message):
            return _problem(404, "Not Found", "no task is waiting for this result")
        return Response(status_code=202)

    return router


def create_member_studies_router(
    engine: Engine, node: NodeRunner, hub: str | None, *, auto_accept: bool
) -> APIRouter:
    """A member's endpoint for study versions its hub publishes (signed by the hub)."""
    router = APIRouter()

    @router.post(STUDIES_PATH)
    async def offered(request: Request) -> Response:
        wire = await request.body()
        try:
            message = json.loads(wire)
        except (ValueError, UnicodeDecodeError):
            return _problem(400, "Bad Request", "the body is not JSON")
        reply = await receive_study(engine, node, hub, message, wire=wire, auto_accept=auto_accept)
        status = 200 if reply["status"] in ("pending", "accepted") else 401
        return Response(
            canonical_json(sign_message(reply, node.key, node.name)),
            status_code=status,
            media_type="application/json",
        )

    return router


async def receive_study(
    engine: Engine,
    node: NodeRunner,
    hub: str | None,
    message: Any,
    *,
    wire: bytes | None,
    auto_accept: bool,
) -> dict[str, Any]:
    """A member's answer to a study version: ``{status, rule?, message, offer?}`` (the
    reply body; the caller signs it). Refused unless the node's hub signed it."""
    body = message.get("body") if isinstance(message, dict) else None
    task_id = body.get("task_id") if isinstance(body, dict) else None
    reply: dict[str, Any] = {"type": "study_received", "node": node.name}
    if task_id is not None:
        reply["task_id"] = str(task_id)
    try:
        offer = await run_in_threadpool(
            lambda: hub_service.receive_offer(
                engine, node.verifier, hub, message, wire=wire, auto_accept=auto_accept
            )
        )
    except MessageRejected as exc:
        return {**reply, "status": "refused", "rule": exc.rule, "message": exc.detail}
    except Exception as exc:  # a bad file, a database refusal: said, never a trace
        return {**reply, "status": "refused", "rule": "study.invalid", "message": str(exc)[:500]}
    return {
        **reply,
        "status": offer.status,
        "offer": offer.id,
        "study": offer.study,
        "sha256": offer.sha256,
        "message": f"study {offer.study} v{offer.label} {offer.status}",
    }


# --------------------------------------------------------------------------- the hub's API

router = APIRouter(tags=["hub"])


class MemberPublic(BaseModel):
    """A member of the consortium as the hub knows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    institution: str
    country: str
    url: str
    transport: str
    fingerprint: str
    status: str
    software_version: str
    protocol_version: str
    joined_at: datetime
    last_seen_at: datetime | None
    removed_at: datetime | None

    @classmethod
    def of(cls, member: MemberRecord) -> MemberPublic:
        values = {name: getattr(member, name) for name in cls.model_fields}
        return cls(**values)


class AnalysisPublic(BaseModel):
    """An analysis the hub ran across its members, with its result."""

    model_config = ConfigDict(frozen=True)

    id: str
    study: str | None
    plan: str | None
    request: dict[str, Any]
    transport: dict[str, str]
    status: str
    result: dict[str, Any] | None
    error: str | None
    requested_by: str
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, record: AnalysisRecord) -> AnalysisPublic:
        return cls(**{name: getattr(record, name) for name in cls.model_fields})


AnalysisId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


@router.get("/hub/members", response_model=list[MemberPublic])
def list_members(principal: CurrentPrincipal, engine: EngineDep) -> list[MemberPublic]:
    """The consortium's members, removed ones included (hub administrators)."""
    return [MemberPublic.of(m) for m in hub_service.list_members(engine, principal)]


@router.get("/hub/studies")
def list_studies(principal: CurrentPrincipal, engine: EngineDep) -> list[dict[str, Any]]:
    """The published studies: newest version, the member hosting each site, deliveries."""
    return hub_service.list_studies(engine, principal)


@router.get("/hub/analyses", response_model=list[AnalysisPublic])
def list_analyses(principal: CurrentPrincipal, engine: EngineDep) -> list[AnalysisPublic]:
    """The hub's analyses, newest first, with their results."""
    return [AnalysisPublic.of(a) for a in hub_service.list_analyses(engine, principal)]


@router.get("/hub/analyses/{analysis_id}", response_model=AnalysisPublic)
def get_analysis(
    analysis_id: AnalysisId, principal: CurrentPrincipal, engine: EngineDep
) -> AnalysisPublic:
    """One analysis: its request, the members asked, and its result or error."""
    return AnalysisPublic.of(hub_service.get_analysis(engine, principal, analysis_id))
