"""The consortium's members, at the hub: inviting one, admitting it when it joins, and
removing it.

At the hub (``role = "hub"`` in its ``[node]`` section), each action is one transaction with
its audit event on the hub's ``hub`` chain, and needs ``hub.manage`` (a node
administrator). Joining is the one action taken on a remote node's word: the invitation's
secret (kept as its SHA-256), its expiry and its single use are checked, and the joining
node's message must be signed by the key it asks the hub to pin.

The consortium's other use cases: publishing studies, and a member's study offers, in
:mod:`consortia.services.hub_studies`; the hub's analyses across its members in
:mod:`consortia.services.hub_analyses`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal, is_code
from consortia.config import Settings
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.federation.hub import HubIdentity, Invitation, fingerprint
from consortia.federation.nodeconfig import NodeConfig
from consortia.federation.protocol import PROTOCOL_VERSION
from consortia.federation.signing import (
    MessageRejected,
    Peer,
    TrustStore,
    Verifier,
    load_key,
    sign_message,
)
from consortia.services.common import require, utc_now
from consortia.services.unit_of_work import reading, writing
from consortia.storage.changes import announce_change
from consortia.storage.hub import HubRepository, InvitationRecord, MemberRecord

__all__ = [
    "DEFAULT_INVITATION_HOURS",
    "HUB_CHAIN",
    "HubIdentity",
    "Invitation",
    "InvitationRecord",
    "MemberRecord",
    "admit_member",
    "create_invitation",
    "hub_identity",
    "list_members",
    "remote_principal",
    "remove_member",
]

#: The hub's audit chain: every consortium action is an event on it.
HUB_CHAIN = "hub"
DEFAULT_INVITATION_HOURS = 72.0
MAX_INVITATION_HOURS = 24.0 * 30


def hub_identity(settings: Settings, config: NodeConfig) -> HubIdentity:
    """The hub's identity: the node's name and URL, and the key its ``[node]`` names."""
    return HubIdentity(
        settings.node_name, settings.node_url, load_key(config.resolve(config.key_file))
    )


def remote_principal(name: str) -> Principal:
    """Another node acting on its own signed word (joining, answering, offering)."""
    return Principal(user_id=0, email=f"node:{name[:200]}", name=name[:200])


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_member_name(name: str, field: str = "name") -> str:
    if not is_code(name):
        raise ValidationError(
            [
                Problem(
                    field,
                    f"{name!r} is not a member name: use 1-64 letters, digits, '_', '.', '-' "
                    "starting with a letter or digit",
                )
            ]
        )
    return name


def create_invitation(
    engine: Engine,
    principal: Principal,
    hub: HubIdentity,
    name: str,
    *,
    hours: float = DEFAULT_INVITATION_HOURS,
) -> tuple[Invitation, InvitationRecord]:
    """A one-time invitation for the member ``name``, valid for ``hours``."""
    require(principal, Action.HUB_MANAGE, Resource())
    _check_member_name(name)
    if not 0 < hours <= MAX_INVITATION_HOURS:
        raise ValidationError(
            [Problem("hours", f"{hours:g}: an invitation lasts more than 0 and at most 720 hours")]
        )
    secret = secrets.token_urlsafe(32)
    now = utc_now()
    record = InvitationRecord(
        id=secrets.token_hex(8),
        name=name,
        secret_sha256=_secret_hash(secret),
        created_by=principal.email,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
        used_at=None,
    )
    with writing(engine, principal) as work:
        repository = HubRepository(work.connection)
        existing = repository.member(name)
        if existing is not None:
            raise ConflictError(f"a member named {name!r} exists already ({existing.status})")
        repository.add_invitation(record)
        work.audit(
            "hub.invite",
            "invitation",
            record.id,
            chain=HUB_CHAIN,
            after={"name": name, "expires_at": record.expires_at.isoformat()},
        )
    invitation = Invitation(
        hub=hub.name, url=hub.url, id=record.id, secret=secret, fingerprint=hub.fingerprint
    )
    return invitation, record


_MEMBER_FIELDS = ("name", "url", "institution", "country", "transport", "public_key")


def _refuse_join(engine: Engine, invitation_id: str, name: str, reason: str) -> None:
    """Audit a refused join that names an invitation the hub issued, then refuse it (a
    join naming no such invitation is refused without an event: anyone can send one, and
    it must not fill the trail)."""
    with writing(engine, remote_principal(name)) as work:
        if HubRepository(work.connection).invitation(invitation_id) is None:
            raise PermissionDeniedError(reason)
        work.audit(
            "hub.join_refused",
            "invitation",
            invitation_id[:64] or "-",
            chain=HUB_CHAIN,
            reason=reason,
        )
    raise PermissionDeniedError(reason)


def admit_member(
    engine: Engine, hub: HubIdentity, message: Any, *, wire: bytes | None = None
) -> dict[str, Any]:
    """Admit the node whose signed ``join`` message this is; return the hub's signed answer.

    Refused (:class:`PermissionDeniedError`, audited as ``hub.join_refused``): a message not
    signed by the key it carries, an unknown invitation or wrong secret, an invitation for
    another name, expired or used already; (:class:`ConflictError`) a member of that name.
    """
    body = message.get("body") if isinstance(message, Mapping) else None
    member = body.get("member") if isinstance(body, Mapping) else None
    if (
        not isinstance(body, Mapping)
        or body.get("type") != "join"
        or not isinstance(member, Mapping)
        or not all(isinstance(member.get(f), str) for f in _MEMBER_FIELDS)
        or not isinstance(body.get("invitation"), str)
        or not isinstance(body.get("secret"), str)
    ):
        raise ValidationError([Problem("body", "not a join message")])
    name = _check_member_name(str(member["name"]), "member.name")
    invitation_id = str(body["invitation"])
    transport = str(member["transport"])
    if transport not in ("push", "pull"):
        raise ValidationError([Problem("member.transport", "use push or pull")])
    if transport == "push" and not str(member["url"]).startswith(("http://", "https://")):
        raise ValidationError(
            [Problem("member.url", "a member reached by push needs its http(s) URL")]
        )
    try:
        own = TrustStore([Peer(name=name, public_key=str(member["public_key"]))])
        Verifier(own).verify(message, wire=wire)
    except (ValueError, MessageRejected) as exc:
        _refuse_join(
            engine, invitation_id, name, f"the join message is not signed by its key ({exc})"
        )
    now = utc_now()
    with reading(engine, remote_principal(name), statements=True) as work:
        invitation = HubRepository(work.connection).invitation(invitation_id)
    if invitation is None or not hmac.compare_digest(
        invitation.secret_sha256, _secret_hash(str(body["secret"]))
    ):
        _refuse_join(
            engine, invitation_id, name, "the invitation is not valid (unknown or wrong secret)"
        )
    assert invitation is not None
    if invitation.used_at is not None:
        _refuse_join(
            engine,
            invitation_id,
            name,
            f"the invitation was used already ({invitation.used_at:%Y-%m-%d %H:%M} UTC); "
            "ask the hub for a new one",
        )
    if invitation.expires_at <= now:
        _refuse_join(
            engine,
            invitation_id,
            name,
            f"the invitation expired at {invitation.expires_at:%Y-%m-%d %H:%M} UTC; ask the "
            "hub for a new one",
        )
    if invitation.name != name:
        _refuse_join(
            engine,
            invitation_id,
            name,
            f"the invitation is for {invitation.name!r}, not {name!r}",
        )
    record = MemberRecord(
        name=name,
        institution=str(member["institution"])[:400],
        country=str(member["country"])[:64],
        url=str(member["url"])[:2000],
        transport=transport,
        public_key=str(member["public_key"]),
        fingerprint=fingerprint(str(member["public_key"])),
        status="active",
        software_version=str(member.get("software_version", "unknown"))[:64],
        protocol_version=str(member.get("protocol_version", "unknown"))[:64],
        joined_at=now,
        last_seen_at=now,
        removed_at=None,
    )
    with writing(
        engine, remote_principal(name), conflict=f"a member named {name!r} exists already"
    ) as work:
        repository = HubRepository(work.connection)
        if repository.member(name) is not None:
            raise ConflictError(f"a member named {name!r} exists already")
        if not repository.use_invitation(invitation_id, now):
            raise PermissionDeniedError("the invitation was used already; ask for a new one")
        repository.add_member(record)
        work.audit(
            "hub.member.join",
            "member",
            name,
            chain=HUB_CHAIN,
            after={
                "invitation": invitation_id,
                "institution": record.institution,
                "country": record.country,
                "url": record.url,
                "transport": record.transport,
                "fingerprint": record.fingerprint,
                "software_version": record.software_version,
                "protocol_version": record.protocol_version,
            },
        )
    answer = {
        "type": "joined",
        "hub": hub.name,
        "url": hub.url,
        "public_key": hub.public_key,
        "member": name,
        "member_fingerprint": record.fingerprint,
        "protocol": PROTOCOL_VERSION,
    }
    return sign_message(answer, hub.key, hub.name)


def list_members(engine: Engine, principal: Principal) -> list[MemberRecord]:
    """Every member, removed ones included, by name."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        return HubRepository(work.connection).members()


def remove_member(engine: Engine, principal: Principal, name: str) -> MemberRecord:
    """Revoke a member's key: the hub refuses its messages and sends it nothing more."""
    require(principal, Action.HUB_MANAGE, Resource())
    with writing(engine, principal) as work:
        repository = HubRepository(work.connection)
        member = repository.member(name)
        if member is None:
            raise NotFoundError(f"no member named {name!r}")
        if not repository.remove_member(name, utc_now()):
            raise ConflictError(f"member {name!r} was removed already")
        withdrawn = repository.drop_member_tasks(name)
        announce_change(work.connection)  # its open long polls end now, refused
        work.audit(
            "hub.member.remove",
            "member",
            name,
            chain=HUB_CHAIN,
            before={"status": member.status, "fingerprint": member.fingerprint},
            after={"status": "removed", "tasks_withdrawn": withdrawn},
        )
        removed = repository.member(name)
    assert removed is not None
    return removed
