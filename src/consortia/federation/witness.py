"""Witnessed heads: a node's chain heads, signed and kept by its peers, so a trail that was
cut short or rewritten is caught.

Someone with write access to a node's database file can delete the end of a chain and
roll ``audit_head`` back, delete a whole chain, or rewrite an event and re-hash every event
after it: ``consortia audit verify`` alone then finds an intact trail. What they cannot do
without the node's key is change what the node's peers already hold. So:

1. The node signs a **head statement** (:class:`HeadStatement`: protocol version, node
   name, time, and per chain its length and the hash of its last event) and posts it to
   every trusted peer with a URL (``POST /federation/v1/witness``): ``consortia audit
   witness``, and the running federation node every ``witness_interval_seconds``.
2. The peer verifies the signature like any federation message (trusted sender, body hash,
   clock, nonce), refuses a statement about another node than its signer, and keeps it in
   ``audit_witness`` (append-only) with an audit event on its ``witness`` chain; the same
   heads twice are kept once.
3. ``consortia audit verify --node-config consortia.toml`` asks each peer for the newest
   statement it holds about this node (``POST /federation/v1/witness/held``, a signed
   request), checks the node's own signature on it, and compares: a chain shorter than
   witnessed (``truncated``), an event at the witnessed length with another hash
   (``forked``: history rewritten), a witnessed chain with no events at all (``missing``).

The ``witness`` chain (receipts of peers' statements and reads of them) is left out of the
statements: otherwise two peers would witness each other's receipts of each other's
statements for ever.

The statements themselves, and comparing them with the trail, are in
:mod:`consortia.federation.witness_statements` (re-exported here); this module sends,
keeps and serves them (:class:`HeadWitness`).

>>> from consortia.federation.signing import generate_key
>>> key = generate_key()
>>> message = sign_statement([ChainHead("S1", 3, "a" * 64)], key, "sgh")
>>> verify_own_statement(message, key, "sgh").chains[0].length
3
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from consortia.federation.database_audit import DatabaseAuditSink
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import (
    canonical_json,
)
from consortia.federation.signing import (
    MessageRejected,
    TrustStore,
    Verifier,
    sign_message,
    utc_timestamp,
)
from consortia.federation.witness_statements import (
    HeadStatement,
    HeldRequest,
    PeerOutcome,
    Witnessed,
    WitnessFinding,
    WitnessRefused,
    WitnessReport,
    check_goes_on,
    check_witnessed,
    parse_message,
    sign_statement,
    verify_own_statement,
)
from consortia.storage.audit import append_event
from consortia.storage.witness import (
    ChainHead,
    latest_statement,
    store_statement,
    trail_heads,
)

__all__ = [
    "HELD_PATH",
    "WITNESS_CHAIN",
    "WITNESS_PATH",
    "ChainHead",
    "HeadStatement",
    "HeadWitness",
    "PeerOutcome",
    "WitnessFinding",
    "WitnessRefused",
    "WitnessReport",
    "Witnessed",
    "check_witnessed",
    "node_witness",
    "push_heads",
    "run_witness_pusher",
    "sign_statement",
    "verify_heads",
    "verify_own_statement",
]

WITNESS_PATH = "/federation/v1/witness"
HELD_PATH = "/federation/v1/witness/held"
WITNESS_CHAIN = "witness"
logger = logging.getLogger(__name__)


def node_witness(node: NodeRunner) -> HeadWitness | None:
    """The witness of a federation node with a database (its audit goes to the database),
    sharing the node's key, trust and verifier (and so its nonces); ``None`` without one."""
    if not isinstance(node.audit, DatabaseAuditSink):
        return None
    return HeadWitness(node.audit.engine, node.name, node.key, node.trust, node.verifier)


class HeadWitness:
    """One node's side of witnessing: sign and send its heads, keep and serve peers'.

    Holds no state between calls: what was received lives in the database, so any of the
    node's processes may receive, serve or send.
    """

    def __init__(
        self,
        engine: Engine,
        name: str,
        key: Ed25519PrivateKey,
        trust: TrustStore,
        verifier: Verifier | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.engine = engine
        self.name = name
        self.key = key
        self.trust = trust
        self.verifier = verifier or Verifier(trust)
        self.timeout = timeout

    # ------------------------------------------------------------------ this node's heads

    def statement(self) -> dict[str, Any]:
        """This node's current heads, signed (the ``witness`` chain left out)."""
        with self.engine.connect() as connection:
            heads = trail_heads(connection, exclude=[WITNESS_CHAIN])
        return sign_statement(heads, self.key, self.name)

    def _peers(self) -> list[tuple[str, str]]:
        return [(p.name, p.url.rstrip("/")) for p in self.trust.peers if p.trusted and p.url]

    async def push(self, client: httpx.AsyncClient) -> list[PeerOutcome]:
        """Post the current statement to every trusted peer with a URL.

        Each peer is first asked what it holds: a trail that no longer holds what the peer
        witnessed (cut short or rewritten since) is not handed over, so the node never signs
        a forged history over the one its peers keep (and the peer would refuse a shorter
        one anyway).
        """
        wire = canonical_json(self.statement())
        outcomes = []
        for peer, url in self._peers():
            held = await self._fetch_one(client, peer, url)
            if isinstance(held, Witnessed):
                findings = await asyncio.to_thread(check_witnessed, self.engine, [held])
                if findings:
                    detail = "; ".join(str(finding) for finding in findings)
                    outcomes.append(PeerOutcome(peer, False, f"not handed over: {detail}"))
                    continue
            try:
                response = await client.post(
                    url + WITNESS_PATH,
                    content=wire,
                    headers={"content-type": "application/json"},
                    timeout=self.timeout,
                )
            except httpx.HTTPError as exc:
                outcomes.append(PeerOutcome(peer, False, f"cannot be reached at {url} ({exc!r})"))
                continue
            if response.status_code in (200, 201):
                stored = response.status_code == 201
                outcomes.append(
                    PeerOutcome(peer, True, "kept the heads" if stored else "already had them")
                )
            else:
                outcomes.append(PeerOutcome(peer, False, _problem_detail(response)))
        return outcomes

    async def fetch(self, client: httpx.AsyncClient) -> tuple[list[Witnessed], list[PeerOutcome]]:
        """Ask every trusted peer with a URL for the newest statement it holds about us."""
        witnessed: list[Witnessed] = []
        failures: list[PeerOutcome] = []
        for peer, url in self._peers():
            held = await self._fetch_one(client, peer, url)
            if isinstance(held, Witnessed):
                witnessed.append(held)
            else:
                failures.append(held)
        return witnessed, failures

    async def _fetch_one(
        self, client: httpx.AsyncClient, peer: str, url: str
    ) -> Witnessed | PeerOutcome:
        request = sign_message(HeldRequest(node=self.name).model_dump(), self.key, self.name)
        try:
            response = await client.post(
                url + HELD_PATH,
                content=canonical_json(request),
                headers={"content-type": "application/json"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            return PeerOutcome(peer, False, f"cannot be reached at {url} ({exc!r})")
        if response.status_code != 200:
            return PeerOutcome(peer, False, _problem_detail(response))
        try:
            held = response.json().get("statement")
        except (ValueError, AttributeError):
            return PeerOutcome(peer, False, "answered without JSON")
        if held is None:
            return PeerOutcome(peer, False, "holds no statement about this node")
        try:
            return Witnessed(peer, verify_own_statement(held, self.key, self.name))
        except WitnessRefused as exc:
            return PeerOutcome(peer, False, f"returned a statement refused: {exc}")

    async def verify(self, client: httpx.AsyncClient) -> WitnessReport:
        """Fetch what the peers witnessed and compare the trail with it."""
        witnessed, failures = await self.fetch(client)
        findings = await asyncio.to_thread(check_witnessed, self.engine, witnessed)
        return WitnessReport(witnessed, findings, failures)

    # ------------------------------------------------------------------ peers' heads

    async def receive(self, message: Any, *, wire: bytes | None = None) -> bool:
        """Verify and keep a peer's statement; ``True`` if stored, ``False`` if repeated.

        Raises :class:`~consortia.federation.signing.MessageRejected` (signature rules) or
        :class:`WitnessRefused`; every outcome is audited on the ``witness`` chain. The
        signature is checked on the event loop (as every federation message is, so the
        verifier's nonces see one thread); the database work runs in a worker thread.
        """
        received = utc_timestamp()
        try:
            sender, body = self.verifier.verify(message, wire=wire)
            statement = parse_message(HeadStatement, body)
            if statement.node != sender:
                raise WitnessRefused(
                    "witness.not_own_heads",
                    f"{sender!r} may state only its own heads, not {statement.node!r}'s",
                    403,
                )
        except (MessageRejected, WitnessRefused) as exc:
            await asyncio.to_thread(self._audit_refusal, message, "witness.refused", exc)
            raise
        kept = {"body": body, "envelope": dict(message["envelope"])}
        try:
            return await asyncio.to_thread(self._keep, sender, statement, kept, received)
        except WitnessRefused as exc:
            await asyncio.to_thread(
                self._audit_refusal, message, "witness.refused", exc, sender=sender
            )
            raise

    def _keep(
        self, sender: str, statement: HeadStatement, kept: dict[str, Any], received: str
    ) -> bool:
        with self.engine.begin() as connection:
            earlier = latest_statement(connection, sender)
            if earlier is not None:
                check_goes_on(HeadStatement.model_validate(json.loads(earlier)["body"]), statement)
            stored = store_statement(
                connection,
                node=sender,
                received_at=received,
                heads_sha256=statement.heads_sha256(),
                statement=canonical_json(kept).decode("utf-8"),
            )
            if stored:
                append_event(
                    connection,
                    WITNESS_CHAIN,
                    actor=f"node:{sender}",
                    action="witness.stored",
                    entity_type="head_statement",
                    entity_id=sender,
                    after={
                        "at": statement.at,
                        "chains": {h.chain: [h.length, h.hash] for h in statement.chains},
                    },
                )
        return stored

    async def held_for(self, message: Any, *, wire: bytes | None = None) -> dict[str, Any] | None:
        """The newest statement kept about the (verified) requester, or ``None``."""
        try:
            sender, body = self.verifier.verify(message, wire=wire)
            request = parse_message(HeldRequest, body)
            if request.node != sender:
                raise WitnessRefused(
                    "witness.not_own_heads",
                    f"{sender!r} may read only what was witnessed about itself",
                    403,
                )
        except (MessageRejected, WitnessRefused) as exc:
            await asyncio.to_thread(self._audit_refusal, message, "witness.read_refused", exc)
            raise
        text = await asyncio.to_thread(self._read_held, sender)
        held: dict[str, Any] | None = None if text is None else json.loads(text)
        return held

    def _read_held(self, sender: str) -> str | None:
        with self.engine.begin() as connection:
            text = latest_statement(connection, sender)
            append_event(
                connection,
                WITNESS_CHAIN,
                actor=f"node:{sender}",
                action="witness.read",
                entity_type="head_statement",
                entity_id=sender,
                after={"found": text is not None},
            )
        return text

    def _audit_refusal(
        self, message: Any, action: str, error: Exception, *, sender: str | None = None
    ) -> None:
        envelope = message.get("envelope") if isinstance(message, Mapping) else None
        claimed = sender or (envelope.get("sender") if isinstance(envelope, Mapping) else None)
        rule = getattr(error, "rule", "witness.refused")
        if sender is not None:
            actor = f"node:{sender}"
        else:
            actor = f"unverified:{claimed}" if isinstance(claimed, str) else "unverified"
        with self.engine.begin() as connection:
            append_event(
                connection,
                WITNESS_CHAIN,
                actor=actor,
                action=action,
                entity_type="head_statement",
                entity_id=str(claimed)[:200] if isinstance(claimed, str) else "unknown",
                after={"rule": rule, "message": getattr(error, "detail", str(error))},
            )


def _problem_detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return f"answered HTTP {response.status_code}" + (f": {detail}" if detail else "")


def _client(timeout: float) -> httpx.AsyncClient:
    from consortia.federation.transport import default_ssl_context

    return httpx.AsyncClient(timeout=timeout, verify=default_ssl_context())


def push_heads(witness: HeadWitness) -> list[PeerOutcome]:
    """Push the current heads to the peers now (``consortia audit witness``)."""

    async def main() -> list[PeerOutcome]:
        async with _client(witness.timeout) as client:
            return await witness.push(client)

    return asyncio.run(main())


def verify_heads(witness: HeadWitness) -> WitnessReport:
    """Fetch the witnessed heads and compare (``consortia audit verify --node-config``)."""

    async def main() -> WitnessReport:
        async with _client(witness.timeout) as client:
            return await witness.verify(client)

    return asyncio.run(main())


async def run_witness_pusher(
    witness: HeadWitness,
    interval: float,
    stop: asyncio.Event,
    client: httpx.AsyncClient | None = None,
) -> None:
    """Push the heads now and then every ``interval`` seconds until ``stop`` is set.

    A peer that cannot be reached is logged and tried again next time; nothing here is
    needed by another process (each of a node's processes may push: peers keep the same
    heads once).
    """
    own = client is None
    http = client or _client(witness.timeout)
    try:
        while not stop.is_set():
            try:
                for outcome in await witness.push(http):
                    if not outcome.ok:
                        logger.warning("witness %s: %s", outcome.peer, outcome.detail)
            except Exception:  # the node keeps serving; the next interval tries again
                logger.exception("pushing the chain heads to the peers failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        if own:
            await http.aclose()
