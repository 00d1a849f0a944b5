"""Checking one subject's forms from a file: problems with their lines, rows ready to write."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

from consortia.domain.file_check import check_subject
from consortia.domain.synthetic import SyntheticData, synthesize
from consortia.domain.templates import load_template
from consortia.domain.values import StudyIndex
from consortia.standards.clinical_data import FileFormRecord, read_wide_csv

STUDY = load_template("cart-lbcl")
INDEX = StudyIndex.of(STUDY)


def _records(edit: tuple[str, str] | None = None) -> dict[str, list[FileFormRecord]]:
    """Two synthetic subjects read back from their CSV, by subject; ``edit`` sets the
    first non-empty cell of a column."""
    return _by_subject(synthesize("cart-lbcl", subjects=2, site="SG01", seed=4), edit)


def _by_subject(
    data: SyntheticData, edit: tuple[str, str] | None = None
) -> dict[str, list[FileFormRecord]]:
    rows = [dict(row) for row in data.records]
    if edit is not None:
        column, value = edit
        next(row for row in rows if row[column].strip())[column] = value
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(data.columns))
    writer.writeheader()
    writer.writerows(rows)
    by_subject: dict[str, list[FileFormRecord]] = defaultdict(list)
    for record in read_wide_csv(STUDY, io.StringIO(text.getvalue()), file="cart.csv"):
        by_subject[record.subject_id].append(record)
    return by_subject


def test_a_subject_that_passes_gets_its_rows_numbered_from_its_first_form() -> None:
    forms = next(iter(_records().values()))
    result = check_subject(STUDY, INDEX, {}, forms, 100)
    assert result.problems == []
    assert [position for position, *_ in result.forms] == list(range(len(forms)))
    assert {row[0] for row in result.values} == set(range(100, 100 + len(forms)))
    assert sum(count for _, count, _, _ in result.forms) == len(result.values)
    assert {name: text for name, text, _ in result.derived}["pfs_event"] in ("0", "1")
    _, count, after, _ = result.forms[0]
    assert sum(len(part) for part in after.values()) == count
    assert set(after) <= {"values", "identifiers"}


def test_a_problem_carries_its_file_and_line_and_nothing_is_prepared_to_derive() -> None:
    forms = next(iter(_records(("ecog", "9")).values()))
    result = check_subject(STUDY, INDEX, {}, forms, 0)
    [problem] = result.problems
    assert (problem.path, problem.message, problem.file) == (
        "forms.eligibility.ecog",
        "9 is outside 0–5",
        "cart.csv",
    )
    assert problem.line == next(r.line for r in forms if r.form == "eligibility")
    assert result.derived == []
    assert len(result.forms) == len(forms) - 1


def test_an_import_derives_the_day_28_response_as_a_form_save_does() -> None:
    # the synthetic generator's own day-28 outcome (computed apart from the study's derived
    # variables) is what the import derives from the file's day-28 response
    data = synthesize("cart-lbcl", subjects=12, site="SG01", seed=4)
    expected = sorted(row["cr_day28"] for row in data.analysis_rows())
    derived = []
    for forms in _by_subject(data).values():
        result = check_subject(STUDY, INDEX, {}, forms, 0)
        assert result.problems == []
        found = {name: text for name, text, _ in result.derived}
        if "rand_date" in {n for r in forms for n in r.values}:
            derived.append(int(found["cr_day28"]))
        else:
            assert "cr_day28" not in found
    assert sorted(derived) == expected
    assert 0 < sum(derived) < len(derived)  # both outcomes occur
