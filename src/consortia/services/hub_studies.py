"""The consortium's study versions: published by the hub, offered to its members.

At the hub, publishing a study version signs it and keeps it with the member hosting each
site (``hub.study.publish``), :func:`deliver_study` sends it to those members, and each
answer is kept as a delivery (``hub.study.delivery``), on the hub's ``hub`` chain.

At a member node: a study version its hub signed is kept as an *offer*
(``study.offer``), and becomes the study's current version only when the node's
administrator accepts it (``study.offer.accept``), or at once when the node's policy says
``accept_studies = "auto"``; acceptance checks the hub's signature again. Accepting a
version also declares the tables its analysis plan reads (``cart_efficacy``), built from
the study's data captured at the node (:func:`~consortia.federation.edc_tables.plan_tables`),
so the hub's plan analyses run on entered data with no edit of the node's config.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource, site_scope
from consortia.auth.principal import WILDCARD, Grant, Principal, Role
from consortia.domain.study_yaml import load_study_text
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.federation import hub as hub_wire
from consortia.federation.edc_tables import plan_tables
from consortia.federation.hub import (
    HubIdentity,
    stored_message_verifier,
    study_message,
    verify_study_message,
)
from consortia.federation.node import NodeRunner
from consortia.federation.protocol import canonical_json, sha256_hex
from consortia.federation.signing import MessageRejected, TrustStore, Verifier
from consortia.services import centre_enforcement
from consortia.services.common import check_code, require, utc_now
from consortia.services.hub import HUB_CHAIN, remote_principal
from consortia.services.studies import load_definition
from consortia.services.unit_of_work import reading, writing
from consortia.storage.hub import (
    HubRepository,
    MemberRecord,
    OfferRecord,
    PublishedStudy,
    StudyOfferRepository,
)

__all__ = [
    "OfferRecord",
    "PublishedStudy",
    "accept_offer",
    "answer_study",
    "deliver_study",
    "list_offers",
    "list_studies",
    "offer_tables",
    "publish_study",
    "receive_offer",
    "record_delivery",
    "refuse_unsigned_study",
]


# --------------------------------------------------------------------------- at the hub


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
    with reading(engine, principal, statements=True) as work:
        members = {m.name: m for m in HubRepository(work.connection).members()}
    for site, name in sites.items():
        member = members.get(name)
        if member is None or member.status != "active":
            problems.append(
                Problem(f"--site {site}", f"{name!r} is not an active member of the consortium")
            )
    if problems:
        raise ValidationError(problems)
    centre_enforcement.check_site_agreements(engine, code, sites)
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
    with writing(engine, principal) as work:
        repository = HubRepository(work.connection)
        previous = repository.latest_study(code)
        if not repository.add_study(record):
            kept = repository.latest_study(code)
            assert kept is not None
            record = replace(record, published_at=kept.published_at)
        repository.set_sites(code, dict(sites))
        work.audit(
            "hub.study.publish",
            "study",
            code,
            chain=HUB_CHAIN,
            before=None if previous is None else {"sha256": previous.sha256},
            after={"label": record.label, "sha256": record.sha256, "sites": dict(sites)},
        )
    targets = sorted({members[name].name for name in sites.values()})
    return record, message, [members[name] for name in targets]


def deliver_study(
    engine: Engine,
    hub: HubIdentity,
    version: PublishedStudy,
    sites: Mapping[str, str],
    members: list[MemberRecord],
    *,
    wait: float,
    clock_skew_seconds: float,
) -> list[tuple[str, str, str]]:
    """Send a published version to ``members`` (pushed, or queued for a member that polls);
    ``(member, status, detail)`` for each, to keep with :func:`record_delivery`."""
    return asyncio.run(
        hub_wire.deliver_study(
            engine,
            hub,
            version,
            sites,
            members,
            wait=wait,
            clock_skew_seconds=clock_skew_seconds,
        )
    )


def record_delivery(
    engine: Engine, study: str, sha256: str, member: str, status: str, detail: str
) -> None:
    """Keep (and audit) what a member said to a published study version."""
    with writing(engine, remote_principal(member)) as work:
        repository = HubRepository(work.connection)
        now = utc_now()
        repository.set_delivery(study, sha256, member, status, detail, now)
        if status in ("pending", "accepted", "refused"):  # it answered, signed
            repository.seen(member, now)
        work.audit(
            "hub.study.delivery",
            "study",
            study,
            chain=HUB_CHAIN,
            after={"sha256": sha256, "member": member, "status": status, "detail": detail},
        )


def list_studies(engine: Engine, principal: Principal) -> list[dict[str, Any]]:
    """Each published study: its newest version, its sites' members and the deliveries."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        repository = HubRepository(work.connection)
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
    with writing(engine, remote_principal(hub)) as work:
        offers = StudyOfferRepository(work.connection)
        if offers.add(offer):
            work.audit(
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


def answer_study(
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
        offer = receive_offer(
            engine, node.verifier, hub, message, wire=wire, auto_accept=auto_accept
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


def list_offers(engine: Engine, principal: Principal) -> list[OfferRecord]:
    """The study versions this node's hub offered, oldest first."""
    require(principal, Action.HUB_MANAGE, Resource())
    with reading(engine, principal) as work:
        return StudyOfferRepository(work.connection).list()


def accept_offer(
    engine: Engine, principal: Principal, offer_id: str, trust: TrustStore, hub: str | None
) -> OfferRecord:
    """Make an offered version the study's current one, after checking again that this
    node's hub signed it (a row changed in the database since it came is refused)."""
    with reading(engine, principal, statements=True) as work:
        offer = StudyOfferRepository(work.connection).get(offer_id)
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
    source = str(body["source"])
    tables = {
        name: spec.model_dump(exclude_defaults=True)
        for name, spec in plan_tables(load_study_text(source, f"{offer.study} from {hub}")).items()
    }
    load_definition(engine, principal, source, file=f"{offer.study} from {hub}")
    with writing(engine, principal) as work:
        offers = StudyOfferRepository(work.connection)
        if not offers.decide(offer.id, "accepted", principal.email, utc_now()):
            raise ConflictError(f"study offer {offer_id!r} was decided meanwhile")
        work.audit(
            "study.offer.accept",
            "study_offer",
            offer.id,
            after={
                "study": offer.study,
                "label": offer.label,
                "sha256": offer.sha256,
                "tables": tables,
            },
        )
        accepted = offers.get(offer.id)
    assert accepted is not None
    return accepted


def offer_tables(offer: OfferRecord) -> list[str]:
    """The tables accepting ``offer`` declares: those its study's analysis plan reads."""
    body = json.loads(offer.message)["body"]
    return sorted(plan_tables(load_study_text(str(body["source"]), offer.study)))
