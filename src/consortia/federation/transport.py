"""How a signed task reaches a node and its signed reply comes back.

All transports implement one protocol, ``async send(node, message) -> reply``, and carry
the same canonical JSON bytes, so the coordinator counts bytes the same way for each:

* :class:`InProcessTransport` — calls the :class:`NodeRunner` directly (after a JSON round
  trip, so the code path is the one the network uses);
* :class:`PushTransport` — the lead POSTs to the node's ``/federation/v1/analyze``;
* :class:`~consortia.federation.pull.PullBroker` — the node long-polls the lead (outbound
  connections only, for hospitals behind firewalls).

A transport raises :class:`~consortia.exceptions.NodeUnavailableError` when it cannot
reach a node; the coordinator adds the per-round timeout.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from consortia.exceptions import NodeUnavailableError
from consortia.federation.http11 import OriginPool
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import WireMessage, canonical_json

__all__ = [
    "ANALYZE_PATH",
    "InProcessTransport",
    "NodeHandle",
    "PushTransport",
    "Transport",
    "default_ssl_context",
]

ANALYZE_PATH = "/federation/v1/analyze"
JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class NodeHandle:
    """A member node as the lead knows it: its name and (for push) its URL."""

    name: str
    url: str = ""


class Transport(Protocol):
    """Delivers one signed message to a node and returns the node's signed reply."""

    async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``message`` to ``node``; return the reply (raise NodeUnavailableError)."""
        ...


class InProcessTransport:
    """Calls node runners in this process; messages still go through canonical JSON."""

    def __init__(self, runners: Mapping[str, NodeRunner]) -> None:
        self.runners = dict(runners)

    async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
        """Hand ``message`` to the runner called ``node.name``."""
        runner = self.runners.get(node.name)
        if runner is None:
            raise NodeUnavailableError(node.name, f"node {node.name!r} is not in this process")
        wire = canonical_json(dict(message))
        reply = await runner.handle_wire(json.loads(wire), wire=wire)
        return WireMessage.parse(reply)


class PushTransport:
    """POSTs each task to ``{node.url}/federation/v1/analyze`` over HTTP(S).

    By default each member gets its own keep-alive connection pool
    (:class:`~consortia.federation.http11.OriginPool`): a round's requests then cost the lead
    the same per member however many members there are. Pass an ``httpx.AsyncClient`` to
    send through it instead (tests go through ``httpx.ASGITransport`` this way). Use the
    transport as an async context manager, or call :meth:`aclose`, so its connections are
    closed.
    """

    def __init__(self, client: httpx.AsyncClient | None = None, *, timeout: float = 60.0) -> None:
        self.client = client
        self.timeout = timeout
        self._pools: dict[str, OriginPool] = {}

    async def __aenter__(self) -> PushTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close this transport's own connections (not those of a client passed in)."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            await pool.aclose()

    def _pool(self, url: str) -> OriginPool:
        pool = self._pools.get(url)
        if pool is None:
            https = url.startswith("https:")
            pool = OriginPool(url, ssl_context=default_ssl_context() if https else None)
            self._pools[url] = pool
        return pool

    async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
        """POST the message; a connection failure or non-JSON answer is NodeUnavailable."""
        if not node.url:
            raise NodeUnavailableError(node.name, f"node {node.name!r} has no URL to push to")
        base = node.url.rstrip("/")
        body = canonical_json(dict(message))
        try:
            if self.client is not None:
                response: Any = await self.client.post(
                    base + ANALYZE_PATH, content=body, headers=JSON_HEADERS
                )
            else:
                pool = self._pool(base)
                path = urlsplit(base).path + ANALYZE_PATH
                response = await asyncio.wait_for(
                    pool.post(path, body, JSON_HEADERS["content-type"]), self.timeout
                )
        except (httpx.HTTPError, OSError, ValueError, TimeoutError) as exc:
            raise NodeUnavailableError(
                node.name, f"node {node.name!r} at {node.url} cannot be reached ({exc!r})"
            ) from None
        try:
            return WireMessage.parse(response.content)
        except (ValueError, UnicodeDecodeError):
            raise NodeUnavailableError(
                node.name,
                f"node {node.name!r} answered HTTP {response.status_code} without a reply",
            ) from None


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The client TLS context (system/certifi CAs), built once per process.

    Building it loads the CA bundle, ~25–45 ms: far more than a round on loopback, so
    clients created per analysis share this one.
    """
    return httpx.create_ssl_context()
