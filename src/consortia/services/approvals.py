"""The data steward's decisions on analysis requests queued for manual approval.

With manual approval on, the federation node queues each new analysis request in the JSON
file both it and this node's web app name (``approvals_file``); the lead keeps asking
until the request is approved or denied. Here a node administrator (the data steward,
``approval.decide``) lists the queue and decides, and each decision is an event on the
node's audit chain (``approval.approve`` / ``approval.deny``) naming the requester and the
request, with the reason.

>>> from pathlib import Path
>>> from tempfile import TemporaryDirectory
>>> from consortia.config import Settings
>>> from consortia.federation.approval import ApprovalQueue
>>> from consortia.services.common import cli_operator
>>> from consortia.storage.db import make_engine
>>> from consortia.storage.migrations import upgrade
>>> engine = make_engine("sqlite://"); upgrade(engine)
>>> with TemporaryDirectory() as folder:
...     settings = Settings(database_url="sqlite://", approvals_file=Path(folder) / "q.json")
...     entry = ApprovalQueue(settings.approvals_file).submit({"kind": "count"}, "lead")
...     decided = decide(engine, settings, cli_operator(), entry.id, approve=True, reason="")
...     [e.id for e in list_approvals(settings, cli_operator(), ApprovalStatus.PENDING)]
[]
>>> decided.status.value
'approved'
>>> engine.dispose()
"""

from __future__ import annotations

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal
from consortia.config import Settings
from consortia.exceptions import (
    ConflictError,
    NotFoundError,
    Problem,
    ValidationError,
)
from consortia.federation.approval import ApprovalEntry, ApprovalQueue, ApprovalStatus
from consortia.services.common import audit, require

__all__ = [
    "MAX_REASON_LENGTH",
    "ApprovalEntry",
    "ApprovalStatus",
    "NoApprovalQueueError",
    "approval_queue",
    "decide",
    "list_approvals",
]

MAX_REASON_LENGTH = 2000


class NoApprovalQueueError(NotFoundError):
    """The node has no approval queue: ``approvals_file`` is not set."""


def approval_queue(settings: Settings) -> ApprovalQueue:
    """The node's approval queue.

    Without ``approvals_file`` the node has none: :class:`NoApprovalQueueError` (a "not
    found", 404 over the API, whose message names the setting), not a server error, since
    a node that does not approve requests by hand is configured correctly.
    """
    if settings.approvals_file is None:
        raise NoApprovalQueueError(
            "this node has no approval queue: set CONSORTIA_APPROVALS_FILE (approvals_file) "
            "to the file the federation node's config names in approvals_file"
        )
    return ApprovalQueue(settings.approvals_file)


def list_approvals(
    settings: Settings, principal: Principal, status: ApprovalStatus | None = None
) -> list[ApprovalEntry]:
    """The queued requests (only those with ``status``, if given), oldest first."""
    require(principal, Action.APPROVAL_DECIDE, Resource())
    return approval_queue(settings).list(status)


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
    settings: Settings,
    principal: Principal,
    entry_id: str,
    approve: bool,
    reason: str | None = None,
) -> ApprovalEntry:
    """Approve or deny the pending request ``entry_id``; audited on the node chain.

    Refuses (403) without ``approval.decide``, (422) a denial without a reason, (404) an
    unknown id and (409) a request already decided.
    """
    require(principal, Action.APPROVAL_DECIDE, Resource())
    text = _checked_reason(reason, approve=approve)
    queue = approval_queue(settings)
    entry = next((e for e in queue.list() if e.id == entry_id), None)
    if entry is None:
        raise NotFoundError(f"approval {entry_id!r} does not exist")
    if entry.status is not ApprovalStatus.PENDING:
        raise ConflictError(
            f"approval {entry_id!r} was already {entry.status.value} by {entry.decided_by}"
        )
    # The queue is a file, not a table, so the two cannot share one transaction. The audit
    # event is written first, in the open transaction; the queue is decided next (under
    # its own lock, which checks again that the request is still pending: a decision made
    # meanwhile, say from the CLI, raises here and rolls the event back); the commit comes
    # last. So a failed audit leaves the queue unchanged, and a decision the queue refuses
    # leaves no event. Only a commit failing after the queue was written (the event's
    # constraints were already checked on insert) could leave a decision unaudited.
    with engine.begin() as connection:
        audit(
            connection,
            principal,
            "approval.approve" if approve else "approval.deny",
            "approval",
            entry.id,
            after={"requester": entry.requester, "digest": entry.digest, "request": entry.request},
            reason=text or None,
        )
        if approve:
            return queue.approve(entry.id, by=principal.email, reason=text)
        return queue.deny(entry.id, by=principal.email, reason=text)
