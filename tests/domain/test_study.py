"""Every validation rule of the study language, with the line and column it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortia.domain.study import ItemType, Study, schedule_table
from consortia.domain.study_yaml import load_study, load_study_text, study_to_yaml
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
        "show_if, identifier, help, max_length, source"
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


# --- randomisation schemes ----------------------------------------------------------------

RANDOMISED = BASE.replace(
    "  a: {label: {en: A, zh: 甲}, ratio: 2}\n",
    "  a: {label: {en: A, zh: 甲}, ratio: 2, code: X}\n"
    "  b: {label: {en: B, zh: 乙}, ratio: 1, code: Y}\n",
)
BLOCKS = (
    RANDOMISED
    + """\
randomisation:
  method: permuted_blocks
  block_sizes: [3, 6]
  strata: [site, demo.smoker]
"""
)
MINIMISATION = (
    RANDOMISED
    + """\
randomisation:
  method: minimisation
  factors:
    - {factor: site, weight: 1}
    - {factor: demo.smoker, weight: 2.5}
  imbalance: variance
  probability: 0.9
"""
)


def test_a_permuted_block_scheme_loads_with_its_strata_and_arm_codes() -> None:
    study = load_study_text(BLOCKS, "s.yaml")

    assert study.randomisation is not None
    assert study.randomisation.method == "permuted_blocks"
    assert study.randomisation.block_sizes == (3, 6)
    assert study.randomisation.factor_names == ("site", "demo.smoker")
    assert study.randomisation.blocks_per_stratum == 50
    assert [arm.code for arm in study.arms.values()] == ["X", "Y"]
    assert load_study_text(study_to_yaml(study), "again.yaml") == study


def test_a_minimisation_scheme_loads_with_weights_imbalance_and_probability() -> None:
    study = load_study_text(MINIMISATION, "s.yaml")

    scheme = study.randomisation
    assert scheme is not None
    assert [(f.factor, f.weight) for f in scheme.factors] == [("site", 1.0), ("demo.smoker", 2.5)]
    assert (scheme.imbalance, scheme.probability) == ("variance", 0.9)
    default = load_study_text(MINIMISATION.replace("  probability: 0.9\n", ""), "s.yaml")
    assert default.randomisation is not None
    assert default.randomisation.probability == 0.8


def test_every_misfit_of_a_block_scheme_is_reported_at_once_at_its_line() -> None:
    text = (
        RANDOMISED.replace("ratio: 1, code: Y", "ratio: 1, code: X")
        + """\
randomisation:
  method: permuted_blocks
  block_sizes: [3, 4, 3]
  strata: [site, demo.age, demo.smoker, demo.smoking, lab.smoker, site, region]
  probability: 0.9
"""
    )
    assert problems(text) == [
        "s.yaml:11:46: arms.b.code: duplicate arm: allocation code 'X' is also arm 'a''s",
        "s.yaml:49:20: randomisation.block_sizes[1]: block size 4 is not a positive multiple "
        "of 3, the sum of the arm ratios 2:1 (a:b); use 6, 9, …",
        "s.yaml:49:23: randomisation.block_sizes[2]: duplicate block size 3",
        "s.yaml:50:18: randomisation.strata[1]: demo.age is an integer item (without a code "
        "list); a factor must be a choice item (one code of a code list per subject)",
        "s.yaml:50:41: randomisation.strata[3]: item 'smoking' is not in form 'demo'; its "
        "choice items: smoker",
        "s.yaml:50:55: randomisation.strata[4]: form 'lab' is not defined; defined forms: demo",
        "s.yaml:50:67: randomisation.strata[5]: duplicate factor 'site' (also at index 0)",
        "s.yaml:50:73: randomisation.strata[6]: 'region' is neither 'site' nor form.item "
        "(e.g. eligibility.disease_status)",
        "s.yaml:51:3: randomisation.probability: probability applies to minimisation, "
        "not permuted_blocks",
    ]


def test_every_misfit_of_a_minimisation_scheme_is_reported_at_once_at_its_line() -> None:
    text = (
        RANDOMISED.replace("{en: B, zh: 乙}, ratio: 1, code: Y}", "{en: a, zh: 乙}, ratio: 1}")
        + """\
randomisation:
  method: minimisation
  factors:
    - {factor: demo.decade}
    - {factor: site, weight: 0}
  probability: 0.5
  block_sizes: [3]
"""
    )
    assert problems(text) == [
        "s.yaml:11:3: arms.b: every arm needs an allocation code once one has (given for a)",
        "s.yaml:11:19: arms.b.label.en: duplicate arm: label 'a' is also arm 'a''s",
        "s.yaml:50:16: randomisation.factors[0].factor: item 'decade' is not in form 'demo'; "
        "its choice items: smoker",
        "s.yaml:51:30: randomisation.factors[1].weight: weight must be a positive number (got 0)",
        "s.yaml:52:16: randomisation.probability: probability 0.5 is outside (0.5, 1]: the arm "
        "that minimises the imbalance must be the more likely (0.8 is usual)",
        "s.yaml:53:3: randomisation.block_sizes: block_sizes applies to permuted_blocks, not "
        "minimisation",
    ]


@pytest.mark.parametrize("probability", ["0.51", "1", "1.0"])
def test_a_probability_in_the_half_open_interval_is_accepted(probability: str) -> None:
    study = load_study_text(MINIMISATION.replace("0.9", probability), "s.yaml")
    assert study.randomisation is not None
    assert study.randomisation.probability == float(probability)


@pytest.mark.parametrize("probability", ["0.4", "1.01", "-1"])
def test_a_probability_outside_the_half_open_interval_is_refused(probability: str) -> None:
    message = only_problem(MINIMISATION.replace("0.9", probability))
    assert message.startswith(f"s.yaml:53:16: randomisation.probability: probability {probability}")


def test_a_factor_needs_a_single_choice_outside_repeating_groups() -> None:
    text = (
        RANDOMISED.replace("type: choice", "type: multichoice")
        + "randomisation: {method: permuted_blocks, block_sizes: [3], strata: [demo.smoker]}\n"
    )
    assert only_problem(text) == (
        "s.yaml:47:69: randomisation.strata[0]: demo.smoker is a multichoice item (several "
        "codes per subject); a factor must be a choice item (one code of a code list per "
        "subject)"
    )
    repeating = RANDOMISED.replace("      main:\n", "      main:\n        repeating: true\n", 1)
    assert only_problem(
        repeating + "randomisation: {method: minimisation, factors: [{factor: demo.smoker}]}\n"
    ) == (
        "s.yaml:48:58: randomisation.factors[0].factor: demo.smoker is in the repeating group "
        "'main'; a factor needs one value per subject"
    )


def test_a_scheme_needs_two_arms_block_sizes_and_sites_for_a_site_factor() -> None:
    text = BASE.replace("sites:\n  SG01: {name: Hospital, country: SG, node: sg}\n", "") + (
        "randomisation: {method: permuted_blocks, strata: [site]}\n"
    )
    assert problems(text) == [
        "s.yaml:44:1: randomisation: randomisation needs at least two arms; arms defines 1",
        "s.yaml:44:1: randomisation: permuted_blocks needs block_sizes, e.g. [4, 6] for the arm "
        "ratios 2 (a)",
        "s.yaml:44:51: randomisation.strata[0]: factor 'site' needs sites; this study defines none",
    ]


def test_a_non_positive_ratio_in_a_randomised_study_is_refused_at_its_line() -> None:
    message = only_problem(BLOCKS.replace("ratio: 1, code: Y", "ratio: 0, code: Y"))
    assert message.startswith("s.yaml:11:37: arms.b.ratio: input should be greater than 0")


def test_the_cart_template_is_randomised_one_to_one_by_site_and_disease_status() -> None:
    from consortia.domain.templates import load_template

    study = load_template("cart-lbcl")
    scheme = study.randomisation
    assert scheme is not None
    assert scheme.method == "permuted_blocks"
    assert scheme.strata == ("site", "eligibility.disease_status")
    assert scheme.block_sizes == (4, 6)
    assert {code: (arm.ratio, arm.code) for code, arm in study.arms.items()} == {
        "car_t": (1, "A"),
        "soc": (1, "B"),
    }


def test_a_scheme_of_the_wrong_shape_is_reported_at_each_value_with_what_would_be_right() -> None:
    text = RANDOMISED + (
        "randomisation:\n  method: stratified\n  imbalance: sd\n  block_sizes: [four]\n"
        "  colour: red\n"
    )
    assert problems(text) == [
        "s.yaml:48:11: randomisation.method: input should be 'permuted_blocks' or "
        "'minimisation' (got 'stratified')",
        "s.yaml:49:14: randomisation.imbalance: input should be 'range' or 'variance' (got 'sd')",
        "s.yaml:50:17: randomisation.block_sizes[0]: input should be a valid integer, unable to "
        "parse string as an integer (got 'four')",
        "s.yaml:51:3: randomisation.colour: unknown key 'colour'; expected one of: method, "
        "block_sizes, strata, blocks_per_stratum, factors, imbalance, probability, gates",
    ]


def test_randomisation_gates_name_boolean_items_and_each_misfit_is_reported_at_its_line() -> None:
    text = (
        RANDOMISED.replace(
            "          smoker:\n",
            "          consented:\n"
            "            type: boolean\n"
            "            label: {en: Consent, zh: 同意}\n"
            "          smoker:\n",
        )
        + """\
randomisation:
  method: permuted_blocks
  block_sizes: [3]
  gates: [demo.consented, demo.smoker, demo.nothing, consent, demo.consented]
"""
    )
    assert problems(text) == [
        "s.yaml:53:27: randomisation.gates[1]: demo.smoker is a choice item; a gate must be a "
        "boolean item (yes/no)",
        "s.yaml:53:40: randomisation.gates[2]: item 'nothing' is not in form 'demo'; its "
        "boolean items: consented",
        "s.yaml:53:54: randomisation.gates[3]: 'consent' is not form.item "
        "(e.g. consent.consent_given)",
        "s.yaml:53:63: randomisation.gates[4]: duplicate gate 'demo.consented'",
    ]
    fixed = text.replace(", demo.smoker, demo.nothing, consent, demo.consented", "")
    study = load_study_text(fixed, "s.yaml")
    assert study.randomisation is not None
    assert study.randomisation.gates == ("demo.consented",)


def test_a_derived_variable_may_read_an_item_at_one_of_the_events_collecting_its_form() -> None:
    followup = """\
  followup:
    label: {en: Follow-up, zh: 随访}
    day: 30
    forms: [demo]
forms:
"""
    two_events = BASE.replace("forms:\n", followup, 1)
    assert two_events.count("forms: [demo]") == 2
    study = load_study_text(
        two_events.replace("age // 10", "age_followup - age_baseline"), "s.yaml"
    )
    assert study.derived["decade"].expression == "age_followup - age_baseline"
    # an event that does not collect the form, or a form at one event only: refused
    message = only_problem(two_events.replace("age // 10", "age_month3"))
    assert message.startswith("s.yaml:49:17: derived.decade.expression:"), message
    assert "age_month3" in message
    message = only_problem(BASE.replace("age // 10", "age_baseline"))
    assert "age_baseline" in message, message
    # edit checks read the form's own values, not an item at an event
    message = only_problem(
        two_events.replace("expression: age >= 18", "expression: age_baseline >= 18")
    )
    assert "age_baseline" in message, message
