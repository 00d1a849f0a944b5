"""A subject's stored values as expressions see them: typed, one per item, and the derived
variables computed from them (the context of a form's checks, its show_if and its page)."""

from __future__ import annotations

from consortia.domain.validation import compute_derived, parse_item_value
from consortia.domain.values import storage_number, storage_text
from consortia.exceptions import ValidationError
from consortia.services.studies import Definition
from consortia.storage.capture import ValueRow

__all__ = ["derived_values", "subject_context"]


def _typed(definition: Definition, item: str, text: str) -> object:
    place = definition.index.items.get(item)
    if place is None:
        return None
    try:
        return parse_item_value(definition.study, place.item, text)
    except ValidationError:  # a value the current version no longer accepts
        return None


def subject_context(
    definition: Definition,
    rows: list[ValueRow],
    *,
    exclude: tuple[str, int, str] | None = None,
    prefer_event: tuple[str, int] | None = None,
) -> dict[str, object]:
    """Typed values of non-repeating items, one per item: the last in schedule order, or
    the one of ``prefer_event`` when it has one; and, named ``<item>_<event>``, an item's
    value at one event of several that collect its form
    (:func:`~consortia.domain.values.event_item_names`).

    ``exclude`` is (event, instance, form): the form being checked. Its items are left out
    at every event, not only at its own: the form's values are the ones entered now, so a
    value the same form holds at another visit (yesterday's oxygen flow on a daily form)
    must not stand in for one left empty today. A file import checks a form the same way.
    """
    latest: dict[str, object] = {}
    preferred: dict[str, object] = {}
    own_form = None if exclude is None else exclude[2]
    at_events = definition.index.at_event
    for row in rows:
        if row.group_instance != 0 or (row.event, row.instance, row.form) == exclude:
            continue
        if own_form is not None and row.form == own_form:
            continue
        value = _typed(definition, row.item, row.text)
        if value is None:
            continue
        latest[row.item] = value
        at_event = at_events.get((row.item, row.event))
        if at_event is not None:
            latest[at_event] = value
        if prefer_event == (row.event, row.instance):
            preferred[row.item] = value
    return latest | preferred


def derived_values(
    definition: Definition, rows: list[ValueRow]
) -> dict[str, tuple[str, float | None]]:
    """The subject's derived variables from all its values (those that can be computed)."""
    values = subject_context(definition, rows)
    derived = compute_derived(definition.study, values, strict=False)
    return {
        name: (storage_text(value), storage_number(value))
        for name, value in derived.items()
        if value is not None
    }
