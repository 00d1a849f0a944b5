"""Signing several forms at once (:func:`consortia.services.form_states.sign_forms`), on
SQLite and PostgreSQL: the password checked once, every form signed and audited in one
transaction, and every refusal signing none."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.config import Settings
from consortia.domain.templates import template_text
from consortia.exceptions import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from consortia.services import data_entry, form_states, history, studies, subjects, users
from consortia.services.subjects import SubjectInput

STUDY = "CART-LBCL"
PASSWORD = "a long enough passphrase"
SETTINGS = Settings(login_max_failures=5, login_lockout_minutes=15)
ADMIN = Principal(
    1,
    "admin@sg.example",
    "Admin",
    frozenset(Grant(STUDY, "*", r) for r in (Role.STUDY_ADMIN, Role.COORDINATOR, Role.MONITOR)),
)
ELIGIBILITY = {
    "histology": "dlbcl_nos",
    "disease_status": "primary_refractory",
    "prior_lines": 2,
    "ecog": 1,
    "ldh_elevated": False,
    "eligible": True,
}
SUBJECTS = ("SG01-0001", "SG01-0002", "SH01-0001")


@pytest.fixture
def signer(engine: sa.Engine) -> Principal:
    """Complete eligibility forms for two subjects at SG01 and one at SH01 (the second
    verified); Ivy, investigator at SG01."""
    studies.load_definition(engine, ADMIN, template_text("cart-lbcl"))
    for subject_id in SUBJECTS:
        subjects.enrol_subject(
            engine,
            ADMIN,
            STUDY,
            SubjectInput(
                subject_id=subject_id, site=subject_id[:4], screening_date=date(2025, 1, 6)
            ),
        )
        data_entry.save_form(
            engine,
            ADMIN,
            STUDY,
            subject_id,
            "screening",
            "eligibility",
            data_entry.FormSave(version=0, values=ELIGIBILITY, complete=True),
        )
    form_states.verify_form(engine, ADMIN, (STUDY, "SG01-0002", "screening", "eligibility"), 1)
    operator = users.cli_operator()
    ivy = users.create_user(engine, operator, email="ivy@sg.example", name="Ivy", password=PASSWORD)
    users.grant_role(
        engine, operator, email="ivy@sg.example", study=STUDY, site="SG01", role="investigator"
    )
    return users.principal_for(engine, ivy.id)


def _states(engine: sa.Engine) -> list[str]:
    return [
        data_entry.read_form(engine, ADMIN, STUDY, subject_id, "screening", "eligibility").state
        for subject_id in SUBJECTS
    ]


def _signatures(engine: sa.Engine) -> int:
    return sum(
        event.action == "form.sign"
        for subject_id in SUBJECTS
        for event in history.form_history(
            engine, ADMIN, STUDY, subject_id, "screening", "eligibility"
        )
    )


UNSIGNED = ["complete", "verified", "complete"]


def test_the_worklist_and_signing_two_forms(engine: sa.Engine, signer: Principal) -> None:
    listed = form_states.signature_worklist(engine, signer, STUDY)
    assert [(e.subject_id, e.version) for e in listed] == [("SG01-0001", 1), ("SG01-0002", 2)]
    signed = form_states.sign_forms(
        engine,
        SETTINGS,
        signer,
        STUDY,
        [
            ("SG01-0001", "screening", "eligibility", 1),
            ("SG01-0002", "screening", "eligibility", 2),
        ],
        password=PASSWORD,
        meaning="approval",
    )
    assert [(r.state, r.signed_name, r.version) for r in signed] == [
        ("signed", "Ivy", 2),
        ("signed", "Ivy", 3),
    ]
    assert _states(engine) == ["signed", "signed", "complete"]
    assert _signatures(engine) == 2  # one audit event each
    assert form_states.signature_worklist(engine, signer, STUDY) == []


def test_refusals_sign_none(engine: sa.Engine, signer: Principal) -> None:
    both = [
        ("SG01-0001", "screening", "eligibility", 1),
        ("SG01-0002", "screening", "eligibility", 2),
    ]
    with pytest.raises(AuthenticationError):
        form_states.sign_forms(
            engine, SETTINGS, signer, STUDY, both, password="wrong", meaning="review"
        )
    with pytest.raises(ValidationError, match="not one of"):
        form_states.sign_forms(engine, SETTINGS, signer, STUDY, both, password=PASSWORD, meaning="")
    with pytest.raises(ValidationError, match="at least one"):
        form_states.sign_forms(
            engine, SETTINGS, signer, STUDY, [], password=PASSWORD, meaning="review"
        )
    with pytest.raises(ValidationError, match="named twice"):
        form_states.sign_forms(
            engine, SETTINGS, signer, STUDY, [both[0], both[0]], password=PASSWORD, meaning="review"
        )
    many = [("SG01-0001", "screening", f"f{n}", 1) for n in range(101)]
    with pytest.raises(ValidationError, match="at most 100 forms at once, not 101"):
        form_states.sign_forms(
            engine, SETTINGS, signer, STUDY, many, password=PASSWORD, meaning="review"
        )
    # the second form at a stale version: the first, signed before it in the same
    # transaction, is undone with it
    stale = [both[0], ("SG01-0002", "screening", "eligibility", 1)]
    with pytest.raises(ConflictError, match="SG01-0002 at screening is at version 2, not 1"):
        form_states.sign_forms(
            engine, SETTINGS, signer, STUDY, stale, password=PASSWORD, meaning="review"
        )
    # another site's form is not found; nothing signed
    other = [both[0], ("SH01-0001", "screening", "eligibility", 1)]
    with pytest.raises(NotFoundError):
        form_states.sign_forms(
            engine, SETTINGS, signer, STUDY, other, password=PASSWORD, meaning="review"
        )
    # a role that does not sign
    with pytest.raises(PermissionDeniedError):
        form_states.sign_forms(
            engine, SETTINGS, ADMIN, STUDY, both, password=PASSWORD, meaning="review"
        )
    assert _states(engine) == UNSIGNED
    assert _signatures(engine) == 0
