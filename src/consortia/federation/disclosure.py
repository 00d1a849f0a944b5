"""Disclosure control across rounds and releases: agreed sessions and the release ledger.

Two things a node must remember between messages, and keep where every process serving
the node sees them (the node database; in memory for a node without one):

* **the agreed session.** The first round of an iterative model (``glm``, ``cox``) is the
  levels round: the node reports its own design (complete rows, levels of categorical
  covariates with their counts, strata) and stores it with the request's hash, keyed by
  requester and session id. Every later round of the session must carry the same request
  and the levels the first model round used, and the node's rows must still be the ones it
  agreed; otherwise the round is refused (``session_not_agreed``, ``session_mismatch``).
* **the release ledger.** For every release the node keeps the keys of the rows it drew on
  (and of each released group: a level, a stratum, a cell, a histogram bin), per dataset.
  A release one of whose row sets differs from a row set already released from the same
  dataset — to any requester, by any path — by at least one and fewer than
  ``min_cell_count`` rows is refused (``differencing``): subtracting the two would give
  those few rows' values. Equal sets (a re-run, the rounds of one model) pass, and a set
  already in the ledger is not compared again: every pair of stored sets was compared
  when the later of the two was stored. In a table with a row per reading
  (``ReleaseRows.people``) the difference is counted in people: the distinct subjects of
  the rows in one set and not the other (a row key carries its subject,
  :data:`~consortia.federation.tables.SUBJECT_SHIFT`), so two sets differing by many
  readings of one or two patients are refused too.

The ledger check, the ledger rows, the session record and the release's audit event are
written in one transaction (:class:`DatabaseDisclosureStore`), so nothing is released
that the ledger does not hold, and two processes cannot both release near-equal sets.

>>> store = MemoryDisclosureStore(MemoryAuditSink())
>>> rows = lambda *keys: ReleaseRows("table:t", (RowSet("rows", np.array(keys)),))
>>> released = {"decision": "released", "released": {"n": 6}}
>>> store.commit(dict(released), rows=rows(*range(6)), min_difference=5) is None
True
>>> store.commit(dict(released), rows=rows(*range(6)), min_difference=5) is None  # a re-run
True
>>> store.commit(dict(released), rows=rows(*range(7)), min_difference=5).rule
'differencing'
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from consortia.federation.audit import AuditSink, MemoryAuditSink
from consortia.federation.database_audit import DatabaseAuditSink
from consortia.federation.protocol import canonical_json, sha256_hex
from consortia.federation.tables import SUBJECT_SHIFT
from consortia.storage.ledger import (
    FederationSessionRepository,
    ReleaseLedgerRepository,
    SessionRecord,
    keys_digest,
)

__all__ = [
    "AgreedSession",
    "DatabaseDisclosureStore",
    "DisclosureStore",
    "MemoryDisclosureStore",
    "ModelUse",
    "Refusal",
    "ReleaseRows",
    "RowSet",
    "SessionChange",
    "request_digest",
]

Keys = npt.NDArray[np.int64]


def request_digest(request: Mapping[str, Any]) -> str:
    """SHA-256 of a request's canonical JSON: the request a session agreed."""
    return sha256_hex(canonical_json(dict(request)))


@dataclass(frozen=True)
class RowSet:
    """The sorted keys of the rows behind one released figure; ``label`` names it without
    a value (``rows``, ``level 2 of ward``, ``stratum 1``)."""

    label: str
    keys: Keys


@dataclass(frozen=True)
class ModelUse:
    """A model release's design (the request's digest), its parameters and the policy's
    parameter ratio, for the parameter budget of its rows."""

    design: str
    parameters: int
    ratio: float


@dataclass(frozen=True)
class ReleaseRows:
    """Every row set one release draws on (the first: all its rows), the dataset they come
    from, and for a model its use of the rows' parameter budget; ``people``: the rows are
    readings whose keys carry their subject, and differences are counted in subjects."""

    dataset: str
    sets: tuple[RowSet, ...]
    model: ModelUse | None = None
    people: bool = False

    @cached_property
    def rows_digest(self) -> str:
        """The digest of the release's whole row set."""
        return keys_digest(self.dataset, self.sets[0].keys)

    @cached_property
    def distinct(self) -> list[tuple[RowSet, str]]:
        """The non-empty sets, one per digest, with their digests (computed once)."""
        seen: dict[str, RowSet] = {}
        for row_set in self.sets:
            if row_set.keys.size:
                seen.setdefault(keys_digest(self.dataset, row_set.keys), row_set)
        return [(row_set, digest) for digest, row_set in seen.items()]


@dataclass(frozen=True)
class Refusal:
    """A rule that refused a release at commit time, with a value-free message."""

    rule: str
    message: str


@dataclass(frozen=True)
class AgreedSession:
    """What the node agreed for a session: the request, its own design, the model levels."""

    kind: str
    request_sha256: str
    design: dict[str, Any]
    levels: dict[str, Any] | None


@dataclass(frozen=True)
class SessionChange:
    """What a release records about its session: a new agreement, or the levels fixed by
    the session's first model round."""

    requester: str
    session: str
    kind: str
    request_sha256: str
    design: dict[str, Any]
    levels: dict[str, Any] | None = None
    new: bool = True


class DisclosureStore(Protocol):
    """Where a node keeps agreed sessions and its release ledger, and audits releases."""

    audit: AuditSink

    def agreed(self, requester: str, session: str) -> AgreedSession | None:
        """The session's agreement, or ``None`` when the node never agreed it."""
        ...

    def commit(
        self,
        event: dict[str, Any],
        *,
        rows: ReleaseRows | None = None,
        session: SessionChange | None = None,
        requester: str = "",
        kind: str = "",
        min_difference: int = 1,
    ) -> Refusal | None:
        """Check and record a release with its audit event, all or nothing.

        ``event`` is the audit event of a release (``decision`` ``released``) or of a
        refusal; a release the ledger or the session refuses is audited as refused (the
        event is updated) and the refusal returned.
        """
        ...


def _differencing(label: str, earlier: str, minimum: int, people: bool = False) -> Refusal:
    where = label if label == earlier else f"{label}, compared with {earlier}"
    unit = "people (subjects of the readings that differ)" if people else "rows"
    return Refusal(
        "differencing",
        f"the rows of this release ({where}) differ from rows already released from the "
        f"same data by fewer than {minimum} {unit}",
    )


def _close(first: Keys, second: Keys, minimum: int, people: bool = False) -> bool:
    """0 < |first Δ second| < minimum (both sorted and unique); with ``people``, the
    number of distinct subjects (``key >> SUBJECT_SHIFT``) of the difference instead."""
    if people:
        differing = np.setxor1d(first, second, assume_unique=True)
        subjects = int(np.unique(differing >> SUBJECT_SHIFT).size)
        return 0 < subjects < minimum
    if abs(first.size - second.size) >= minimum:
        return False
    common = np.intersect1d(first, second, assume_unique=True).size
    difference = first.size + second.size - 2 * common
    return 0 < difference < minimum


def _distinct(rows: ReleaseRows) -> list[tuple[RowSet, str]]:
    return rows.distinct


def _check_within(
    sets: Sequence[tuple[RowSet, str]], minimum: int, people: bool = False
) -> Refusal | None:
    for index, (first, _) in enumerate(sets):
        for second, _ in sets[index + 1 :]:
            if _close(first.keys, second.keys, minimum, people):
                return _differencing(first.label, second.label, minimum, people)
    return None


def _budget(rows: ReleaseRows, used: Mapping[str, int]) -> Refusal | None:
    """Refuse a new model design once the models released on the same rows would have
    more parameters in all than the policy allows one model (each model's coefficients
    are weighted sums of the rows' values: enough of them could be solved for the values)."""
    model = rows.model
    if model is None or used.get(model.design, -1) >= model.parameters:
        return None  # a re-run (or a later round) of a design already counted
    n = int(rows.sets[0].keys.size)
    others = sum(count for design, count in used.items() if design != model.design)
    total = others + model.parameters
    if total > model.ratio * n:
        return Refusal(
            "parameter_budget",
            f"the models released on these rows would have {total} parameters in all; "
            f"at most {model.ratio:g} × n are released from one set of rows",
        )
    return None


def _refuse(event: dict[str, Any], refusal: Refusal) -> None:
    event.update(
        decision="refused", rule=refusal.rule, message=refusal.message, n=None, released=None
    )


def _check_session(agreed: AgreedSession | None, change: SessionChange) -> Refusal | None:
    """A concurrent round of the same session agreed something else first."""
    if agreed is None:
        return None
    if change.new and (
        agreed.request_sha256 != change.request_sha256 or agreed.design != change.design
    ):
        return Refusal(
            "session_mismatch", "the session was already agreed with another request or rows"
        )
    if not change.new and agreed.levels is not None and agreed.levels != change.levels:
        return Refusal("session_mismatch", "the session's levels were already agreed otherwise")
    return None


@dataclass
class _MemoryLedger:
    sets: dict[str, dict[str, Keys]] = field(default_factory=dict)


class MemoryDisclosureStore:
    """Sessions and ledger in this process's memory, for a node without a database (one
    process; forgotten when it stops) and for rehearsals over local files."""

    def __init__(self, audit: AuditSink | None = None) -> None:
        self.audit: AuditSink = audit if audit is not None else MemoryAuditSink()
        self._sessions: dict[tuple[str, str], AgreedSession] = {}
        self._ledger = _MemoryLedger()
        self._models: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def agreed(self, requester: str, session: str) -> AgreedSession | None:
        with self._lock:
            return self._sessions.get((requester, session))

    def commit(
        self,
        event: dict[str, Any],
        *,
        rows: ReleaseRows | None = None,
        session: SessionChange | None = None,
        requester: str = "",
        kind: str = "",
        min_difference: int = 1,
    ) -> Refusal | None:
        with self._lock:
            refusal = None
            if event.get("decision") == "released":
                refusal = self._check(rows, session, min_difference)
            if refusal is not None:
                _refuse(event, refusal)
            elif event.get("decision") == "released":
                self._write(rows, session)
            self.audit.append(event)
            return refusal

    def _check(
        self, rows: ReleaseRows | None, session: SessionChange | None, minimum: int
    ) -> Refusal | None:
        if session is not None:
            refusal = _check_session(
                self._sessions.get((session.requester, session.session)), session
            )
            if refusal is not None:
                return refusal
        if rows is None:
            return None
        sets = _distinct(rows)
        refusal = _check_within(sets, minimum, rows.people) or _budget(
            rows, self._models.get(rows.rows_digest, {})
        )
        if refusal is not None:
            return refusal
        earlier = self._ledger.sets.get(rows.dataset, {})
        for row_set, digest in sets:
            if digest in earlier:
                continue  # checked against every other set when either was first released
            for old_digest, keys in earlier.items():
                if old_digest != digest and _close(row_set.keys, keys, minimum, rows.people):
                    return _differencing(row_set.label, "an earlier release", minimum, rows.people)
        return None

    def _write(self, rows: ReleaseRows | None, session: SessionChange | None) -> None:
        if session is not None:
            key = (session.requester, session.session)
            held = self._sessions.get(key)
            if session.new and held is None:
                self._sessions[key] = AgreedSession(
                    session.kind, session.request_sha256, session.design, None
                )
            elif not session.new and held is not None and held.levels is None:
                self._sessions[key] = AgreedSession(
                    held.kind, held.request_sha256, held.design, session.levels
                )
        if rows is not None:
            earlier = self._ledger.sets.setdefault(rows.dataset, {})
            for row_set, digest in _distinct(rows):
                earlier.setdefault(digest, row_set.keys)
            if rows.model is not None:
                used = self._models.setdefault(rows.rows_digest, {})
                design, parameters = rows.model.design, rows.model.parameters
                used[design] = max(used.get(design, 0), parameters)


class DatabaseDisclosureStore:
    """Sessions and ledger in the node database, written with the audit event in one
    transaction; every process serving the node shares them."""

    def __init__(self, audit: DatabaseAuditSink, *, cache_size: int = 256) -> None:
        self.audit: AuditSink = audit
        self._sink = audit
        self.engine = audit.engine
        self._cache: dict[int, Keys] = {}  # stored sets never change: keys by set id
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def agreed(self, requester: str, session: str) -> AgreedSession | None:
        with self.engine.connect() as connection:
            record = FederationSessionRepository(connection).get(requester, session)
        return None if record is None else _agreed(record)

    def commit(
        self,
        event: dict[str, Any],
        *,
        rows: ReleaseRows | None = None,
        session: SessionChange | None = None,
        requester: str = "",
        kind: str = "",
        min_difference: int = 1,
    ) -> Refusal | None:
        with self.engine.begin() as connection:
            refusal = None
            if event.get("decision") == "released":
                refusal = self._check_and_write(
                    connection, event, rows, session, requester, kind, min_difference
                )
            if refusal is not None:
                _refuse(event, refusal)
            self._sink.append_in(connection, event)
        return refusal

    def _check_and_write(
        self,
        connection: Connection,
        event: Mapping[str, Any],
        rows: ReleaseRows | None,
        session: SessionChange | None,
        requester: str,
        kind: str,
        minimum: int,
    ) -> Refusal | None:
        sessions = FederationSessionRepository(connection)
        ledger = ReleaseLedgerRepository(connection)
        ledger.lock()
        if session is not None:
            held = sessions.get(session.requester, session.session)
            refusal = _check_session(None if held is None else _agreed(held), session)
            if refusal is not None:
                return refusal
        sets = _distinct(rows) if rows is not None else []
        if rows is not None:
            refusal = (
                _check_within(sets, minimum, rows.people)
                or self._check_ledger(ledger, rows.dataset, sets, minimum, rows.people)
                or (
                    _budget(rows, ledger.models(rows.dataset, rows.rows_digest))
                    if rows.model is not None
                    else None
                )
            )
            if refusal is not None:
                return refusal
        now = datetime.now(UTC)
        if session is not None:
            self._write_session(sessions, session, now)
        if rows is not None:
            entries = [
                (ledger.store_set(rows.dataset, digest, row_set.keys), row_set.label)
                for row_set, digest in sets
            ]
            model = None
            if rows.model is not None:
                set_pk = next(
                    pk
                    for (pk, _), (_, d) in zip(entries, sets, strict=True)
                    if d == rows.rows_digest
                )
                model = (set_pk, rows.model.design, rows.model.parameters)
            ledger.record(
                entries,
                requester=requester,
                kind=kind,
                session=str(event.get("session") or "") or None,
                task_id=str(event.get("task_id") or "") or None,
                at=now,
                model=model,
            )
        return None

    def _check_ledger(
        self,
        ledger: ReleaseLedgerRepository,
        dataset: str,
        sets: Sequence[tuple[RowSet, str]],
        minimum: int,
        people: bool = False,
    ) -> Refusal | None:
        if not sets:
            return None
        sizes = [row_set.keys.size for row_set, _ in sets]
        if people:  # sets of readings may differ by many rows and few people: every size
            candidates = ledger.sets(dataset, 0, 2**31 - 1)
        else:
            candidates = ledger.sets(dataset, min(sizes) - minimum + 1, max(sizes) + minimum - 1)
        known = {stored.digest for stored in candidates}
        for row_set, digest in sets:
            if digest in known:
                continue  # checked against every other set when either was first released
            for stored in candidates:
                if stored.digest == digest:
                    continue
                if not people and abs(stored.n - row_set.keys.size) >= minimum:
                    continue
                if _close(row_set.keys, self._keys(ledger, stored.id), minimum, people):
                    return _differencing(row_set.label, "an earlier release", minimum, people)
        return None

    def _keys(self, ledger: ReleaseLedgerRepository, set_pk: int) -> Keys:
        with self._lock:
            cached = self._cache.get(set_pk)
        if cached is not None:
            return cached
        keys = ledger.keys(set_pk)
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[set_pk] = keys
        return keys

    @staticmethod
    def _write_session(
        sessions: FederationSessionRepository, change: SessionChange, now: datetime
    ) -> None:
        if change.new:
            if sessions.get(change.requester, change.session) is None:
                sessions.insert(
                    SessionRecord(
                        requester=change.requester,
                        session=change.session,
                        kind=change.kind,
                        request_sha256=change.request_sha256,
                        design=canonical_json(change.design).decode("utf-8"),
                        levels=None,
                        agreed_at=now,
                    )
                )
        elif change.levels is not None:
            sessions.fix_levels(
                change.requester, change.session, canonical_json(change.levels).decode("utf-8")
            )


def _agreed(record: SessionRecord) -> AgreedSession:
    return AgreedSession(
        record.kind,
        record.request_sha256,
        json.loads(record.design),
        None if record.levels is None else json.loads(record.levels),
    )


def store_for(audit: AuditSink) -> DisclosureStore:
    """The store that goes with an audit sink: the database's when it writes to one."""
    if isinstance(audit, DatabaseAuditSink):
        return DatabaseDisclosureStore(audit)
    return MemoryDisclosureStore(audit)
