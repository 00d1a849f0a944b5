"""One hash-chain module: canonical JSON, the link hash, the genesis value and the check of
a sequence, used by the database trail and the federation audit file alike; chains written
before it existed still verify.

The fixed hashes below were computed with the code as it stood before the chaining moved
into :mod:`consortia.hashchain` (``storage.audit.event_hash`` and
``federation.audit.chain_record``); they must never change, or every trail on disk breaks.
"""

from __future__ import annotations

import ast
import json
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from consortia.federation.audit import (
    AuditChainError,
    JsonlAuditSink,
    verify_audit_log,
    verify_records,
)
from consortia.hashchain import (
    GENESIS,
    Link,
    LinkProblem,
    canonical_json,
    link_hash,
    verify_chain,
)
from consortia.storage.audit import (
    append_event,
    audit_event,
    audit_head,
    event_hash,
    metadata,
    verify_trail,
)
from consortia.storage.db import make_engine
from source_trees import syntax_tree

SRC = Path(__file__).resolve().parent.parent / "src" / "consortia"

# --------------------------------------------------------------------------- fixed vectors

DB_EVENTS = [
    {
        "chain": "S1",
        "seq": 1,
        "at": "2026-12-07T17:00:00.000000Z",
        "actor": "ana@example.org",
        "action": "form.save",
        "entity_type": "form_instance",
        "entity_id": "S1/SG01-001/screening/demographics/1",
        "site": "SG01",
        "before": None,
        "after": {"age": "61", "name": 'Zoë "Ng"', "nested": [1, 2.5, None, True]},
        "reason": "typo \u2028 fixed",
    },
    {
        "chain": "S1",
        "seq": 2,
        "at": "2026-12-07T17:00:00.000000Z",
        "actor": "ana@example.org",
        "action": "form.save",
        "entity_type": "form_instance",
        "entity_id": "S1/SG01-001/screening/demographics/1",
        "site": "SG01",
        "before": {"age": "61"},
        "after": {"age": "62"},
        "reason": None,
    },
]
DB_HASHES = [
    "3f6e151c0e0d58972ef75f6f70a27c0c554384ca1a1c54f48d6111d62bfb9aa7",
    "f803792c3dbac6cc0b95f4bf2ecad28f912ba8ff8970163d79be5bdd75027000",
]
FILE_RECORDS = [
    {
        "seq": 1,
        "time": "2026-12-07T17:00:00Z",
        "event": {
            "action": "federation.request",
            "task_id": "t1",
            "sender": "lead",
            "decision": "released",
            "released": {"n": 12, "mean": 3.25, "label": "é"},
        },
        "prev_hash": "0" * 64,
        "hash": "ab5fbe2f857b3b45ff50f9731ce22d981c56b0cbe823f6978e7c8ccafbf80bd2",
    },
    {
        "seq": 2,
        "time": "2026-12-07T17:00:00Z",
        "event": {
            "action": "federation.request",
            "task_id": "t2",
            "sender": "lead",
            "decision": "refused",
            "rule": "min_cell_count",
            "released": None,
        },
        "prev_hash": "ab5fbe2f857b3b45ff50f9731ce22d981c56b0cbe823f6978e7c8ccafbf80bd2",
        "hash": "6680d5ab684fdef87c97e50eabd1657bd255079cb4ef7cbeff9ee9890064ea9c",
    },
]


def _old_stored_text(value: object) -> str | None:
    """How the original code stored ``before``/``after``: sorted, compact, UTF-8 JSON."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_event_hashes_are_those_the_original_code_computed() -> None:
    assert event_hash(GENESIS, DB_EVENTS[0]) == DB_HASHES[0]
    assert event_hash(DB_HASHES[0], DB_EVENTS[1]) == DB_HASHES[1]
    assert link_hash(GENESIS, canonical_json(DB_EVENTS[0])) == DB_HASHES[0]


def test_a_database_trail_written_by_the_original_code_verifies_and_grows(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        metadata.create_all(engine)
        with engine.begin() as connection:
            prev = GENESIS
            for event, digest in zip(DB_EVENTS, DB_HASHES, strict=True):
                connection.execute(
                    audit_event.insert().values(
                        **{
                            **event,
                            "before": _old_stored_text(event["before"]),
                            "after": _old_stored_text(event["after"]),
                        },
                        prev_hash=prev,
                        hash=digest,
                    )
                )
                prev = digest
            connection.execute(audit_head.insert().values(chain="S1", seq=2, hash=prev))
        with engine.connect() as connection:
            report = verify_trail(connection)
        assert report.ok, str(report)
        assert (report.events, report.chains) == (2, 1)
        with engine.begin() as connection:
            append_event(
                connection,
                "S1",
                actor="ana@example.org",
                action="form.save",
                entity_type="form_instance",
                entity_id="x",
                after={"age": "63"},
            )
        with engine.connect() as connection:
            stored = connection.execute(
                sa.select(audit_event.c.prev_hash).where(audit_event.c.seq == 3)
            ).scalar_one()
            report = verify_trail(connection)
        assert stored == DB_HASHES[1]
        assert (report.ok, report.events) == (True, 3), str(report)
    finally:
        engine.dispose()


def test_a_federation_audit_file_written_by_the_original_code_verifies_and_grows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(canonical_json(record) + b"\n" for record in FILE_RECORDS))
    assert verify_audit_log(path) == 2
    sink = JsonlAuditSink(path, fsync=False)
    sink.append({"action": "federation.request", "task_id": "t3", "decision": "released"})
    assert verify_audit_log(path) == 3
    tampered = [dict(FILE_RECORDS[0]), FILE_RECORDS[1]]
    tampered[0]["event"] = {**FILE_RECORDS[0]["event"], "task_id": "t9"}  # type: ignore[dict-item]
    with pytest.raises(AuditChainError, match="record 1: content does not match its hash"):
        verify_records(tampered)


# --------------------------------------------------------------------------- the module


def _links(count: int) -> list[Link]:
    links, prev = [], GENESIS
    for seq in range(1, count + 1):
        body = canonical_json({"seq": seq})
        links.append(Link(seq, prev, link_hash(prev, body), body))
        prev = links[-1].hash
    return links


def test_verify_chain_finds_the_first_missing_relinked_or_changed_link() -> None:
    links = _links(4)
    assert verify_chain(links).ok
    assert verify_chain(links).head == links[-1].hash
    assert verify_chain([]).head == GENESIS
    missing = verify_chain([links[0], links[2], links[3]])
    assert (missing.length, missing.broken_seq, missing.kind) == (1, 3, LinkProblem.SEQUENCE)
    assert missing.problem == "expected event 2, found 3 (an event is missing)"
    changed = [*links[:2], Link(3, links[1].hash, links[2].hash, b'{"seq":33}'), links[3]]
    assert verify_chain(changed).kind is LinkProblem.CONTENT
    relinked = [*links[:2], Link(3, GENESIS, links[2].hash, links[2].body)]
    assert verify_chain(relinked).kind is LinkProblem.LINK


def test_canonical_json_refuses_what_json_cannot_spell_unless_asked_for_text() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
    with pytest.raises(TypeError):
        canonical_json({"x": {1, 2}})
    assert canonical_json({"x": Path("a")}, lenient=True) == b'{"x":"a"}'
    # what the audit trail always stored for values JSON cannot spell (the original bytes)
    odd = {"x": float("nan"), "d": date(2025, 1, 6), "i": float("inf")}
    assert canonical_json(odd, lenient=True) == b'{"d":"2025-01-06","i":Infinity,"x":NaN}'


def _module_level_names(path: Path) -> set[str]:
    tree = syntax_tree(path)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


@pytest.mark.parametrize("name", ["GENESIS", "canonical_json", "verify_chain"])
def test_each_chain_name_has_one_definition(name: str) -> None:
    defined = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if name in _module_level_names(path) or f"{name}_HASH" in _module_level_names(path)
    )
    assert defined == ["hashchain.py"]
