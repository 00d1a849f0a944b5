"""Every kind counts people in a table with a row per reading; the ledger too.

One table of 60 readings of 10 subjects (6 each). Subjects 0 and 1 (12 readings) are the
only positives, the only arm ``b``, the only high scores, the only ones with an event at
day 30: each such figure is 12 readings
of 2 people. With a subject key (a per-reading table) it is refused (``min_cell_count``,
naming people, never the count); the same rows without one (a row per person) are released
as before. The release ledger's memory store compares row sets by the people in their
difference.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from consortia.federation.coordinator import AnalysisRefused
from consortia.federation.disclosure import MemoryDisclosureStore, ReleaseRows, RowSet
from consortia.federation.tables import SUBJECT_SHIFT, ColumnType, Table
from consortia.federation.transport import InProcessTransport

SUBJECTS = np.repeat(np.arange(10), 6)
FEW = SUBJECTS < 2  # 12 readings of 2 people
RNG = np.random.default_rng(7)


def _table(per_reading: bool) -> Table:
    columns = {
        "x": RNG.normal(50, 10, SUBJECTS.size),
        "outcome": FEW.astype(np.float64),
        "score": np.where(FEW, 0.9, 0.1),
        "time": np.where(FEW, 30.0, 60.0),
        "event": np.ones(SUBJECTS.size),
        "arm": np.where(FEW, "b", "a").astype(object),
    }
    types = dict.fromkeys(columns, ColumnType.DECIMAL) | {"arm": ColumnType.TEXT}
    key = SUBJECTS.astype(np.int64) if per_reading else None
    return Table("readings", columns, types, subject_key=key)


REQUESTS = {
    "proportion": {"kind": "proportion", "table": "readings", "outcome": "outcome"},
    "diagnostic": {"kind": "diagnostic", "table": "readings", "score": "score", "truth": "outcome"},
    "kaplan_meier": {
        "kind": "kaplan_meier",
        "table": "readings",
        "time": "time",
        "event": "event",
        "group": "arm",
    },
    "glm": {"kind": "glm", "table": "readings", "outcome": "x", "covariates": ["arm"]},
    "cox": {
        "kind": "cox",
        "table": "readings",
        "time": "time",
        "event": "event",
        "covariates": ["x"],
    },
}


#: the first figure each kind checks that the two people's readings make up
FIGURES = {
    "proportion": "successes",
    "diagnostic": "true positives",
    "kaplan_meier": "group 2",
    "glm": "level 2 of arm",
    "cox": "rows at released time 1",
}


def _run(make_federation: Any, table: Table, request: dict[str, Any]) -> dict[str, Any]:
    federation = make_federation(tables={"sgh": table})
    transport = InProcessTransport(federation.runners)
    result = federation.coordinator.run_analysis(request, federation.handles, transport)
    return asyncio.run(result).to_dict()


@pytest.mark.parametrize("kind", list(REQUESTS))
def test_a_figure_of_two_peoples_readings_is_refused_only_in_a_per_reading_table(
    make_federation: Any, kind: str
) -> None:
    request = REQUESTS[kind]
    released = _run(make_federation, _table(per_reading=False), request)
    assert released["complete"] is True
    with pytest.raises(AnalysisRefused) as refused:
        _run(make_federation, _table(per_reading=True), request)
    [refusal] = refused.value.refusals
    assert refusal["rule"] == "min_cell_count"
    assert "describes fewer than 5 people" in refusal["message"]
    figure, rest = refusal["message"].split(") ", 1)
    assert figure == f"a released count ({FIGURES[kind]}"
    assert figure.startswith("a released count (")
    assert not any(str(count) in rest for count in (2, 12))  # never the small counts


def _keys(subject: int, readings: range) -> list[int]:
    return [(subject << SUBJECT_SHIFT) | reading for reading in readings]


def test_the_ledger_counts_the_people_in_the_difference_of_two_row_sets() -> None:
    store = MemoryDisclosureStore()
    base = [key for subject in range(10) for key in _keys(subject, range(1, 7))]

    def commit(keys: list[int]) -> Any:
        rows = ReleaseRows("edc:S:g", (RowSet("rows", np.array(sorted(keys))),), people=True)
        return store.commit({"decision": "released"}, rows=rows, min_difference=5)

    assert commit(base) is None
    # 6 more readings of one subject: 6 rows, but one person
    refusal = commit(base + _keys(3, range(7, 13)))
    assert refusal is not None
    assert refusal.rule == "differencing"
    assert "fewer than 5 people" in refusal.message
    # one more reading from each of 5 subjects: 5 people, released
    assert commit(base + [key for s in range(5) for key in _keys(s, range(20, 21))]) is None


def test_people_counts_distinct_subjects_and_rows_without_a_key() -> None:
    mask = FEW.copy()
    assert _table(per_reading=True).people(mask) == 2
    assert _table(per_reading=True).people() == 10
    assert _table(per_reading=False).people(mask) == 12
    with pytest.raises(ValueError, match="3 subject keys for 60 rows"):
        Table("t", {"x": np.zeros(60)}, {"x": ColumnType.DECIMAL}, subject_key=np.arange(3))
