"""Randomising a subject at a member node, reading allocations blind, and emergency
unblinding.

:func:`randomise_subject` takes three steps, so that nothing is half-done:

1. a read: the principal may ``subject.randomise`` at the subject's site; the study has a
   scheme; the subject has no allocation yet; every gate of the scheme (``form.item``
   boolean items, e.g. consent and eligibility) is recorded as yes; and the subject's level
   of each stratification factor is recorded;
2. the signed request to the hub, holding only the study, site, subject id and those levels
   (:mod:`consortia.federation.randomisation`). A hub that cannot be reached raises
   :class:`~consortia.exceptions.NodeUnavailableError` and nothing is written;
3. one write: the allocation the hub signed, kept with its signed answer, and its audit
   event. Asking again after a lost answer gets the same allocation from the hub.

Blinding: an allocation shows its arm only to a principal holding ``arm.read`` at the site
(the unblinded statistician) or, once the subject has been unblinded in an emergency, to
those who may ``subject.unblind`` there; everyone else sees the allocation code
(:attr:`AllocationView.arm` is ``None``). :func:`sees_arm` is that rule, and the only one.
The allocation is not copied into form data: an item declared ``source: randomisation``
(cart-lbcl's ``randomisation.arm``) is never typed (a save that sets it is refused) and is
derived when read, from this record: the form shows the arm to whoever :func:`sees_arm` and
the allocation code to everyone else (:func:`allocation_text`); an analysis of this node's
data has the arm in that column only for a caller who may see every arm of its sites
(:func:`sees_arms`), the code otherwise, and a federated analysis always the code. Exports,
the audit trail and the history views hold no value for it (none is stored). Emergency unblinding
(:func:`unblind_subject`) needs a stated reason and is audited; notifying the study's
contacts by email is not done yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal
from consortia.domain.randomization import unmet_gates
from consortia.domain.study import SITE_FACTOR
from consortia.exceptions import (
    ConflictError,
    FederationError,
    NotFoundError,
    Problem,
    ValidationError,
)
from consortia.federation.node import NodeRunner
from consortia.federation.randomisation import randomise_body, request_allocation
from consortia.federation.signing import Verifier
from consortia.services.common import (
    check_code,
    find_subject,
    require_in_study,
    utc_now,
    visible_study,
)
from consortia.services.studies import current_definition
from consortia.services.unit_of_work import reading, writing
from consortia.storage.capture import CaptureRepository
from consortia.storage.randomisation import SubjectAllocation, SubjectRandomisationRepository

__all__ = [
    "AllocationView",
    "HubLink",
    "allocation_text",
    "get_allocation",
    "hub_link",
    "list_allocations",
    "randomise_subject",
    "sees_arm",
    "sees_arms",
    "unblind_subject",
]

MIN_REASON = 10


@dataclass(frozen=True)
class HubLink:
    """How this node reaches its hub: its own name and key, the hub's name and URL, a
    verifier trusting the hub's pinned key, and (tests) an HTTP transport."""

    node: str
    key: Ed25519PrivateKey
    hub: str
    url: str
    verifier: Verifier
    transport: httpx.AsyncBaseTransport | None = None


@dataclass(frozen=True)
class AllocationView:
    """A subject's allocation as the principal may see it: ``arm`` is ``None`` when blind."""

    study: str
    site: str
    subject_id: str
    number: int
    code: str
    arm: str | None
    randomised_at: datetime
    randomised_by: str
    unblinded_at: datetime | None
    unblinded_by: str | None
    unblind_reason: str | None

    @property
    def blinded(self) -> bool:
        return self.arm is None


def sees_arm(principal: Principal, record: SubjectAllocation) -> bool:
    """Whether ``principal`` may see the arm of this allocation: ``arm.read`` at its site, or
    ``subject.unblind`` there once the subject was unblinded. The one rule of blinding: the
    allocation views, the allocation items of forms (:func:`allocation_text`) and the
    analyses of this node's data (:func:`sees_arms`) all ask it."""
    where = Resource(record.study, record.site)
    return can(principal, Action.ARM_READ, where) or (
        record.unblinded_at is not None and can(principal, Action.SUBJECT_UNBLIND, where)
    )


def sees_arms(principal: Principal, study: str, sites: Iterable[str] | None) -> bool:
    """Whether ``principal`` may see every arm at ``sites`` (``None``: every site) without
    any emergency unblinding: an analysis groups whole sites, so one blind subject makes its
    table carry codes."""
    where = ["*"] if sites is None else list(sites)
    return all(can(principal, Action.ARM_READ, Resource(study, site)) for site in where)


def allocation_text(principal: Principal, record: SubjectAllocation) -> str:
    """What an item filled from the allocation shows ``principal``: the arm when
    :func:`sees_arm`, else the allocation code."""
    return record.arm if sees_arm(principal, record) else record.code


def _view(principal: Principal, record: SubjectAllocation) -> AllocationView:
    sees = sees_arm(principal, record)
    return AllocationView(
        study=record.study,
        site=record.site,
        subject_id=record.subject_id,
        number=record.number,
        code=record.code,
        arm=record.arm if sees else None,
        randomised_at=record.randomised_at,
        randomised_by=record.randomised_by,
        unblinded_at=record.unblinded_at,
        unblinded_by=record.unblinded_by,
        unblind_reason=record.unblind_reason,
    )


def _recorded(values: list[tuple[str, str, int, str]]) -> dict[str, str]:
    """``form.item`` -> text of each non-repeating value (the latest in schedule order)."""
    recorded: dict[str, str] = {}
    for form, item, group_instance, text in values:
        if group_instance == 0 and text != "":
            recorded[f"{form}.{item}"] = text
    return recorded


def randomise_subject(
    engine: Engine, principal: Principal, study: str, subject_id: str, link: HubLink | None
) -> AllocationView:
    """Randomise the subject through the hub (see the module docstring)."""
    visible_study(principal, study)
    check_code(subject_id, "subject_id")
    with reading(engine, principal) as work:
        subject = find_subject(work.connection, principal, study, subject_id)
        require_in_study(principal, Action.SUBJECT_RANDOMISE, study, subject.site)
        definition = current_definition(work.connection, study).study
        scheme = definition.randomisation
        if scheme is None:
            raise ValidationError(
                [Problem("randomisation", f"study {study} has no randomisation scheme")]
            )
        existing = SubjectRandomisationRepository(work.connection, principal).get(study, subject_id)
        if existing is not None:
            raise ConflictError(
                f"subject {subject_id} was randomised already (allocation {existing.number}, "
                f"{existing.randomised_at:%Y-%m-%d %H:%M} UTC): a subject is randomised once"
            )
        rows = CaptureRepository(work.connection, principal).subject_values(subject)
        recorded = _recorded([(r.form, r.item, r.group_instance, r.text) for r in rows])
    problems = [
        Problem(gate, "must be recorded as yes before the subject is randomised")
        for gate in unmet_gates(scheme, recorded)
    ]
    levels: dict[str, str] = {}
    for factor in scheme.factor_names:
        level = subject.site if factor == SITE_FACTOR else recorded.get(factor)
        if level is None:
            problems.append(Problem(factor, "is a stratification factor: record it first"))
        else:
            levels[factor] = level
    if problems:
        raise ValidationError(problems)
    if link is None:
        raise FederationError(
            "this node has no hub: subjects are randomised centrally by the consortium's hub"
        )
    body = randomise_body(study, subject.site, subject_id, levels)
    reply, wire = asyncio.run(
        request_allocation(
            link.key, link.node, link.hub, link.url, link.verifier, body, transport=link.transport
        )
    )
    code = str(reply.get("code") or f"R{int(reply['number']):04d}")
    arm = str(reply["arm"])
    if arm not in definition.arms:
        raise ValidationError([Problem("arm", "the hub allocated an arm this study lacks")])
    taken = f"subject {subject_id} was randomised already: a subject is randomised once"
    with writing(engine, principal, conflict=taken) as work:
        repository = SubjectRandomisationRepository(work.connection, principal)
        if repository.get(study, subject_id) is not None:
            raise ConflictError(taken)
        now = utc_now()
        repository.add(
            {
                "subject_pk": subject.id,
                "study": study,
                "site": subject.site,
                "subject_id": subject_id,
                "number": int(reply["number"]),
                "arm": arm,
                "code": code,
                "levels": levels,
                "hub": link.hub,
                "hub_answer": wire,
                "randomised_at": now,
                "randomised_by": principal.email,
            }
        )
        work.audit(
            "subject.randomise",
            "subject",
            f"{study}/{subject_id}",
            chain=study,
            site=subject.site,
            # the code and number, never the arm: the trail's readers stay blind
            after={"number": int(reply["number"]), "code": code, "hub": link.hub, "levels": levels},
        )
        record = repository.get(study, subject_id)
    assert record is not None
    return _view(principal, record)


def get_allocation(
    engine: Engine, principal: Principal, study: str, subject_id: str
) -> AllocationView:
    """The subject's allocation (blind unless the principal may see the arm)."""
    visible_study(principal, study)
    with reading(engine, principal) as work:
        subject = find_subject(work.connection, principal, study, subject_id)
        require_in_study(principal, Action.SUBJECT_READ, study, subject.site)
        record = SubjectRandomisationRepository(work.connection, principal).get(study, subject_id)
    if record is None:
        raise NotFoundError(f"subject {subject_id} has not been randomised")
    return _view(principal, record)


def list_allocations(engine: Engine, principal: Principal, study: str) -> list[AllocationView]:
    """The study's allocations at the sites the principal may read (blind as above)."""
    visible_study(principal, study)
    with reading(engine, principal) as work:
        records = SubjectRandomisationRepository(work.connection, principal).list(study)
    return [_view(principal, record) for record in records]


def unblind_subject(
    engine: Engine, principal: Principal, study: str, subject_id: str, reason: str
) -> AllocationView:
    """Emergency unblinding of one subject, stating ``reason`` (audited); its arm."""
    visible_study(principal, study)
    reason = reason.strip()
    with writing(engine, principal) as work:
        subject = find_subject(work.connection, principal, study, subject_id)
        require_in_study(principal, Action.SUBJECT_UNBLIND, study, subject.site)
        if len(reason) < MIN_REASON:
            raise ValidationError(
                [
                    Problem(
                        "reason",
                        f"state the emergency in at least {MIN_REASON} characters "
                        "(e.g. 'grade 4 CRS: treating physician needs the arm')",
                    )
                ]
            )
        repository = SubjectRandomisationRepository(work.connection, principal)
        record = repository.get(study, subject_id)
        if record is None:
            raise NotFoundError(f"subject {subject_id} has not been randomised")
        now = utc_now()
        repository.unblind(subject.id, by=principal.email, at=now, reason=reason)
        work.audit(
            "subject.unblind",
            "subject",
            f"{study}/{subject_id}",
            chain=study,
            site=subject.site,
            reason=reason,
            before={
                "unblinded_at": None
                if record.unblinded_at is None
                else record.unblinded_at.isoformat()
            },
            after={"unblinded_at": now.isoformat(), "unblinded_by": principal.email},
        )
        updated = repository.get(study, subject_id)
    assert updated is not None
    return _view(principal, updated)


def hub_link(
    node: NodeRunner | None, hub: str | None, transport: httpx.AsyncBaseTransport | None = None
) -> HubLink | None:
    """The link to this node's hub (``None`` for a node without one)."""
    if node is None or hub is None:
        return None
    peer = node.trust.get(hub)
    if peer is None or not peer.url:
        return None
    return HubLink(node.name, node.key, hub, peer.url, Verifier(node.trust), transport)
