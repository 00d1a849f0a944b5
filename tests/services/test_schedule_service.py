"""Changing a subject's status: the lifecycle, and the study's gates met in the change's own
transaction (a refusal names each unmet gate and changes nothing), on both databases."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.synthetic import synthesize
from consortia.domain.templates import template_text
from consortia.exceptions import ValidationError
from consortia.services import data_entry, form_states, imports, studies, subjects
from consortia.services.common import cli_operator
from consortia.services.data_entry import FormSave
from consortia.services.schedule import change_status
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.capture import CaptureRepository

STUDY = "CART-LBCL"
STAFF = Principal(
    11,
    "coord@sg.example",
    "Coordinator",
    frozenset(
        Grant(STUDY, "*", role) for role in (Role.COORDINATOR, Role.STUDY_ADMIN, Role.DATA_MANAGER)
    ),
)
SUBJECT = "SG01-001"
CONSENT = {"consent_given": True, "consent_date": "2025-01-06", "consent_version": "2.1"}
ELIGIBILITY = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "eligible": True,
}
DAY = date(2025, 1, 10)


@pytest.fixture
def node(engine: sa.Engine) -> sa.Engine:
    studies.load_definition(engine, STAFF, template_text("cart-lbcl"))
    subjects.enrol_subject(
        engine,
        STAFF,
        STUDY,
        subjects.SubjectInput(SUBJECT, "SG01", screening_date=date(2025, 1, 6)),
    )
    return engine


def _save(engine: sa.Engine, form: str, values: dict[str, Any], *, complete: bool = True) -> Any:
    current = data_entry.read_form(engine, STAFF, STUDY, SUBJECT, "screening", form).version
    return data_entry.save_form(
        engine,
        STAFF,
        STUDY,
        SUBJECT,
        "screening",
        form,
        FormSave(version=current, values=values, complete=complete, reason="correction"),
    )


def _refusal(engine: sa.Engine, status: str, subject: str = SUBJECT) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as refused:
        change_status(engine, STAFF, STUDY, subject, status, DAY, None)
    return [(p.path, p.message.rsplit(": ", 1)[-1]) for p in refused.value.problems]


def _status_trail(engine: sa.Engine, subject: str = SUBJECT) -> tuple[str, list[str]]:
    """The subject's status, and the statuses of the audit trail's status changes."""
    with engine.connect() as connection:
        assert verify_trail(connection).ok
        changes = [
            e.after["status"]
            for e in iter_events(connection, chain=STUDY)
            if e.action == "subject.status" and e.entity_id == f"{STUDY}/{subject}"
        ]
    return subjects.get_subject(engine, STAFF, STUDY, subject).status, changes


def test_becoming_eligible_without_consent_is_refused_and_changes_nothing(
    node: sa.Engine,
) -> None:
    _save(node, "eligibility", ELIGIBILITY)
    assert _refusal(node, "eligible") == [("forms.consent", "the form has not been saved")]
    assert _status_trail(node) == ("screening", [])
    with node.connect() as connection:
        record = subjects.get_subject(node, STAFF, STUDY, SUBJECT)
        assert len(CaptureRepository(connection, cli_operator()).status_history(record)) == 1


def test_becoming_eligible_with_consent_not_given_is_refused(node: sa.Engine) -> None:
    _save(node, "consent", {**CONSENT, "consent_given": False})
    _save(node, "eligibility", ELIGIBILITY)
    with pytest.raises(ValidationError) as refused:
        change_status(node, STAFF, STUDY, SUBJECT, "eligible", DAY, None)
    (problem,) = refused.value.problems
    assert (problem.path, problem.message) == (
        "forms.consent",
        "becoming eligible needs form consent (screening) complete with consent_given == True: "
        "consent_given == True does not hold",
    )
    assert _status_trail(node) == ("screening", [])


def test_becoming_eligible_needs_both_forms_complete_and_their_checks_met(
    node: sa.Engine,
) -> None:
    _save(node, "consent", CONSENT, complete=False)
    _save(node, "eligibility", ELIGIBILITY, complete=False)
    assert _refusal(node, "eligible") == [
        ("forms.consent", "the form is in progress, not complete"),
        ("forms.eligibility", "the form is in progress, not complete"),
    ]
    _save(node, "consent", CONSENT)
    _save(node, "eligibility", ELIGIBILITY)
    assert change_status(node, STAFF, STUDY, SUBJECT, "eligible", DAY, None) == "eligible"
    assert _status_trail(node) == ("eligible", ["eligible"])
    assert change_status(node, STAFF, STUDY, SUBJECT, "enrolled", DAY, None) == "enrolled"
    assert _status_trail(node) == ("enrolled", ["eligible", "enrolled"])


def test_a_complete_form_still_counts_once_it_is_locked(node: sa.Engine) -> None:
    _save(node, "consent", CONSENT)
    view = _save(node, "eligibility", ELIGIBILITY)
    where = (STUDY, SUBJECT, "screening", "eligibility")
    form_states.lock_form(node, STAFF, where, view.version)
    assert change_status(node, STAFF, STUDY, SUBJECT, "eligible", DAY, None) == "eligible"


def test_enrolled_is_refused_from_screening_even_with_the_gates_met(node: sa.Engine) -> None:
    _save(node, "consent", CONSENT)
    _save(node, "eligibility", ELIGIBILITY)
    assert _refusal(node, "enrolled") == [
        ("status", "eligible, screen_failed, withdrawn"),
    ]
    assert _status_trail(node) == ("screening", [])


def test_withdrawing_and_screen_failing_need_no_forms(node: sa.Engine) -> None:
    assert change_status(node, STAFF, STUDY, SUBJECT, "screen_failed", DAY, "ECOG 3") == (
        "screen_failed"
    )


def test_a_study_without_gates_changes_status_on_the_lifecycle_alone(engine: sa.Engine) -> None:
    source = template_text("cart-lbcl")
    start = source.index("\nstatuses:\n")
    ungated = source[:start] + source[source.index("\nderived:\n") :]
    studies.load_definition(engine, STAFF, ungated)
    subjects.enrol_subject(engine, STAFF, STUDY, subjects.SubjectInput(SUBJECT, "SG01"))
    assert change_status(engine, STAFF, STUDY, SUBJECT, "eligible", DAY, None) == "eligible"


def test_imported_subjects_start_in_screening_and_meet_the_gates_like_any_other(
    node: sa.Engine, tmp_path: Path
) -> None:
    # an import writes forms and creates subjects in screening; it never sets a status, so a
    # status is reached only through change_status and its gates
    data = synthesize("cart-lbcl", subjects=3, site="SG01", seed=5)
    report = imports.import_file(node, STAFF, STUDY, data.write_csv(tmp_path / "records.csv"))
    assert report.subjects_created == 3
    imported = sorted({entry.subject_id for entry in data.entries})
    for subject_id in imported:
        assert _status_trail(node, subject_id) == ("screening", [])
    # the wide CSV carries no <form>_complete: its forms are in progress, so not yet eligible
    assert _refusal(node, "eligible", imported[0]) == [
        ("forms.consent", "the form is in progress, not complete"),
        ("forms.eligibility", "the form is in progress, not complete"),
    ]
