"""Tests for consortia.domain.grading, table-driven from the published criteria.

Every row names its source. "ASTCT" is Lee et al., Biol Blood Marrow Transplant
2019;25:625–638; "CTCAE" is NCI CTCAE v5.0 (2017); "Enneking" is the MSTS score (1993);
"Henderson" is JBJS Am 2011;93:418. Rows marked "choice" test a documented decision of the
module where the source is silent or ambiguous.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from consortia.domain.cart_toxicity import crs_grade, icans_grade, ice_score
from consortia.domain.ctcae import CTCAE_V5_TERMS, AdverseEvent, ctcae_term
from consortia.domain.grading import (
    LABELS,
    Consciousness,
    CtcaeGrade,
    HendersonType,
    Oedema,
    OxygenSupport,
    Seizure,
    SeriousnessCriterion,
)
from consortia.domain.orthopaedic_scores import MstsScore, henderson_type, msts_score
from consortia.exceptions import ValidationError

O2 = OxygenSupport


def _paths(error: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [problem.path for problem in error.value.problems]


# --- ASTCT CRS ------------------------------------------------------------------------------

_NO_ORGAN: dict[str, Any] = {"hypotension": False, "vasopressors": 0, "oxygen": O2.NONE}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # ASTCT CRS grade 1: fever, no hypotension, no hypoxia.
        ({"max_temperature_c": 38.5}, 1),
        # ASTCT: fever is ≥ 38.0 °C — the threshold itself is fever, just below is not.
        ({"max_temperature_c": 38.0}, 1),
        ({"max_temperature_c": 37.9}, 0),
        # ASTCT grade 2 hypotension: not requiring vasopressors.
        ({"max_temperature_c": 38.5, "hypotension": True}, 2),
        # ASTCT grade 3 hypotension: one vasopressor, with or without vasopressin.
        ({"max_temperature_c": 38.5, "hypotension": True, "vasopressors": 1}, 3),
        (
            {
                "max_temperature_c": 38.5,
                "hypotension": True,
                "vasopressors": 1,
                "vasopressin": True,
            },
            3,
        ),
        # ASTCT: vasopressin is excluded from "multiple", so vasopressin alone is one agent (3).
        ({"max_temperature_c": 38.5, "hypotension": True, "vasopressin": True}, 3),
        # ASTCT grade 4 hypotension: multiple vasopressors (excluding vasopressin).
        ({"max_temperature_c": 38.5, "hypotension": True, "vasopressors": 2}, 4),
        (
            {
                "max_temperature_c": 38.5,
                "hypotension": True,
                "vasopressors": 3,
                "vasopressin": True,
            },
            4,
        ),
        # ASTCT grade 2 hypoxia: low-flow nasal cannula (≤ 6 L/min) or blow-by.
        ({"max_temperature_c": 39.0, "oxygen": O2.LOW_FLOW_NASAL_CANNULA}, 2),
        (
            {
                "max_temperature_c": 39.0,
                "oxygen": O2.LOW_FLOW_NASAL_CANNULA,
                "oxygen_flow_l_min": 6,
            },
            2,
        ),
        ({"max_temperature_c": 39.0, "oxygen": O2.BLOW_BY}, 2),
        # ASTCT: > 6 L/min by nasal cannula is high flow (grade 3) whatever the device is called.
        (
            {
                "max_temperature_c": 39.0,
                "oxygen": O2.LOW_FLOW_NASAL_CANNULA,
                "oxygen_flow_l_min": 6.5,
            },
            3,
        ),
        # ASTCT grade 3 hypoxia: high-flow nasal cannula, facemask, non-rebreather, Venturi.
        ({"max_temperature_c": 39.0, "oxygen": O2.HIGH_FLOW_NASAL_CANNULA}, 3),
        ({"max_temperature_c": 39.0, "oxygen": O2.FACEMASK}, 3),
        ({"max_temperature_c": 39.0, "oxygen": O2.NON_REBREATHER}, 3),
        ({"max_temperature_c": 39.0, "oxygen": O2.VENTURI}, 3),
        # choice: ASTCT defines high flow as > 6 L/min, so a stated flow ≤ 6 is low flow (2).
        (
            {
                "max_temperature_c": 39.0,
                "oxygen": O2.HIGH_FLOW_NASAL_CANNULA,
                "oxygen_flow_l_min": 5,
            },
            2,
        ),
        # ASTCT grade 4 hypoxia: positive pressure (CPAP, BiPAP, intubation and ventilation).
        ({"max_temperature_c": 39.0, "oxygen": O2.CPAP}, 4),
        ({"max_temperature_c": 39.0, "oxygen": O2.BIPAP}, 4),
        ({"max_temperature_c": 39.0, "oxygen": O2.MECHANICAL_VENTILATION}, 4),
        # ASTCT: oxygen given only for comfort is not hypoxia.
        ({"max_temperature_c": 39.0, "oxygen": O2.COMFORT, "oxygen_flow_l_min": 2}, 1),
        # ASTCT: the grade is the more severe of hypotension and hypoxia.
        ({"max_temperature_c": 38.2, "hypotension": True, "oxygen": O2.FACEMASK}, 3),
        (
            {
                "max_temperature_c": 38.2,
                "hypotension": True,
                "vasopressors": 1,
                "oxygen": O2.LOW_FLOW_NASAL_CANNULA,
            },
            3,
        ),
        ({"max_temperature_c": 38.2, "hypotension": True, "oxygen": O2.BIPAP}, 4),
        # ASTCT: fever is required for any grade — no fever, not masked, no CRS.
        (
            {
                "max_temperature_c": 37.0,
                "hypotension": True,
                "vasopressors": 2,
                "oxygen": O2.MECHANICAL_VENTILATION,
            },
            0,
        ),
        # ASTCT: after antipyretics/anti-cytokine therapy fever is no longer required.
        (
            {
                "max_temperature_c": 37.0,
                "fever_masked": True,
                "hypotension": True,
                "vasopressors": 1,
            },
            3,
        ),
        ({"max_temperature_c": None, "fever_masked": True, "oxygen": O2.LOW_FLOW_NASAL_CANNULA}, 2),
        # choice: masked, afebrile, no hypotension or hypoxia → 0 (grade 1 is defined by fever).
        ({"max_temperature_c": None, "fever_masked": True}, 0),
        ({"max_temperature_c": 38.5, "fever_masked": True}, 1),
        # choice: the oxygen device may be given as its stored value, as forms deliver it.
        ({"max_temperature_c": 38.5, "oxygen": "cpap"}, 4),
        # choice: 25 and 45 °C are the plausible limits, inclusive.
        ({"max_temperature_c": 25.0}, 0),
        ({"max_temperature_c": 45.0}, 1),
    ],
)
def test_crs_grade_follows_the_astct_table(case: dict[str, Any], expected: int) -> None:
    assert crs_grade(**{**_NO_ORGAN, **case}) == expected


@pytest.mark.parametrize(
    ("case", "path"),
    [
        # choice: impossible or inconsistent inputs are refused, naming the argument.
        ({"max_temperature_c": 38.5, "vasopressors": -1}, "vasopressors"),
        ({"max_temperature_c": 38.5, "vasopressors": True, "hypotension": True}, "vasopressors"),
        ({"max_temperature_c": 38.5, "vasopressors": 11, "hypotension": True}, "vasopressors"),
        ({"max_temperature_c": 24.9}, "max_temperature_c"),
        ({"max_temperature_c": 45.1}, "max_temperature_c"),
        ({"max_temperature_c": math.nan}, "max_temperature_c"),
        ({"max_temperature_c": None}, "max_temperature_c"),
        (
            {"max_temperature_c": 38.5, "oxygen": O2.FACEMASK, "oxygen_flow_l_min": -1},
            "oxygen_flow_l_min",
        ),
        (
            {"max_temperature_c": 38.5, "oxygen": O2.FACEMASK, "oxygen_flow_l_min": math.nan},
            "oxygen_flow_l_min",
        ),
        (
            {"max_temperature_c": 38.5, "oxygen": O2.FACEMASK, "oxygen_flow_l_min": math.inf},
            "oxygen_flow_l_min",
        ),
        (
            {"max_temperature_c": 38.5, "oxygen": O2.NONE, "oxygen_flow_l_min": 2},
            "oxygen_flow_l_min",
        ),
        ({"max_temperature_c": 38.5, "vasopressors": 1}, "hypotension"),
        ({"max_temperature_c": 38.5, "vasopressin": True}, "hypotension"),
        ({"max_temperature_c": 38.5, "oxygen": "helmet"}, "oxygen"),
    ],
)
def test_crs_grade_refuses_impossible_inputs(case: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as error:
        crs_grade(**{**_NO_ORGAN, **case})
    assert _paths(error) == [path]


def test_crs_grade_reports_every_problem_at_once() -> None:
    with pytest.raises(ValidationError) as error:
        crs_grade(
            max_temperature_c=50,
            hypotension=False,
            vasopressors=-2,
            oxygen=O2.FACEMASK,
            oxygen_flow_l_min=-3,
        )
    assert _paths(error) == ["max_temperature_c", "vasopressors", "oxygen_flow_l_min"]
    assert "50 °C is outside 25.0–45.0 °C" in str(error.value)


# --- ICE score ------------------------------------------------------------------------------

_ICE_FULL = {"orientation": 4, "naming": 3, "commands": 1, "writing": 1, "attention": 1}


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        # ASTCT ICE: orientation 4 + naming 3 + commands 1 + writing 1 + attention 1 = 10.
        (_ICE_FULL, 10),
        ({"orientation": 0, "naming": 0, "commands": 0, "writing": 0, "attention": 0}, 0),
        # ASTCT ICE: each item contributes its own points.
        ({**_ICE_FULL, "orientation": 2}, 8),
        ({**_ICE_FULL, "naming": 1}, 8),
        ({**_ICE_FULL, "commands": 0}, 9),
        ({**_ICE_FULL, "writing": 0}, 9),
        ({**_ICE_FULL, "attention": 0}, 9),
        ({"orientation": 3, "naming": 2, "commands": 1, "writing": 0, "attention": 0}, 6),
    ],
)
def test_ice_score_adds_the_five_items(items: dict[str, int], expected: int) -> None:
    assert ice_score(**items) == expected


@pytest.mark.parametrize(
    ("item", "value"),
    [
        # ASTCT ICE item maxima: orientation 4, naming 3, the others 1.
        ("orientation", 5),
        ("naming", 4),
        ("commands", 2),
        ("writing", 2),
        ("attention", 2),
        ("orientation", -1),
        # choice: booleans and fractions are not item scores.
        ("commands", True),
        ("naming", 1.5),
    ],
)
def test_ice_score_refuses_an_out_of_range_item(item: str, value: Any) -> None:
    with pytest.raises(ValidationError) as error:
        ice_score(**{**_ICE_FULL, item: value})
    assert _paths(error) == [item]


def test_ice_score_reports_every_bad_item_at_once() -> None:
    with pytest.raises(ValidationError) as error:
        ice_score(orientation=9, naming=9, commands=1, writing=1, attention=1)
    assert _paths(error) == ["orientation", "naming"]
    assert "9 is outside 0–4" in str(error.value)


# --- ASTCT ICANS ----------------------------------------------------------------------------

_ICANS_NORMAL: dict[str, Any] = {
    "ice": 10,
    "consciousness": Consciousness.AWAKE,
    "seizure": Seizure.NONE,
    "motor_weakness": False,
    "icp_oedema": Oedema.NONE,
}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # ASTCT ICANS: ICE 10 and every other domain normal is no ICANS.
        ({}, 0),
        # ASTCT ICANS ICE column: 7–9 → 1, 3–6 → 2, 0–2 → 3.
        ({"ice": 9}, 1),
        ({"ice": 7}, 1),
        ({"ice": 6}, 2),
        ({"ice": 3}, 2),
        ({"ice": 2}, 3),
        # ASTCT: ICE 0 in an awake patient (e.g. global aphasia) is grade 3, not 4.
        ({"ice": 0}, 3),
        # ASTCT consciousness column.
        ({"consciousness": Consciousness.AWAKENS_SPONTANEOUSLY}, 1),
        ({"consciousness": Consciousness.AWAKENS_TO_VOICE}, 2),
        ({"consciousness": Consciousness.AWAKENS_TO_TACTILE}, 3),
        # ASTCT grade 4: unarousable, ICE cannot be performed (0 or not assessed).
        ({"consciousness": Consciousness.UNAROUSABLE, "ice": None}, 4),
        ({"consciousness": Consciousness.UNAROUSABLE, "ice": 0}, 4),
        # ASTCT seizure column: rapidly resolving or EEG non-convulsive → 3; prolonged → 4.
        ({"seizure": Seizure.RAPID_RESOLVING_OR_EEG_NONCONVULSIVE}, 3),
        ({"seizure": Seizure.PROLONGED_OR_REPETITIVE}, 4),
        # ASTCT motor column: deep focal weakness → 4.
        ({"motor_weakness": True}, 4),
        # ASTCT raised ICP / oedema column: focal → 3; diffuse or signs → 4.
        ({"icp_oedema": Oedema.FOCAL_LOCAL}, 3),
        ({"icp_oedema": Oedema.DIFFUSE_OR_SIGNS}, 4),
        # ASTCT: the most severe domain determines the grade.
        ({"ice": 8, "consciousness": Consciousness.AWAKENS_TO_TACTILE}, 3),
        ({"ice": 5, "icp_oedema": Oedema.FOCAL_LOCAL}, 3),
        ({"ice": 9, "consciousness": Consciousness.AWAKENS_TO_VOICE}, 2),
        ({"ice": 1, "seizure": Seizure.PROLONGED_OR_REPETITIVE}, 4),
        # choice: enum values as delivered by a form are accepted.
        ({"consciousness": "awakens_to_voice", "icp_oedema": "none", "seizure": "none"}, 2),
    ],
)
def test_icans_grade_follows_the_astct_table(case: dict[str, Any], expected: int) -> None:
    assert icans_grade(**{**_ICANS_NORMAL, **case}) == expected


@pytest.mark.parametrize(
    ("case", "path"),
    [
        # choice: ICE may be missing only because the patient is unarousable.
        ({"ice": None}, "ice"),
        ({"ice": None, "consciousness": Consciousness.AWAKENS_TO_TACTILE}, "ice"),
        # ASTCT: ICE is 0–10.
        ({"ice": 11}, "ice"),
        ({"ice": -1}, "ice"),
        # choice: an unarousable patient cannot score ICE points.
        ({"ice": 4, "consciousness": Consciousness.UNAROUSABLE}, "ice"),
        ({"consciousness": "drowsy"}, "consciousness"),
        ({"seizure": "absence"}, "seizure"),
        ({"icp_oedema": "mild"}, "icp_oedema"),
    ],
)
def test_icans_grade_refuses_impossible_inputs(case: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as error:
        icans_grade(**{**_ICANS_NORMAL, **case})
    assert _paths(error) == [path]


# --- CTCAE v5.0 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "en", "zh", "meaning_starts"),
    [
        # CTCAE v5.0 introduction, generic grade descriptions.
        (1, "Mild", "轻度", "Mild; asymptomatic or mild symptoms"),
        (2, "Moderate", "中度", "Moderate; minimal, local or noninvasive intervention"),
        (3, "Severe", "重度", "Severe or medically significant but not immediately"),
        (4, "Life-threatening", "危及生命", "Life-threatening consequences; urgent intervention"),
        (5, "Death related to AE", "与不良事件相关的死亡", "Death related to AE"),
    ],
)
def test_ctcae_grades_carry_the_generic_meanings(
    grade: int, en: str, zh: str, meaning_starts: str
) -> None:
    member = CtcaeGrade(grade)
    assert (member.label("en"), member.label("zh")) == (en, zh)
    assert member.meaning.startswith(meaning_starts)


@pytest.mark.parametrize(
    ("name", "soc", "grades"),
    [
        # CTCAE v5.0 term table ("–" marks a grade that does not exist).
        ("Cytokine release syndrome", "Immune system disorders", {1, 2, 3, 4, 5}),
        ("Neutrophil count decreased", "Investigations", {1, 2, 3, 4}),
        ("Febrile neutropenia", "Blood and lymphatic system disorders", {3, 4, 5}),
        ("Fatigue", "General disorders and administration site conditions", {1, 2, 3}),
        ("Nausea", "Gastrointestinal disorders", {1, 2, 3}),
        ("Hypoxia", "Respiratory, thoracic and mediastinal disorders", {2, 3, 4, 5}),
        # choice: lookup ignores case and surrounding spaces.
        ("  cytokine RELEASE syndrome ", "Immune system disorders", {1, 2, 3, 4, 5}),
    ],
)
def test_ctcae_term_gives_soc_and_existing_grades(name: str, soc: str, grades: set[int]) -> None:
    term = ctcae_term(name)
    assert term.meddra_soc == soc
    assert {int(g) for g in term.grades} == grades


@pytest.mark.parametrize(
    ("name", "grade"),
    [
        # CTCAE v5.0: these grades are "–" for the term.
        ("Neutrophil count decreased", 5),
        ("Febrile neutropenia", 1),
        ("Febrile neutropenia", 2),
        ("Fatigue", 4),
        ("Nausea", 5),
        ("Hypoxia", 1),
        # CTCAE: grades are 1–5.
        ("Cytokine release syndrome", 0),
        ("Cytokine release syndrome", 6),
    ],
)
def test_ctcae_term_refuses_a_grade_the_term_does_not_have(name: str, grade: int) -> None:
    with pytest.raises(ValidationError) as error:
        ctcae_term(name).check_grade(grade)
    assert _paths(error) == ["grade"]


def test_ctcae_term_refuses_an_unknown_term() -> None:
    with pytest.raises(ValidationError, match=r"'Tumour lysis' is not in the CTCAE v5\.0"):
        ctcae_term("Tumour lysis")


def test_ctcae_table_is_keyed_by_case_folded_name() -> None:
    assert all(key == term.name.casefold() for key, term in CTCAE_V5_TERMS.items())


_CRITERIA = SeriousnessCriterion


@pytest.mark.parametrize(
    ("term", "soc", "grade", "serious", "criteria"),
    [
        # CTCAE: severity is not seriousness — a grade 4 event can be non-serious …
        ("Neutrophil count decreased", "Investigations", 4, False, set()),
        # … and a grade 2 event that needs hospitalisation is serious.
        (
            "Cytokine release syndrome",
            "Immune system disorders",
            2,
            True,
            {_CRITERIA.HOSPITALISATION},
        ),
        ("Nausea", "Gastrointestinal disorders", 3, True, {_CRITERIA.OTHER_IMPORTANT}),
        # CTCAE grade 5 is death related to the AE: serious, with the death criterion.
        ("Febrile neutropenia", "Blood and lymphatic system disorders", 5, True, {_CRITERIA.DEATH}),
        # choice: terms outside the module's small table are accepted unchecked.
        ("Tumour lysis syndrome", "Metabolism and nutrition disorders", 3, False, set()),
    ],
)
def test_adverse_event_accepts_consistent_records(
    term: str, soc: str, grade: int, serious: bool, criteria: set[Any]
) -> None:
    event = AdverseEvent(
        term=term,
        meddra_soc=soc,
        grade=CtcaeGrade(grade),
        serious=serious,
        seriousness_criteria=frozenset(_CRITERIA(c) for c in criteria),
    )
    assert event.grade is CtcaeGrade(grade)
    assert event.ctcae_version == "5.0"
    assert event.seriousness_criteria == frozenset(_CRITERIA(c) for c in criteria)
    assert all(isinstance(c, SeriousnessCriterion) for c in event.seriousness_criteria)


def test_adverse_event_normalises_untyped_input_from_forms() -> None:
    # choice: a form or CSV delivers ints and strings; they are stored as the enums.
    untyped: dict[str, Any] = {"grade": 3, "seriousness_criteria": ["hospitalisation", "death"]}
    event = AdverseEvent(
        term="Cytokine release syndrome",
        meddra_soc="immune system disorders",
        grade=CtcaeGrade.SEVERE,
        serious=True,
        seriousness_criteria=frozenset({_CRITERIA.HOSPITALISATION}),
    )
    from_form = AdverseEvent(
        term="Cytokine release syndrome",
        meddra_soc="immune system disorders",
        serious=True,
        **untyped,
    )
    assert from_form.grade is event.grade is CtcaeGrade.SEVERE
    assert from_form.seriousness_criteria == {_CRITERIA.HOSPITALISATION, _CRITERIA.DEATH}
    assert isinstance(from_form.seriousness_criteria, frozenset)


_CRS = {"term": "Cytokine release syndrome", "meddra_soc": "Immune system disorders"}


@pytest.mark.parametrize(
    ("fields", "paths"),
    [
        # choice: serious needs a criterion, and a criterion needs serious.
        ({**_CRS, "grade": 3, "serious": True}, ["seriousness_criteria"]),
        ({**_CRS, "grade": 3, "seriousness_criteria": {"hospitalisation"}}, ["serious"]),
        # CTCAE: grade 5 is death related to the AE, so the event is serious with "death".
        ({**_CRS, "grade": 5}, ["seriousness_criteria"]),
        (
            {**_CRS, "grade": 5, "serious": True, "seriousness_criteria": {"hospitalisation"}},
            ["seriousness_criteria"],
        ),
        # CTCAE v5.0: "Neutrophil count decreased" has no grade 5.
        (
            {
                "term": "Neutrophil count decreased",
                "meddra_soc": "Investigations",
                "grade": 5,
                "serious": True,
                "seriousness_criteria": {"death"},
            },
            ["grade"],
        ),
        # CTCAE v5.0: CRS is under Immune system disorders.
        ({**_CRS, "meddra_soc": "Investigations", "grade": 2}, ["meddra_soc"]),
        # CTCAE: grades are 1–5.
        ({**_CRS, "grade": 0}, ["grade"]),
        ({**_CRS, "grade": 6}, ["grade"]),
        ({**_CRS, "term": " ", "grade": 2}, ["term"]),
        ({**_CRS, "grade": 2, "ctcae_version": ""}, ["ctcae_version"]),
        (
            {**_CRS, "grade": 3, "serious": True, "seriousness_criteria": {"expensive"}},
            [
                "seriousness_criteria",
                "seriousness_criteria",
            ],
        ),
    ],
)
def test_adverse_event_refuses_inconsistent_records(
    fields: dict[str, Any], paths: list[str]
) -> None:
    with pytest.raises(ValidationError) as error:
        AdverseEvent(**fields)
    assert _paths(error) == paths


def test_adverse_event_stores_the_ctcae_version_and_is_frozen() -> None:
    # CTCAE v6.0 (2025) exists; the version is stored and v5.0 term checks do not apply to it.
    event = AdverseEvent(
        term="Nausea",
        meddra_soc="Gastrointestinal disorders",
        grade=CtcaeGrade.LIFE_THREATENING,
        ctcae_version="6.0",
    )
    assert event.ctcae_version == "6.0"
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.grade = CtcaeGrade.MILD  # type: ignore[misc]


# --- MSTS -----------------------------------------------------------------------------------

_LOWER = {
    "pain": 5,
    "function": 4,
    "emotional_acceptance": 5,
    "supports": 3,
    "walking": 4,
    "gait": 3,
}
_UPPER = {
    "pain": 3,
    "function": 3,
    "emotional_acceptance": 3,
    "hand_positioning": 3,
    "dexterity": 3,
    "lifting": 2,
}


@pytest.mark.parametrize(
    ("domains", "limb", "total", "percent"),
    [
        # Enneking: six domains 0–5, total /30, percent = total / 30 × 100.
        (dict.fromkeys(_LOWER, 5), "lower", 30, 100.0),
        (dict.fromkeys(_LOWER, 0), "lower", 0, 0.0),
        (_LOWER, "lower", 24, 80.0),
        (dict.fromkeys(_UPPER, 5), "upper", 30, 100.0),
        (_UPPER, "upper", 17, 17 / 30 * 100),
        (dict.fromkeys(_UPPER, 1), "upper", 6, 20.0),
    ],
)
def test_msts_score_totals_six_domains(
    domains: dict[str, int], limb: Any, total: int, percent: float
) -> None:
    score = msts_score(domains, limb)
    assert isinstance(score, MstsScore)
    assert score.total == total
    assert score.percent == pytest.approx(percent, abs=1e-12)


@pytest.mark.parametrize(
    ("domains", "limb", "paths", "says"),
    [
        # Enneking lower limb: supports, walking, gait — gait is missing.
        ({k: v for k, v in _LOWER.items() if k != "gait"}, "lower", ["domains.gait"], "missing"),
        # Enneking: hand positioning is an upper-limb domain, gait a lower-limb one.
        (
            _UPPER,
            "lower",
            [
                "domains.supports",
                "domains.walking",
                "domains.gait",
                "domains.hand_positioning",
                "domains.dexterity",
                "domains.lifting",
            ],
            "expected one of pain, function, emotional_acceptance, supports, walking, gait",
        ),
        ({**_UPPER, "gait": 2}, "upper", ["domains.gait"], "not an MSTS upper limb domain"),
        # Enneking: each domain is 0–5.
        ({**_LOWER, "pain": 6}, "lower", ["domains.pain"], "6 is outside 0–5"),
        ({**_LOWER, "walking": -1}, "lower", ["domains.walking"], "-1 is outside 0–5"),
        ({**_LOWER, "gait": True}, "lower", ["domains.gait"], "not a whole number"),
        ({**_LOWER, "pain": 6, "gait": 9}, "lower", ["domains.pain", "domains.gait"], "9"),
        # choice: only "upper" and "lower" are limbs.
        (_LOWER, "arm", ["limb"], "expected upper or lower"),
    ],
)
def test_msts_score_refuses_missing_extra_and_out_of_range_domains(
    domains: dict[str, Any], limb: Any, paths: list[str], says: str
) -> None:
    with pytest.raises(ValidationError) as error:
        msts_score(domains, limb)
    assert _paths(error) == paths
    assert says in str(error.value)


# --- Henderson ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Henderson 2011: 1 soft-tissue, 2 aseptic loosening, 3 structural, 4 infection, 5 tumour.
        (1, HendersonType.SOFT_TISSUE),
        (2, HendersonType.ASEPTIC_LOOSENING),
        (3, HendersonType.STRUCTURAL),
        (4, HendersonType.INFECTION),
        (5, HendersonType.TUMOUR_PROGRESSION),
        ("soft-tissue failure", HendersonType.SOFT_TISSUE),
        ("Aseptic loosening", HendersonType.ASEPTIC_LOOSENING),
        ("structural failure", HendersonType.STRUCTURAL),
        ("INFECTION", HendersonType.INFECTION),
        ("tumour progression", HendersonType.TUMOUR_PROGRESSION),
        # choice: common spellings and forms of the same types.
        ("tumor progression", HendersonType.TUMOUR_PROGRESSION),
        ("Type 3", HendersonType.STRUCTURAL),
        ("5", HendersonType.TUMOUR_PROGRESSION),
        ("ASEPTIC_LOOSENING", HendersonType.ASEPTIC_LOOSENING),
        ("4型", HendersonType.INFECTION),
        ("无菌性松动", HendersonType.ASEPTIC_LOOSENING),
    ],
)
def test_henderson_type_reads_numbers_and_descriptions(value: Any, expected: HendersonType) -> None:
    assert henderson_type(value) is expected


@pytest.mark.parametrize("value", [0, 6, "3b", "fracture", "", True])
def test_henderson_type_refuses_what_is_not_a_type(value: Any) -> None:
    # Henderson 2011 has types 1–5 only; choice: the 2014 subtypes ("3b") are refused.
    with pytest.raises(ValidationError, match="expected 1–5"):
        henderson_type(value)


@pytest.mark.parametrize(
    ("member", "en", "zh"),
    [
        # Henderson 2011 wording, with the Chinese used in the orthopaedic oncology literature.
        (HendersonType.SOFT_TISSUE, "Type 1: soft-tissue failure", "1型：软组织失败"),
        (HendersonType.ASEPTIC_LOOSENING, "Type 2: aseptic loosening", "2型：无菌性松动"),
        (
            HendersonType.STRUCTURAL,
            "Type 3: structural failure (implant or bone fracture)",
            "3型：结构性失败（假体断裂或骨折）",
        ),
        (HendersonType.INFECTION, "Type 4: infection", "4型：感染"),
        (HendersonType.TUMOUR_PROGRESSION, "Type 5: tumour progression", "5型：肿瘤进展"),
    ],
)
def test_henderson_types_have_english_and_chinese_labels(
    member: HendersonType, en: str, zh: str
) -> None:
    assert (member.label("en"), member.label("zh")) == (en, zh)


# --- Labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "enum",
    [
        OxygenSupport,
        Consciousness,
        Seizure,
        Oedema,
        CtcaeGrade,
        SeriousnessCriterion,
        HendersonType,
    ],
)
def test_every_member_a_user_sees_has_an_english_and_a_chinese_label(enum: Any) -> None:
    assert set(LABELS[enum]) == {member.name for member in enum}
    for member in enum:
        assert member.label("en").strip()
        assert member.label("zh").strip()
        assert member.label("zh") != member.label("en")


def test_a_label_language_other_than_en_or_zh_is_refused() -> None:
    with pytest.raises(ValidationError, match="'fr' is not a label language"):
        OxygenSupport.CPAP.label("fr")  # type: ignore[arg-type]
