"""Every validation rule of the study language, with the line and column it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortia.domain.study import ItemType, Study, load_study, load_study_text, schedule_table
from consortia.exceptions import StudyDefinitionError

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
study:
  id: S1
  title: {en: Study, zh: 研究}
  phase: "2"
  sponsor: Centre
  version: "1"
sites:
  SG01: {name: Hospital, country: SG, node: sg}
arms:
  a: {label: {en: A, zh: 甲}, ratio: 2}
code_lists:
  yn:
    - {code: "1", label: {en: Yes, zh: 是}}
    - {code: "0", label: {en: No, zh: 否}}
events:
  baseline:
    label: {en: Baseline, zh: 基线}
    day: 0
    window: {before: 1, after: 2}
    forms: [demo]
forms:
  demo:
    label: {en: Demographics, zh: 人口学}
    groups:
      main:
        items:
          age:
            type: integer
            label: {en: Age, zh: 年龄}
            range: {min: 18, max: 100}
            soft_range: {min: 20, max: 90}
          smoker:
            type: choice
            code_list: yn
            label: {en: Smoker, zh: 吸烟}
            show_if: age > 18
    checks:
      - name: adult
        expression: age >= 18
        severity: error
        message: {en: Adult, zh: 成人}
derived:
  decade:
    label: {en: Decade, zh: 年代}
    expression: age // 10
"""


def problems(text: str) -> list[str]:
    with pytest.raises(StudyDefinitionError) as info:
        load_study_text(text, "s.yaml")
    return [str(problem) for problem in info.value.problems]


def only_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_the_base_study_is_valid() -> None:
    study = load_study_text(BASE, "s.yaml")
    assert isinstance(study, Study)
    assert study.item("age").type is ItemType.INTEGER
    assert study.item_count == 2


def test_the_example_study_validates() -> None:
    study = load_study(ROOT / "examples" / "cart-tour.yaml")
    assert study.study.id == "CART-TOUR"
    assert "pfs_days" in study.derived


def test_yaml_syntax_error_reports_its_line_and_column() -> None:
    text = BASE.replace("  sponsor: Centre\n", "  sponsor: [Centre\n")
    message = only_problem(text)
    assert message.startswith("s.yaml:6:")
    assert "YAML syntax error" in message


def test_unknown_key_is_reported_at_the_key_with_the_keys_that_would_be_right() -> None:
    text = BASE.replace(
        "            type: integer\n", "            type: integer\n            colour: red\n"
    )
    assert only_problem(text) == (
        "s.yaml:29:13: forms.demo.groups.main.items.age.colour: unknown key 'colour'; "
        "expected one of: type, label, unit, precision, range, soft_range, code_list, required, "
        "show_if, identifier, help, max_length"
    )


def test_wrong_type_is_reported_at_the_value() -> None:
    message = only_problem(BASE.replace("day: 0", "day: soon"))
    assert message.startswith("s.yaml:18:10: events.baseline.day: input should be a valid integer")


def test_duplicate_key_is_reported_with_the_first_definition() -> None:
    text = BASE.replace(
        "  SG01: {name: Hospital, country: SG, node: sg}\n",
        "  SG01: {name: Hospital, country: SG, node: sg}\n"
        "  SG01: {name: Other, country: SG, node: sg}\n",
    )
    assert (
        only_problem(text)
        == "s.yaml:9:3: sites.SG01: duplicate key 'SG01' (first defined at line 8)"
    )


def test_duplicate_item_name_across_forms_is_refused() -> None:
    text = BASE.replace(
        "    checks:\n",
        "      other:\n        items:\n          age:\n"
        "            type: text\n            label: {en: Age, zh: 年龄}\n    checks:\n",
        1,
    )
    message = only_problem(text)
    assert message.startswith(
        "s.yaml:39:11: forms.demo.groups.other.items.age: duplicate item name 'age'"
    )


def test_derived_variable_with_an_item_name_is_refused() -> None:
    message = only_problem(BASE.replace("  decade:\n", "  age:\n"))
    assert message.startswith("s.yaml:43:3: derived.age: derived variable 'age' has the name")


def test_unknown_name_in_an_expression_points_into_the_expression() -> None:
    message = only_problem(BASE.replace("show_if: age > 18", "show_if: age > 18 and sexx == 'F'"))
    assert message.startswith("s.yaml:36:35: forms.demo.groups.main.items.smoker.show_if: show_if:")
    assert "sexx" in message


def test_expression_syntax_error_is_reported() -> None:
    message = only_problem(BASE.replace("expression: age // 10", "expression: age // "))
    assert message.startswith("s.yaml:45:23:")
    assert "derived.decade.expression: derived variable:" in message


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("age.real > 1", "attribute"),
        ("smoker[0] == 1", "multichoice"),
        ("lambda: age", "lambda"),
        ("[a for a in [1, 2]]", "comprehension"),
        ("__import__('os')", ""),
        ("open('x')", "unknown function"),
    ],
)
def test_forbidden_constructs_in_expressions_are_refused(source: str, fragment: str) -> None:
    text = BASE.replace("expression: age >= 18", f'expression: "{source}"')
    found = problems(text)
    assert found, source
    assert all(p.startswith("s.yaml:39:") for p in found), found
    assert any(fragment in p.lower() for p in found), found


def test_hard_range_with_min_above_max_is_refused() -> None:
    found = problems(BASE.replace("range: {min: 18, max: 100}\n", "range: {min: 100, max: 18}\n"))
    assert (
        "s.yaml:30:20: forms.demo.groups.main.items.age.range: min 100 is greater than max 18"
        in found
    )


def test_soft_range_outside_the_hard_range_is_refused() -> None:
    message = only_problem(
        BASE.replace("soft_range: {min: 20, max: 90}", "soft_range: {min: 10, max: 90}")
    )
    assert message.startswith(
        "s.yaml:31:31: forms.demo.groups.main.items.age.soft_range.min: soft min 10"
    )


def test_a_choice_item_without_a_code_list_is_refused() -> None:
    message = only_problem(BASE.replace("            code_list: yn\n", ""))
    assert (
        message
        == "s.yaml:33:19: forms.demo.groups.main.items.smoker.type: a choice item needs a code_list"
    )


def test_an_undefined_code_list_is_refused() -> None:
    message = only_problem(BASE.replace("code_list: yn", "code_list: yesno"))
    assert message.startswith(
        "s.yaml:34:24: forms.demo.groups.main.items.smoker.code_list: code list 'yesno'"
    )


def test_an_empty_code_list_is_refused() -> None:
    text = BASE.replace(
        """  yn:
    - {code: "1", label: {en: Yes, zh: 是}}
    - {code: "0", label: {en: No, zh: 否}}
""",
        "  yn: []\n",
    )
    assert (
        only_problem(text)
        == "s.yaml:12:7: code_lists.yn: code list is empty; give at least one {code, label}"
    )


def test_a_negative_event_window_is_refused() -> None:
    message = only_problem(
        BASE.replace("window: {before: 1, after: 2}", "window: {before: -1, after: 2}")
    )
    assert message.startswith(
        "s.yaml:19:22: events.baseline.window.before: input should be greater than or equal to 0"
    )


def test_a_day_or_window_beyond_a_century_is_refused_at_its_line() -> None:
    # timedelta stops at 999,999,999 days: such a day was accepted, then failed every enrolment
    assert only_problem(BASE.replace("day: 0", "day: 1000000000")).startswith(
        "s.yaml:18:10: events.baseline.day: input should be less than or equal to 36525"
    )
    assert only_problem(BASE.replace("day: 0", "day: -36526")).startswith(
        "s.yaml:18:10: events.baseline.day: input should be greater than or equal to -36525"
    )
    message = only_problem(BASE.replace("after: 2}", "after: 36526}"))
    assert message.startswith("s.yaml:19:32: events.baseline.window.after: input should be less")


def test_a_non_positive_arm_ratio_is_refused() -> None:
    message = only_problem(BASE.replace("ratio: 2", "ratio: 0"))
    assert message.startswith("s.yaml:10:37: arms.a.ratio: input should be greater than 0")


def test_a_form_referenced_by_an_event_must_be_defined() -> None:
    message = only_problem(BASE.replace("forms: [demo]", "forms: [demo, labs]"))
    assert (
        message
        == "s.yaml:20:19: events.baseline.forms[1]: form 'labs' is not defined; defined forms: demo"
    )


def test_a_label_missing_its_chinese_text_is_refused() -> None:
    message = only_problem(BASE.replace("label: {en: Age, zh: 年龄}", "label: {en: Age}"))
    assert message == (
        "s.yaml:29:20: forms.demo.groups.main.items.age.label.zh: "
        "label 'label' needs both 'en' and 'zh' text; 'zh' is missing"
    )


def test_every_problem_is_reported_at_once() -> None:
    text = (
        BASE.replace("ratio: 2", "ratio: 0")
        .replace("day: 0", "day: x")
        .replace("forms: [demo]", "forms: [labs]")
    )
    found = problems(text)
    # pydantic problems come first; the semantic pass runs once the shape is right
    assert len(found) == 2
    fixed = BASE.replace("forms: [demo]", "forms: [labs]").replace("code_list: yn", "code_list: q")
    assert len(problems(fixed)) == 2


def test_schedule_table_marks_forms_per_event() -> None:
    rows = schedule_table(load_study_text(BASE))
    assert rows[0] == ["form", "baseline"]
    assert rows[3] == ["demo (Demographics)", "X"]


# --- hostile files ---------------------------------------------------------------------


def test_aliases_are_refused_so_a_billion_laughs_cannot_expand(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(StudyDefinitionError) as info:
        load_study(path)
    assert "aliases" in str(info.value)


def test_python_tags_are_refused() -> None:
    found = problems(
        BASE.replace("sponsor: Centre", 'sponsor: !!python/object/apply:os.system ["true"]')
    )
    assert found == [
        "s.yaml:5:12: study.sponsor: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"
    ]


def test_non_utf8_bytes_are_reported_with_their_position(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.encode("utf-8").replace(b"sponsor: Centre", b"sponsor: Centr\xe9"))
    with pytest.raises(StudyDefinitionError) as info:
        load_study(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (5, 17)
    assert "not UTF-8" in problem.message


def test_a_50_mb_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as handle:
        handle.write(b"study:\n  description: '")
        handle.write(b"x" * (50 * 1024 * 1024))
        handle.write(b"'\n")
    with pytest.raises(StudyDefinitionError, match="limit"):
        load_study(path)


def test_deeply_nested_yaml_is_refused() -> None:
    found = problems("study: " + "[" * 5000 + "]" * 5000 + "\n")
    assert len(found) == 1
    assert "nest" in found[0]


def test_a_file_that_is_not_a_mapping_is_refused() -> None:
    assert only_problem("- just\n- a list\n") == (
        "s.yaml:1:1: a study file is a mapping with keys study, events, forms, ..."
    )


def test_an_empty_file_is_refused() -> None:
    assert only_problem("") == "s.yaml:1:1: the file is empty"


def test_subscript_columns_count_characters_not_bytes() -> None:
    text = BASE.replace("expression: age >= 18", "expression: \"'年龄' == '年龄' and smoker['1']\"")
    (message,) = problems(text)
    # the expression starts at column 22 (after the quote); smoker is its 18th character,
    # although it is the 26th byte
    assert message.startswith(
        "s.yaml:39:39: forms.demo.checks[0].expression: edit check: 'smoker' is not"
    )
