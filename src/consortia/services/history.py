"""The history of an item, a form or a subject, read from the audit trail.

The audit trail is the record of every change, so history is not stored twice: a form's
history is the events about it; an item's history is the form's ``form.save`` events that
changed that item, each with the value before and after, who, when and why. Identifier
values are masked for callers without identifier access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from consortia.auth.policy import Action, may_see_identifiers
from consortia.auth.principal import Principal
from consortia.domain.schedule import event_ref, parse_event_ref
from consortia.services.common import (
    check_page,
    find_subject,
    form_audit_id,
    require_in_study,
    visible_study,
)
from consortia.services.form_events import FORM_SAVE
from consortia.services.unit_of_work import reading
from consortia.storage.audit import AuditEvent
from consortia.storage.repositories import IDENTIFIERS_KEY

__all__ = ["AuditEvent", "ItemChange", "form_history", "item_history", "subject_history"]


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One change of one item: its value before and after (None: empty or masked)."""

    seq: int
    at: str
    actor: str
    action: str
    before: str | None
    after: str | None
    reason: str | None
    masked: bool = False  # an identifier the caller may not see: before/after withheld


def _events(
    engine: Engine,
    principal: Principal,
    study: str,
    subject_id: str,
    form_at: tuple[str, str] | None,
    page: tuple[int, int],
) -> list[AuditEvent]:
    visible_study(principal, study)
    limit, offset = page
    check_page(limit, offset)
    with reading(engine, principal) as work:
        subject = find_subject(work.connection, principal, study, subject_id)
        require_in_study(principal, Action.SUBJECT_READ, study, subject.site)
        audits = work.audit_trail()
        if form_at is None:
            return audits.history(
                study, f"{study}/{subject_id}", descendants=True, limit=limit, offset=offset
            )
        name, instance = parse_event_ref(form_at[0])
        entity = form_audit_id(study, subject_id, event_ref(name, instance), form_at[1])
        return audits.history(study, entity, limit=limit, offset=offset)


def subject_history(
    engine: Engine,
    principal: Principal,
    study: str,
    subject_id: str,
    *,
    limit: int = 1000,
    offset: int = 0,
) -> list[AuditEvent]:
    """The events about the subject and its events and forms, oldest first (a page of)."""
    return _events(engine, principal, study, subject_id, None, (limit, offset))


def form_history(
    engine: Engine,
    principal: Principal,
    study: str,
    subject_id: str,
    ref: str,
    form: str,
    *,
    limit: int = 1000,
    offset: int = 0,
) -> list[AuditEvent]:
    """The events about one form instance: saves, verifications, signatures, locks (a page
    of them, oldest first)."""
    return _events(engine, principal, study, subject_id, (ref, form), (limit, offset))


def _value(state: Any, key: str) -> tuple[bool, str | None]:
    """(whether the item is in this before/after, its value)."""
    if not isinstance(state, dict):
        return False, None
    for part in ("values", IDENTIFIERS_KEY):
        content = state.get(part)
        if isinstance(content, dict) and key in content:
            return True, content[key]
    return False, None


def _identifier(state: Any, key: str) -> bool:
    """Whether the item travels under the identifiers of this before/after."""
    content = state.get(IDENTIFIERS_KEY) if isinstance(state, dict) else None
    return isinstance(content, dict) and key in content


def item_history(
    engine: Engine,
    principal: Principal,
    study: str,
    subject_id: str,
    ref: str,
    form: str,
    item_key: str,
) -> list[ItemChange]:
    """Each save that set, changed or removed one item (``ecog``, ``events[2].ae_grade``)."""
    changes = []
    for event in form_history(engine, principal, study, subject_id, ref, form):
        if event.action != FORM_SAVE:
            continue
        had, before = _value(event.before, item_key)
        has, after = _value(event.after, item_key)
        removed = isinstance(event.after, dict) and item_key in event.after.get("removed", ())
        if had or has or removed:
            hidden = (
                _identifier(event.before, item_key) or _identifier(event.after, item_key)
            ) and not (event.site and may_see_identifiers(principal, study, event.site))
            changes.append(
                ItemChange(
                    event.seq,
                    event.at,
                    event.actor,
                    event.action,
                    before,
                    after,
                    event.reason,
                    masked=hidden,
                )
            )
    return changes
