"""The live form's check: what a save would say, without saving, for those who may enter."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.exceptions import NotFoundError, PermissionDeniedError
from consortia.services import studies, subjects
from consortia.services.form_checks import check_entry
from consortia.storage.audit import iter_events

STUDY = "CART-LBCL"
COORDINATOR = Principal(
    11,
    "coord@sg.example",
    "Coordinator",
    frozenset({Grant(STUDY, "SG01", Role.COORDINATOR), Grant(STUDY, "*", Role.STUDY_ADMIN)}),
)
MONITOR = Principal(12, "mo@sg.example", "Monitor", frozenset({Grant(STUDY, "SG01", Role.MONITOR)}))
ELSEWHERE = Principal(
    13, "co@sh.example", "Coordinator", frozenset({Grant(STUDY, "SH01", Role.COORDINATOR)})
)
WHERE = (STUDY, "SG01-001", "screening", "demographics")


@pytest.fixture
def node(engine: sa.Engine) -> sa.Engine:
    studies.load_definition(engine, COORDINATOR, template_text("cart-lbcl"))
    subjects.enrol_subject(
        engine,
        COORDINATOR,
        STUDY,
        subjects.SubjectInput("SG01-001", "SG01", screening_date=date(2025, 1, 6)),
    )
    return engine


def test_the_check_says_what_a_save_would_and_writes_nothing(node: sa.Engine) -> None:
    with node.connect() as connection:
        before = len(list(iter_events(connection)))
    woman = check_entry(node, COORDINATOR, WHERE, {"sex": "F", "age": "40"}, complete=True)
    assert woman.check.hidden == frozenset()
    assert woman.missing == {"forms.demographics.pregnant"}
    assert [problem.path for problem in woman.check.errors] == ["forms.demographics.pregnant"]
    man = check_entry(node, COORDINATOR, WHERE, {"sex": "M", "age": "85"}, complete=True)
    assert man.check.hidden == {"forms.demographics.pregnant"}
    assert man.missing == frozenset()
    assert man.check.errors == ()
    assert [problem.path for problem in man.check.warnings] == ["forms.demographics.age"]
    # an item the show_if hides refuses a value, as a save does
    stale = check_entry(node, COORDINATOR, WHERE, {"sex": "M", "pregnant": "0"}, complete=False)
    assert "is hidden" in stale.check.errors[0].message
    with node.connect() as connection:
        assert len(list(iter_events(connection))) == before


def test_only_a_person_who_may_enter_data_at_the_subjects_site_may_check(
    node: sa.Engine,
) -> None:
    with pytest.raises(PermissionDeniedError):
        check_entry(node, MONITOR, WHERE, {"sex": "F"}, complete=False)
    with pytest.raises(NotFoundError):
        check_entry(node, ELSEWHERE, WHERE, {"sex": "F"}, complete=False)
