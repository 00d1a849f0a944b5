"""Validating entered form values: each rule refuses what it should, at the exact path."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import pytest

from consortia.domain import cart_toxicity, grading
from consortia.domain.study import Study
from consortia.domain.study_yaml import load_study_text
from consortia.domain.templates import load_template
from consortia.domain.validation import FormCheck, compute_derived, parse_value, validate_form
from consortia.exceptions import NotFoundError, StudyDefinitionError, ValidationError

STUDY = """\
study:
  id: T1
  title: {en: Test, zh: 测试}
  phase: "2"
  sponsor: Centre
  version: "1"
code_lists:
  sex:
    - {code: F, label: {en: Female, zh: 女}}
    - {code: M, label: {en: Male, zh: 男}}
  lugano:
    - {code: CR, label: {en: Complete, zh: 完全}}
    - {code: PR, label: {en: Partial, zh: 部分}}
    - {code: SD, label: {en: Stable, zh: 稳定}}
    - {code: PD, label: {en: Progressive, zh: 进展}}
  symptoms:
    - {code: fever, label: {en: Fever, zh: 发热}}
    - {code: hypotension, label: {en: Hypotension, zh: 低血压}}
    - {code: hypoxia, label: {en: Hypoxia, zh: 低氧}}
events:
  visit: {label: {en: Visit, zh: 访视}, day: 0, forms: [demographics, vitals, ae]}
forms:
  demographics:
    label: {en: Demographics, zh: 人口学}
    groups:
      main:
        items:
          sex: {type: choice, code_list: sex, label: {en: Sex, zh: 性别}, required: true}
  vitals:
    label: {en: Vitals, zh: 生命体征}
    groups:
      main:
        items:
          visit_date: {type: date, label: {en: Date, zh: 日期}, required: true}
          sampled_at: {type: datetime, label: {en: Sampled, zh: 采样}}
          visit_time: {type: time, label: {en: Time, zh: 时间}}
          temp:
            type: decimal
            precision: 1
            label: {en: Temperature, zh: 体温}
            range: {min: 30, max: 44}
            soft_range: {min: 35, max: 41}
            required: true
          heart_rate:
            type: integer
            label: {en: Heart rate, zh: 心率}
            range: {min: 20}
          fever: {type: boolean, label: {en: Fever, zh: 发热}}
          symptoms: {type: multichoice, code_list: symptoms, label: {en: Symptoms, zh: 症状}}
          response: {type: choice, code_list: lugano, label: {en: Response, zh: 疗效}}
          note: {type: text, max_length: 10, label: {en: Note, zh: 备注}}
          pregnant:
            type: boolean
            label: {en: Pregnant, zh: 妊娠}
            show_if: sex == 'F'
            required: true
          flow:
            type: decimal
            precision: 1
            label: {en: Flow, zh: 流量}
            show_if: symptoms['hypoxia']
    checks:
      - name: fever_is_hot
        expression: not fever or temp >= 38
        severity: warning
        message: {en: Fever ticked but temperature below 38, zh: 勾选发热但体温低于38}
        item: temp
      - name: sampled_after_visit
        expression: days_between(visit_date, sampled_at) >= 0
        severity: error
        message: {en: Sampled before the visit, zh: 采样早于访视}
        item: sampled_at
  ae:
    label: {en: Adverse events, zh: 不良事件}
    groups:
      events:
        repeating: true
        items:
          ae_term: {type: text, label: {en: Term, zh: 术语}, required: true}
          ae_grade:
            type: integer
            label: {en: Grade, zh: 分级}
            range: {min: 1, max: 5}
            required: true
          ae_serious: {type: boolean, label: {en: Serious, zh: 严重}, required: true}
    checks:
      - name: grade5_is_serious
        expression: ae_grade != 5 or ae_serious == True
        severity: error
        message: {en: A grade 5 event is serious, zh: 5级事件属于严重}
        item: ae_serious
derived:
  hot:
    type: boolean
    label: {en: Hot, zh: 热}
    expression: temp_f >= 100.4
  temp_f:
    type: decimal
    label: {en: Fahrenheit, zh: 华氏}
    expression: temp * 9 / 5 + 32
  days_to_note:
    type: integer
    label: {en: Days to note, zh: 天数}
    expression: days_between(visit_date, note)
"""


@pytest.fixture(scope="module")
def study() -> Study:
    return load_study_text(STUDY, "t1.yaml")


def _problems(check: FormCheck, kind: str = "errors") -> list[tuple[str, str]]:
    return [(problem.path, problem.message) for problem in getattr(check, kind)]


VALID = {"visit_date": "2024-03-01", "temp": "37.2"}


@pytest.mark.parametrize(
    ("item", "raw", "message"),
    [
        ("heart_rate", "72.5", "'72.5' is not a whole number"),
        ("heart_rate", "abc", "'abc' is not a whole number"),
        ("heart_rate", True, "True is not a whole number"),
        ("temp", "warm", "'warm' is not a number"),
        ("temp", "37.25", "37.25 has 2 decimal places; at most 1 is allowed"),
        ("visit_date", "2024-02-30", "'2024-02-30' is not a date (YYYY-MM-DD)"),
        ("visit_date", "01/03/2024", "'01/03/2024' is not a date (YYYY-MM-DD)"),
        (
            "sampled_at",
            "2024-03-01 25:00",
            "'2024-03-01 25:00' is not a date and time (YYYY-MM-DDTHH:MM[:SS])",
        ),
        ("visit_time", "8am", "'8am' is not a time (HH:MM[:SS])"),
        ("fever", "maybe", "'maybe' is not yes or no; use true/false, yes/no or 1/0"),
        ("response", "x", "'x' is not a code of lugano: CR, PR, SD, PD"),
        ("symptoms", "fever|rash", "'rash' is not a code of symptoms: fever, hypotension, hypoxia"),
        ("note", "far too long", "is 12 characters long; at most 10 are allowed"),
        ("note", 12, "12 is not text"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_at_its_path(
    study: Study, item: str, raw: object, message: str
) -> None:
    check = validate_form(study, "vitals", VALID | {item: raw}, complete=False)

    assert _problems(check) == [(f"forms.vitals.{item}", message)]
    assert item not in check.values


@pytest.mark.parametrize(
    ("item", "raw", "typed"),
    [
        ("heart_rate", " 72 ", 72),
        ("heart_rate", 72.0, 72),
        ("temp", "36.50", Decimal("36.50")),
        ("temp", 36.5, Decimal("36.5")),
        ("visit_date", date(2024, 3, 1), date(2024, 3, 1)),
        ("sampled_at", "2024-03-01T08:30", datetime(2024, 3, 1, 8, 30)),
        ("visit_time", "08:30", time(8, 30)),
        ("fever", "YES", True),
        ("fever", "0", False),
        ("fever", 1, True),
        ("response", "PR", "PR"),
        ("symptoms", "hypoxia|fever", ("fever", "hypoxia")),
        ("symptoms", ["fever", "fever"], ("fever",)),
    ],
)
def test_text_and_typed_values_are_parsed_by_item_type(
    study: Study, item: str, raw: object, typed: object
) -> None:
    check = validate_form(
        study, "vitals", {"visit_date": "2024-03-01", "temp": "37.2", item: raw}, complete=False
    )

    assert check.errors == ()
    assert check.values[item] == typed


def test_a_value_outside_the_hard_range_is_refused_with_the_range(study: Study) -> None:
    check = validate_form(
        study, "vitals", VALID | {"temp": "45.0", "heart_rate": "12"}, complete=False
    )

    assert _problems(check) == [
        ("forms.vitals.temp", "45.0 is outside 30–44"),
        ("forms.vitals.heart_rate", "12 is below the minimum 20"),
    ]
    assert "temp" not in check.values


def test_a_value_outside_the_soft_range_is_a_warning_and_is_kept(study: Study) -> None:
    check = validate_form(study, "vitals", VALID | {"temp": "41.5"}, complete=False)

    assert check.ok
    assert _problems(check, "warnings") == [
        ("forms.vitals.temp", "41.5 is outside 35–41, the expected range; please confirm")
    ]
    assert check.values["temp"] == Decimal("41.5")


def test_a_missing_required_item_is_an_error_only_when_the_form_is_complete(study: Study) -> None:
    values = {"visit_date": "2024-03-01", "temp": ""}

    assert validate_form(study, "vitals", values, complete=False).ok
    check = validate_form(study, "vitals", values, complete=True)
    assert _problems(check) == [("forms.vitals.temp", "is required")]


def test_a_value_in_an_item_hidden_by_show_if_is_refused(study: Study) -> None:
    check = validate_form(
        study, "vitals", VALID | {"flow": "2.0", "symptoms": "fever"}, complete=False
    )

    assert _problems(check) == [
        (
            "forms.vitals.flow",
            "has a value but is hidden: its show_if (symptoms['hypoxia']) is false",
        )
    ]
    assert "flow" not in check.values
    shown = validate_form(
        study, "vitals", VALID | {"flow": "2.0", "symptoms": "hypoxia"}, complete=False
    )
    assert shown.ok
    assert shown.values["flow"] == Decimal("2.0")


def test_a_show_if_on_another_form_is_decided_by_the_context_and_otherwise_left_open(
    study: Study,
) -> None:
    unknown = validate_form(study, "vitals", VALID | {"pregnant": "no"}, complete=True)
    assert unknown.ok
    assert validate_form(study, "vitals", VALID, complete=True).ok  # not required either

    male = validate_form(
        study, "vitals", VALID | {"pregnant": "no"}, complete=True, context={"sex": "M"}
    )
    assert _problems(male) == [
        ("forms.vitals.pregnant", "has a value but is hidden: its show_if (sex == 'F') is false")
    ]
    female = validate_form(study, "vitals", VALID, complete=True, context={"sex": "F"})
    assert _problems(female) == [("forms.vitals.pregnant", "is required")]


def test_an_error_edit_check_refuses_the_form_with_its_message(study: Study) -> None:
    check = validate_form(
        study, "vitals", VALID | {"sampled_at": "2024-02-28T09:00"}, complete=False
    )

    assert _problems(check) == [
        ("forms.vitals.sampled_at", "Sampled before the visit (edit check sampled_after_visit)")
    ]


def test_a_warning_edit_check_becomes_a_warning(study: Study) -> None:
    check = validate_form(study, "vitals", VALID | {"fever": "yes"}, complete=False)

    assert check.ok
    assert _problems(check, "warnings") == [
        ("forms.vitals.temp", "Fever ticked but temperature below 38 (edit check fever_is_hot)")
    ]


def test_an_edit_check_does_not_fire_while_a_name_it_reads_is_missing(study: Study) -> None:
    check = validate_form(
        study, "vitals", {"fever": "yes", "visit_date": "2024-03-01"}, complete=False
    )

    assert check.ok
    assert check.warnings == ()


def test_items_of_a_repeating_group_are_checked_per_instance_counted_from_1(study: Study) -> None:
    events = [
        {"ae_term": "Nausea", "ae_grade": "2", "ae_serious": "no"},
        {"ae_term": "Sepsis", "ae_grade": "6", "ae_serious": "yes"},
        {"ae_term": "Death", "ae_grade": "5", "ae_serious": "no"},
        {"ae_grade": "1"},
    ]
    check = validate_form(study, "ae", {"events": events}, complete=True)

    assert _problems(check) == [
        ("forms.ae.events[2].ae_grade", "6 is outside 1–5"),
        ("forms.ae.events[4].ae_term", "is required"),
        ("forms.ae.events[4].ae_serious", "is required"),
        (
            "forms.ae.events[3].ae_serious",
            "A grade 5 event is serious (edit check grade5_is_serious)",
        ),
    ]
    instances = check.values["events"]
    assert isinstance(instances, list)
    assert instances[0] == {
        "ae_term": "Nausea",
        "ae_grade": 2,
        "ae_serious": False,
    }


def test_a_repeating_group_must_be_a_list_of_mappings(study: Study) -> None:
    assert _problems(validate_form(study, "ae", {"events": "Nausea"}, complete=False)) == [
        ("forms.ae.events", "a repeating group takes a list of instances (mappings of item values)")
    ]
    assert _problems(validate_form(study, "ae", {"events": ["Nausea"]}, complete=False)) == [
        ("forms.ae.events[1]", "an instance is a mapping of item names to values")
    ]


def test_names_that_are_not_items_of_the_form_are_refused_saying_where_they_belong(
    study: Study,
) -> None:
    check = validate_form(
        study, "vitals", VALID | {"sex": "F", "wieght": "70", "ae_grade": "1"}, complete=False
    )

    items = (
        "visit_date, sampled_at, visit_time, temp, heart_rate, fever, symptoms, response, "
        "note, pregnant, flow"
    )
    assert _problems(check) == [
        (
            "forms.vitals.sex",
            f"is not an item of form vitals (it belongs to form demographics); its items: {items}",
        ),
        ("forms.vitals.wieght", f"is not an item of form vitals; its items: {items}"),
        (
            "forms.vitals.ae_grade",
            f"is not an item of form vitals (it belongs to form ae); its items: {items}",
        ),
    ]
    in_instance = validate_form(study, "ae", {"events": [{"ae_trem": "x"}]}, complete=False)
    assert _problems(in_instance) == [
        (
            "forms.ae.events[1].ae_trem",
            "is not an item of group events; its items: ae_term, ae_grade, ae_serious",
        ),
    ]
    loose = validate_form(study, "ae", {"ae_grade": "1"}, complete=False)
    assert _problems(loose) == [
        ("forms.ae.ae_grade", "belongs to the repeating group events; give it inside events[...]")
    ]


def test_an_unknown_form_is_not_found(study: Study) -> None:
    with pytest.raises(NotFoundError, match="form 'labs' is not in study T1; forms: demographics"):
        validate_form(study, "labs", {}, complete=False)


def test_a_derived_variable_that_cannot_be_computed_is_an_error_at_its_name(study: Study) -> None:
    check = validate_form(study, "vitals", VALID | {"note": "tomorrow"}, complete=False)

    assert _problems(check) == [
        (
            "derived.days_to_note",
            "cannot be computed: days_between(): 'tomorrow' is not an ISO date (YYYY-MM-DD)",
        ),
    ]


def test_derived_variables_are_computed_in_dependency_order(study: Study) -> None:
    derived = compute_derived(study, {"temp": Decimal("38.5"), "visit_date": date(2024, 3, 1)})

    assert derived == {"temp_f": Decimal("101.3"), "hot": True, "days_to_note": None}


def test_derived_variables_in_a_cycle_are_a_study_definition_error() -> None:
    cyclic = STUDY.replace("expression: temp * 9 / 5 + 32", "expression: 1 if hot else 0")
    study = load_study_text(cyclic)

    with pytest.raises(StudyDefinitionError) as caught:
        compute_derived(study, {})
    (problem,) = caught.value.problems
    assert (problem.path, problem.message) == (
        "derived.hot",
        "derived variables form a cycle: hot → temp_f → hot",
    )


def test_inconsistent_inputs_of_a_derived_grade_are_refused_naming_the_variable() -> None:
    study = load_template("cart-lbcl")
    values = {
        "max_temp": 39,
        "hypotension": False,
        "vasopressors": 1,
        "vasopressin": False,
        "oxygen": "none",
    }

    with pytest.raises(ValidationError) as caught:
        compute_derived(study, values)
    (problem,) = caught.value.problems
    assert problem.path == "derived.crs_grade_astct"
    assert "hypotension" in problem.message


def test_parse_value_parses_one_item_and_refuses_with_the_item_name() -> None:
    study = load_template("cart-lbcl")

    assert parse_value(study, "oxygen_flow", "4.5") == Decimal("4.5")
    assert parse_value(study, "ecog", "") is None
    with pytest.raises(ValidationError) as caught:
        parse_value(study, "ecog", "one")
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("ecog", "'one' is not a whole number")
    ]


CRS_DAY = {
    "assessment_date": "2024-05-02",
    "max_temp": "39.1",
    "hypotension": "1",
    "vasopressors": "1",
    "vasopressin": "1",
    "oxygen": "low_flow_nasal_cannula",
    "oxygen_flow": "4",
    "antipyretic": "1",
    "tocilizumab": "1",
    "corticosteroids": "0",
    "consciousness": "awake",
    "ice_orientation": "3",
    "ice_naming": "3",
    "ice_commands": "1",
    "ice_writing": "0",
    "ice_attention": "1",
    "seizure": "none",
    "motor_weakness": "0",
    "icp_oedema": "none",
}


def test_the_cart_crs_form_derives_the_same_grades_as_the_grading_functions() -> None:
    study = load_template("cart-lbcl")
    check = validate_form(study, "crs_icans", CRS_DAY, complete=True)

    assert check.ok, check.errors
    derived = compute_derived(study, check.values)
    assert (
        derived["crs_grade_astct"]
        == cart_toxicity.crs_grade(
            max_temperature_c=39.1,
            hypotension=True,
            vasopressors=1,
            vasopressin=True,
            oxygen=grading.OxygenSupport.LOW_FLOW_NASAL_CANNULA,
            oxygen_flow_l_min=4,
            fever_masked=True,
        )
        == 3
    )
    assert derived["ice_total"] == 8
    assert (
        derived["icans_grade_astct"]
        == cart_toxicity.icans_grade(
            ice=8,
            consciousness=grading.Consciousness.AWAKE,
            seizure=grading.Seizure.NONE,
            motor_weakness=False,
            icp_oedema=grading.Oedema.NONE,
        )
        == 1
    )


def test_an_unarousable_patient_needs_no_ice_items_and_may_not_have_them() -> None:
    study = load_template("cart-lbcl")
    ice = {name: CRS_DAY[name] for name in CRS_DAY if name.startswith("ice_")}
    unarousable = {k: v for k, v in CRS_DAY.items() if k not in ice} | {
        "consciousness": "unarousable"
    }

    check = validate_form(study, "crs_icans", unarousable, complete=True)
    assert check.ok
    assert compute_derived(study, check.values)["icans_grade_astct"] == 4
    refused = validate_form(study, "crs_icans", unarousable | ice, complete=True)
    assert [p.path for p in refused.errors] == [f"forms.crs_icans.{name}" for name in ice]


def test_a_vasopressor_without_hypotension_is_refused_by_the_cart_edit_check() -> None:
    study = load_template("cart-lbcl")
    check = validate_form(study, "crs_icans", CRS_DAY | {"hypotension": "0"}, complete=True)

    assert _problems(check) == [
        (
            "forms.crs_icans.hypotension",
            "A vasopressor was given, so hypotension must be "
            "recorded (edit check pressors_need_hypotension)",
        ),
    ]
