"""Randomising a subject across the consortium: the member's signed request and the hub's
signed answer.

A member asks its hub (``POST /federation/v1/hub/randomise``) with a message signed by its
pinned key whose body holds only the study, the site, the subject id and the subject's
stratification factor levels (no other patient data)::

    {"type": "randomise", "study": "CART-LBCL", "site": "SG01", "subject": "SG01-007",
     "levels": {"site": "SG01", "eligibility.disease_status": "primary_refractory"}}

The hub checks the signature, the clock and the nonce against its active members (a removed
member is refused), allocates (the ``allocate`` use case the composition root hands in) and
answers with a message signed by its key::

    {"type": "allocation", "study": ..., "site": ..., "subject": ..., "number": 7,
     "arm": "car_t", "code": "A", "repeat": false}

``repeat`` is true when the subject had already been allocated (a request retried after a
lost answer gets the same allocation, never a second one). The member checks that the
answer is signed by its hub and is about the subject it asked for
(:func:`request_allocation`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from consortia.exceptions import (
    ConflictError,
    ConsortiaError,
    FederationError,
    NodeUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.federation.apps import problem_response
from consortia.federation.database_guards import DatabaseNonces
from consortia.federation.hub import HubIdentity, MemberTrust
from consortia.federation.protocol import WireMessage, canonical_json
from consortia.federation.signing import MessageRejected, Verifier, sign_message
from consortia.federation.transport import JSON_HEADERS, default_ssl_context

__all__ = [
    "ALLOCATION",
    "RANDOMISE",
    "RANDOMISE_PATH",
    "Allocator",
    "create_randomisation_router",
    "randomise_body",
    "request_allocation",
]

RANDOMISE_PATH = "/federation/v1/hub/randomise"
RANDOMISE = "randomise"
ALLOCATION = "allocation"
_REQUEST_FIELDS = ("study", "site", "subject")

_REFUSALS: tuple[tuple[type[ConsortiaError], int], ...] = (
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ValidationError, 422),
)

#: The hub's use case: (member, request body) -> answer body; raises a ConsortiaError.
Allocator = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]


def randomise_body(
    study: str, site: str, subject: str, levels: Mapping[str, str]
) -> dict[str, Any]:
    """The body of a member's request: nothing but these four things."""
    return {
        "type": RANDOMISE,
        "study": study,
        "site": site,
        "subject": subject,
        "levels": dict(sorted(levels.items())),
    }


def _request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request body, refused unless it holds exactly the allowed fields as strings."""
    levels = body.get("levels")
    if (
        body.get("type") != RANDOMISE
        or set(body) != {"type", "levels", *_REQUEST_FIELDS}
        or not all(isinstance(body.get(field), str) for field in _REQUEST_FIELDS)
        or not isinstance(levels, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in levels.items())
    ):
        raise MessageRejected(
            "randomise.malformed",
            "a randomisation request holds type, study, site, subject and levels (strings) only",
        )
    return dict(body)


def create_randomisation_router(
    engine: Engine, hub: HubIdentity, allocate: Allocator, *, clock_skew_seconds: float = 300.0
) -> APIRouter:
    """The hub's randomisation endpoint (see the module docstring)."""
    router = APIRouter()
    verifier = Verifier(
        MemberTrust(engine), clock_skew_seconds=clock_skew_seconds, nonces=DatabaseNonces(engine)
    )

    @router.post(RANDOMISE_PATH)
    async def randomise(request: Request) -> Response:
        wire = await request.body()
        try:
            message = WireMessage.parse(wire)
        except (ValueError, UnicodeDecodeError):
            return problem_response(400, "Bad Request", "the body is not a JSON object")
        try:
            sender, body = await run_in_threadpool(verifier.verify, message, wire=message.wire)
            checked = _request(body)
        except MessageRejected as exc:
            return problem_response(401, "Unauthorized", str(exc))
        try:
            answer = await run_in_threadpool(allocate, sender, checked)
        except ConsortiaError as exc:
            status = next((code for kind, code in _REFUSALS if isinstance(exc, kind)), 400)
            return problem_response(status, "Refused", str(exc))
        return Response(
            canonical_json(sign_message(dict(answer), hub.key, hub.name)),
            media_type="application/json",
        )

    return router


async def _post(
    url: str, content: bytes, transport: httpx.AsyncBaseTransport | None, timeout: float
) -> httpx.Response:
    async with httpx.AsyncClient(
        timeout=timeout, transport=transport, verify=default_ssl_context()
    ) as client:
        return await client.post(
            url.rstrip("/") + RANDOMISE_PATH, content=content, headers=JSON_HEADERS
        )


async def request_allocation(
    key: Ed25519PrivateKey,
    node: str,
    hub: str,
    hub_url: str,
    verifier: Verifier,
    body: Mapping[str, Any],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 30.0,
) -> tuple[dict[str, Any], str]:
    """Send a signed request to the hub; its checked answer body and the answer's wire text.

    :class:`NodeUnavailableError` when the hub cannot be reached or does not answer;
    :class:`FederationError` with the hub's words when it refuses, or when the answer is
    not signed by the hub or not about this subject.
    """
    message = sign_message(dict(body), key, node)
    try:
        response = await _post(hub_url, canonical_json(message), transport, timeout)
    except httpx.HTTPError as exc:
        raise NodeUnavailableError(
            hub,
            f"the hub {hub!r} cannot be reached at {hub_url} ({type(exc).__name__}); "
            "nothing was recorded: try again when it is back",
        ) from None
    if response.status_code != 200:
        try:
            detail = str(response.json().get("detail", ""))
        except ValueError:
            detail = response.text[:300]
        if response.status_code >= 500:
            raise NodeUnavailableError(
                hub, f"the hub {hub!r} answered HTTP {response.status_code}: nothing was recorded"
            )
        raise FederationError(f"the hub refused the randomisation: {detail}")
    try:
        answer = WireMessage.parse(response.content)
        sender, reply = verifier.verify(answer, wire=answer.wire)
    except (ValueError, UnicodeDecodeError, MessageRejected) as exc:
        raise FederationError(f"the hub's answer was refused: {exc}") from None
    if (
        sender != hub
        or reply.get("type") != ALLOCATION
        or any(reply.get(field) != body[field] for field in _REQUEST_FIELDS)
    ):
        raise FederationError("the answer is not the hub's allocation of this subject")
    if not isinstance(reply.get("arm"), str) or not isinstance(reply.get("number"), int):
        raise FederationError("the hub's answer carries no allocation")
    return reply, answer.wire.decode("utf-8")


def answer_text(wire: str) -> dict[str, Any]:
    """A stored answer's body (for display and re-checking)."""
    data = json.loads(wire)
    body = data.get("body") if isinstance(data, dict) else None
    return dict(body) if isinstance(body, dict) else {}
