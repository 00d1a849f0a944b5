"""Saving a form: worked out in a snapshot, written in a short transaction that first checks
that nothing the save depends on changed meanwhile (and works it out again if it did)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from consortia.auth.principal import Grant, Principal, Role
from consortia.domain.templates import template_text
from consortia.exceptions import ConflictError, NotFoundError, PermissionDeniedError
from consortia.services import data_entry, queries, studies, subjects
from consortia.services.common import cli_operator
from consortia.services.data_entry import FormSave, derived_values
from consortia.services.studies import current_definition
from consortia.storage.audit import iter_events, verify_trail
from consortia.storage.capture import CaptureRepository
from consortia.storage.db import READ_ONLY

STUDY = "CART-LBCL"
COORDINATOR = Principal(
    11,
    "coord@sg.example",
    "Coordinator",
    frozenset({Grant(STUDY, "SG01", Role.COORDINATOR), Grant(STUDY, "*", Role.STUDY_ADMIN)}),
)
SUBJECT = "SG01-001"


@pytest.fixture
def node(engine: sa.Engine) -> sa.Engine:
    studies.load_definition(engine, COORDINATOR, template_text("cart-lbcl"))
    subjects.enrol_subject(
        engine,
        COORDINATOR,
        STUDY,
        subjects.SubjectInput(SUBJECT, "SG01", screening_date=date(2025, 1, 6)),
    )
    return engine


def _save(engine: sa.Engine, event: str, form: str, version: int, **values: Any) -> Any:
    reason = values.pop("reason", None)
    return data_entry.save_form(
        engine,
        COORDINATOR,
        STUDY,
        SUBJECT,
        event,
        form,
        FormSave(version=version, values=values, reason=reason),
    )


def _between_plan_and_write(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]
) -> list[bool]:
    """Run ``meanwhile`` once, after the next save was worked out in its snapshot and before
    its write; returns how each plan was made (True: in the snapshot)."""
    real = data_entry._plan_save
    plans: list[bool] = []
    running = []  # the concurrent save plans as usual, unrecorded

    def plan(*args: Any, in_snapshot: bool) -> Any:
        if running:
            return real(*args, in_snapshot=in_snapshot)
        planned = real(*args, in_snapshot=in_snapshot)
        plans.append(in_snapshot)
        if len(plans) == 1:
            running.append(True)
            meanwhile()
            running.clear()
        return planned

    monkeypatch.setattr(data_entry, "_plan_save", plan)
    return plans


def _stored_equals_recomputed(engine: sa.Engine) -> dict[str, str]:
    subject = subjects.get_subject(engine, COORDINATOR, STUDY, SUBJECT)
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        definition = current_definition(connection, STUDY)
        capture = CaptureRepository(connection, cli_operator())
        stored = capture.derived(subject)
        recomputed = derived_values(definition, capture.subject_values(subject))
        assert verify_trail(connection).ok
    assert stored == {name: text for name, (text, _) in recomputed.items()}
    return stored


def test_a_save_works_out_again_when_another_form_changed_meanwhile(
    node: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(node, "randomisation", "randomisation", 0, rand_date="2025-01-10")

    def another_save() -> None:
        _save(
            node,
            "randomisation",
            "randomisation",
            1,
            rand_date="2025-01-12",
            reason="date in the source",
        )

    status = {"status_reason": "in_follow_up"}
    _save(node, "end_of_study", "status", 0, last_contact="2025-07-01", **status)
    plans = _between_plan_and_write(monkeypatch, another_save)
    saved = _save(
        node, "end_of_study", "status", 1, last_contact="2025-07-10", reason="later", **status
    )
    assert plans == [True, False]  # the snapshot's plan was dropped, the save planned again
    assert saved.version == 2
    # the derived PFS counts from the randomisation date committed in between (the 12th)
    assert _stored_equals_recomputed(node)["pfs_days"] == "179"
    with node.connect().execution_options(**{READ_ONLY: True}) as connection:
        last = [e for e in iter_events(connection, chain=STUDY) if e.action == "form.save"][-1]
    assert last.entity_id.endswith("/end_of_study/status")
    assert last.after["derived"]["pfs_days"] == "179"


def test_a_save_of_the_same_form_meanwhile_makes_this_one_stale(
    node: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    eligible = {"histology": "dlbcl_nos", "disease_status": "primary_refractory"}
    _save(node, "screening", "eligibility", 0, **eligible, prior_lines=2, ecog=1, eligible=True)

    def same_form() -> None:
        _save(
            node, "screening", "eligibility", 1, **eligible, prior_lines=2, ecog=0, eligible=True,
            reason="source",
        )  # fmt: skip

    _between_plan_and_write(monkeypatch, same_form)
    with pytest.raises(ConflictError, match="at version 2, not 1"):
        _save(
            node, "screening", "eligibility", 1, **eligible, prior_lines=2, ecog=2, eligible=True,
            reason="mine",
        )  # fmt: skip
    view = data_entry.read_form(node, COORDINATOR, STUDY, SUBJECT, "screening", "eligibility")
    assert (view.version, view.values["ecog"]) == (2, "0")  # stored text
    _stored_equals_recomputed(node)


@pytest.mark.parametrize("mine", [{"ecog": 1}, {"prior_lines": 3}])
def test_a_save_that_lost_the_race_after_its_check_is_refused_and_changes_nothing(
    node: sa.Engine, monkeypatch: pytest.MonkeyPatch, mine: dict[str, int]
) -> None:
    # On PostgreSQL the check that nothing changed and the writes are separate statements:
    # a save committed between them is caught by the form's versioned UPDATE, sent in one
    # batch with the values (a value both add clashes on its key first), and nothing of
    # the losing save may remain
    eligible = {"histology": "dlbcl_nos", "disease_status": "primary_refractory"}
    _save(node, "screening", "eligibility", 0, **eligible, prior_lines=2, eligible=True)

    def winner() -> None:
        _save(node, "screening", "eligibility", 1, **eligible, prior_lines=2, ecog=0, eligible=True)

    _between_plan_and_write(monkeypatch, winner)
    monkeypatch.setattr(data_entry, "_unchanged_since", lambda *_: True)  # the race window
    with node.connect() as connection:
        events_before = sum(1 for _ in iter_events(connection, chain=STUDY))
    values = {**eligible, "prior_lines": 2, "eligible": True, **mine}
    with pytest.raises(ConflictError, match="changed while saving"):
        _save(node, "screening", "eligibility", 1, **values, reason="mine")
    view = data_entry.read_form(node, COORDINATOR, STUDY, SUBJECT, "screening", "eligibility")
    assert view.version == 2
    assert (view.values["ecog"], view.values["prior_lines"]) == ("0", "2")  # the winner's
    with node.connect() as connection:
        events = list(iter_events(connection, chain=STUDY))
    assert len(events) == events_before + 1  # the winner's save, and nothing of this one
    assert (events[-1].action, events[-1].after["version"]) == ("form.save", 2)
    _stored_equals_recomputed(node)  # and the chain verifies


def test_nothing_changed_meanwhile_so_the_snapshots_plan_is_written(
    node: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = _between_plan_and_write(monkeypatch, lambda: None)
    saved = _save(node, "randomisation", "randomisation", 0, rand_date="2025-01-10")
    assert plans == [True]
    assert saved.version == 1
    _stored_equals_recomputed(node)


def test_a_save_that_creates_its_event_is_planned_under_the_write_lock(
    node: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = _between_plan_and_write(monkeypatch, lambda: None)
    saved = _save(node, "end_of_study", "status", 0, last_contact="2025-07-01")
    assert plans == [True, False]  # the snapshot found no event to save into
    assert (saved.event, saved.version, saved.state) == ("end_of_study", 1, "in_progress")


DEMOGRAPHICS = {"initials": "AL", "birth_date": "1961-04-02", "age": 63, "sex": "M"}


def test_a_save_by_someone_the_identifiers_are_masked_for_is_refused_and_changes_nothing(
    node: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(node, "screening", "demographics", 0, **DEMOGRAPHICS)
    # every role that enters data reads identifiers today: the rule guards the day one does not
    monkeypatch.setattr(data_entry, "may_see_identifiers", lambda *_: False)
    with pytest.raises(PermissionDeniedError, match="would remove them"):
        _save(node, "screening", "demographics", 1, age=64, sex="M", reason="typo")
    monkeypatch.undo()
    view = data_entry.read_form(node, COORDINATOR, STUDY, SUBJECT, "screening", "demographics")
    assert view.version == 1
    assert view.values["initials"] == "AL"
    assert view.values["age"] == "63"


def test_a_step_on_a_query_of_another_form_instance_is_not_found_and_changes_nothing(
    node: sa.Engine,
) -> None:
    _save(node, "screening", "demographics", 0, **DEMOGRAPHICS)
    monitor = Principal(
        12, "mon@sg.example", "Mon", frozenset({Grant(STUDY, "SG01", Role.MONITOR)})
    )
    opened = queries.open_query(
        node, monitor, STUDY, SUBJECT, "screening", "demographics", "age", "check the age"
    )
    query_id = opened.record.id
    with pytest.raises(NotFoundError):
        queries.answer_query(
            node, COORDINATOR, STUDY, query_id, "ok", on_form=(SUBJECT, "screening", "consent")
        )
    assert queries.get_query(node, monitor, STUDY, query_id).record.status == "open"
    answered = queries.answer_query(
        node, COORDINATOR, STUDY, query_id, "ok", on_form=(SUBJECT, "screening", "demographics")
    )
    assert answered.record.status == "answered"


def _crs_day(day: str, oxygen: str, **more: Any) -> dict[str, Any]:
    return {
        "assessment_date": day,
        "max_temp": "38.6",
        "hypotension": "0",
        "vasopressors": "0",
        "vasopressin": "0",
        "oxygen": oxygen,
        "antipyretic": "0",
        "tocilizumab": "0",
        "corticosteroids": "0",
        **more,
    }


def test_a_daily_form_does_not_read_its_own_items_from_another_day(node: sa.Engine) -> None:
    # day 1 on a nasal cannula at 4 L/min (CRS grade 2), day 2 without oxygen (grade 1):
    # day 1's flow is no value of day 2's form: without it day 2's derived CRS grade is
    # consistent, and the save is taken (as a file import takes the same days)
    day1 = _crs_day("2025-02-03", "low_flow_nasal_cannula", oxygen_flow="4")
    _save(node, "crs_daily", "crs_icans", 0, **day1)
    saved = _save(node, "crs_daily.2", "crs_icans", 0, **_crs_day("2025-02-04", "none"))
    assert saved.version == 1
    found = subjects.get_subject(node, COORDINATOR, STUDY, SUBJECT)
    with node.connect() as connection:
        rows = CaptureRepository(connection, cli_operator()).subject_values(found)
    stored = {(row.event, row.instance, row.item): row.text for row in rows}
    assert stored[("crs_daily", 1, "oxygen_flow")] == "4"
    assert stored[("crs_daily", 2, "oxygen")] == "none"
    assert ("crs_daily", 2, "oxygen_flow") not in stored
    _stored_equals_recomputed(node)
