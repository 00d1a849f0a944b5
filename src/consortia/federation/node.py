"""The member-node side: verify a task, apply the policy, compute, audit, sign the reply.

:class:`NodeRunner` is transport-free: push (the node's FastAPI endpoint), pull (the node
long-polls the lead) and in-process all call :meth:`NodeRunner.handle` with the signed
message and send back what it returns. For every message it receives the node appends one
audit event: who asked what, the decision (and the rule that refused it) and exactly what
was released.

A node keeps each analysis session's prepared rows in memory (keyed by requester and
session id), so a Newton round is arithmetic only; idle sessions expire. What the node
*agreed* for a session (an iterative model's rows, levels and strata) and which rows every
release drew on are kept by its :class:`~consortia.federation.disclosure.DisclosureStore`
(the node database when it has one), and every round is checked against them: see
:mod:`consortia.federation.disclosure`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError as PydanticValidationError

from consortia.exceptions import (
    ConfigurationError,
    FederationError,
    PolicyRefusal,
    StatisticsError,
)
from consortia.federation.approval import Approvals, ApprovalStatus
from consortia.federation.audit import AuditSink, MemoryAuditSink
from consortia.federation.disclosure import (
    AgreedSession,
    DisclosureStore,
    ModelUse,
    ReleaseRows,
    RowSet,
    SessionChange,
    request_digest,
    store_for,
)
from consortia.federation.guards import (
    MemoryRefusalWindows,
    RefusalWindows,
    bounded,
    source_key,
)
from consortia.federation.kinds import AnalysisKind, AnalysisRequest, InvalidRequest, get_kind
from consortia.federation.kinds.base import complete_rows
from consortia.federation.people import check_people, disclose_counts, refuse_subject_key
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.protocol import (
    PROTOCOL_VERSION,
    AnalysisTask,
    NodeReply,
    canonical_json,
    encode_arrays,
)
from consortia.federation.secure_sum import secure_release
from consortia.federation.signing import (
    Clock,
    MessageRejected,
    NonceStore,
    TrustStore,
    Verifier,
    public_key_b64,
    sign_message,
    sign_message_wire,
    utc_timestamp,
)
from consortia.federation.tables import Table

__all__ = ["NodeRunner"]

T = TypeVar("T")


@dataclass
class _Session:
    kind: AnalysisKind[Any]
    request: AnalysisRequest
    state: Any
    last_used: float
    table: Table
    request_sha256: str
    # What this process already checked: the agreement once its levels are fixed (it
    # never changes after), and the row sets of the release masks it last saw.
    agreed: AgreedSession | None = None
    rows: tuple[tuple[Any, ...], ReleaseRows] | None = None


class _Pending(Exception):
    def __init__(self, approval_id: str) -> None:
        self.approval_id = approval_id
        super().__init__(approval_id)


class NodeRunner:
    """One member node: its key, trusted peers, tables, policy, audit trail and sessions.

    ``identifiers`` are identifier (PHI) columns named in the node's table declarations;
    with the policy's own they are refused by name. ``offload`` runs the computation in a
    worker thread so a long preparation never blocks the node's event loop.

    ``tables`` is looked up once per analysis session: a plain dict is copied, any other
    mapping (:class:`~consortia.federation.edc_tables.NodeTables`, whose EDC tables follow
    the captured data) is kept as it is. ``on_close`` releases what the node holds (its
    database engine) when :meth:`close` is called. ``store`` keeps agreed sessions and the
    release ledger (default: the database the audit sink writes to, else memory).
    ``approvals`` is the data steward's queue in the node database
    (:class:`~consortia.federation.approval.DatabaseApprovals`); a policy with
    ``manual_approval`` needs it (:class:`ConfigurationError` without).
    """

    def __init__(
        self,
        name: str,
        key: Ed25519PrivateKey,
        trust: TrustStore,
        tables: Mapping[str, Table],
        *,
        policy: NodePolicy | None = None,
        audit: AuditSink | None = None,
        approvals: Approvals | None = None,
        identifiers: Iterable[str] = (),
        url: str = "",
        clock_skew_seconds: float = 300.0,
        clock: Clock | None = None,
        session_ttl_seconds: float = 1800.0,
        max_sessions: int = 32,
        offload: bool = True,
        on_close: Callable[[], None] | None = None,
        nonces: NonceStore | None = None,
        refusals: RefusalWindows | None = None,
        store: DisclosureStore | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.key = key
        self.trust = trust
        self.tables: Mapping[str, Table] = dict(tables) if isinstance(tables, dict) else tables
        self.policy = policy or NodePolicy()
        # Sessions agreed and rows released: in the node database when the audit goes there.
        self.store: DisclosureStore = (
            store
            if store is not None
            else store_for(audit if audit is not None else MemoryAuditSink())
        )
        if self.policy.manual_approval and approvals is None:
            raise ConfigurationError(
                f"node {name}: policy.manual_approval needs the node database, where the "
                "data steward's queue and decisions are kept (set database_url in the node "
                "config), or turn manual_approval off"
            )
        self.approvals = approvals
        self.identifiers = frozenset(identifiers)
        self.verifier = (
            Verifier(trust, clock_skew_seconds=clock_skew_seconds, clock=clock, nonces=nonces)
            if clock is not None
            else Verifier(trust, clock_skew_seconds=clock_skew_seconds, nonces=nonces)
        )
        self.refusals: RefusalWindows = refusals or MemoryRefusalWindows()
        self._session_ttl = session_ttl_seconds
        self._max_sessions = max_sessions
        self._offload = offload
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._lock = threading.Lock()
        self._on_close = on_close

    @property
    def audit(self) -> AuditSink:
        """Where the node's audit events go (its store writes them with each release)."""
        return self.store.audit

    @audit.setter
    def audit(self, sink: AuditSink) -> None:
        self.store = store_for(sink)

    def close(self) -> None:
        """Release what the node holds (its database engine); safe to call twice."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    @property
    def public_key(self) -> str:
        """This node's public key (base64 raw), for peers' trust stores."""
        return public_key_b64(self.key)

    def identity(self) -> dict[str, Any]:
        """What a peer needs to trust this node: name, URL, public key, protocol version."""
        return {
            "name": self.name,
            "url": self.url,
            "public_key": self.public_key,
            "protocol": PROTOCOL_VERSION,
        }

    async def handle(
        self, message: Any, *, wire: bytes | None = None, source: str | None = None
    ) -> dict[str, Any]:
        """Answer one signed task with a signed reply (aggregates, refusal or pending).

        ``wire``, when given, is the exact bytes ``message`` was parsed from (the body hash
        is then checked on them, see :meth:`Verifier.verify`); ``source`` says where it
        came from (the client's address), for the log of refused unverified messages.
        """
        return await self._answer(message, wire, source, self._sign)

    async def handle_wire(
        self, message: Any, *, wire: bytes | None = None, source: str | None = None
    ) -> bytes:
        """Like :meth:`handle`, but return the signed reply as its canonical JSON bytes,
        serialised once (what the HTTP endpoints send)."""
        return await self._answer(message, wire, source, self._sign_wire)

    async def _answer(
        self, message: Any, wire: bytes | None, source: str | None, sign: Callable[[NodeReply], T]
    ) -> T:
        received = utc_timestamp()
        # verifying records the nonce, in the database for a node with one: off the loop too
        if self._offload:
            return await asyncio.to_thread(
                self._verify_and_answer, message, wire, source, received, sign
            )
        return self._verify_and_answer(message, wire, source, received, sign)

    def _verify_and_answer(
        self,
        message: Any,
        wire: bytes | None,
        source: str | None,
        received: str,
        sign: Callable[[NodeReply], T],
    ) -> T:
        try:
            sender, body = self.verifier.verify(message, wire=wire)
        except MessageRejected as exc:
            size = len(wire) if wire is not None else None
            return sign(self._reject_unverified(message, exc, received, size, source))
        return self._process_and_sign(sender, body, received, sign)

    def _process_and_sign(
        self, sender: str, body: dict[str, Any], received: str, sign: Callable[[NodeReply], T]
    ) -> T:
        return sign(self._process(sender, body, received))

    # ------------------------------------------------------------------ processing

    def _reject_unverified(
        self,
        message: Any,
        error: MessageRejected,
        received: str,
        size: int | None,
        source: str | None,
    ) -> NodeReply:
        """Refuse a message that failed verification; log a bounded summary of it.

        Nothing of the message's body is stored: it is anyone's. Only the first refusal
        from its source in a window (:mod:`consortia.federation.guards`) is logged, with
        the number refused since the previous summary.
        """
        body = message.get("body") if isinstance(message, Mapping) else None
        body = body if isinstance(body, Mapping) else {}
        envelope = message.get("envelope") if isinstance(message, Mapping) else None
        claimed = envelope.get("sender") if isinstance(envelope, Mapping) else None
        reply = NodeReply(
            task_id=bounded(body.get("task_id", ""), 100),
            session=bounded(body.get("session", ""), 100),
            round=body["round"] if isinstance(body.get("round"), int) else 0,
            node=self.name,
            status="refused",
            rule=error.rule,
            message=bounded(error.detail, 300),
        )
        where = source_key(source)
        unlogged = self.refusals.admit(where, datetime.now(UTC))
        if unlogged is None:
            return reply
        self.audit.append(
            {
                "action": "federation.request",
                "node": self.name,
                "received_at": received,
                "sender": None,
                "claimed_sender": bounded(claimed, 100) if isinstance(claimed, str) else None,
                "verified": False,
                "source": where,
                "bytes": size,
                "task_id": reply.task_id,
                "decision": "refused",
                "rule": error.rule,
                "message": reply.message,
                "released": None,
                "unlogged_before": unlogged,
            }
        )
        return reply

    def _process(self, sender: str, body: dict[str, Any], received: str) -> NodeReply:
        event: dict[str, Any] = {
            "action": "federation.request",
            "node": self.name,
            "received_at": received,
            "sender": sender,
            "verified": True,
            "task_id": body.get("task_id"),
            "session": body.get("session"),
            "round": body.get("round"),
            "request": body.get("request"),
            "payload": body.get("payload"),
        }
        reply_fields: dict[str, Any] = {
            "task_id": str(body.get("task_id", "")),
            "session": str(body.get("session", "")),
            "round": body["round"] if isinstance(body.get("round"), int) else 0,
            "node": self.name,
        }
        rows: ReleaseRows | None = None
        change: SessionChange | None = None
        kind = ""
        try:
            task = self._read_task(body)
            session = self._session(sender, task)
            kind = session.kind.name
            self._check_request(session)
            change = self._check_session(sender, task, session)
            release = secure_release(
                disclose_counts(
                    session.kind.node_round(
                        session.state, session.request, task.payload, self.policy
                    ),
                    self.policy,
                    session.table,
                    session.kind.columns(session.request),
                ),
                node=self.name,
                node_key=self.key,
                requester=sender,
                session=task.session,
                payload=task.payload,
                policy=self.policy,
            )
            self.policy.check_release(release)
            check_people(session.table, release, session.kind.columns(session.request), self.policy)
            rows = self._release_rows(session, release)
        except _Pending as pending:
            reply = NodeReply(
                **reply_fields,
                status="pending",
                approval_id=pending.approval_id,
                message=f"awaiting the data steward's approval (id {pending.approval_id})",
            )
            event.update(decision="pending", approval_id=pending.approval_id, released=None)
        except PolicyRefusal as exc:
            reply = self._refusal(reply_fields, event, exc.rule, str(exc).split(": ", 1)[-1])
        except InvalidRequest as exc:
            reply = self._refusal(reply_fields, event, "invalid_request", str(exc))
        except StatisticsError as exc:
            reply = self._refusal(reply_fields, event, "statistics_error", str(exc))
        except FederationError as exc:
            reply = self._refusal(reply_fields, event, "invalid_request", str(exc))
        except Exception as exc:  # a bug must not take the node down or leak a trace
            reply = self._refusal(
                reply_fields, event, "internal_error", "the node failed to compute the answer"
            )
            event["error"] = _where(exc)
        else:
            # numpy arrays travel packed (base64 of their bytes): exact and compact.
            released = encode_arrays(release.aggregates)
            reply = NodeReply(**reply_fields, status="ok", n=release.n, aggregates=released)
            event.update(decision="released", rule=None, n=release.n, released=released)
        refusal = self.store.commit(
            event,
            rows=rows,
            session=change,
            requester=sender,
            kind=kind,
            min_difference=self.policy.min_cell_count,
        )
        if refusal is not None:
            reply = NodeReply(
                **reply_fields, status="refused", rule=refusal.rule, message=refusal.message
            )
        return reply

    def _check_request(self, session: _Session) -> None:
        """The policy's request rules, at every round (not only when a session opens)."""
        kind, request = session.kind, session.request
        self.policy.check_request(
            kind=kind.name,
            table=request.table,
            columns=kind.columns(request),
            study=request.study,
            time_bin=kind.released_time_bin(request),
            identifiers=self.identifiers,
        )

    def _check_session(
        self, sender: str, task: AnalysisTask, session: _Session
    ) -> SessionChange | None:
        """Hold an iterative kind's round to what this node agreed for the session.

        The agreement round stores the node's own design (rows, levels with counts,
        strata) with the request's hash; every later round needs that agreement, the same
        request, the same design now, and the levels of the session's first model round.
        """
        design = session.kind.design(session.state, session.request)
        if design is None:
            return None
        design = json.loads(canonical_json(design))
        agreed = session.agreed or self.store.agreed(sender, task.session)
        if session.kind.agreement_round(task.payload):
            if agreed is not None and (
                agreed.request_sha256 != session.request_sha256 or agreed.design != design
            ):
                raise PolicyRefusal(
                    "session_mismatch",
                    "the session was agreed with another request or other rows at this node",
                )
            return SessionChange(
                sender, task.session, session.kind.name, session.request_sha256, design
            )
        if agreed is None:
            raise PolicyRefusal(
                "session_not_agreed",
                "this node has not agreed the session's design: a model round needs the "
                "session's levels round first",
            )
        if agreed.request_sha256 != session.request_sha256 or agreed.kind != session.kind.name:
            raise PolicyRefusal(
                "session_mismatch", "the round's request is not the one the session agreed"
            )
        if agreed.design != design:
            raise PolicyRefusal(
                "session_mismatch",
                "this node's rows, levels or strata changed since the session was agreed; "
                "start the analysis again",
            )
        levels = session.kind.round_levels(task.payload)
        levels = None if levels is None else json.loads(canonical_json(levels))
        if agreed.levels is None:
            return SessionChange(
                sender,
                task.session,
                session.kind.name,
                session.request_sha256,
                design,
                levels=levels,
                new=False,
            )
        if agreed.levels != levels:
            raise PolicyRefusal(
                "session_mismatch",
                "the round's levels are not those of the session's first model round",
            )
        session.agreed = agreed
        return None

    def _release_rows(self, session: _Session, release: Release) -> ReleaseRows:
        """The row sets the release draws on, for the release ledger (a model's rounds
        reuse the very mask arrays of their session, so their sets are built once)."""
        table = session.table
        masks = (release.rows, *release.groups.values())
        if session.rows is not None and len(session.rows[0]) == len(masks):
            held, built = session.rows
            if all(mask is not None and mask is old for mask, old in zip(masks, held, strict=True)):
                return built
        rows = release.rows
        if rows is None:
            rows = complete_rows(table, session.kind.columns(session.request))[0]
        sets = [RowSet("rows", table.keys(rows))]
        sets += [RowSet(label, table.keys(mask)) for label, mask in release.groups.items()]
        model = None
        if release.parameters is not None:
            ratio = self.policy.max_parameter_ratio
            model = ModelUse(session.request_sha256, release.parameters, ratio)
        built = ReleaseRows(table.dataset, tuple(sets), model, people=table.per_reading)
        session.rows = (masks, built)  # holding the masks keeps them (and their identity)
        return built

    def _refusal(
        self, fields: dict[str, Any], event: dict[str, Any], rule: str, message: str
    ) -> NodeReply:
        event.update(decision="refused", rule=rule, message=message, released=None)
        return NodeReply(**fields, status="refused", rule=rule, message=message)

    def _sign(self, reply: NodeReply) -> dict[str, Any]:
        return sign_message(reply.model_dump(mode="json"), self.key, self.name)

    def _sign_wire(self, reply: NodeReply) -> bytes:
        return sign_message_wire(reply.model_dump(mode="json"), self.key, self.name)

    def _read_task(self, body: dict[str, Any]) -> AnalysisTask:
        if body.get("protocol") != PROTOCOL_VERSION:
            raise PolicyRefusal(
                "protocol_version",
                f"this node speaks protocol {PROTOCOL_VERSION}, not {body.get('protocol')!r}",
            )
        try:
            task = AnalysisTask.model_validate(body)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise InvalidRequest(f"task {where}: {first['msg']}") from None
        if task.to != self.name:
            raise InvalidRequest(f"the task is addressed to {task.to!r}, not to {self.name!r}")
        return task

    def _session(self, sender: str, task: AnalysisTask) -> _Session:
        key = (sender, task.session)
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            session = self._sessions.get(key)
            if session is not None:
                if session.request_sha256 != request_digest(task.request):
                    raise PolicyRefusal(
                        "session_mismatch", "the round's request is not the one the session agreed"
                    )
                session.last_used = now
                return session
        session = self._open_session(sender, task, now)
        with self._lock:
            self._sessions[key] = session
            while len(self._sessions) > self._max_sessions:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_used)
                del self._sessions[oldest]
        return session

    def _expire(self, now: float) -> None:
        stale = [k for k, s in self._sessions.items() if now - s.last_used > self._session_ttl]
        for k in stale:
            del self._sessions[k]

    def _open_session(self, sender: str, task: AnalysisTask, now: float) -> _Session:
        kind = get_kind(task.request.get("kind"))
        request = kind.parse(task.request)
        columns = kind.columns(request)
        self.policy.check_request(
            kind=kind.name,
            table=request.table,
            columns=columns,
            study=request.study,
            time_bin=kind.released_time_bin(request),
            identifiers=self.identifiers,
        )
        table = self.tables.get(request.table)
        if table is None:
            raise InvalidRequest(f"table {request.table!r} does not exist at this node")
        refuse_subject_key(table, request, columns)
        absent = [column for column in columns if column not in table]
        if absent:
            raise InvalidRequest(f"table {request.table!r} has no column(s) {absent}")
        if self.policy.manual_approval:
            self._check_approval(sender, task.request)
        state = kind.prepare(table, request, self.policy)
        return _Session(kind, request, state, now, table, request_digest(task.request))

    def _check_approval(self, sender: str, request: Mapping[str, Any]) -> None:
        # read from the node database at every new session: a decision taken in another
        # process (the pages, the API, the shell) is seen here at the lead's next try
        assert self.approvals is not None  # checked in __init__
        entry = self.approvals.find_or_submit(request, sender)
        if entry.status is ApprovalStatus.DENIED:
            reason = f": {entry.reason}" if entry.reason else ""
            raise PolicyRefusal(
                "manual_approval", f"the data steward denied this request (id {entry.id}){reason}"
            )
        if entry.status is ApprovalStatus.PENDING:
            raise _Pending(entry.id)


def _where(error: BaseException) -> str:
    """An unexpected error, for the audit: its type and where it arose, not its message
    (which may quote a value)."""
    frames = traceback.extract_tb(error.__traceback__)
    place = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}{place}"
