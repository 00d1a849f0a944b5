"""The consortium's wire: invitations, key fingerprints, the hub's trust in its members,
hub-signed study versions, joining, and the pull transport kept in the hub's database.

* An **invitation** is one line, ``consortia-invite-1.<base64url JSON>``, holding the hub's
  name and URL, the invitation's id and secret, and the fingerprint of the hub's key. The
  hub keeps only the secret's SHA-256.
* A **fingerprint** is the first 128 bits of the SHA-256 of a raw Ed25519 public key, in
  groups of four hex digits: what two administrators read to each other.
* **Joining** (:func:`join_hub`): the new node signs a ``join`` message with its new key
  (proving it holds it) and posts it to the hub's ``/federation/v1/hub/join``; the hub
  answers with a message signed by its key, whose fingerprint the node checks against the
  invitation's before it pins it. Each side then holds the other's key.
* The hub's **trust** in its members is :class:`MemberTrust`: read from the hub's database
  at every check, so a removed member's key is refused at once by every process of the hub.
* A **study version** travels as a signed message whose body holds the YAML text and its
  SHA-256 (:func:`study_message`); a node accepts it only from its hub
  (:func:`verify_study_message`), and checks the stored message again when its
  administrator accepts it.
* :func:`deliver_study` sends a published version to each member hosting its sites, the
  way the member joined (pushed to its ``/federation/v1/studies``, or queued for it to
  pull), and checks each member's signed answer.
* :class:`DatabaseBroker` is the pull transport with its queue in the hub's database: the
  process that runs an analysis (``consortia analyze`` at the hub's shell) queues signed
  tasks, and whichever process of ``consortia serve`` a member polls hands them out.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from consortia.exceptions import ConfigurationError, FederationError, NodeUnavailableError
from consortia.federation.protocol import WireMessage, canonical_json, new_id, sha256_hex
from consortia.federation.signing import (
    MessageRejected,
    Peer,
    TrustStore,
    Verifier,
    _decode_public_key,
    public_key_b64,
    sign_message,
)
from consortia.federation.transport import (
    JSON_HEADERS,
    NodeHandle,
    Transport,
    default_ssl_context,
)
from consortia.federation.wakeup import TaskWakeups
from consortia.storage.changes import announce_change
from consortia.storage.db import read_only
from consortia.storage.hub import HubRepository, MemberRecord, PublishedStudy

__all__ = [
    "INVITATION_PREFIX",
    "JOIN_PATH",
    "STUDIES_PATH",
    "STUDY_VERSION",
    "DatabaseBroker",
    "HubIdentity",
    "HubTransport",
    "Invitation",
    "JoinAnswer",
    "MemberTrust",
    "deliver_study",
    "fingerprint",
    "join_hub",
    "pinned_hub_key",
    "stored_message_verifier",
    "study_message",
    "verify_study_message",
]

INVITATION_PREFIX = "consortia-invite-1."
JOIN_PATH = "/federation/v1/hub/join"
STUDIES_PATH = "/federation/v1/studies"
#: The ``type`` of a hub-signed study version's body.
STUDY_VERSION = "study_version"


def fingerprint(public_key: str) -> str:
    """The fingerprint of a base64 raw Ed25519 public key.

    >>> fingerprint("A" * 43 + "=")
    '66687aad:f862bd77:6c8fc18b:8e9f8e20'
    """
    raw = base64.b64decode(public_key)
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return ":".join(digest[i : i + 8] for i in range(0, 32, 8))


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class HubIdentity:
    """The hub as its endpoints and services need it: name, URL, signing key."""

    name: str
    url: str
    key: Ed25519PrivateKey

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


# --------------------------------------------------------------------------- invitations


@dataclass(frozen=True)
class Invitation:
    """What a joining node needs: where the hub is, the one-time secret, the hub's key."""

    hub: str
    url: str
    id: str
    secret: str
    fingerprint: str

    def encode(self) -> str:
        """The invitation as one line to hand to the hospital's administrator."""
        data = canonical_json(
            {
                "hub": self.hub,
                "url": self.url,
                "id": self.id,
                "secret": self.secret,
                "fingerprint": self.fingerprint,
            }
        )
        return INVITATION_PREFIX + base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Invitation:
        """Read an invitation line; refuse anything ``consortia hub invite`` did not print.

        >>> Invitation.decode("hello")
        Traceback (most recent call last):
        ...
        consortia.exceptions.ConfigurationError: --join: not an invitation: it starts with \
'consortia-invite-1.' (print one at the hub with `consortia hub invite NAME`)
        """
        text = text.strip()
        problem = (
            f"--join: not an invitation: it starts with {INVITATION_PREFIX!r} (print one at "
            "the hub with `consortia hub invite NAME`)"
        )
        if not text.startswith(INVITATION_PREFIX):
            raise ConfigurationError(problem)
        encoded = text[len(INVITATION_PREFIX) :]
        try:
            data = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        except (ValueError, binascii.Error):
            raise ConfigurationError(
                "--join: the invitation is damaged (copy the whole line)"
            ) from None
        fields = ("hub", "url", "id", "secret", "fingerprint")
        if not isinstance(data, dict) or not all(isinstance(data.get(f), str) for f in fields):
            raise ConfigurationError("--join: the invitation is damaged (copy the whole line)")
        return cls(**{field: data[field] for field in fields})


# --------------------------------------------------------------------------- trust


class MemberTrust(TrustStore):
    """The hub's trust store: its active members, read from the hub's database each time.

    A removed member is known but revoked (``signature.untrusted_key``, "is revoked").
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def get(self, name: str) -> Peer | None:
        with self.engine.connect() as connection:
            member = HubRepository(connection).member(name)
        if member is None:
            return None
        return Peer(
            name=member.name,
            url=member.url,
            public_key=member.public_key,
            trusted=member.status == "active",
        )

    def public_key(self, name: str) -> Any:
        peer = self.get(name)
        return None if peer is None or not peer.trusted else _decode_public_key(peer.public_key)

    @property
    def peers(self) -> list[Peer]:
        with self.engine.connect() as connection:
            members = HubRepository(connection).members()
        return [
            Peer(name=m.name, url=m.url, public_key=m.public_key, trusted=m.status == "active")
            for m in members
        ]


# --------------------------------------------------------------------------- studies


def study_message(
    key: Ed25519PrivateKey,
    hub: str,
    *,
    study: str,
    label: str,
    source: str,
    sites: Mapping[str, str],
    to: str | None = None,
    task_id: str | None = None,
) -> dict[str, Any]:
    """A study version signed by the hub: the YAML text, its SHA-256 and the sites (and,
    sent to one member, its name and a task id for the member's signed answer)."""
    body: dict[str, Any] = {
        "type": STUDY_VERSION,
        "hub": hub,
        "study": study,
        "label": label,
        "sha256": sha256_hex(source.encode("utf-8")),
        "source": source,
        "sites": dict(sorted(sites.items())),
    }
    if to is not None:
        body["to"] = to
    if task_id is not None:
        body["task_id"] = task_id
    return sign_message(body, key, hub)


def verify_study_message(
    verifier: Verifier, hub: str | None, message: Any, *, wire: bytes | None = None
) -> dict[str, Any]:
    """The body of a study version signed by this node's hub; :class:`MessageRejected`
    names the rule otherwise (``study.no_hub``, ``study.not_from_hub``,
    ``study.malformed``, ``study.sha256``, or a ``signature.*`` rule)."""
    if hub is None:
        raise MessageRejected(
            "study.no_hub", "this node has no hub: it takes no published study versions"
        )
    sender, body = verifier.verify(message, wire=wire)
    if sender != hub:
        raise MessageRejected(
            "study.not_from_hub", f"the study version is signed by {sender!r}, not the hub {hub!r}"
        )
    if body.get("type") != STUDY_VERSION or not all(
        isinstance(body.get(field), str) for field in ("study", "label", "sha256", "source")
    ):
        raise MessageRejected("study.malformed", "the message is not a study version")
    if sha256_hex(str(body["source"]).encode("utf-8")) != body["sha256"]:
        raise MessageRejected("study.sha256", "the study text does not hash to the signed sha256")
    return body


def stored_message_verifier(trust: TrustStore) -> Verifier:
    """A verifier for a message kept since it was received (its clock and nonce were
    checked then): signature, signer and body hash only."""
    return Verifier(trust, clock_skew_seconds=10.0 * 365 * 24 * 3600)


async def _push_study(
    client: httpx.AsyncClient, member: MemberRecord, message: Mapping[str, Any]
) -> dict[str, Any]:
    try:
        response = await client.post(
            member.url.rstrip("/") + STUDIES_PATH,
            content=canonical_json(dict(message)),
            headers=JSON_HEADERS,
        )
    except httpx.HTTPError as exc:
        raise NodeUnavailableError(member.name, f"cannot reach {member.url} ({exc!r})") from None
    try:
        return WireMessage.parse(response.content)
    except (ValueError, UnicodeDecodeError):
        raise NodeUnavailableError(
            member.name, f"{member.name} answered HTTP {response.status_code} without a reply"
        ) from None


async def deliver_study(
    engine: Engine,
    hub: HubIdentity,
    version: PublishedStudy,
    sites: Mapping[str, str],
    members: list[MemberRecord],
    *,
    wait: float,
    clock_skew_seconds: float,
) -> list[tuple[str, str, str]]:
    """Send the published ``version`` to each member (signed for it, with a task id for
    its signed answer); ``(member, status, detail)`` for each: the status it answered
    (``pending``, ``accepted``, ``refused``), or ``unanswered`` within ``wait`` seconds,
    ``unreachable``, or ``refused`` when its answer is not signed by it."""
    verifier = Verifier(MemberTrust(engine), clock_skew_seconds=clock_skew_seconds)
    broker = DatabaseBroker(engine)
    async with httpx.AsyncClient(timeout=wait, verify=default_ssl_context()) as client:

        async def one(member: MemberRecord) -> tuple[str, str, str]:
            message = study_message(
                hub.key,
                hub.name,
                study=version.study,
                label=version.label,
                source=version.source,
                sites=sites,
                to=member.name,
                task_id=new_id(),
            )
            try:
                if member.transport == "pull":
                    raw = await asyncio.wait_for(
                        broker.send(NodeHandle(member.name), message), wait
                    )
                else:
                    raw = await _push_study(client, member, message)
                sender, body = verifier.verify(raw, wire=getattr(raw, "wire", None))
            except TimeoutError:
                return member.name, "unanswered", f"no answer within {wait:g} s (publish again)"
            except NodeUnavailableError as exc:
                return member.name, "unreachable", str(exc)
            except MessageRejected as exc:
                return member.name, "refused", f"its answer was refused: {exc}"
            if sender != member.name:
                return member.name, "refused", f"the answer was signed by {sender!r}"
            status = str(body.get("status", "refused"))
            detail = str(body.get("message", ""))
            if body.get("rule"):
                detail = f"{body['rule']}: {detail}"
            return member.name, status, detail

        return list(await asyncio.gather(*(one(member) for member in members)))


# --------------------------------------------------------------------------- joining


@dataclass(frozen=True)
class JoinAnswer:
    """What the hub said when it admitted this node."""

    hub: str
    url: str
    public_key: str
    fingerprint: str
    member: str
    member_fingerprint: str


async def _shown_key(http: httpx.AsyncClient, invitation: Invitation) -> str:
    """The key the server at the invitation's URL shows, refused unless it has the
    invitation's fingerprint."""
    identity = await http.get(invitation.url.rstrip("/") + "/federation/v1/identity")
    shown = str(identity.json().get("public_key", ""))
    if fingerprint(shown) != invitation.fingerprint:
        raise FederationError(
            f"the server at {invitation.url} shows a key with fingerprint "
            f"{fingerprint(shown)}, not the invitation's {invitation.fingerprint}: "
            "refusing to join it"
        )
    return shown


async def pinned_hub_key(invitation: Invitation, *, client: httpx.AsyncClient | None = None) -> str:
    """The hub's public key, as its identity endpoint shows it, once its fingerprint is
    the invitation's. Nothing is sent to the hub: a node checks its hub before it builds
    anything, and joins (:func:`join_hub`) only once the rest is in place."""
    own = client is None
    http = client or httpx.AsyncClient(timeout=60.0)
    try:
        return await _shown_key(http, invitation)
    except httpx.HTTPError as exc:
        raise FederationError(f"cannot reach the hub at {invitation.url} ({exc!r})") from None
    except (ValueError, AttributeError, binascii.Error):
        raise FederationError(f"{invitation.url} does not answer as a Consortia hub") from None
    finally:
        if own:
            await http.aclose()


async def join_hub(
    invitation: Invitation,
    key: Ed25519PrivateKey,
    member: Mapping[str, str],
    *,
    client: httpx.AsyncClient | None = None,
) -> JoinAnswer:
    """Ask the hub to admit this node (``member``: name, url, institution, country,
    transport, software_version, protocol_version); check the hub's key against the
    invitation's fingerprint before pinning it."""
    body = {
        "type": "join",
        "invitation": invitation.id,
        "secret": invitation.secret,
        "member": {**member, "public_key": public_key_b64(key)},
    }
    message = sign_message(body, key, str(member["name"]))
    own = client is None
    http = client or httpx.AsyncClient(timeout=60.0)
    base = invitation.url.rstrip("/")
    try:
        # the hub's key is checked before the secret is sent: a server at the invitation's
        # URL that does not show the invitation's key is not told the secret
        await _shown_key(http, invitation)
        response = await http.post(
            base + JOIN_PATH,
            content=canonical_json(message),
            headers=JSON_HEADERS,
        )
    except httpx.HTTPError as exc:
        raise FederationError(f"cannot reach the hub at {invitation.url} ({exc!r})") from None
    except (ValueError, AttributeError, binascii.Error):
        raise FederationError(f"{invitation.url} does not answer as a Consortia hub") from None
    finally:
        if own:
            await http.aclose()
    if response.status_code != 200:
        try:
            detail = str(response.json().get("detail", response.text))
        except ValueError:
            detail = response.text[:300]
        raise FederationError(f"the hub refused to admit this node: {detail}")
    try:
        answer = WireMessage.parse(response.content)
        hub_key = str(answer["body"]["public_key"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise FederationError("the hub's answer is not a signed message") from None
    try:
        hub_fingerprint = fingerprint(hub_key)
    except (ValueError, binascii.Error):
        raise FederationError("the hub's answer carries no valid key") from None
    if hub_fingerprint != invitation.fingerprint:
        raise FederationError(
            f"the hub's key has fingerprint {hub_fingerprint}, not the invitation's "
            f"{invitation.fingerprint}: refusing to pin it"
        )
    verifier = Verifier(TrustStore([Peer(name=invitation.hub, public_key=hub_key)]))
    try:
        sender, reply = verifier.verify(answer, wire=answer.wire)
    except MessageRejected as exc:
        raise FederationError(f"the hub's answer was refused: {exc}") from None
    if sender != invitation.hub or reply.get("member") != member["name"]:
        raise FederationError("the hub's answer is not about this node")
    return JoinAnswer(
        hub=invitation.hub,
        url=str(reply.get("url") or invitation.url),
        public_key=hub_key,
        fingerprint=hub_fingerprint,
        member=str(member["name"]),
        member_fingerprint=fingerprint(public_key_b64(key)),
    )


# --------------------------------------------------------------------------- pull in the db


class DatabaseBroker:
    """The pull transport over the hub's database (a :class:`Transport`).

    ``send`` queues the signed task for the member and waits for its reply, which the
    hub's served ``POST /federation/results`` writes; cancelling (the round timeout)
    withdraws the task.
    """

    def __init__(self, engine: Engine, *, poll_seconds: float = 1.0, ttl: float = 600.0) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds  # a safety net: replies wake the send (wakeup.py)
        self.ttl = ttl
        self.wakeups = TaskWakeups(engine)

    async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
        task_id = str(message["body"]["task_id"])
        now = _utc_now()
        with self.wakeups.waiting_reply(task_id) as answered:
            with self.engine.begin() as connection:
                HubRepository(connection).queue_task(
                    task_id,
                    node.name,
                    canonical_json(dict(message)).decode("utf-8"),
                    now,
                    now + timedelta(seconds=self.ttl),
                )
                announce_change(connection)  # wakes the member's long poll
            try:
                while True:
                    with read_only(self.engine.connect()) as connection:
                        reply = HubRepository(connection).task_reply(task_id)
                    if reply is not None:
                        return WireMessage.parse(reply.encode("utf-8"))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(answered.wait(), self.poll_seconds)
                    answered.clear()
            finally:
                with self.engine.begin() as connection:
                    HubRepository(connection).drop_task(task_id)


class HubTransport:
    """Sends each member's task the way it joined: pushed to its URL, or queued for it to
    pull."""

    def __init__(
        self, members: Iterable[tuple[str, str]], push: Transport, pull: Transport
    ) -> None:
        self.transports = dict(members)
        self.push = push
        self.pull = pull

    async def send(self, node: NodeHandle, message: Mapping[str, Any]) -> dict[str, Any]:
        way = self.transports.get(node.name)
        if way is None:
            raise NodeUnavailableError(node.name, f"{node.name!r} is not an active member")
        return await (self.pull if way == "pull" else self.push).send(node, message)
