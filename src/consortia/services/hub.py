"""The consortium's use cases, at the hub and at a member node.

At the hub (``role = "hub"`` in its ``[node]`` section), each is one transaction with its
audit event on the hub's ``hub`` chain, and needs ``hub.manage`` (a node administrator):
inviting a member, admitting it when it joins, removing it, publishing a study version,
recording each delivery, and running an analysis across the study's members (started and
finished, with the result). Joining is the one action taken on a remote node's word: the
invitation's secret (kept as its SHA-256), its expiry and its single use are checked, and
the joining node's message must be signed by the key it asks the hub to pin.

At a member node: a study version its hub signed is kept as an *offer*
(``study.offer``), and becomes the study's current version only when the node's
administrator accepts it (``study.offer.accept``), or at once when the node's policy says
``accept_studies = "auto"``; acceptance checks the hub's signature again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource, site_scope
from consortia.auth.principal import WILDCARD, Grant, Principal, Role, is_code
from consortia.domain.study_yaml import load_study_text
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.federation.hub import (
    Invitation,
    fingerprint,
    stored_message_verifier,
    study_message,
    verify_study_message,
)
from consortia.federation.protocol import PROTOCOL_VERSION, canonical_json, sha256_hex
from consortia.federation.signing import (
    MessageRejected,
    Peer,
    TrustStore,
    Verifier,
    public_key_b64,
    sign_message,
)
from consortia.services.common import audit, check_code, require, utc_now
from consortia.services.studies import load_definition
from consortia.storage.hub import (
    AnalysisRecord,
    HubRepository,
    InvitationRecord,
    MemberRecord,
    OfferRecord,
    PublishedStudy,
    StudyOfferRepository,
)

__all__ = [
    "DEFAULT_INVITATION_HOURS",
    "HUB_CHAIN",
    "HubIdentity",
    "accept_offer",
    "admit_member",
    "create_invitation",
    "finish_analysis",
    "get_analysis",
    "list_analyses",
    "list_members",
    "list_offers",
    "list_studies",
    "plan_request",
    "publish_study",
    "receive_offer",
    "record_delivery",
    "refuse_unsigned_study",
    "remove_member",
    "start_analysis",
    "study_members",
]

#: The hub's audit chain: every consortium action is an event on it.
HUB_CHAIN = "hub"
DEFAULT_INVITATION_HOURS = 72.0
MAX_INVITATION_HOURS = 24.0 * 30


@dataclass(frozen=True)
class HubIdentity:
    """The hub as its services need it: name, URL, signing key."""

    name: str
    url: str
    key: Ed25519PrivateKey

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


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


# --------------------------------------------------------------------------- members


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
    with engine.begin() as connection:
        repository = HubRepository(connection)
        existing = repository.member(name)
        if existing is not None:
            raise ConflictError(f"a member named {name!r} exists already ({existing.status})")
        repository.add_invitation(record)
        audit(
            connection,
            principal,
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
    with engine.begin() as connection:
        if HubRepository(connection).invitation(invitation_id) is None:
            raise PermissionDeniedError(reason)
        audit(
            connection,
            _remote(name),
            "hub.join_refused",
            "invitation",
            invitation_id[:64] or "-",
            chain=HUB_CHAIN,
            reason=reason,
        )
    raise PermissionDeniedError(reason)


def _remote(name: str) -> Principal:
    return Principal(user_id=0, email=f"node:{name[:200]}", name=name[:200])


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
    with engine.connect() as connection:
        invitation = HubRepository(connection).invitation(invitation_id)
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
    with engine.begin() as connection:
        repository = HubRepository(connection)
        if repository.member(name) is not None:
            raise ConflictError(f"a member named {name!r} exists already")
        if not repository.use_invitation(invitation_id, now):
            raise PermissionDeniedError("the invitation was used already; ask for a new one")
        repository.add_member(record)
        audit(
            connection,
            _remote(name),
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
    with engine.connect() as connection:
        return HubRepository(connection).members()


def remove_member(engine: Engine, principal: Principal, name: str) -> MemberRecord:
    """Revoke a member's key: the hub refuses its messages and sends it nothing more."""
    require(principal, Action.HUB_MANAGE, Resource())
    with engine.begin() as connection:
        repository = HubRepository(connection)
        member = repository.member(name)
        if member is None:
            raise NotFoundError(f"no member named {name!r}")
        if not repository.remove_member(name, utc_now()):
            raise ConflictError(f"member {name!r} was removed already")
        withdrawn = repository.drop_member_tasks(name)
        audit(
            connection,
            principal,
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


# --------------------------------------------------------------------------- studies


def publish_study(
    engine: Engine,
    principal: Principal,
    hub: HubIdentity,
    source: str,
    sites: Mapping[str, str],
    *,
    file: str = "<input>",
) -> tuple[PublishedStudy, dict[str, Any], list[MemberRecord]]:
    """Sign and keep a study version with the member hosting each site; return it, the
    signed message and the members to send it to (those hosting its sites)."""
    require(principal, Action.HUB_MANAGE, Resource())
    study = load_study_text(source, file)
    code = check_code(study.study.id, "study")
    problems = []
    if not sites:
        problems.append(Problem("--site", "name the member hosting each site: SITE=MEMBER"))
    for site in sites:
        if study.sites and site not in study.sites:
            problems.append(
                Problem(
                    f"--site {site}",
                    f"study {code} has no site {site} (its sites: {', '.join(study.sites)})",
                )
            )
    with engine.connect() as connection:
        repository = HubRepository(connection)
        members = {m.name: m for m in repository.members()}
    for site, name in sites.items():
        member = members.get(name)
        if member is None or member.status != "active":
            problems.append(
                Problem(f"--site {site}", f"{name!r} is not an active member of the consortium")
            )
    if problems:
        raise ValidationError(problems)
    message = study_message(
        hub.key, hub.name, study=code, label=str(study.study.version), source=source, sites=sites
    )
    record = PublishedStudy(
        study=code,
        sha256=sha256_hex(source.encode("utf-8")),
        label=str(study.study.version),
        source=source,
        message=canonical_json(message).decode("utf-8"),
        published_by=principal.email,
        published_at=utc_now(),
    )
    with engine.begin() as connection:
        repository = HubRepository(connection)
        previous = repository.latest_study(code)
        if not repository.add_study(record):
            kept = repository.latest_study(code)
            assert kept is not None
            record = replace(record, published_at=kept.published_at)
        repository.set_sites(code, dict(sites))
        audit(
            connection,
            principal,
            "hub.study.publish",
            "study",
            code,
            chain=HUB_CHAIN,
            before=None if previous is None else {"sha256": previous.sha256},
            after={"label": record.label, "sha256": record.sha256, "sites": dict(sites)},
        )
    targets = sorted({members[name].name for name in sites.values()})
    return record, message, [members[name] for name in targets]


def record_delivery(
    engine: Engine, study: str, sha256: str, member: str, status: str, detail: str
) -> None:
    """Keep (and audit) what a member said to a published study version."""
    with engine.begin() as connection:
        repository = HubRepository(connection)
        now = utc_now()
        repository.set_delivery(study, sha256, member, status, detail, now)
        if status in ("pending", "accepted", "refused"):  # it answered, signed
            repository.seen(member, now)
        audit(
            connection,
            _remote(member),
            "hub.study.delivery",
            "study",
            study,
            chain=HUB_CHAIN,
            after={"sha256": sha256, "member": member, "status": status, "detail": detail},
        )


def list_studies(engine: Engine, principal: Principal) -> list[dict[str, Any]]:
    """Each published study: its newest version, its sites' members and the deliveries."""
    require(principal, Action.HUB_MANAGE, Resource())
    with engine.connect() as connection:
        repository = HubRepository(connection)
        latest: dict[str, PublishedStudy] = {}
        for version in repository.studies():
            latest[version.study] = version
        return [
            {
                "study": code,
                "label": version.label,
                "sha256": version.sha256,
                "published_at": version.published_at.isoformat(),
                "sites": repository.sites(code),
                "deliveries": [
                    {key: str(value) for key, value in delivery.items()}
                    for delivery in repository.deliveries(code)
                    if delivery["sha256"] == version.sha256
                ],
            }
            for code, version in sorted(latest.items())
        ]


def study_members(engine: Engine, study: str) -> list[MemberRecord]:
    """The active members hosting a site of the published study."""
    with engine.connect() as connection:
        repository = HubRepository(connection)
        hosts = set(repository.sites(study).values())
        return [m for m in repository.members() if m.name in hosts and m.status == "active"]


def plan_request(engine: Engine, principal: Principal, study: str, plan: str) -> dict[str, Any]:
    """The analysis ``plan`` of the newest published version of ``study``."""
    require(principal, Action.HUB_MANAGE, Resource())
    with engine.connect() as connection:
        version = HubRepository(connection).latest_study(study)
    if version is None:
        raise NotFoundError(f"study {study} has not been published by this hub")
    parsed = load_study_text(version.source, f"{study} v{version.label}")
    request = parsed.analysis_plan.get(plan)
    if request is None:
        raise NotFoundError(
            f"study {study} v{version.label} has no analysis {plan!r} in its plan "
            f"(it has: {', '.join(parsed.analysis_plan) or 'none'})"
        )
    return request.model_dump(mode="json")


# --------------------------------------------------------------------------- analyses


def start_analysis(
    engine: Engine,
    principal: Principal,
    *,
    study: str | None,
    plan: str | None,
    request: dict[str, Any],
    transport: dict[str, str],
) -> str:
    """Record an analysis the hub starts across ``transport``'s members; its id."""
    require(principal, Action.HUB_MANAGE, Resource())
    analysis_id = secrets.token_hex(8)
    with engine.begin() as connection:
        HubRepository(connection).start_analysis(
            analysis_id,
            study=study,
            plan=plan,
            request=request,
            transport=transport,
            by=principal.email,
            now=utc_now(),
        )
        audit(
            connection,
            principal,
            "hub.analysis.start",
            "analysis",
            analysis_id,
            chain=HUB_CHAIN,
            after={"study": study, "plan": plan, "request": request, "members": transport},
        )
    return analysis_id


def finish_analysis(
    engine: Engine,
    principal: Principal,
    analysis_id: str,
    *,
    result: dict[str, Any] | None,
    error: str | None,
) -> None:
    """Keep an analysis's result (or why it failed), with its audit event."""
    with engine.begin() as connection:
        repository = HubRepository(connection)
        now = utc_now()
        repository.finish_analysis(analysis_id, result=result, error=error, now=now)
        for node in (result or {}).get("nodes", []):  # they answered, signed
            repository.seen(str(node["name"]), now)
        summary: dict[str, Any] = {"error": error}
        if result is not None:
            summary = {
                key: result.get(key)
                for key in ("kind", "exact", "complete", "nodes", "missing_nodes", "refusals")
            }
        audit(
            connection,
            principal,
            "hub.analysis.finish",
            "analysis",
            analysis_id,
            chain=HUB_CHAIN,
            after=json.loads(json.dumps(summary, default=str)),
        )


def list_analyses(engine: Engine, principal: Principal) -> list[AnalysisRecord]:
    """The hub's analyses, newest first (at most 100)."""
    require(principal, Action.HUB_MANAGE, Resource())
    with engine.connect() as connection:
        return HubRepository(connection).analyses()


def get_analysis(engine: Engine, principal: Principal, analysis_id: str) -> AnalysisRecord:
    """One of the hub's analyses, with its result."""
    require(principal, Action.HUB_MANAGE, Resource())
    with engine.connect() as connection:
        record = HubRepository(connection).analysis(analysis_id)
    if record is None:
        raise NotFoundError(f"analysis {analysis_id!r} does not exist")
    return record


# --------------------------------------------------------------------------- member side


def refuse_unsigned_study(node_section: Mapping[str, Any] | None) -> None:
    """Refuse to load a study's text on a member of a consortium: its studies are the
    versions its hub signed (``consortia node studies accept``), nothing else."""
    hub = (node_section or {}).get("hub")
    if hub:
        raise PermissionDeniedError(
            f"this node takes its studies from its hub {hub!r}: a study version runs here "
            "only as the hub signed it (`consortia node studies list`, then `accept`)"
        )


def _hub_principal(hub: str) -> Principal:
    """The node's own policy accepting a study version from its hub (accept_studies=auto)."""
    return Principal(
        user_id=0,
        email=f"hub:{hub}",
        name=f"studies from hub {hub}",
        grants=frozenset({Grant(WILDCARD, WILDCARD, Role.STUDY_ADMIN)}),
    )


def receive_offer(
    engine: Engine,
    verifier: Verifier,
    hub: str | None,
    message: Any,
    *,
    wire: bytes | None = None,
    auto_accept: bool = False,
) -> OfferRecord:
    """Keep a study version signed by this node's hub as an offer (and accept it at once
    with ``auto_accept``). :class:`MessageRejected` for anything the hub did not sign."""
    body = verify_study_message(verifier, hub, message, wire=wire)
    assert hub is not None
    load_study_text(str(body["source"]), f"{body['study']} from {hub}")  # a bad file: refused
    study = check_code(str(body["study"]), "study")
    offer = OfferRecord(
        id=hashlib.sha256(f"{hub}\n{body['sha256']}".encode()).hexdigest()[:16],
        hub=hub,
        study=study,
        label=str(body["label"])[:64],
        sha256=str(body["sha256"]),
        message=canonical_json(dict(message)).decode("utf-8"),
        received_at=utc_now(),
        status="pending",
        decided_by=None,
        decided_at=None,
    )
    with engine.begin() as connection:
        offers = StudyOfferRepository(connection)
        if offers.add(offer):
            audit(
                connection,
                _remote(hub),
                "study.offer",
                "study_offer",
                offer.id,
                after={"study": study, "label": offer.label, "sha256": offer.sha256},
            )
        kept = offers.get(offer.id)
    assert kept is not None
    if auto_accept and kept.status == "pending":
        return accept_offer(engine, _hub_principal(hub), kept.id, verifier.trust, hub)
    return kept


def list_offers(engine: Engine, principal: Principal) -> list[OfferRecord]:
    """The study versions this node's hub offered, oldest first."""
    require(principal, Action.HUB_MANAGE, Resource())
    with engine.connect() as connection:
        return StudyOfferRepository(connection).list()


def accept_offer(
    engine: Engine, principal: Principal, offer_id: str, trust: TrustStore, hub: str | None
) -> OfferRecord:
    """Make an offered version the study's current one, after checking again that this
    node's hub signed it (a row changed in the database since it came is refused)."""
    with engine.connect() as connection:
        offer = StudyOfferRepository(connection).get(offer_id)
    if offer is None:
        raise NotFoundError(f"study offer {offer_id!r} does not exist")
    if not site_scope(principal, offer.study, Action.STUDY_MANAGE).every_site:
        raise PermissionDeniedError(
            f"accepting study {offer.study}'s version changes it at every site: it needs a "
            "study-wide (site *) study_admin grant"
        )
    if offer.status != "pending":
        raise ConflictError(f"study offer {offer_id!r} was {offer.status} already")
    try:
        body = verify_study_message(stored_message_verifier(trust), hub, json.loads(offer.message))
    except (ValueError, MessageRejected) as exc:
        raise PermissionDeniedError(
            f"study offer {offer_id!r} is not a version signed by this node's hub ({exc})"
        ) from None
    if body["sha256"] != offer.sha256 or body["study"] != offer.study:
        raise PermissionDeniedError(f"study offer {offer_id!r} does not match its signed text")
    load_definition(engine, principal, str(body["source"]), file=f"{offer.study} from {hub}")
    with engine.begin() as connection:
        offers = StudyOfferRepository(connection)
        if not offers.decide(offer.id, "accepted", principal.email, utc_now()):
            raise ConflictError(f"study offer {offer_id!r} was decided meanwhile")
        audit(
            connection,
            principal,
            "study.offer.accept",
            "study_offer",
            offer.id,
            after={"study": offer.study, "label": offer.label, "sha256": offer.sha256},
        )
        accepted = offers.get(offer.id)
    assert accepted is not None
    return accepted
