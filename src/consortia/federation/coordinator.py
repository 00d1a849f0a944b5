"""The lead side: run an analysis over member nodes, round by round, and report it.

:meth:`Coordinator.run_analysis` validates the request, lets the analysis kind drive its
rounds (each round is signed per node, sent through a transport, and every reply's
signature verified), and returns an :class:`~consortia.federation.results.AnalysisResult`:
the nodes with their n, the refusals, rounds and bytes, and the kind's typed estimates
(JSON only at the wire, ``AnalysisResult.to_dict``).

Timeouts: a node has ``timeout`` seconds per round (the request's ``"timeout"`` or the
coordinator's default). A node that does not answer fails the analysis with
:class:`~consortia.exceptions.NodeUnavailableError` naming it; a node that refuses fails it
with :class:`AnalysisRefused` listing every refusal. With ``"allow_partial": true`` the
analysis completes without such nodes and says so (``"complete": false``, the node in
``missing_nodes`` or ``refusals``); if a node drops out after the first round of an
iterative fit, the fit restarts without it, so the estimates are always those of exactly
the nodes listed. Nothing partial is ever reported as complete.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError as PydanticValidationError

from consortia.exceptions import (
    FederationError,
    NodeUnavailableError,
    PolicyRefusal,
    SignatureError,
    StatisticsError,
)
from consortia.federation.audit import AuditSink
from consortia.federation.kinds import InvalidRequest, get_kind
from consortia.federation.protocol import (
    PROTOCOL_VERSION,
    AnalysisTask,
    NodeReply,
    WireMessage,
    canonical_json,
    decode_arrays,
    new_id,
    wire_size,
)
from consortia.federation.pull import PullBroker
from consortia.federation.results import AnalysisResult, NodeCount, Refusal
from consortia.federation.signing import (
    MessageRejected,
    TrustStore,
    Verifier,
    public_key_b64,
    sign_message,
)
from consortia.federation.transport import NodeHandle, Transport
from consortia.stats.counts import Count, read_count

__all__ = ["AnalysisRefused", "Coordinator"]


class AnalysisRefused(PolicyRefusal):
    """One or more nodes refused the request; ``refusals`` lists ``{node, rule, message}``."""

    def __init__(self, refusals: Sequence[Mapping[str, Any]]) -> None:
        self.refusals = [dict(refusal) for refusal in refusals]
        detail = "; ".join(
            f"node {r['node']!r} refused ({r['rule']}): {r['message']}" for r in self.refusals
        )
        super().__init__(str(self.refusals[0]["rule"]), detail)


class _NodesDropped(Exception):
    """Nodes left after the first round of an attempt: restart without them."""


@dataclass
class _Outcome:
    rounds: int = 0
    bytes: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass
class _Answer:
    node: str
    status: str
    reply: NodeReply | None = None
    message: str = ""


class _RoundExchange:
    """One attempt at an analysis: a session id, its nodes, and its rounds."""

    def __init__(
        self,
        coordinator: Coordinator,
        request: dict[str, Any],
        handles: list[NodeHandle],
        transport: Transport,
        *,
        allow_partial: bool,
        timeout: float,
        outcome: _Outcome,
    ) -> None:
        self.coordinator = coordinator
        self.session = new_id()
        self.request = request
        self.handles = handles
        self.transport = transport
        self.allow_partial = allow_partial
        self.timeout = timeout
        self.outcome = outcome
        self.round_number = 0
        self.n_by_node: dict[str, int] = {}
        self.excluded_by_node: dict[str, Any] = {}
        self.verifier = coordinator.verifier

    @property
    def nodes(self) -> Sequence[str]:
        return [handle.name for handle in self.handles]

    async def round(self, payload: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        self.round_number += 1
        self.outcome.rounds += 1
        self.verifier = self.coordinator.round_verifier()
        asks = [asyncio.ensure_future(self._ask(handle, payload)) for handle in self.handles]
        try:
            answers = await asyncio.gather(*asks)
        except BaseException:
            # A forged reply (or cancellation) ends the round: stop asking the others.
            for ask in asks:
                ask.cancel()
            await asyncio.gather(*asks, return_exceptions=True)
            raise
        unavailable = [answer for answer in answers if answer.status == "unavailable"]
        refused = [answer for answer in answers if answer.status == "refused"]
        refusals = [
            {
                "node": answer.node,
                "rule": (answer.reply.rule if answer.reply else None) or "unknown",
                "message": (answer.reply.message if answer.reply else None) or "",
            }
            for answer in refused
        ]
        if unavailable and not self.allow_partial:
            first = unavailable[0]
            raise NodeUnavailableError(
                first.node, "; ".join(answer.message for answer in unavailable)
            )
        if refusals and not self.allow_partial:
            raise AnalysisRefused(refusals)
        if unavailable or refusals:
            self.outcome.missing.extend(answer.node for answer in unavailable)
            self.outcome.refusals.extend(refusals)
            dropped = {answer.node for answer in [*unavailable, *refused]}
            self.handles = [handle for handle in self.handles if handle.name not in dropped]
            if not self.handles:
                if self.outcome.refusals:
                    raise AnalysisRefused(self.outcome.refusals)
                raise NodeUnavailableError(
                    unavailable[0].node,
                    "no node answered: " + "; ".join(a.message for a in unavailable),
                )
            if self.round_number > 1:
                raise _NodesDropped()
        results: dict[str, dict[str, Any]] = {}
        for answer in answers:
            if answer.status == "ok" and answer.reply is not None:
                try:
                    results[answer.node] = decode_arrays(answer.reply.aggregates or {})
                except FederationError as exc:
                    raise FederationError(
                        f"node {answer.node!r} sent a malformed reply ({exc})"
                    ) from None
                self.n_by_node[answer.node] = answer.reply.n
                if "excluded" in results[answer.node]:  # rows left out (complete cases)
                    self.excluded_by_node[answer.node] = results[answer.node]["excluded"]
        return results

    async def _ask(self, handle: NodeHandle, payload: Mapping[str, Any]) -> _Answer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        awaiting: str | None = None  # the approval id, once the node said "pending"
        while True:
            task = AnalysisTask(
                task_id=new_id(),
                session=self.session,
                round=self.round_number,
                to=handle.name,
                request=self.request,
                payload=dict(payload),
            )
            message = self.coordinator.sign(task.model_dump(mode="json"))
            remaining = deadline - loop.time()
            try:
                raw = await asyncio.wait_for(self.transport.send(handle, message), remaining)
            except TimeoutError:
                if awaiting is not None:  # the last ask ran out of time, not the node
                    return self._awaiting(handle.name, awaiting)
                return _Answer(
                    handle.name,
                    "unavailable",
                    message=f"node {handle.name!r} did not answer round {self.round_number} "
                    f"within {self.timeout:g} s",
                )
            except NodeUnavailableError as exc:
                return _Answer(handle.name, "unavailable", message=str(exc))
            self.outcome.bytes += len(canonical_json(message)) + wire_size(raw)
            reply = self.coordinator.read_reply(handle.name, task, raw, verifier=self.verifier)
            if reply.status != "pending":
                return _Answer(handle.name, reply.status, reply)
            awaiting = str(reply.approval_id)
            if deadline - loop.time() <= self.coordinator.retry_interval:
                return self._awaiting(handle.name, awaiting)
            await asyncio.sleep(self.coordinator.retry_interval)

    def _awaiting(self, node: str, approval_id: str) -> _Answer:
        return _Answer(
            node,
            "unavailable",
            message=f"node {node!r} is still awaiting its data steward's "
            f"approval (id {approval_id}) after {self.timeout:g} s",
        )


class Coordinator:
    """The lead node's analysis coordinator: its key, the nodes it trusts, its timeouts.

    ``broker`` is the pull transport: serve it with
    :func:`~consortia.federation.apps.create_lead_app` and pass it to :meth:`run_analysis`.
    """

    def __init__(
        self,
        name: str,
        key: Ed25519PrivateKey,
        trust: TrustStore,
        *,
        clock_skew_seconds: float = 300.0,
        round_timeout: float = 30.0,
        retry_interval: float = 0.25,
        audit: AuditSink | None = None,
    ) -> None:
        self.name = name
        self.key = key
        self.trust = trust
        self.clock_skew_seconds = clock_skew_seconds
        self.round_timeout = round_timeout
        self.retry_interval = retry_interval
        self.audit = audit
        self.verifier = Verifier(trust, clock_skew_seconds=clock_skew_seconds)
        self.nonces = self.verifier.nonces
        self.broker = PullBroker()

    @property
    def public_key(self) -> str:
        """The lead's public key (base64 raw), for member nodes' trust stores."""
        return public_key_b64(self.key)

    def sign(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Sign a body as this lead."""
        return sign_message(body, self.key, self.name)

    def round_verifier(self) -> Verifier:
        """A verifier for one round's replies: the trusted keys read once for the round (one
        look-up, not one per reply: a hub reads its members from its database) and this
        coordinator's nonces. A key revoked during a round is refused from the next one."""
        snapshot = TrustStore(self.trust.peers)
        return Verifier(snapshot, clock_skew_seconds=self.clock_skew_seconds, nonces=self.nonces)

    def read_reply(
        self,
        node: str,
        task: AnalysisTask,
        raw: Mapping[str, Any],
        *,
        verifier: Verifier | None = None,
    ) -> NodeReply:
        """Verify a node's signed reply to ``task``; a forged or misrouted reply is an error."""
        wire = raw.wire if isinstance(raw, WireMessage) else None
        try:
            sender, body = (verifier or self.verifier).verify(raw, wire=wire)
        except MessageRejected as exc:
            raise SignatureError(f"the reply of node {node!r} was refused: {exc}") from None
        try:
            reply = NodeReply.model_validate(body)
        except PydanticValidationError as exc:
            raise FederationError(
                f"node {node!r} sent a malformed reply ({exc.errors()[0]['msg']})"
            ) from None
        if sender != node or reply.node != node or reply.task_id != task.task_id:
            raise SignatureError(
                f"a reply signed by {sender!r} for task {reply.task_id} came back for node "
                f"{node!r}, task {task.task_id}"
            )
        return reply

    async def run_analysis(
        self,
        request: Mapping[str, Any],
        nodes: Sequence[NodeHandle],
        transport: Transport,
    ) -> AnalysisResult:
        """Run ``request`` over ``nodes`` through ``transport``; return the typed result."""
        started = time.perf_counter()
        try:
            plain = json.loads(canonical_json(dict(request)))
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"the request is not plain JSON ({exc})") from None
        kind = get_kind(plain.get("kind"))
        parsed = kind.parse(plain)
        handles = list(nodes)
        names = [handle.name for handle in handles]
        if not handles:
            raise InvalidRequest("an analysis needs at least one node")
        if len(set(names)) != len(names):
            raise InvalidRequest(f"nodes are named twice: {names}")
        outcome = _Outcome()
        timeout = parsed.timeout or self.round_timeout
        while True:
            exchange = _RoundExchange(
                self,
                plain,
                handles,
                transport,
                allow_partial=parsed.allow_partial,
                timeout=timeout,
                outcome=outcome,
            )
            try:
                estimates = await kind.lead(parsed, exchange)
                break
            except _NodesDropped:
                handles = exchange.handles
        result = AnalysisResult(
            kind=kind.name,
            # A kind exact in general may say a given result is not (diagnostic's AUC).
            exact=kind.exact and estimates.exact,
            complete=not outcome.missing and not outcome.refusals,
            nodes=tuple(
                NodeCount(
                    name,
                    exchange.n_by_node.get(name, 0),
                    _excluded(exchange.excluded_by_node.get(name), name),
                )
                for name in exchange.nodes
            ),
            missing_nodes=tuple(sorted(set(outcome.missing))),
            refusals=tuple(
                Refusal(str(r["node"]), str(r["rule"]), str(r["message"])) for r in outcome.refusals
            ),
            rounds=outcome.rounds,
            bytes=outcome.bytes,
            seconds=round(time.perf_counter() - started, 6),
            protocol=PROTOCOL_VERSION,
            session=exchange.session,
            request=plain,
            estimates=estimates,
        )
        if self.audit is not None:
            self.audit.append(
                {"action": "federation.analysis", "lead": self.name, **result.record()}
            )
        return result


def _excluded(value: Any, node: str) -> Count | None:
    if value is None:
        return None
    try:
        return read_count(value, f"node {node!r}: excluded")
    except StatisticsError as exc:
        raise FederationError(f"node {node!r} sent a malformed reply ({exc})") from None
