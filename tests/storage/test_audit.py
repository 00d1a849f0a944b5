"""The audit trail is append-only and any tampering is found by verify, on both databases."""

from __future__ import annotations

import hashlib
import threading
from datetime import date
from itertools import pairwise

import pytest
import sqlalchemy as sa

from consortia.hashchain import GENESIS, canonical_json
from consortia.storage.audit import (
    append_event,
    append_events,
    audit_event,
    event_hash,
    iter_events,
    metadata,
    verify_trail,
)
from consortia.storage.db import make_engine


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    engine = make_engine(database_url)
    metadata.create_all(engine)
    yield engine  # type: ignore[misc]
    engine.dispose()


def _entry(n: int) -> dict[str, object]:
    return {
        "actor": "coordinator@sg.example",
        "action": "item.change",
        "entity_type": "item_value",
        "entity_id": f"S1/SG01-{n:03d}/baseline/demo/age",
        "site": "SG01",
        "before": {"value": n},
        "after": {"value": n + 1},
        "reason": "transcription error",
    }


def test_appended_events_chain_their_hashes_and_verify(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        append_events(connection, "S1", [_entry(i) for i in range(5)])
    with engine.begin() as connection:
        append_event(connection, "S1", **_entry(5))
        append_event(
            connection, "node", actor="admin", action="login", entity_type="user", entity_id="admin"
        )
    with engine.connect() as connection:
        events = list(iter_events(connection, chain="S1"))
        report = verify_trail(connection)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in pairwise(events))
    assert events[2].hash == event_hash(events[1].hash, events[2].payload())
    assert events[0].after == {"value": 1}
    assert report.ok, str(report)
    assert (report.events, report.chains) == (7, 2)


def test_appended_hashes_cover_awkward_values_as_canonical_json_does(engine: sa.Engine) -> None:
    """append_events writes the hashed text field by field; each event's hash must equal
    sha256(prev ‖ canonical_json(payload)) for any value: unicode, quotes, control
    characters, None, numbers, booleans, nested lists, dates (lenient=True)."""
    odd = 'Zürich "quoted" \\ back\nslash \u2028 \x01 é 中文'
    entries: list[dict[str, object]] = [
        {**_entry(1), "actor": odd, "entity_id": 42, "site": None, "reason": odd},
        {**_entry(2), "before": None, "after": None, "reason": None},
        {
            **_entry(3),
            "before": {"z": [1.5, None, True, odd], "a": {"n": -0.0, "d": date(2025, 1, 6)}},
            "after": ["x", 10**20, False],
            "at": "2025-01-06T00:00:00.000001Z",
        },
    ]
    with engine.begin() as connection:
        append_events(connection, "S1", entries)
    with engine.connect() as connection:
        events = list(iter_events(connection, chain="S1"))
    prev = GENESIS
    for event in events:
        text = canonical_json(event.payload(), lenient=True)
        assert event.hash == hashlib.sha256(prev.encode("ascii") + text).hexdigest()
        prev = event.hash
    assert events[0].entity_id == "42"
    assert events[0].actor == odd
    assert events[2].before["a"]["d"] == "2025-01-06"
    assert events[2].at == "2025-01-06T00:00:00.000001Z"


def test_the_database_refuses_to_update_or_delete_an_audit_row(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        append_events(connection, "S1", [_entry(i) for i in range(2)])
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(audit_event.update().values(reason="nothing happened"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(audit_event.delete())
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(audit_event)).scalar() == 2
        assert verify_trail(connection).ok


def _drop_triggers(connection: sa.Connection) -> None:
    """What an attacker with database rights would do before editing the trail."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("DROP TRIGGER audit_event_no_update")
        connection.exec_driver_sql("DROP TRIGGER audit_event_no_delete")
    else:
        connection.exec_driver_sql("DROP TRIGGER audit_event_no_change ON audit_event")


def test_verify_finds_an_audit_row_edited_directly_in_the_database(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        append_events(connection, "S1", [_entry(i) for i in range(10)])
    with engine.begin() as connection:
        _drop_triggers(connection)
        connection.execute(
            audit_event.update().where(audit_event.c.seq == 4).values(after='{"value":999}')
        )
    with engine.connect() as connection:
        report = verify_trail(connection)
    assert not report.ok
    assert (report.broken_chain, report.broken_seq) == ("S1", 4)
    assert "changed" in str(report)
    assert report.events == 3


@pytest.mark.parametrize(
    ("column", "stored"),
    [
        ("after", '{"value": 4}'),  # same meaning, one space more
        ("before", ""),  # an empty text where there was JSON
        ("reason", None),
    ],
)
def test_verify_hashes_the_stored_text_so_any_changed_byte_is_found(
    engine: sa.Engine, column: str, stored: str | None
) -> None:
    """The hash covers the text as stored, not its meaning: JSON re-spaced to mean the same
    breaks the link too."""
    with engine.begin() as connection:
        append_events(connection, "S1", [_entry(i) for i in range(6)])
    with engine.connect() as connection:
        assert verify_trail(connection).ok
    with engine.begin() as connection:
        _drop_triggers(connection)
        connection.execute(
            audit_event.update().where(audit_event.c.seq == 4).values({column: stored})
        )
    with engine.connect() as connection:
        report = verify_trail(connection)
    assert (report.broken_chain, report.broken_seq, report.events) == ("S1", 4, 3)


def test_verify_finds_a_removed_event_in_the_middle_and_at_the_end(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        append_events(connection, "S1", [_entry(i) for i in range(6)])
        _drop_triggers(connection)
    with engine.begin() as connection:
        connection.execute(audit_event.delete().where(audit_event.c.seq == 6))
    with engine.connect() as connection:
        report = verify_trail(connection)
    assert not report.ok
    assert "removed" in str(report)
    with engine.begin() as connection:
        connection.execute(audit_event.delete().where(audit_event.c.seq == 3))
    with engine.connect() as connection:
        report = verify_trail(connection)
    assert report.broken_seq == 4
    assert "missing" in str(report)


def test_an_audit_event_rolls_back_with_the_change_it_describes(engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as connection:
        append_event(connection, "S1", **_entry(1))
        raise RuntimeError("the change failed after its audit event was written")
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(audit_event)).scalar() == 0
        assert verify_trail(connection).ok


def test_concurrent_appends_to_one_chain_never_fork_it(engine: sa.Engine) -> None:
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(15):
                with engine.begin() as connection:
                    append_event(connection, "S1", **_entry(worker * 100 + i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as connection:
        report = verify_trail(connection)
    assert report.ok, str(report)
    assert report.events == 60
