"""Checking a form's values as the page holds them, without saving: the live form.

The page sends what the person has typed so far; the node answers with what a save would
say (hard errors, soft warnings), which items the study's ``show_if`` hides for those values
and which required items are still empty. It is the same check a save runs
(:func:`~consortia.domain.validation.validate_form` with the subject's other forms as
context), so the server stays the judge: the page only shows its answer sooner.

Nothing is written and nothing is audited (a check changes nothing and reveals nothing the
form page did not already show the same principal); the principal must be allowed to enter
data at the subject's site.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Engine

from consortia.auth.policy import Action
from consortia.auth.principal import Principal
from consortia.domain.schedule import parse_event_ref
from consortia.domain.validation import FormCheck, validate_form
from consortia.services.common import find_subject, require_in_study, visible_study
from consortia.services.studies import current_definition
from consortia.services.subject_values import subject_context
from consortia.services.unit_of_work import reading

__all__ = ["LiveCheck", "check_entry"]


@dataclass(frozen=True, slots=True)
class LiveCheck:
    """What a save of these values would say, by item path (``forms.<form>.<item>``)."""

    check: FormCheck
    #: required items that are shown and still empty (required once the form is complete)
    missing: frozenset[str]


def check_entry(
    engine: Engine,
    principal: Principal,
    where: tuple[str, str, str, str],
    values: Mapping[str, object],
    *,
    complete: bool,
    today: date | None = None,
) -> LiveCheck:
    """Check ``values`` of form ``where`` = (study, subject, event ref, form) without saving."""
    study, subject_id, ref, form = where
    visible_study(principal, study)
    event_name, instance = parse_event_ref(ref)
    with reading(engine, principal) as work:
        definition = current_definition(work.connection, study)
        subject = find_subject(work.connection, principal, study, subject_id)
        require_in_study(principal, Action.DATA_ENTER, study, subject.site)
        rows = work.capture().subject_values(subject)
    context = subject_context(
        definition,
        rows,
        exclude=(event_name, instance, form),
        prefer_event=(event_name, instance),
    )
    check = validate_form(
        definition.study, form, values, complete=complete, context=context, today=today
    )
    missing = frozenset(
        problem.path
        for problem in validate_form(
            definition.study, form, values, complete=True, context=context, today=today
        ).errors
        if problem.message == "is required"
    )
    return LiveCheck(check=check, missing=missing)
