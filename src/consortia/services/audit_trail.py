"""Reading the audit trail: a study's chain (site-scoped, identifiers masked), the node's."""

from __future__ import annotations

from sqlalchemy import Engine

from consortia.auth.policy import Action, Resource
from consortia.auth.principal import Principal
from consortia.services.common import require, require_in_study, visible_study
from consortia.services.unit_of_work import SYSTEM, reading
from consortia.storage import audit as audit_storage
from consortia.storage.audit import AuditEvent, ChainReport
from consortia.storage.replay import StateDifference, compare_state

__all__ = [
    "AuditEvent",
    "ChainReport",
    "StateDifference",
    "node_audit_trail",
    "state_differences",
    "study_audit_trail",
    "verify_trail",
]


def study_audit_trail(
    engine: Engine, principal: Principal, study: str, *, after_seq: int = 0, limit: int = 100
) -> list[AuditEvent]:
    """The study's audit events at the sites where the principal may read the trail."""
    visible_study(principal, study)
    require_in_study(principal, Action.AUDIT_READ, study)
    with reading(engine, principal) as work:
        return work.audit_trail().study_events(study, after_seq=after_seq, limit=limit)


def node_audit_trail(
    engine: Engine, principal: Principal, *, after_seq: int = 0, limit: int = 100
) -> list[AuditEvent]:
    """The node chain: accounts, logins, grants and tokens."""
    require(principal, Action.NODE_AUDIT_READ, Resource())
    with reading(engine, principal) as work:
        return work.audit_trail().node_events(after_seq=after_seq, limit=limit)


def state_differences(engine: Engine) -> list[StateDifference]:
    """Every difference between the tables and the state replayed from the audit trail
    (``consortia audit verify --state``; the shell operator's check, which reads the whole
    node and so takes no principal)."""
    return compare_state(engine)


def verify_trail(engine: Engine, *, chain: str | None = None) -> ChainReport:
    """Recompute the hash chain of every audit chain (or ``chain``) and report the first
    broken link (``consortia audit verify``; the shell operator's check, like
    :func:`state_differences`)."""
    with reading(engine, SYSTEM) as work:
        return audit_storage.verify_trail(work.connection, chain=chain)
