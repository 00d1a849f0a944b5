"""Tables with a row per reading count people, not readings, on both databases.

glucose-iso15197's ``glucose_pairs`` has a row per paired reading, and one subject has many.
Readings are entered through the data-entry service; the node is built from its config
(``rows = "readings"``) with the node database (audit and release ledger there) and answers
the lead over HTTP (its app behind ``httpx.ASGITransport``).

* ``FEW``: six subjects, but the 6 readings on lot B (venous, meter far above the
  reference) come from two of them: the lot B cell of a crosstab, the Clarke/Parkes zone B
  of iso15197 and the upper histogram bin of describe each hold 6 readings of 2 people.
  Counted in readings (the code before this rule) they are released; counted in people
  they are refused, and the refusal says people.
* ``ENOUGH``: ten subjects, the 10 lot B readings from five of them: everything is released,
  and the estimates equal numpy/scipy on the same readings (1e-12 relative).
* A request naming the subject key is refused as an identifier; the key's values reach no
  reply, audit event or ledger row.
* The ledger counts people too: two releases whose rows differ by 6 readings of one
  subject are refused (``differencing``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from scipy.stats import chi2_contingency
from test_federation_transports import HostRouter

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.federation.apps import create_node_app
from consortia.federation.coordinator import AnalysisRefused, Coordinator
from consortia.federation.node import NodeRunner
from consortia.federation.nodeconfig import build_node
from consortia.federation.signing import Peer, TrustStore, generate_key, public_key_b64, save_key
from consortia.federation.transport import NodeHandle, PushTransport
from consortia.services.data_entry import FormSave, save_form
from consortia.services.studies import load_definition
from consortia.services.subjects import SubjectInput, enrol_subject
from consortia.stats.agreement import clarke_zones, within_iso15197
from consortia.storage.audit import iter_events
from consortia.storage.db import make_engine
from consortia.storage.migrations import upgrade
from consortia.storage.tables import release_ledger, release_set
from nodetoml import node_config

RTOL = 1e-12
STUDY = "GLUCOSE-ISO15197"
TABLE = "glucose_pairs"
TODAY = date(2026, 1, 15)
PRINCIPAL = Principal(
    1,
    "coord@consortium.example",
    "Coordinator",
    frozenset({Grant(STUDY, "*", Role.STUDY_ADMIN), Grant(STUDY, "*", Role.COORDINATOR)}),
)
Reading = tuple[float, int | None, str, str]  # reference, meter, lot, sample type


def _accurate(subject: int, count: int) -> list[Reading]:
    return [
        (90.0 + 10 * k + subject, 93 + 10 * k + subject, "lot_a", "capillary") for k in range(count)
    ]


def _off(count: int) -> list[Reading]:
    """Readings on lot B far above the reference: Clarke and Parkes type 1 zone B, outside
    the ISO limits, above 200 mg/dL on the meter."""
    return [(200.0, 270, "lot_b", "venous")] * count


#: 6 subjects; the 6 lot B readings are 3 of subject 1's and 3 of subject 2's.
FEW = {s: _accurate(s, 4) + (_off(3) if s <= 2 else []) for s in range(1, 7)}
#: 10 subjects; the 10 lot B readings are 2 of each of subjects 1 to 5.
ENOUGH = {s: _accurate(s, 3) + (_off(2) if s <= 5 else []) for s in range(1, 11)}


def _enter(engine: sa.Engine, readings: dict[int, list[Reading]]) -> None:
    for number, pairs in readings.items():
        subject = f"SG01-{number:03d}"
        enrol_subject(engine, PRINCIPAL, STUDY, SubjectInput(subject, "SG01", None, TODAY))
        values = {"age": 40 + number, "sex": "F", "diabetes_type": "none"}
        _save(engine, subject, "screening", "demographics", values)
        rows = [
            {
                "sample_time": f"{8 + index // 6:02d}:{10 * (index % 6):02d}",
                "sample_type": sample_type,
                "meter_lot": lot,
                "reference_method": "ysi",
                "ref_mgdl": reference,
                "meter_mgdl": meter,
            }
            for index, (reference, meter, lot, sample_type) in enumerate(pairs)
        ]
        complete = all(meter is not None for _, meter, _, _ in pairs)
        _save(engine, subject, "test_session", "glucose_readings", {"readings": rows}, complete)


def _save(
    engine: sa.Engine, subject: str, event: str, form: str, values: Any, complete: bool = True
) -> None:
    save = FormSave(version=0, values=values, complete=complete)
    save_form(engine, PRINCIPAL, STUDY, subject, event, form, save, today=TODAY)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    load_definition(engine, PRINCIPAL, template_text("glucose-iso15197"))
    yield engine
    engine.dispose()


class Node:
    """The node (built from its config, the node database holding audit and ledger) and
    a lead that reaches it over HTTP."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.lead_key = generate_key()
        save_key(generate_key(), folder / "node.pem")
        lead = {"name": "lead", "url": "http://lead.test", "public_key": None}
        lead["public_key"] = public_key_b64(self.lead_key)
        fields = {
            "name": "sgh",
            "url": "http://sgh.test",
            "key_file": "node.pem",
            "peers": [lead],
            "database_url": database_url,
            "tables": {TABLE: {"edc": STUDY, "rows": "readings"}},
        }
        self.runner: NodeRunner = build_node(node_config(folder, fields))
        self.replies: list[dict[str, Any]] = []

    def analyze(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self.runner
        trust = TrustStore([Peer(name=node.name, url=node.url, public_key=node.public_key)])
        coordinator = Coordinator("lead", self.lead_key, trust, round_timeout=30.0)
        apps = {"sgh.test": create_node_app(node)}

        async def main() -> dict[str, Any]:
            async with httpx.AsyncClient(transport=HostRouter(apps)) as client:
                result = await coordinator.run_analysis(
                    {"table": TABLE, **request},
                    [NodeHandle(node.name, node.url)],
                    PushTransport(client),
                )
                return result.to_dict()

        reply = asyncio.run(main())
        self.replies.append(reply)
        return reply

    def refused(self, request: dict[str, Any]) -> dict[str, Any]:
        with pytest.raises(AnalysisRefused) as refused:
            self.analyze(request)
        [refusal] = refused.value.refusals
        self.replies.append(dict(refusal))
        return dict(refusal)


@pytest.fixture
def node_for(engine: sa.Engine, database_url: str, tmp_path: Path) -> Iterator[Any]:
    built: list[Node] = []

    def build(readings: dict[int, list[Reading]]) -> Node:
        _enter(engine, readings)
        node = Node(tmp_path, database_url)
        built.append(node)
        return node

    yield build
    for node in built:
        node.runner.close()


def _arrays(readings: dict[int, list[Reading]]) -> dict[str, np.ndarray[Any, Any]]:
    pairs = [pair for subject in sorted(readings) for pair in readings[subject]]
    return {
        "ref": np.array([p[0] for p in pairs], dtype=np.float64),
        "meter": np.array([np.nan if p[1] is None else p[1] for p in pairs], dtype=np.float64),
        "lot": np.array([p[2] for p in pairs], dtype=object),
        "sample": np.array([p[3] for p in pairs], dtype=object),
    }


DESCRIBE = {"kind": "describe", "variable": "meter_mgdl", "bin_edges": [0.0, 200.0, 600.0]}
CROSSTAB = {"kind": "crosstab", "rows": "meter_lot", "columns": "sample_type"}
ISO15197 = {"kind": "iso15197", "reference": "ref_mgdl", "device": "meter_mgdl"}


def _says_people(refusal: dict[str, Any], figure: str) -> None:
    assert refusal["rule"] == "min_cell_count"
    message = refusal["message"]
    assert f"({figure}) describes fewer than 5 people" in message, message
    assert "row per reading" in message
    # never the small counts (2 people, 6 readings): only the figure's name and the minimum
    rest = message.replace(f"({figure})", "").replace("5", "")
    assert not any(str(count) in rest for count in (2, 3, 6))


@pytest.mark.parametrize(
    ("request_", "figure"),
    [(DESCRIBE, "bin 2"), (CROSSTAB, "cell 2,2"), (ISO15197, "Parkes type 1 zones, zone B")],
    ids=["describe", "crosstab", "iso15197"],
)
def test_a_figure_of_six_readings_from_two_people_is_refused_in_people(
    node_for: Any, request_: dict[str, Any], figure: str
) -> None:
    node = node_for(FEW)
    table = node.runner.tables[TABLE]
    arrays = _arrays(FEW)
    # the data are what the test says: 6 lot B readings (upper bin, zone B, outside the
    # ISO limits), 2 people behind them
    lot_b = table.column("meter_lot") == "lot_b"
    assert int(lot_b.sum()) == 6
    assert table.n_rows == 30
    assert {s for s, pairs in FEW.items() if any(p[2] == "lot_b" for p in pairs)} == {1, 2}
    assert (clarke_zones(arrays["ref"], arrays["meter"]) == "B").sum() == 6
    assert int((~within_iso15197(arrays["ref"], arrays["meter"])).sum()) == 6
    assert int((arrays["meter"] > 200).sum()) == 6

    _says_people(node.refused(request_), figure)
    # a whole-line describe (n = 30 readings of 6 people) is still released
    released = node.analyze({"kind": "describe", "variable": "ref_mgdl"})
    assert released["estimates"]["n"] == 30


def test_the_same_figures_from_five_people_are_released_and_equal_the_pooled_readings(
    node_for: Any,
) -> None:
    node = node_for(ENOUGH)
    arrays = _arrays(ENOUGH)
    ref, meter = arrays["ref"], arrays["meter"]

    described = node.analyze(DESCRIBE)["estimates"]
    assert described["n"] == meter.size == 40
    np.testing.assert_allclose(described["mean"], meter.mean(), rtol=RTOL)
    np.testing.assert_allclose(described["sd"], meter.std(ddof=1), rtol=RTOL)
    assert described["bin_counts"] == np.histogram(meter, [0.0, 200.0, 600.0])[0].tolist()

    crossed = node.analyze(CROSSTAB)["estimates"]
    expected = np.array(
        [
            [
                np.sum((arrays["lot"] == lot) & (arrays["sample"] == sample))
                for sample in ("capillary", "venous")
            ]
            for lot in ("lot_a", "lot_b")
        ]
    )
    assert crossed["row_levels"] == ["lot_a", "lot_b"]
    assert crossed["table"] == expected.tolist() == [[30, 0], [0, 10]]
    chi2, p_value, dof, _ = chi2_contingency(expected, correction=False)
    np.testing.assert_allclose([crossed["chi2"], crossed["p_value"]], [chi2, p_value], rtol=RTOL)
    assert crossed["dof"] == dof

    accuracy = node.analyze(ISO15197)["estimates"]
    within = within_iso15197(ref, meter)
    assert accuracy["n"] == 40
    assert accuracy["within_iso"] == int(within.sum()) == 30
    assert accuracy["clarke"]["A"] == 30
    assert accuracy["clarke"]["B"] == 10
    np.testing.assert_allclose(
        accuracy["mard_pct"], 100 * np.mean(np.abs(meter - ref) / ref), rtol=RTOL
    )
    np.testing.assert_allclose(accuracy["bland_altman"]["bias"], np.mean(meter - ref), rtol=RTOL)
    np.testing.assert_allclose(
        accuracy["bland_altman"]["sd"], np.std(meter - ref, ddof=1), rtol=RTOL
    )


def _lists(value: Any) -> Iterator[list[Any]]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _lists(item)
    elif isinstance(value, list):
        yield value
        for item in value:
            yield from _lists(item)


def test_the_subject_key_is_refused_by_name_and_never_leaves_the_node(
    node_for: Any, engine: sa.Engine
) -> None:
    node = node_for(ENOUGH)
    table = node.runner.tables[TABLE]
    assert "subject_key" not in table.columns
    for request in (
        {"kind": "describe", "variable": "subject_key"},
        {"kind": "crosstab", "rows": "subject_key", "columns": "meter_lot"},
    ):
        refusal = node.refused(request)
        assert refusal["rule"] == "identifier_column"
        assert refusal["message"] == (
            f"{TABLE}.subject_key is the node's key of the subject of each reading; "
            "it is never analysed"
        )
    levels = {"row_levels": ["lot_a", "lot_b"], "column_levels": ["capillary", "venous"]}
    refusal = node.refused({**CROSSTAB, **levels, "secure": True})
    assert refusal["rule"] == "secure_per_reading"
    for request in (DESCRIBE, CROSSTAB, ISO15197):
        node.analyze(request)

    assert table.subject_key is not None
    key = table.subject_key.tolist()
    assert len(set(key)) == 10
    assert len(key) == 40
    with engine.connect() as connection:
        events = [event.after for event in iter_events(connection, chain="federation")]
        ledger = [dict(row._mapping) for row in connection.execute(sa.select(release_ledger))]
        labels = [str(row.label) for row in connection.execute(sa.select(release_ledger.c.label))]
        stored = connection.execute(sa.select(release_set.c.id)).all()
    assert len(events) == len(node.replies) == 6
    assert stored
    payloads = [*node.replies, *events]
    # the key's name is only ever in the two refused requests and their messages (the lead
    # named it), never in a released figure, a field or a value
    named = [p for p in payloads if "subject_key" in json.dumps(p, default=str)]
    assert len(named) == 4
    assert all(p.get("rule") == "identifier_column" for p in named)
    for payload in named:
        rest = {k: v for k, v in payload.items() if k not in ("message", "request")}
        assert "subject_key" not in json.dumps(rest, default=str)
    for payload in payloads:
        for values in _lists(payload):
            assert values != key  # no per-reading list of subjects
            assert values != sorted(set(key))  # nor the list of them
    assert all("subject" not in label for label in labels)
    assert "subject_key" not in json.dumps(ledger, default=str)


def test_releases_whose_rows_differ_by_six_readings_of_one_person_are_refused(
    node_for: Any,
) -> None:
    """Subject 6 has 6 readings without a meter value: ``describe ref_mgdl`` draws on all
    46 readings, ``describe meter_mgdl`` on 40. The 6 readings between them are one
    person's: refused by the ledger (in rows they differ by 6, at least the minimum)."""
    readings = {**ENOUGH, 6: ENOUGH[6] + [(150.0, None, "lot_a", "capillary")] * 6}
    node = node_for(readings)
    first = node.analyze({"kind": "describe", "variable": "ref_mgdl"})
    assert first["estimates"]["n"] == 46
    refusal = node.refused({"kind": "describe", "variable": "meter_mgdl"})
    assert refusal["rule"] == "differencing"
    assert "fewer than 5 people" in refusal["message"]


def test_readings_left_out_from_one_person_are_released_as_suppressed(node_for: Any) -> None:
    """6 readings without a meter value, all subject 6's: left out of ``describe
    meter_mgdl`` and released as "<5" (one person), not as 6."""
    readings = {**ENOUGH, 6: ENOUGH[6] + [(150.0, None, "lot_a", "capillary")] * 6}
    node = node_for(readings)
    result = node.analyze({"kind": "describe", "variable": "meter_mgdl"})
    assert result["nodes"] == [{"name": "sgh", "n": 40, "excluded": "<5"}]
    assert result["estimates"]["missing"] == "<5"
