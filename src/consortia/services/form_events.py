"""The ``form.save`` audit event, built in one place for every way a form is saved.

An interactive save (the pages, the API) and an import write the same event: the form's
audit id ``study/subject/event/form``, the subject's site, ``before`` (the state, version
and the values it replaced; none for a new form), ``after`` (state, version, the values
with identifiers apart, and what else changed) and the reason. ``audit verify --state``
replays the trail from these events, so their shape is one contract.

>>> after = form_save_after(status="complete", version=1, values={"values": {"age": "64"}})
>>> entry = form_save_entry("CART01", "SG01-001", "baseline", "demographics", site="SG01",
...                         after=after)
>>> entry["action"], entry["entity_id"]
('form.save', 'CART01/SG01-001/baseline/demographics')
>>> entry["after"]
{'status': 'complete', 'version': 1, 'values': {'age': '64'}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

__all__ = ["FORM_SAVE", "form_audit_id", "form_save_after", "form_save_entry"]

FORM_SAVE = "form.save"


def form_audit_id(study: str, subject_id: str, ref: str, form: str) -> str:
    """The audit entity id of a form instance: ``study/subject/event/form``."""
    return f"{study}/{subject_id}/{ref}/{form}"


def form_save_after(
    *,
    status: str,
    version: int,
    values: Mapping[str, Mapping[str, str]],
    removed: Iterable[str] = (),
    derived: Mapping[str, str | None] | None = None,
    derived_all: Mapping[str, str] | None = None,
    visit_date: date | None = None,
) -> dict[str, Any]:
    """The ``after`` of a ``form.save`` event.

    ``values`` is ``{"values": {key: text}, "identifiers": {key: text}}`` (either part left
    out when empty); ``removed`` the keys the save emptied; ``derived`` the derived variables
    the save changed (None for one it removed); ``derived_all`` every derived variable an
    import leaves the subject with (on the subject's last imported form); ``visit_date``
    the event's visit date, when the save changed it.
    """
    after: dict[str, Any] = {"status": status, "version": version, **values}
    removed_keys = sorted(removed)
    if removed_keys:
        after["removed"] = removed_keys
    if derived:
        after["derived"] = dict(derived)
    if derived_all is not None:
        after["derived_all"] = dict(derived_all)
    if visit_date is not None:
        after["visit_date"] = visit_date.isoformat()
    return after


def form_save_entry(
    study: str,
    subject_id: str,
    ref: str,
    form: str,
    *,
    site: str,
    after: Mapping[str, Any] | None,
    before: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The fields of a ``form.save`` event (its chain is the study's), for
    :func:`~consortia.storage.audit.append_event` or, with ``after`` as JSON already,
    :func:`~consortia.storage.audit.append_events`."""
    return {
        "action": FORM_SAVE,
        "entity_type": "form",
        "entity_id": form_audit_id(study, subject_id, ref, form),
        "site": site,
        "before": None if before is None else dict(before),
        "after": None if after is None else dict(after),
        "reason": reason,
    }
