"""The data steward's decisions on analysis requests queued for manual approval.

With manual approval on, the federation node (and a REST analysis) queues each new
analysis request in the node database (``approval_request``); the lead keeps asking until
the request is approved or denied. Every decision goes through :func:`decide`, whoever
makes it — the ``/approvals`` page, ``/api/v1/approvals`` or the shell's
``consortia node approvals approve|deny --as EMAIL``: the decider must hold
``approval.decide`` (a node administrator, the node's data steward, see docs/roles.md),
the request must still be pending (409 otherwise, nothing changed), and the decision and
its audit event (``approval.approve`` / ``approval.deny`` on the node chain, naming the
requester, the request and the reason) are committed in one transaction.

>>> from consortia.services.common import cli_operator
>>> from consortia.storage.db import make_engine
>>> from consortia.storage.migrations import upgrade
>>> engine = make_engine("sqlite://"); upgrade(engine)
>>> entry = DatabaseApprovals(engine).find_or_submit({"kind": "count", "table": "t"}, "lead")
>>> decide(engine, cli_operator(), entry.id, approve=True, reason="").status.value
'approved'
>>> [e.id for e in list_approvals(engine, cli_operator(), ApprovalStatus.PENDING)]
[]
>>> engine.dispose()
"""

from __future__ import annotations

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.federation.approval import ApprovalEntry, ApprovalStatus, DatabaseApprovals
from consortia.services.common import normalise_email, require, utc_now
from consortia.services.unit_of_work import SYSTEM, reading, writing
from consortia.services.users import principal_for
from consortia.storage.approvals import ApprovalRepository
from consortia.storage.repositories import UserRepository

__all__ = [
    "MAX_REASON_LENGTH",
    "ApprovalEntry",
    "ApprovalStatus",
    "DatabaseApprovals",
    "decide",
    "decider_named",
    "list_approvals",
]

MAX_REASON_LENGTH = 2000


def list_approvals(
    engine: Engine, principal: Principal, status: ApprovalStatus | None = None
) -> list[ApprovalEntry]:
    """The queued requests (only those with ``status``, if given), oldest first."""
    require(principal, Action.APPROVAL_DECIDE, Resource())
    with reading(engine, principal) as work:
        return ApprovalRepository(work.connection).list(status)


def decider_named(engine: Engine, email: str) -> Principal:
    """The principal of the account ``email`` deciding from the shell (``--as EMAIL``).

    The account must exist and be active; whether it may decide is the policy's question,
    asked by :func:`decide` like for a person signed in to the pages or the API.
    """
    address = normalise_email(email)
    with reading(engine, SYSTEM) as work:  # who decides is not known yet
        connection = work.connection
        user = UserRepository(connection).by_email(address)
        if user is None or not user.active:
            raise PermissionDeniedError(
                f"--as {address}: no active account with this email at this node; a "
                "decision is made by a node administrator's account"
            )
        return principal_for(connection, user.id)


def _checked_reason(reason: str | None, *, approve: bool) -> str:
    text = (reason or "").strip()
    if not approve and not text:
        raise ValidationError(
            [Problem("reason", "a denial needs a reason: the requesting lead is told it")]
        )
    if len(text) > MAX_REASON_LENGTH:
        raise ValidationError(
            [Problem("reason", f"{len(text)} characters; use at most {MAX_REASON_LENGTH}")]
        )
    return text


def decide(
    engine: Engine,
    principal: Principal,
    entry_id: str,
    approve: bool,
    reason: str | None = None,
) -> ApprovalEntry:
    """Approve or deny the pending request ``entry_id``; audited on the node chain.

    Refuses (403) without ``approval.decide``, (422) a denial without a reason, (404) an
    unknown id and (409) a request already decided — also when another process decided it
    a moment ago: the decision is a conditional update, and the one that finds the request
    no longer pending changes nothing and writes no event.
    """
    require(principal, Action.APPROVAL_DECIDE, Resource())
    text = _checked_reason(reason, approve=approve)
    status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
    with writing(engine, principal) as work:
        queue = ApprovalRepository(work.connection)
        entry = queue.get(entry_id)
        if entry is None:
            raise NotFoundError(f"approval {entry_id!r} does not exist")
        if not queue.decide(entry.id, status, by=principal.email, reason=text, now=utc_now()):
            current = queue.get(entry.id)
            assert current is not None
            raise ConflictError(
                f"approval {entry_id!r} was already {current.status.value} by {current.decided_by}"
            )
        work.audit(
            "approval.approve" if approve else "approval.deny",
            "approval",
            entry.id,
            after={"requester": entry.requester, "digest": entry.digest, "request": entry.request},
            reason=text or None,
        )
        decided = queue.get(entry.id)
    assert decided is not None
    return decided
