"""The pull transport: nodes behind firewalls long-poll the lead for tasks.

Lead side, :class:`PullBroker` is a :class:`~consortia.federation.transport.Transport`:
``send`` queues the signed task for the node and waits for the node's result. The lead app
(:func:`consortia.federation.apps.create_lead_app`) exposes the queue as
``GET /federation/tasks/next?node=NAME`` (long poll; 204 when nothing came) and
``POST /federation/results``.

Node side, :func:`run_pull_worker` polls, hands each task to the node's
:class:`~consortia.federation.node.NodeRunner` and posts the signed reply back. Only
outbound connections are made. Each poll carries a signed token (header
``X-Consortia-Poll``), so only a trusted node can take its tasks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from consortia.exceptions import NodeUnavailableError
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import WireMessage, canonical_json
from consortia.federation.signing import MessageRejected, Verifier, sign_message
from consortia.federation.transport import JSON_HEADERS, NodeHandle

__all__ = [
    "POLL_HEADER",
    "POLL_PATH",
    "RESULTS_PATH",
    "PullBroker",
    "TaskHandler",
    "poll_token",
    "run_pull_worker",
    "verify_poll_token",
]

POLL_PATH = "/federation/tasks/next"
RESULTS_PATH = "/federation/results"
POLL_HEADER = "x-consortia-poll"
logger = logging.getLogger(__name__)
#: Answers one task a node took from the lead: (message, its bytes, the lead's URL) -> the
#: signed reply's bytes. Default: the node's analysis runner.
TaskHandler = Callable[[Any, bytes, str], Awaitable[bytes]]


class PullBroker:
    """Task queues per node and the lead's waiting sends (a Transport)."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._waiting: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._closed = asyncio.Event()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: polls end at once and new sends fail."""
        return self._closed.is_set()

    def close(self) -> None:
        """End every waiting poll (call before shutting the lead's server down)."""
        self._closed.set()

    def _queue(self, node: str) -> asyncio.Queue[dict[str, Any]]:
        if node not in self._queues:
            self._queues[node] = asyncio.Queue()
        return self._queues[node]

    async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
        """Queue ``message`` for ``node`` and wait for its result (cancel to give up)."""
        if self.closed:
            raise NodeUnavailableError(node.name, "the lead's pull endpoint is closed")
        task_id = str(message["body"]["task_id"])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[task_id] = (node.name, future)
        try:
            await self._queue(node.name).put(json.loads(canonical_json(dict(message))))
            return await future
        finally:
            self._waiting.pop(task_id, None)

    async def next_task(self, node: str, wait: float) -> dict[str, Any] | None:
        """The node's next live task, waiting up to ``wait`` seconds (``None`` if none came
        or the broker was closed)."""
        queue = self._queue(node)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self.closed:
            if queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                getter = asyncio.ensure_future(queue.get())
                closing = asyncio.ensure_future(self._closed.wait())
                done, _ = await asyncio.wait(
                    {getter, closing}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                closing.cancel()
                if getter not in done:
                    getter.cancel()
                    continue
                message = getter.result()
            else:
                message = queue.get_nowait()
            if str(message["body"]["task_id"]) in self._waiting:
                return message
            # The lead gave up on this task (round timeout): skip it.
        return None

    def deliver(self, sender: str, reply: Mapping[str, Any]) -> bool:
        """Hand a node's reply to the waiting send; false if no such task is waited for."""
        body = reply.get("body")
        task_id = str(body.get("task_id", "")) if isinstance(body, Mapping) else ""
        waiting = self._waiting.get(task_id)
        if waiting is None or waiting[0] != sender or waiting[1].done():
            return False
        waiting[1].set_result(reply if isinstance(reply, WireMessage) else dict(reply))
        return True


def poll_token(node: NodeRunner) -> str:
    """A signed, single-use token proving the poll comes from ``node``."""
    message = sign_message({"action": "poll", "node": node.name}, node.key, node.name)
    return base64.urlsafe_b64encode(canonical_json(message)).decode("ascii")


def verify_poll_token(verifier: Verifier, token: str | None, node: str) -> None:
    """Check a poll token for ``node``; raise :class:`MessageRejected` naming the rule."""
    if not token:
        raise MessageRejected("signature.unsigned", "the poll carries no signed token")
    try:
        message = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeError):
        raise MessageRejected("signature.unsigned", "the poll token is not signed JSON") from None
    sender, body = verifier.verify(message)
    if sender != node or body != {"action": "poll", "node": node}:
        raise MessageRejected(
            "signature.bad_signature", f"the poll token was signed by {sender!r}, not {node!r}"
        )


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _answer(
    client: httpx.AsyncClient,
    lead_url: str,
    node: NodeRunner,
    task: httpx.Response,
    handle: TaskHandler | None = None,
) -> None:
    try:
        message = task.json()
    except ValueError:
        logger.warning("the lead sent a task that is not JSON")
        return
    if handle is not None:
        reply = await handle(message, task.content, lead_url)
    else:
        reply = await node.handle_wire(message, wire=task.content, source=lead_url)
    try:
        response = await client.post(lead_url + RESULTS_PATH, content=reply, headers=JSON_HEADERS)
        if response.status_code >= 300:
            logger.warning("lead refused a result: HTTP %s %s", response.status_code, response.text)
    except httpx.HTTPError as exc:
        logger.warning("cannot post a result to %s: %r", lead_url, exc)


async def run_pull_worker(
    lead_url: str,
    node: NodeRunner,
    *,
    client: httpx.AsyncClient | None = None,
    wait: float = 20.0,
    stop: asyncio.Event | None = None,
    retry_delay: float = 1.0,
    handle: TaskHandler | None = None,
) -> None:
    """Long-poll ``lead_url`` for this node's tasks and answer them until ``stop`` is set.

    ``handle`` answers each task (default: the node's analysis runner; a member of a
    consortium also takes the study versions its hub publishes this way).

    Runs until ``stop`` is set or the task is cancelled; connection failures are logged
    and retried after ``retry_delay`` seconds. Tasks are answered concurrently.
    """
    base = lead_url.rstrip("/")
    own = client is None
    http = client or httpx.AsyncClient(timeout=wait + 30.0)
    stopping = stop or asyncio.Event()
    answering: set[asyncio.Task[None]] = set()
    stop_waiter = asyncio.create_task(stopping.wait())
    poll: asyncio.Task[httpx.Response] | None = None
    try:
        while not stopping.is_set():
            poll = asyncio.create_task(
                http.get(
                    base + POLL_PATH,
                    params={"node": node.name, "wait": wait},
                    headers={POLL_HEADER: poll_token(node)},
                )
            )
            await asyncio.wait({poll, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not poll.done():
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                    await poll
                break
            try:
                response = poll.result()
            except httpx.HTTPError as exc:
                logger.warning("cannot poll %s: %r", base, exc)
                await _sleep_or_stop(stopping, retry_delay)
                continue
            if response.status_code == 204:
                continue
            if response.status_code != 200:
                logger.warning(
                    "lead refused the poll: HTTP %s %s", response.status_code, response.text
                )
                await _sleep_or_stop(stopping, retry_delay)
                continue
            task = asyncio.create_task(_answer(http, base, node, response, handle))
            answering.add(task)
            task.add_done_callback(answering.discard)
    finally:
        pending: list[asyncio.Task[Any]] = [
            stop_waiter,
            *answering,
            *([poll] if poll is not None else []),
        ]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if own:
            await http.aclose()
