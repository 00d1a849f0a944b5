"""The compact wire format: packed arrays, signing without re-serialising, audit lines."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from consortia.exceptions import FederationError
from consortia.federation.apps import create_node_app
from consortia.federation.audit import JsonlAuditSink, read_audit_log, verify_records
from consortia.federation.kinds.base import _label, label_column
from consortia.federation.protocol import (
    AnalysisTask,
    WireMessage,
    canonical_json,
    decode_arrays,
    encode_arrays,
    new_id,
    wire_size,
)
from consortia.federation.signing import (
    MessageRejected,
    Peer,
    TrustStore,
    Verifier,
    generate_key,
    public_key_b64,
    sign_message,
    sign_message_wire,
)
from consortia.federation.tables import ColumnType, Table

WHEN = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def same_bits(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- packed arrays


@pytest.mark.parametrize(
    "array",
    [
        np.array([0.1, -0.0, 1e-310, np.pi, -1e300, np.nan, np.inf, -np.inf]),
        np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7,
        np.array([-(2**62), -1, 0, 7, 2**62], dtype=np.int64),
        np.zeros((0, 5)),
        np.array(2.5),
    ],
)
def test_packed_arrays_come_back_bit_for_bit_after_a_json_round_trip(
    array: np.ndarray[Any, Any],
) -> None:
    wire = canonical_json(encode_arrays({"a": array, "n": 3}))
    back = decode_arrays(json.loads(wire))
    assert back["n"] == 3
    assert same_bits(back["a"], array)
    back["a"][...] = 0  # decoded arrays are writable
    assert wire.isascii()


def test_small_integers_and_booleans_travel_as_int64_and_other_dtypes_are_refused() -> None:
    back = decode_arrays(json.loads(canonical_json(encode_arrays([np.array([True, False])]))))
    assert back[0].dtype == np.int64
    assert back[0].tolist() == [1, 0]
    with pytest.raises(TypeError, match="only numbers"):
        encode_arrays({"labels": np.array(["a", "b"])})


def test_plain_json_passes_through_both_ways_unchanged() -> None:
    value = {"a": [1, 2.5, None, "x"], "b": {"c": [[1], {"d": True}]}, "e": (1, 2)}
    assert encode_arrays(value) == {**value, "e": [1, 2]}
    assert decode_arrays(json.loads(canonical_json(value))) == json.loads(canonical_json(value))


def test_a_packed_array_is_about_half_the_size_of_its_json_numbers() -> None:
    array = np.random.default_rng(1).normal(size=1000)
    packed = len(canonical_json(encode_arrays(array)))
    listed = len(canonical_json(array.tolist()))
    assert packed < 0.65 * listed


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"__ndarray__": "AAAA", "dtype": "<f4", "shape": [1]}, "dtype"),
        ({"__ndarray__": "AAAAAAAAAAA=", "dtype": "<f8", "shape": [2]}, "cannot hold"),
        ({"__ndarray__": "not base64!", "dtype": "<f8", "shape": [1]}, "not valid base64"),
        ({"__ndarray__": "AAAAAAAAAAA=", "dtype": "<f8", "shape": [-1]}, "shape"),
        ({"__ndarray__": "AAAAAAAAAAA=", "dtype": "<f8", "shape": [1], "x": 1}, "exactly"),
        ({"__ndarray__": 5, "dtype": "<f8", "shape": [1]}, "base64"),
    ],
)
def test_a_malformed_packed_array_is_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(FederationError, match=message):
        decode_arrays({"x": [data]})


def test_packed_arrays_are_little_endian_float64() -> None:
    packed = encode_arrays(np.array([1.0, -2.0]))
    assert packed["dtype"] == "<f8"
    assert base64.b64decode(packed["__ndarray__"]) == np.array([1.0, -2.0], dtype="<f8").tobytes()


# --------------------------------------------------------------------------- signing


def pair() -> tuple[Any, Verifier]:
    key = generate_key()
    trust = TrustStore([Peer(name="sgh", public_key=public_key_b64(key))])
    return key, Verifier(trust, clock=lambda: WHEN)


def test_the_wire_form_of_a_signed_message_is_its_canonical_json() -> None:
    key, _ = pair()
    body = {"b": [1.5, "é"], "a": encode_arrays({"x": np.arange(3.0)})}
    wire = sign_message_wire(body, key, "sgh", now=WHEN, nonce="1" * 32)
    assert wire == canonical_json(sign_message(body, key, "sgh", now=WHEN, nonce="1" * 32))


def test_a_canonical_wire_message_verifies_from_its_bytes() -> None:
    key, verifier = pair()
    wire = sign_message_wire({"a": [1, 2], "z": "ü"}, key, "sgh", now=WHEN)
    message = WireMessage.parse(wire)
    assert verifier.verify(message, wire=message.wire) == ("sgh", {"a": [1, 2], "z": "ü"})
    assert wire_size(message) == len(wire)


def test_wire_bytes_that_were_tampered_with_are_refused() -> None:
    key, verifier = pair()
    wire = sign_message_wire({"n": 12, "values": [1.0, 2.0]}, key, "sgh", now=WHEN)
    forged = wire.replace(b'"n":12', b'"n":13')
    with pytest.raises(MessageRejected) as refused:
        verifier.verify(json.loads(forged), wire=forged)
    assert refused.value.rule == "signature.body_hash"


def test_a_message_laid_out_otherwise_still_verifies_by_re_serialising_its_body() -> None:
    key, verifier = pair()
    message = sign_message({"a": 1, "b": [2.5]}, key, "sgh", now=WHEN)
    pretty = json.dumps(message, indent=2).encode()
    assert verifier.verify(json.loads(pretty), wire=pretty) == ("sgh", {"a": 1, "b": [2.5]})


def test_a_wire_message_must_be_a_json_object() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        WireMessage.parse(b"[1, 2]")


def test_the_node_app_answers_with_the_canonical_bytes_of_a_signed_reply(
    make_federation: Any,
) -> None:
    federation = make_federation()
    node = federation.runners["sgh"]
    task = AnalysisTask(
        task_id=new_id(),
        session=new_id(),
        round=1,
        to="sgh",
        request={"kind": "describe", "table": "trial", "variable": "age"},
    )
    message = federation.coordinator.sign(task.model_dump(mode="json"))

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_node_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://sgh.test") as client:
            return await client.post("/federation/v1/analyze", content=canonical_json(message))

    response = asyncio.run(main())
    assert response.status_code == 200
    assert response.content == canonical_json(response.json())
    reply = federation.coordinator.read_reply("sgh", task, WireMessage.parse(response.content))
    assert reply.status == "ok"


# --------------------------------------------------------------------------- audit lines


def test_audit_lines_are_the_canonical_json_of_their_records_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path, fsync=False)
    events = [
        {"action": "a", "released": encode_arrays({"x": np.arange(4.0)}), "note": "é"},
        {"action": "b", "released": None, "nested": {"z": [1, {"y": 2}]}},
    ]
    for event in events:
        sink.append(event)
    lines = path.read_bytes().splitlines()
    records = read_audit_log(path)
    assert [canonical_json(record) for record in records] == lines
    assert verify_records(records) == 2
    assert [record["event"] for record in records] == [
        json.loads(canonical_json(e)) for e in events
    ]


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (np.array([1.0, 2.0, np.nan, 1.5, -0.0, 2.0, 1e20]), ColumnType.DECIMAL),
        (np.array([1.0, 0.0, 1.0]), ColumnType.BOOLEAN),
        (np.array(["b", None, "a", "b", "10"], dtype=object), ColumnType.TEXT),
        (np.array([1, "a", None, 2.5, 1.0], dtype=object), ColumnType.TEXT),
        (np.array(["2024-02-29", "NaT", "2024-02-29"], dtype="datetime64[D]"), ColumnType.DATE),
    ],
)
def test_labels_are_those_of_each_value_labelled_alone(
    values: np.ndarray[Any, Any], kind: ColumnType
) -> None:
    table = Table("t", {"c": values}, {"c": kind})
    expected = [_label(value) for value in values]
    assert label_column(table, "c").tolist() == expected
    rows = np.arange(values.size) % 2 == 0
    assert label_column(table, "c", rows).tolist() == [
        e for e, r in zip(expected, rows, strict=True) if r
    ]
