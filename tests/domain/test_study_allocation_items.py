"""An item filled from the subject's allocation (``source: randomisation``): allowed only in
a randomised study, on a choice item whose code list is the arms, never required or hidden,
and read by no expression (a rule or derived variable reading it would show blinded readers
the arm); every misfit at its line, like the rest of the study language."""

from __future__ import annotations

import pytest
from test_study import BLOCKS, RANDOMISED

from consortia.domain.study_yaml import load_study_text, study_to_yaml
from consortia.domain.templates import load_template
from consortia.exceptions import StudyDefinitionError

ARM_LIST = (
    "code_lists:\n"
    "  arm:\n"
    "    - {code: a, label: {en: A, zh: 甲}}\n"
    "    - {code: b, label: {en: B, zh: 乙}}\n"
)
ITEM = (
    "          alloc:\n"
    "            type: choice\n"
    "            code_list: arm\n"
    "            source: randomisation\n"
    "            label: {en: Arm, zh: 组别}\n"
)
SMOKER = "            show_if: age > 18\n"


def allocated(text: str, item: str = ITEM) -> str:
    assert "code_lists:\n" in text
    assert SMOKER in text
    return text.replace("code_lists:\n", ARM_LIST, 1).replace(SMOKER, SMOKER + item, 1)


def problems(text: str) -> list[str]:
    with pytest.raises(StudyDefinitionError) as info:
        load_study_text(text, "s.yaml")
    return [str(problem) for problem in info.value.problems]


def test_an_allocation_item_loads_and_is_known_as_one() -> None:
    study = load_study_text(allocated(BLOCKS), "s.yaml")
    assert study.allocation_items() == {"alloc": "demo"}
    assert study.item("alloc").allocated
    assert not study.item("smoker").allocated
    assert load_study_text(study_to_yaml(study), "again.yaml") == study
    # the shipped trial's arm is one
    assert load_template("cart-lbcl").allocation_items() == {"arm": "randomisation"}


def test_an_allocation_item_in_a_study_without_a_scheme_is_refused_at_its_line() -> None:
    assert problems(allocated(RANDOMISED)) == [
        "s.yaml:44:21: forms.demo.groups.main.items.alloc.source: an item filled from the "
        "allocation needs a randomisation scheme"
    ]


def test_an_allocation_item_must_be_a_choice_of_exactly_the_arms() -> None:
    text = allocated(BLOCKS, ITEM.replace("code_list: arm", "code_list: yn"))
    assert problems(text) == [
        "s.yaml:43:24: forms.demo.groups.main.items.alloc.code_list: code list 'yn' must hold "
        "exactly the arms' codes (a, b) for an item filled from the allocation"
    ]
    text = allocated(
        BLOCKS,
        ITEM.replace("type: choice", "type: text").replace("            code_list: arm\n", ""),
    )
    assert problems(text) == [
        "s.yaml:42:19: forms.demo.groups.main.items.alloc.type: an item filled from the "
        "allocation is a choice item of the arms (a, b)"
    ]


def test_an_allocation_item_is_never_required_nor_hidden() -> None:
    item = ITEM + "            required: true\n            show_if: age > 20\n"
    assert problems(allocated(BLOCKS, item)) == [
        "s.yaml:46:23: forms.demo.groups.main.items.alloc.required: an item filled from the "
        "allocation is never typed: drop required",
        "s.yaml:47:22: forms.demo.groups.main.items.alloc.show_if: an item filled from the "
        "allocation is always shown: drop show_if",
    ]


def test_no_rule_or_derived_variable_may_read_an_allocation_item() -> None:
    text = (
        allocated(BLOCKS)
        .replace("expression: age >= 18", "expression: age >= 18 or alloc == 'a'")
        .replace("expression: age // 10", "expression: age // 10 if alloc == 'b' else None")
        .replace("show_if: age > 18", "show_if: age > 18 and alloc == 'a'")
    )
    assert problems(text) == [
        "s.yaml:40:22: forms.demo.groups.main.items.smoker.show_if: reads alloc, the subject's "
        "allocation, which no show_if may read: it would show the arm to blinded readers",
        "s.yaml:48:21: forms.demo.checks[0].expression: reads alloc, the subject's allocation, "
        "which no edit check may read: it would show the arm to blinded readers",
        "s.yaml:54:17: derived.decade.expression: reads alloc, the subject's allocation, which "
        "no derived variable may read: it would show the arm to blinded readers",
    ]


def test_no_status_condition_may_read_an_allocation_item() -> None:
    text = allocated(BLOCKS) + (
        "statuses:\n"
        "  enrolled:\n"
        "    requires:\n"
        "      - {form: demo, complete: true, when: age >= 18 and alloc == 'a'}\n"
    )
    assert problems(text) == [
        "s.yaml:62:58: statuses.enrolled.requires[0].when: status condition: reads alloc, the "
        "subject's allocation, which no condition may read: it would show the arm to blinded "
        "readers"
    ]
