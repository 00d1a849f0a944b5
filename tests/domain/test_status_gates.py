"""Status gates: what entering a status needs, as a study states them and as they are met."""

from __future__ import annotations

import doctest
from collections import defaultdict

import pytest

from consortia.domain import schedule
from consortia.domain.schedule import SavedForm, SubjectStatus, unmet_gates
from consortia.domain.study import StatusGate
from consortia.domain.study_yaml import load_study_text, study_to_yaml
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import TEMPLATE_NAMES, load_template
from consortia.exceptions import StudyDefinitionError

GATED = """\
study:
  id: S1
  title: {en: Study, zh: 研究}
  phase: "2"
  sponsor: Centre
  version: "1"
events:
  screening:
    label: {en: Screening, zh: 筛选}
    day: 0
    forms: [consent, eligibility]
  visit:
    label: {en: Visit, zh: 访视}
    day: 7
    repeating: true
    forms: [eligibility, notes]
forms:
  consent:
    label: {en: Consent, zh: 知情同意}
    groups:
      main:
        items:
          consent_given:
            type: boolean
            label: {en: Consent given, zh: 已同意}
            required: true
  eligibility:
    label: {en: Eligibility, zh: 入选}
    groups:
      main:
        items:
          ecog:
            type: integer
            label: {en: ECOG, zh: ECOG}
            range: {min: 0, max: 5}
      lesions:
        repeating: true
        items:
          lesion_mm:
            type: integer
            label: {en: Lesion, zh: 病灶}
  notes:
    label: {en: Notes, zh: 备注}
    groups:
      main:
        items:
          note:
            type: text
            label: {en: Note, zh: 备注}
statuses:
  eligible:
    requires:
      - {form: consent, complete: true, when: consent_given == True}
      - form: eligibility
        event: screening
        when: ecog <= 1
  on_study:
    requires:
      - {form: notes, complete: false}
"""
# lines of GATED: the first gate is on line 53, the second's `when` on line 56


def problems(text: str) -> list[str]:
    with pytest.raises(StudyDefinitionError) as info:
        load_study_text(text, "s.yaml")
    return [str(problem) for problem in info.value.problems]


def only_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_a_study_states_the_gates_of_each_status() -> None:
    study = load_study_text(GATED, "s.yaml")
    assert list(study.statuses) == [SubjectStatus.ELIGIBLE, SubjectStatus.ON_STUDY]
    assert study.statuses[SubjectStatus.ELIGIBLE].requires == (
        StatusGate(form="consent", complete=True, when="consent_given == True"),
        StatusGate(form="eligibility", event="screening", when="ecog <= 1"),
    )
    assert study.statuses[SubjectStatus.ON_STUDY].requires == (
        StatusGate(form="notes", complete=False),
    )
    assert load_study_text(study_to_yaml(study)) == study  # written out and read back


def test_every_template_gates_eligible_and_those_with_consent_on_consent_given() -> None:
    for name in TEMPLATE_NAMES:
        study = load_template(name)
        gates = study.statuses[SubjectStatus.ELIGIBLE].requires
        assert gates, name
        if "consent" in study.forms:
            assert gates[0] == StatusGate(form="consent", when="consent_given == True"), name


def test_the_examples_in_the_schedule_docstrings_hold() -> None:
    assert doctest.testmod(schedule).failed == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("form: consent, complete", "form: consnt, complete"),
            "s.yaml:53:16: statuses.eligible.requires[0].form: form 'consnt' is not defined; "
            "defined forms: consent, eligibility, notes",
        ),
        (
            ("consent_given == True", "consent_gven == True"),
            "s.yaml:53:47: statuses.eligible.requires[0].when: status condition: unknown name "
            "'consent_gven'; did you mean 'consent_given'?",
        ),
        (
            ("when: ecog <= 1", "when: ecog <= 1 and consent_given"),
            "s.yaml:56:29: statuses.eligible.requires[1].when: status condition: "
            "'consent_given' is an item of form consent, not of eligibility; a condition reads "
            "only its own form's items",
        ),
        (
            ("when: ecog <= 1", "when: lesion_mm < 30"),
            "s.yaml:56:15: statuses.eligible.requires[1].when: status condition: 'lesion_mm' is "
            "in the repeating group 'lesions'; a condition reads only items outside repeating "
            "groups",
        ),
        (
            ("when: ecog <= 1", "when: ecog <="),
            "s.yaml:56:22: statuses.eligible.requires[1].when: status condition: syntax error: "
            "invalid syntax",
        ),
        (
            ("event: screening", "event: visit2"),
            "s.yaml:55:16: statuses.eligible.requires[1].event: event 'visit2' is not defined; "
            "the events with form eligibility: screening, visit",
        ),
        (
            ("when: ecog <= 1\n", "when: ecog <= 1\n      - {form: notes, event: screening}\n"),
            "s.yaml:57:30: statuses.eligible.requires[2].event: event 'screening' does not hold "
            "form notes; the events that do: visit",
        ),
        (
            ("        event: screening\n", ""),
            "s.yaml:54:15: statuses.eligible.requires[1].form: form 'eligibility' is in events "
            "screening, visit; say which with 'event'",
        ),
        (
            ("  on_study:", "  withdrawn:"),
            "s.yaml:57:3: statuses.withdrawn: withdrawn takes no conditions: a subject may "
            "always withdraw",
        ),
        (
            ("  on_study:", "  screening:"),
            "s.yaml:57:3: statuses.screening: screening takes no conditions: subjects are "
            "created in screening",
        ),
        (
            ("  on_study:", "  onstudy:"),
            "s.yaml:57:3: statuses.onstudy: input should be 'screening', 'eligible', "
            "'screen_failed', 'enrolled', 'on_study', 'completed' or 'withdrawn' (got 'onstudy')",
        ),
        (
            ("{form: notes, complete: false}", "{form: notes, complete: false, if: x}"),
            "s.yaml:59:40: statuses.on_study.requires[0].if: unknown key 'if'; expected one of: "
            "form, event, complete, when",
        ),
    ],
)
def test_a_gate_that_does_not_fit_the_forms_is_refused_at_its_line(
    change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert GATED.count(old) == 1
    assert only_problem(GATED.replace(old, new)) == expected


def test_a_form_in_no_event_cannot_gate_a_status() -> None:
    text = GATED.replace("    forms: [eligibility, notes]", "    forms: [eligibility]")
    assert only_problem(text) == (
        "s.yaml:59:16: statuses.on_study.requires[0].form: form 'notes' is in no event, so it "
        "is never saved"
    )


def test_every_gate_problem_is_reported_at_once() -> None:
    text = GATED.replace("form: consent, complete", "form: consnt, complete").replace(
        "when: ecog <= 1", "when: ecoog <= 1"
    )
    assert [p.split(": ")[1] for p in problems(text)] == [
        "statuses.eligible.requires[0].form",
        "statuses.eligible.requires[1].when",
    ]


def _consent(given: str, complete: bool = True) -> SavedForm:
    return SavedForm("screening", 1, "consent", complete, {"consent_given": given})


def _eligibility(ecog: str, event: str = "screening", instance: int = 1) -> SavedForm:
    return SavedForm(event, instance, "eligibility", True, {"ecog": ecog})


def _unmet(*forms: SavedForm) -> list[tuple[str, str]]:
    study = load_study_text(GATED)
    found = unmet_gates(study, SubjectStatus.ELIGIBLE, forms)
    return [(problem.path, problem.message.rsplit(": ", 1)[1]) for problem in found]


def test_each_unmet_gate_is_named_with_what_is_wrong() -> None:
    study = load_study_text(GATED)
    (message,) = [p.message for p in unmet_gates(study, SubjectStatus.ELIGIBLE, [])][:1]
    assert message == (
        "becoming eligible needs form consent (screening) complete with consent_given == True: "
        "the form has not been saved"
    )
    assert _unmet() == [
        ("forms.consent", "the form has not been saved"),
        ("forms.eligibility", "the form has not been saved"),
    ]
    assert _unmet(_consent("1", complete=False), _eligibility("1")) == [
        ("forms.consent", "the form is in progress, not complete")
    ]
    assert _unmet(_consent("0"), _eligibility("2")) == [
        ("forms.consent", "consent_given == True does not hold"),
        ("forms.eligibility", "ecog <= 1 does not hold"),
    ]
    assert _unmet(_consent(""), _eligibility("")) == [  # missing: a comparison is false
        ("forms.consent", "consent_given == True does not hold"),
        ("forms.eligibility", "ecog <= 1 does not hold"),
    ]


def test_gates_are_met_when_the_forms_are_complete_and_their_conditions_hold() -> None:
    assert _unmet(_consent("1"), _eligibility("1")) == []
    assert _unmet(_consent("yes"), _eligibility("0")) == []


def test_only_the_gates_event_counts_and_there_the_last_instance() -> None:
    # the gate names screening: an eligibility form at the repeating visit does not count
    assert _unmet(_consent("1"), _eligibility("1", "visit")) == [
        ("forms.eligibility", "the form has not been saved")
    ]
    study = load_study_text(GATED.replace("event: screening", "event: visit"))
    later = [_consent("1"), _eligibility("1", "visit", 1), _eligibility("3", "visit", 2)]
    (problem,) = unmet_gates(study, SubjectStatus.ELIGIBLE, later)
    assert problem.message == (
        "becoming eligible needs form eligibility (visit.2) complete with ecog <= 1: "
        "ecog <= 1 does not hold"
    )


def test_a_gate_that_needs_the_form_only_saved_takes_one_in_progress() -> None:
    study = load_study_text(GATED)
    notes = SavedForm("visit", 1, "notes", False, {})
    assert unmet_gates(study, SubjectStatus.ON_STUDY, [notes]) == []
    (problem,) = unmet_gates(study, SubjectStatus.ON_STUDY, [])
    assert problem.message == (
        "becoming on_study needs form notes (visit) saved: the form has not been saved"
    )
    assert unmet_gates(study, SubjectStatus.COMPLETED, []) == []  # no gates: nothing needed


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_synthetic_subject_of_a_template_meets_its_gates_of_eligible(
    template: str,
) -> None:
    site = next(iter(load_template(template).sites))
    data = synthesize(template, subjects=30, site=site, seed=3)
    forms: dict[str, list[SavedForm]] = defaultdict(list)
    for entry in data.entries:
        texts = {name: str(value) for name, value in entry.values.items()}
        saved = SavedForm(entry.event, entry.event_instance or 1, entry.form, True, texts)
        forms[entry.subject_id].append(saved)
    assert len(forms) == 30
    for subject_id, saved in forms.items():
        assert unmet_gates(data.study, SubjectStatus.ELIGIBLE, saved) == [], subject_id
