"""The form page's inputs and the values read back from a posted form (no server needed)."""

from __future__ import annotations

import pytest

from consortia.domain.templates import load_template
from consortia.domain.validation import validate_form
from consortia.web.form_fields import flat_texts, groups, posted_values

STUDY = load_template("cart-lbcl")


def test_plain_items_become_one_row_of_typed_inputs() -> None:
    (main,) = groups(STUDY, STUDY.forms["eligibility"], "en", {"ecog": "1"}, {"ecog": "bad"})
    assert not main.repeating
    (row,) = main.rows
    kinds = {field.name: field.kind for field in row}
    assert kinds == {
        "histology": "choice",
        "disease_status": "choice",
        "prior_lines": "number",
        "ecog": "number",
        "ldh_elevated": "boolean",
        "eligible": "boolean",
    }
    ecog = next(field for field in row if field.name == "ecog")
    assert (ecog.value, ecog.error, ecog.required) == ("1", "bad", True)
    histology = next(field for field in row if field.name == "histology")
    assert ("dlbcl_nos", "DLBCL not otherwise specified") in histology.choices
    zh = groups(STUDY, STUDY.forms["eligibility"], "zh", {}, {})[0].rows[0]
    assert zh[3].label == "ECOG体能状态"


def test_a_repeating_group_has_a_row_per_instance_and_one_more() -> None:
    shown = flat_texts(
        {"events": [{"ae_term": "Anaemia"}, {}, {"ae_serious_criteria": "death|disability"}]}
    )
    assert shown == {
        "events[1].ae_term": "Anaemia",
        "events[3].ae_serious_criteria": "death|disability",
    }
    (events,) = groups(STUDY, STUDY.forms["ae"], "en", shown, {})
    assert events.repeating
    assert len(events.rows) == 4
    assert [field.name for field in events.rows[3]][:2] == ["events[4].ae_term", "events[4].ae_soc"]
    criteria = next(f for f in events.rows[2] if f.name == "events[3].ae_serious_criteria")
    assert (criteria.kind, criteria.chosen) == ("multichoice", frozenset({"death", "disability"}))


def test_posted_fields_become_the_values_save_form_takes() -> None:
    posted = {
        "csrf_token": "t",
        "version": "3",
        "events[1].ae_term": "Anaemia",
        "events[1].ae_serious_criteria::death": "1",
        "events[1].ae_serious_criteria::disability": "1",
        "events[1].ae_serious_criteria::": "1",  # no code: ignored
        "events[3].ae_grade": "2",  # row 2 left empty in between
        "events[4].ae_term": " ",  # the empty row at the end
        "events[x].ae_term": "ignored",
        "events[1].not_an_item": "ignored",
        "ecog": "ignored: another form's item",
    }
    values = posted_values(STUDY.forms["ae"], posted)
    assert values == {
        "events": [
            {"ae_term": "Anaemia", "ae_serious_criteria": "death|disability"},
            {},
            {"ae_grade": "2"},
        ]
    }
    plain = posted_values(STUDY.forms["eligibility"], {"ecog": "1", "prior_lines": ""})
    assert plain == {"ecog": "1"}  # an empty input is a missing value


@pytest.mark.parametrize("ecog", ["0", "5"])
def test_what_the_page_posts_is_what_validation_reads(ecog: str) -> None:
    values = posted_values(
        STUDY.forms["eligibility"],
        {
            "histology": "dlbcl_nos",
            "disease_status": "primary_refractory",
            "prior_lines": "2",
            "ecog": ecog,
            "eligible": "1",
        },
    )
    check = validate_form(STUDY, "eligibility", values, complete=True)
    assert not check.errors
    assert check.values["eligible"] is True
    assert check.values["ecog"] == int(ecog)
