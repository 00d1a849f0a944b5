"""The node's disclosure records: agreed analysis sessions and the release ledger.

Repositories run inside the caller's transaction and never commit: the federation node
writes a release's ledger rows, its session's agreed design and its audit event in one
transaction (:mod:`consortia.federation.disclosure`).

A *row set* is the sorted keys of the rows one release (or one released group) drew on,
stored once per dataset and digest as little-endian int64 deltas, zlib-compressed: keys
are internal row numbers or subject keys, never a value of a row.

>>> keys = np.array([3, 7, 8, 1000], dtype=np.int64)
>>> unpack_keys(pack_keys(keys)).tolist()
[3, 7, 8, 1000]
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from consortia.storage.tables import federation_session, release_ledger, release_set

__all__ = [
    "FederationSessionRepository",
    "ReleaseLedgerRepository",
    "ReleaseSetRecord",
    "SessionRecord",
    "keys_digest",
    "pack_keys",
    "unpack_keys",
]

Keys = npt.NDArray[np.int64]
# An advisory-lock key for "the release ledger" on PostgreSQL (SQLite writers queue anyway).
_LEDGER_LOCK = 0x5E1EA5E


def pack_keys(keys: Keys) -> bytes:
    """Sorted row keys as compressed little-endian deltas."""
    deltas = np.diff(np.asarray(keys, dtype=np.int64), prepend=np.int64(0))
    return zlib.compress(deltas.astype("<i8").tobytes(), 6)


def unpack_keys(data: bytes) -> Keys:
    """Undo :func:`pack_keys`."""
    deltas = np.frombuffer(zlib.decompress(data), dtype="<i8")
    return np.cumsum(deltas, dtype=np.int64)


def keys_digest(dataset: str, keys: Keys) -> str:
    """SHA-256 of a dataset name and its sorted row keys: equal sets, equal digests."""
    digest = hashlib.sha256(dataset.encode("utf-8") + b"\0")
    digest.update(np.asarray(keys, dtype="<i8").tobytes())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What a node agreed for one analysis session of one requester."""

    requester: str
    session: str
    kind: str
    request_sha256: str
    design: str
    levels: str | None
    agreed_at: datetime


class FederationSessionRepository:
    """Agreed analysis sessions, keyed by requester and session id."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get(self, requester: str, session: str) -> SessionRecord | None:
        """The session's record, or ``None`` when the node never agreed it."""
        row = self.connection.execute(
            sa.select(federation_session).where(
                federation_session.c.requester == requester,
                federation_session.c.session == session,
            )
        ).first()
        return None if row is None else SessionRecord(**row._mapping)

    def insert(self, record: SessionRecord) -> None:
        """Store a newly agreed session."""
        self.connection.execute(
            federation_session.insert().values(
                requester=record.requester,
                session=record.session,
                kind=record.kind,
                request_sha256=record.request_sha256,
                design=record.design,
                levels=record.levels,
                agreed_at=record.agreed_at,
            )
        )

    def fix_levels(self, requester: str, session: str, levels: str) -> bool:
        """Record the levels of the session's first model round; ``False`` if already fixed."""
        result = self.connection.execute(
            federation_session.update()
            .where(
                federation_session.c.requester == requester,
                federation_session.c.session == session,
                federation_session.c.levels.is_(None),
            )
            .values(levels=levels)
        )
        return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class ReleaseSetRecord:
    """One distinct row set released from a dataset (its keys are loaded on demand)."""

    id: int
    digest: str
    n: int


class ReleaseLedgerRepository:
    """Row sets of past releases per dataset, and the log of which release used which."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def lock(self) -> None:
        """Serialise ledger checks until the transaction ends (PostgreSQL advisory lock;
        SQLite write transactions already hold the database's one writer lock)."""
        if self.connection.dialect.name == "postgresql":
            self.connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LEDGER_LOCK}
            )

    def sets(self, dataset: str, low: int, high: int) -> list[ReleaseSetRecord]:
        """The dataset's released row sets with ``low <= n <= high`` rows."""
        rows = self.connection.execute(
            sa.select(release_set.c.id, release_set.c.digest, release_set.c.n).where(
                release_set.c.dataset == dataset,
                release_set.c.n >= low,
                release_set.c.n <= high,
            )
        ).all()
        return [ReleaseSetRecord(int(row.id), str(row.digest), int(row.n)) for row in rows]

    def keys(self, set_pk: int) -> Keys:
        """The sorted row keys of one stored set."""
        data = self.connection.execute(
            sa.select(release_set.c.row_keys).where(release_set.c.id == set_pk)
        ).scalar_one()
        return unpack_keys(bytes(data))

    def store_set(self, dataset: str, digest: str, keys: Keys) -> int:
        """The id of the stored set with this digest, storing it first if it is new."""
        existing = self.connection.execute(
            sa.select(release_set.c.id).where(
                release_set.c.dataset == dataset, release_set.c.digest == digest
            )
        ).scalar()
        if existing is not None:
            return int(existing)
        result = self.connection.execute(
            release_set.insert().values(
                dataset=dataset, digest=digest, n=int(keys.size), row_keys=pack_keys(keys)
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def models(self, dataset: str, digest: str) -> dict[str, int]:
        """The model designs (request digests) released on one row set, with the most
        parameters each was released with."""
        most = sa.func.max(release_ledger.c.parameters).label("parameters")
        rows = self.connection.execute(
            sa.select(release_ledger.c.design_sha256, most)
            .select_from(
                release_ledger.join(release_set, release_ledger.c.set_pk == release_set.c.id)
            )
            .where(
                release_set.c.dataset == dataset,
                release_set.c.digest == digest,
                release_ledger.c.parameters.is_not(None),
            )
            .group_by(release_ledger.c.design_sha256)
        ).all()
        return {str(row.design_sha256): int(row.parameters) for row in rows}

    def record(
        self,
        entries: Sequence[tuple[int, str]],
        *,
        requester: str,
        kind: str,
        session: str | None,
        task_id: str | None,
        at: datetime,
        model: tuple[int, str, int] | None = None,
    ) -> None:
        """Log one release: the stored sets it drew on, each with its label; ``model`` is
        (set id, design digest, parameters) of a model release's row set."""
        if not entries:
            return
        self.connection.execute(
            release_ledger.insert(),
            [
                {
                    "set_pk": set_pk,
                    "label": label[:200],
                    "requester": requester,
                    "kind": kind,
                    "session": session,
                    "task_id": task_id,
                    "released_at": at,
                    "design_sha256": model[1] if model and model[0] == set_pk else None,
                    "parameters": model[2] if model and model[0] == set_pk else None,
                }
                for set_pk, label in entries
            ],
        )
