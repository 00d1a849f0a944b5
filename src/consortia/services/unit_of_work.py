"""The unit of work: the one door every use case goes through to the database.

A unit of work carries the principal, hands out the repositories (each site-scoped by that
principal) and appends audit events in its own transaction, so a change and its audit
event are committed together or not at all. It reads read-only unless asked to write:

>>> from consortia.services.common import cli_operator
>>> from consortia.storage.db import make_engine
>>> from consortia.storage.migrations import upgrade
>>> engine = make_engine("sqlite://")
>>> upgrade(engine)
>>> with reading(engine, cli_operator()) as work:
...     work.subjects().list("CART", limit=10, offset=0)
[]
>>> with reading(engine, cli_operator()) as work:
...     work.audit("node.note", "node", "x")
Traceback (most recent call last):
    ...
consortia.services.unit_of_work.ReadOnlyWorkError: read-only: cannot append node.note
>>> engine.dispose()

``reading`` begins a transaction that neither waits for nor blocks the writer (a WAL
snapshot on SQLite, ``BEGIN READ ONLY`` on PostgreSQL); ``writing`` queues for the writer
(``BEGIN IMMEDIATE`` and the node's writer lock on SQLite).

What acts before anyone is signed in (a sign-in, a web session or an API token being
checked, the login limits) and the node's own bookkeeping act as :data:`SYSTEM`: a
principal that holds no role, so every site-scoped repository shows it nothing. Their
audit events name whom they are about (``actor=``: the account tried, a token's prefix).
Nothing in ``services/`` opens a transaction any other way (tests/services/
test_unit_of_work_usage.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from consortia.auth.principal import Principal
from consortia.exceptions import ConflictError
from consortia.storage.audit import append_event
from consortia.storage.capture import CaptureRepository
from consortia.storage.db import read_only, statement_reads
from consortia.storage.repositories import (
    NODE_CHAIN,
    AuditRepository,
    GrantRepository,
    SubjectRepository,
)

__all__ = ["SYSTEM", "ReadOnlyWorkError", "UnitOfWork", "reading", "writing"]

#: The node acting for nobody signed in (sign-in, sessions, tokens, login limits, health):
#: no grants, so the site-scoped repositories show it nothing; its events say ``system``
#: unless they name another actor.
SYSTEM = Principal(user_id=0, email="system", name="the node (nobody signed in)")


class ReadOnlyWorkError(RuntimeError):
    """A change was attempted in a read-only unit of work: a programming error."""


class UnitOfWork:
    """One transaction of one principal: its repositories and its audit events."""

    __slots__ = ("connection", "principal", "writes")

    def __init__(self, connection: Connection, principal: Principal, *, writes: bool) -> None:
        self.connection = connection
        self.principal = principal
        self.writes = writes

    def subjects(self) -> SubjectRepository:
        """Subjects at the sites the principal may see, identifiers masked where it may not."""
        return SubjectRepository(self.connection, self.principal)

    def capture(self) -> CaptureRepository:
        """Events, forms and values of subjects found through :meth:`subjects`."""
        return CaptureRepository(self.connection, self.principal)

    def audit_trail(self) -> AuditRepository:
        """The audit trail at the sites where the principal may read it."""
        return AuditRepository(self.connection, self.principal)

    def grants(self) -> GrantRepository:
        """The role grants the principal may manage."""
        return GrantRepository(self.connection, self.principal)

    def audit(
        self,
        action: str,
        entity_type: str,
        entity_id: object,
        *,
        chain: str = NODE_CHAIN,
        actor: str | None = None,
        **entry: Any,
    ) -> None:
        """Append one audit event by the principal (or by ``actor``, for what happens
        before anyone is signed in), committed with the change or not at all."""
        if not self.writes:
            raise ReadOnlyWorkError(f"read-only: cannot append {action}")
        append_event(
            self.connection,
            chain,
            actor=self.principal.email if actor is None else actor,
            action=action,
            entity_type=entity_type,
            entity_id=str(entity_id),
            **entry,
        )


@contextmanager
def reading(
    engine: Engine, principal: Principal, *, statements: bool = False
) -> Iterator[UnitOfWork]:
    """A read-only unit of work: it never takes the writer lock and cannot audit a change.

    ``statements``: a short read of a few statements (:func:`~consortia.storage.db.
    statement_reads`): on PostgreSQL they run each on its own, without BEGIN and ROLLBACK.
    """
    connection = (statement_reads if statements else read_only)(engine.connect())
    with connection:
        transaction = connection.begin()
        try:
            yield UnitOfWork(connection, principal, writes=False)
        finally:
            transaction.rollback()  # a read changed nothing: there is nothing to commit


@contextmanager
def writing(
    engine: Engine, principal: Principal, *, conflict: str | None = None
) -> Iterator[UnitOfWork]:
    """A write unit of work: committed at the end of the block, rolled back on an error.

    With ``conflict``, a unique-constraint race (a concurrent request won between the
    service's own check and its insert) becomes a :class:`ConflictError` saying so.
    """
    try:
        with engine.begin() as connection:
            yield UnitOfWork(connection, principal, writes=True)
    except IntegrityError:
        if conflict is None:
            raise
        raise ConflictError(conflict) from None
