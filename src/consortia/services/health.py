"""The node's health for monitoring: the database and the audit chains' heads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from consortia.services.unit_of_work import SYSTEM, reading
from consortia.storage.health import chain_count, database_revision, head_problems
from consortia.storage.migrations import head_revision

__all__ = ["node_health"]


def node_health(engine: Engine) -> dict[str, Any]:
    """``{"status": "ok" | "failing", "database": {...}, "audit": {...}}``; it never raises.

    ``database``: ``ok`` with the revision, or what is wrong (unreachable, not at the code's
    revision); ``audit``: ``ok`` with the number of chains, or each chain whose head record
    is not its last event. Read in one read-only transaction (on SQLite it never waits for
    a writer).
    """
    code = head_revision()
    try:
        with reading(engine, SYSTEM) as work:
            connection = work.connection
            revision = database_revision(connection)
            problems = head_problems(connection) if revision == code else None
            chains = None if problems is None else chain_count(connection)
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        return {
            "status": "failing",
            "database": {"status": "unreachable", "error": type(cause).__name__},
            "audit": {"status": "unknown"},
        }
    if problems is None:
        return {
            "status": "failing",
            "database": {
                "status": "wrong revision",
                "revision": revision,
                "expected": code,
            },
            "audit": {"status": "unknown"},
        }
    audit: dict[str, Any] = (
        {"status": "ok", "chains": chains}
        if not problems
        else {"status": "broken", "problems": problems}
    )
    return {
        "status": "ok" if not problems else "failing",
        "database": {"status": "ok", "revision": revision},
        "audit": audit,
    }
