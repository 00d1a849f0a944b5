"""Manual approval of analysis requests by the node's data steward.

With ``policy.manual_approval`` on, a node answers a request it has not seen before with
``"pending"`` and queues it in the node database (table ``approval_request``); the lead
keeps asking until the steward approves or denies it (or the lead's round timeout passes).
An approval covers that exact request from that requester, every round of it, and later
identical requests.

The queue lives in the node database only, so that every process of the node (the
federation endpoint, the pages and API, the shell; several hosts behind a load balancer)
sees one queue and each decision once. Decisions are made through
:func:`consortia.services.approvals.decide` only (policy-checked and audited); this module
queues requests and reads decisions. A node without a database cannot use manual
approval: :class:`NodeRunner` refuses to start with a :class:`ConfigurationError`.

>>> from consortia.storage.db import make_engine
>>> from consortia.storage.migrations import upgrade
>>> engine = make_engine("sqlite://"); upgrade(engine)
>>> approvals = DatabaseApprovals(engine)
>>> approvals.find_or_submit({"kind": "describe", "table": "t"}, "lead").status.value
'pending'
>>> engine.dispose()
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from consortia.storage.approvals import (
    ApprovalRecord,
    ApprovalRepository,
    ApprovalStatus,
    request_digest,
)

__all__ = [
    "ApprovalEntry",
    "ApprovalStatus",
    "Approvals",
    "DatabaseApprovals",
    "request_digest",
]

ApprovalEntry = ApprovalRecord


class Approvals(Protocol):
    """Where a node queues requests for its data steward and reads the decisions."""

    def find_or_submit(self, request: Mapping[str, Any], requester: str) -> ApprovalEntry:
        """The entry of this request from this requester, queued now if it was not."""
        ...


class DatabaseApprovals:
    """The approval queue in the node database (one short transaction per request)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find_or_submit(self, request: Mapping[str, Any], requester: str) -> ApprovalEntry:
        with self.engine.begin() as connection:
            return ApprovalRepository(connection).submit(request, requester, now=datetime.now(UTC))
