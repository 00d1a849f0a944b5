"""The innovation centre's rules in plain Python: stage gates one at a time, quorum,
agreements in force between their days, documents checked against their first bytes."""

from __future__ import annotations

import doctest
from datetime import date

import pytest

from consortia.domain import centre
from consortia.domain.centre import (
    STAGES,
    agreement_state,
    check_document,
    expiring,
    gate_refusal,
    in_force,
    quorum_refusal,
)


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(centre).failed == 0


def test_a_project_passes_each_gate_in_order_and_skips_none() -> None:
    for index, stage in enumerate(STAGES[:-1]):
        assert gate_refusal(stage, STAGES[index + 1]) is None
        for later in STAGES[index + 2 :]:
            refusal = gate_refusal(stage, later)
            assert refusal is not None
            assert f"the next gate is {STAGES[index + 1]}, not {later}" in refusal
        for earlier in STAGES[: index + 1]:
            assert gate_refusal(stage, earlier) is not None
    assert gate_refusal("clinical_use", "clinical_use") == (
        "the project is at clinical_use, the last gate: there is no gate after it"
    )
    assert gate_refusal("idea", "launch") == f"'launch' is not a stage gate: {', '.join(STAGES)}"


def test_a_decision_needs_the_quorum() -> None:
    assert quorum_refusal(present=3, members=5, quorum=3) is None
    assert quorum_refusal(present=0, members=1, quorum=1) == (
        "quorum not met: 0 of 1 committee members present, the committee needs 1"
    )


def test_an_agreement_is_in_force_from_its_first_to_its_last_day_when_signed() -> None:
    start, end = date(2026, 1, 1), date(2026, 12, 31)
    assert not in_force("active", start, end, date(2025, 12, 31))
    assert in_force("active", start, end, start)
    assert in_force("active", start, end, end)
    assert not in_force("active", start, end, date(2027, 1, 1))
    assert in_force("active", start, None, date(2099, 1, 1))
    for status in ("draft", "terminated"):
        assert not in_force(status, start, end, date(2026, 6, 1))
        assert agreement_state(status, start, end, date(2026, 6, 1)) == status
    assert agreement_state("active", start, end, date(2025, 6, 1)) == "not_started"
    assert expiring(end, date(2026, 12, 1))
    assert not expiring(end, date(2026, 11, 30))
    assert not expiring(None, date(2026, 1, 1))


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("scan.png", b"%PDF-1.4", "the content is not a .png file"),
        ("notes.txt", b"\xff\xfe\x00", "a .txt document must be UTF-8 text"),
        ("empty.pdf", b"", "the file is empty"),
        ("script.js", b"alert(1)", ".js: the centre keeps"),
        ("a/b.pdf", b"%PDF-", "is not a plain file name"),
    ],
)
def test_a_document_is_refused_when_its_bytes_or_name_are_wrong(
    filename: str, content: bytes, message: str
) -> None:
    _, problems = check_document(filename, content)
    assert any(message in p.message for p in problems), problems


def test_a_document_type_comes_from_its_name_checked_against_its_bytes() -> None:
    assert check_document("Photo.JPEG", b"\xff\xd8\xff\xe0") == ("image/jpeg", [])
    assert check_document("minutes.txt", "会议纪要".encode()) == ("text/plain", [])
