"""What an API form save costs the database: transactions, commits and round trips.

On PostgreSQL every round trip waits for the server's process and then for ours to be
scheduled again, so under load their number sets a save's latency. These tests count them
on the wire (libpq's protocol trace of every pooled connection) and pin them: a save over
the API costs the save's own statements, one BEGIN and one COMMIT for its write, and one
statement for the API token — no pings, no BEGIN or ROLLBACK around the reads (the token's,
and the save's checks before its write: under READ COMMITTED each statement sees a snapshot
of its own, in a transaction or not). On SQLite the checks read in one snapshot.

The save's own statements travel together where they do not wait for each other's answers
(psycopg's pipeline mode): its reads in one round trip, its writes in two, so that an API
save is 7 round trips (it was 20, and 27 before that).
"""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, Any

import pytest
from node_client import Node
from sqlalchemy import Engine, event

from consortia.auth.principal import Principal, Role
from consortia.domain.templates import template_text
from consortia.services import data_entry
from consortia.services.authentication import principal_from_token

STUDY = "CART-LBCL"
BASE = f"/api/v1/studies/{STUDY}"
FORM = f"{BASE}/subjects/SG01-001/events/screening/forms/eligibility"
ELIGIBLE = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "eligible": True,
}
SAVES = 8
WARM = 24
#: a save through the service on PostgreSQL (an API save: one more, the token's read)
ROUND_TRIPS_PER_SAVE = 6


@contextmanager
def wire(engine: Engine) -> Iterator[Counter[str]]:
    """Count what every connection of ``engine`` says to the server while inside: round
    trips (``ReadyForQuery``), and BEGIN, COMMIT and ROLLBACK, from libpq's trace between
    checkout and checkin, and the pool's pings."""
    from psycopg import pq

    traces: list[IO[str]] = []
    files = ExitStack()

    def trace(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        pgconn = dbapi_connection.pgconn
        handle = files.enter_context(tempfile.TemporaryFile("w+"))  # noqa: SIM115 (closed after)
        traces.append(handle)
        pgconn.trace(handle.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def untrace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.pgconn.untrace()

    counts: Counter[str] = Counter()
    dialect = engine.dialect
    ping = dialect.do_ping

    def counted_ping(dbapi_connection: Any) -> bool:
        # pings come before the checkout event, untraced: they are counted here
        counts["pings"] += 1
        return ping(dbapi_connection)

    dialect.do_ping = counted_ping  # type: ignore[method-assign]
    event.listen(engine.pool, "checkout", trace)
    event.listen(engine.pool, "checkin", untrace)
    try:
        yield counts
    finally:
        del dialect.do_ping  # the class's again
        event.remove(engine.pool, "checkout", trace)
        event.remove(engine.pool, "checkin", untrace)
        for handle in traces:
            handle.seek(0)
            for line in handle:
                fields = line.rstrip("\n").split("\t")
                if fields[0] == "B" and fields[2] == "ReadyForQuery":
                    counts["round trips"] += 1
                elif fields[0] == "F" and fields[2] in ("Query", "Parse"):
                    # a simple query's text, or an extended one's (in a pipeline): BEGIN,
                    # COMMIT and ROLLBACK by name (BEGIN with whatever options it carries)
                    sql = fields[-1 if fields[2] == "Query" else 4].strip().strip('"')
                    verb = sql.split(" ", 1)[0]
                    if verb in ("BEGIN", "COMMIT", "ROLLBACK"):
                        counts[verb] += 1
        files.close()


@contextmanager
def transactions(engine: Engine) -> Iterator[Counter[str]]:
    """Count the transactions SQLAlchemy begins, commits and rolls back, and new connections."""
    counts: Counter[str] = Counter()
    listeners = [
        (engine, "begin", lambda *_: counts.update(["begin"])),
        (engine, "commit", lambda *_: counts.update(["commit"])),
        (engine, "rollback", lambda *_: counts.update(["rollback"])),
        (engine.pool, "connect", lambda *_: counts.update(["connect"])),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counts
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


@pytest.fixture
def saving(node: Node) -> tuple[Node, Any, int, str]:
    """A node with the study, one subject, and a coordinator's client on its eligibility."""
    admin = node.client(node.add_user("admin@sg.example", (STUDY, "*", Role.STUDY_ADMIN)))
    token = node.add_user("coord@sg.example", (STUDY, "SG01", Role.COORDINATOR))
    coordinator = node.client(token)
    loaded = admin.put(f"{BASE}/definition", json={"source": template_text("cart-lbcl")})
    assert loaded.status_code == 200, loaded.text
    enrolled = coordinator.post(
        f"{BASE}/subjects",
        json={"subject_id": "SG01-001", "site": "SG01", "screening_date": "2025-01-06"},
    )
    assert enrolled.status_code == 201, enrolled.text
    version = coordinator.get(FORM).json()["version"]
    # warm: the pool's connections, and psycopg's prepared statements (it prepares one on
    # a connection at its fifth use there, in a round trip of its own)
    for i in range(WARM):
        saved = coordinator.put(
            FORM, json={"version": version, "values": {**ELIGIBLE, "ecog": i % 2}, "reason": "typo"}
        )
        assert saved.status_code == 200, saved.text
        version = saved.json()["version"]
    return node, coordinator, version, token


def _api_saves(client: Any, version: int, first: int) -> int:
    for i in range(first, first + SAVES):
        body = {"version": version, "values": {**ELIGIBLE, "ecog": i % 2}, "reason": "typo"}
        saved = client.put(FORM, json=body)
        assert saved.status_code == 200, saved.text
        version = saved.json()["version"]
    return version


def _service_saves(node: Node, principal: Principal, version: int, first: int) -> int:
    for i in range(first, first + SAVES):
        save = data_entry.FormSave(
            version=version, values={**ELIGIBLE, "ecog": i % 2}, reason="typo"
        )
        view = data_entry.save_form(
            node.app.state.engine, principal, STUDY, "SG01-001", "screening", "eligibility", save
        )
        version = view.version
    return version


def test_an_api_save_is_one_commit_in_two_transactions_on_either_database(
    saving: tuple[Node, Any, int, str],
) -> None:
    node, coordinator, version, _token = saving
    with transactions(node.app.state.engine) as counts:
        _api_saves(coordinator, version, WARM)
    # the checks' read (rolled back: on PostgreSQL the driver sends nothing for it) and the
    # write (committed); the token's last use is written at most once a minute, nothing
    # else writes, and no connection is opened
    assert counts == {"begin": 2 * SAVES, "commit": SAVES, "rollback": SAVES}


@pytest.mark.postgres
def test_a_postgresql_api_save_costs_the_service_s_round_trips_and_one_for_the_token(
    saving: tuple[Node, Any, int, str],
) -> None:
    node, coordinator, version, token = saving
    engine = node.app.state.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("round trips on the wire are PostgreSQL's")
    with wire(engine) as api:
        version = _api_saves(coordinator, version, WARM)
    principal = principal_from_token(engine, token)
    with wire(engine) as service:
        _service_saves(node, principal, version, WARM + SAVES)
    per_save = {key: value / SAVES for key, value in api.items()}
    assert per_save == {
        "round trips": pytest.approx(service["round trips"] / SAVES + 1),
        "BEGIN": 1,  # the unit of work's write transaction
        "COMMIT": 1,
    }, (api, service)  # and no "pings", no "ROLLBACK"
    # the service itself: its reads sent together (1), then its write: BEGIN (1), the
    # check that nothing changed (1), the writes with the audit head's lock (1), the audit
    # events with the head's move (1), COMMIT (1); no ping
    assert service["round trips"] == ROUND_TRIPS_PER_SAVE * SAVES, service
    assert service["BEGIN"] == SAVES
    assert service["COMMIT"] == SAVES
    assert service["ROLLBACK"] == 0
    assert service["pings"] == 0


@pytest.mark.postgres
def test_a_postgresql_save_that_changes_nothing_reads_in_two_round_trips_without_begin(
    saving: tuple[Node, Any, int, str],
) -> None:
    node, _coordinator, version, token = saving
    engine = node.app.state.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("round trips on the wire are PostgreSQL's")
    principal = principal_from_token(engine, token)
    same = data_entry.FormSave(
        version=version, values={**ELIGIBLE, "ecog": (WARM - 1) % 2}, reason="typo"
    )
    with wire(engine) as reads:
        for _ in range(SAVES):
            view = data_entry.save_form(
                engine, principal, STUDY, "SG01-001", "screening", "eligibility", same
            )
            assert view.version == version  # nothing changed, nothing written
    # the planning reads, sent together in autocommit (no BEGIN, no ROLLBACK), and the
    # count of the form's open queries
    assert reads == {"round trips": 2 * SAVES}, reads


@pytest.mark.postgres
def test_a_server_keeps_a_postgresql_connection_per_request_thread(
    postgres_server_url: str,
) -> None:
    from consortia.app import create_app
    from consortia.config import Settings

    app = create_app(
        Settings(
            database_url=postgres_server_url,
            environment="test",  # type: ignore[arg-type]
            secret_key="test-secret-that-is-long-enough-for-production-0123456789",  # type: ignore[arg-type]
            server_threads=12,
        )
    )
    engine = app.state.engine
    connects: list[object] = []
    event.listen(engine.pool, "connect", lambda *_: connects.append(1))
    try:
        # 12 request threads busy at once, in waves: with SQLAlchemy's default pool (5 kept)
        # 7 connections are closed after each wave and opened again for the next
        hold_connections_at_once(engine, threads=12, rounds=4)
    finally:
        engine.dispose()
    assert len(connects) == 12


def hold_connections_at_once(engine: Engine, threads: int, rounds: int) -> None:
    """``threads`` threads each hold a connection at the same moment, and all return it
    before the next of ``rounds`` (requests come in waves)."""
    together = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(rounds):
                with engine.connect() as connection:
                    connection.exec_driver_sql("select 1")
                    together.wait(timeout=30)
                together.wait(timeout=30)
        except BaseException as error:
            failures.append(error)
            together.abort()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not failures, failures
