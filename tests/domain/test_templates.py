"""The study templates shipped with the product: each loads cleanly and says what it should."""

from __future__ import annotations

import pytest

from consortia.domain import grading, orthopaedic_scores
from consortia.domain.study import ItemType, Study
from consortia.domain.study_yaml import load_study_text
from consortia.domain.templates import (
    TEMPLATE_NAMES,
    TemplateInfo,
    list_templates,
    load_template,
    template_text,
)
from consortia.exceptions import StudyDefinitionError
from consortia.federation.kinds import get_kind


def _codes(study: Study, code_list: str) -> list[str]:
    return [entry.code for entry in study.code_lists[code_list]]


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_loads_with_no_problems(name: str) -> None:
    study = load_study_text(template_text(name), f"{name}.yaml")

    assert study == load_template(name)
    assert study.item_count > 10
    assert study.analysis_plan


def test_list_templates_gives_each_template_with_titles_in_both_languages() -> None:
    infos = list_templates()

    assert [info.name for info in infos] == list(TEMPLATE_NAMES)
    for info in infos:
        assert isinstance(info, TemplateInfo)
        assert info.title_en
        assert info.title_zh
        assert info.description
        assert info.title_en != info.title_zh
        assert "\n\n" not in info.description


def test_an_unknown_template_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(StudyDefinitionError) as caught:
        load_template("cart")

    (problem,) = caught.value.problems
    assert problem.path == "template"
    assert problem.message == (
        "'cart' is not a study template; known templates: "
        "cart-lbcl, ortho-3dp, glucose-iso15197, ai-diagnostic"
    )


def test_template_text_is_the_shipped_yaml_with_its_comments() -> None:
    text = template_text("ortho-3dp")

    assert text.startswith("# Template:")
    assert "Henderson" in text


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_planned_analysis_is_a_valid_federation_request(name: str) -> None:
    for request in load_template(name).analysis_plan.values():
        parsed = get_kind(request.kind).parse(request.model_dump())
        assert parsed.table == request.table


def test_cart_codes_for_the_grading_functions_are_exactly_the_grading_enum_values() -> None:
    study = load_template("cart-lbcl")

    assert _codes(study, "oxygen_support") == [m.value for m in grading.OxygenSupport]
    assert _codes(study, "consciousness") == [m.value for m in grading.Consciousness]
    assert _codes(study, "seizure") == [m.value for m in grading.Seizure]
    assert _codes(study, "icp_oedema") == [m.value for m in grading.Oedema]
    assert _codes(study, "seriousness") == [m.value for m in grading.SeriousnessCriterion]
    assert _codes(study, "lugano") == ["CR", "PR", "SD", "PD"]


def test_cart_flags_initials_birth_date_and_hospital_number_as_identifiers() -> None:
    study = load_template("cart-lbcl")

    identifiers = {name for _, _, name, item in study.iter_items() if item.identifier}
    assert identifiers == {"initials", "birth_date", "hospital_number"}


def test_cart_documents_randomisation_stratified_by_site_and_disease_status() -> None:
    study = load_template("cart-lbcl")

    assert study.study.description is not None
    text = study.study.description.en
    assert "stratified by site" in text
    assert "disease status" in text
    assert {code: arm.ratio for code, arm in study.arms.items()} == {"car_t": 1, "soc": 1}


def test_cart_schedules_daily_crs_days_1_to_14_and_follow_up_every_6_months() -> None:
    study = load_template("cart-lbcl")

    daily = study.events["crs_daily"]
    assert (daily.day, daily.window.after, daily.repeating) == (1, 13, True)
    response_days = [e.day for e in study.events.values() if "response" in e.forms]
    assert response_days == [28, 91, 182, 365]
    follow_up_days = [e.day for e in study.events.values() if "follow_up" in e.forms]
    assert follow_up_days == [182, 365, 547, 730, 912, 1095]


def test_cart_keeps_ctcae_severity_and_seriousness_as_separate_items() -> None:
    study = load_template("cart-lbcl")

    group = study.forms["ae"].groups["events"]
    assert group.repeating
    assert group.items["ae_grade"].range is not None
    assert (group.items["ae_grade"].range.min, group.items["ae_grade"].range.max) == (1, 5)
    assert group.items["ae_serious"].type is ItemType.BOOLEAN
    assert group.items["ae_serious_criteria"].show_if == "ae_serious == True"
    assert _codes(study, "ctcae_version") == ["5.0", "6.0"]


def test_ortho_henderson_codes_carry_the_grading_labels_in_both_languages() -> None:
    study = load_template("ortho-3dp")

    for entry in study.code_lists["henderson"]:
        member = grading.HendersonType(int(entry.code))
        assert (entry.label.en, entry.label.zh) == (member.label("en"), member.label("zh"))


def test_ortho_scores_the_six_lower_limb_msts_domains_0_to_5() -> None:
    study = load_template("ortho-3dp")

    items = study.forms["msts"].groups["main"].items
    domains = [name for name in items if name != "msts_date"]
    assert len(domains) == len(orthopaedic_scores.MSTS_DOMAINS["lower"]) == 6
    for name in domains:
        bounds = items[name].range
        assert bounds is not None
        assert (bounds.min, bounds.max) == (0, 5)
    assert not study.item("implant_udi").identifier


def test_glucose_reference_has_the_hard_range_20_to_600_mg_dl() -> None:
    study = load_template("glucose-iso15197")

    reference = study.item("ref_mgdl")
    assert reference.range is not None
    assert (reference.range.min, reference.range.max, reference.unit) == (20, 600, "mg/dL")
    assert _codes(study, "reference_method") == ["ysi", "hexokinase"]
    assert study.forms["glucose_readings"].groups["readings"].repeating


def test_ai_score_is_a_decimal_from_0_to_1_with_3_places() -> None:
    study = load_template("ai-diagnostic")

    score = study.item("ai_score")
    assert score.range is not None
    assert (score.type, score.precision, score.range.min, score.range.max) == (
        ItemType.DECIMAL,
        3,
        0,
        1,
    )
    plan = study.analysis_plan["ai_accuracy"].model_dump()
    assert (plan["score"], plan["truth"]) == ("ai_score", "reference_positive")
