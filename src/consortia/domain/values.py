"""Typed item values <-> stored rows, and where each item lives in a study.

Values are stored long: one row per (form instance, item, group instance) with the canonical
text and, for numbers and booleans, a float beside it for SQL aggregates. Group instance 0
is an item of a non-repeating group; ``n >= 1`` is instance ``n`` of a repeating group.

>>> from datetime import date
>>> from decimal import Decimal
>>> storage_text(Decimal("38.50")), storage_text(True), storage_text(("a", "b"))
('38.50', '1', 'a|b')
>>> storage_number(Decimal("38.5")), storage_number(date(2024, 1, 1))
(38.5, None)
>>> flatten({"ecog": 1, "events": [{"ae_grade": 3}, {}, {"ae_grade": 2}]})
{('ecog', 0): 1, ('ae_grade', 1): 3, ('ae_grade', 3): 2}
>>> nest({("ecog", 0): "1", ("ae_grade", 3): "2"}, {"ae_grade": "events"})
{'ecog': '1', 'events': [{}, {}, {'ae_grade': '2'}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal

from consortia.domain.study import Item, Study

__all__ = [
    "ItemPlace",
    "StudyIndex",
    "event_item_names",
    "flatten",
    "item_key",
    "nest",
    "storage_number",
    "storage_text",
]

MULTICHOICE_SEPARATOR = "|"


def storage_text(value: object) -> str:
    """The canonical text of a typed value (as :func:`validation.parse_value` reads it)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return MULTICHOICE_SEPARATOR.join(str(code) for code in value)
    return str(value)


def storage_number(value: object) -> float | None:
    """The float stored beside numbers and booleans; None for other types."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | Decimal | float):
        return float(value)
    return None


def flatten(values: Mapping[str, object]) -> dict[tuple[str, int], object]:
    """validate_form's values as {(item, group instance): typed value}, missing left out."""
    rows: dict[tuple[str, int], object] = {}
    for name, value in values.items():
        if isinstance(value, list):
            for number, instance in enumerate(value, 1):
                for item, typed in instance.items():
                    if typed is not None:
                        rows[item, number] = typed
        elif value is not None:
            rows[name, 0] = value
    return rows


def nest(rows: Mapping[tuple[str, int], object], group_of: Mapping[str, str]) -> dict[str, object]:
    """The inverse of :func:`flatten`: the shape validate_form takes and the API returns.

    ``group_of`` maps each item of a repeating group to its group's name.
    """
    values: dict[str, object] = {}
    for (item, number), value in sorted(rows.items(), key=lambda row: (row[0][1], row[0][0])):
        if number == 0:
            values[item] = value
            continue
        instances = values.setdefault(group_of[item], [])
        assert isinstance(instances, list)
        while len(instances) < number:
            instances.append({})
        instances[number - 1][item] = value
    return values


def item_key(item: str, group: str | None, number: int) -> str:
    """An item's key within its form: ``ecog`` or ``events[2].ae_grade``."""
    return item if number == 0 or group is None else f"{group}[{number}].{item}"


@dataclass(frozen=True, slots=True)
class ItemPlace:
    """Where an item is defined: its form, group, and whether the group repeats."""

    form: str
    group: str
    repeating: bool
    item: Item


def event_item_names(study: Study) -> dict[str, tuple[str, str]]:
    """``<item>_<event>`` -> (item, event) for each item of a non-repeating group whose form
    several non-repeating events collect: the value of the item at that event, as a derived
    variable may read it (``response_day28``) and as an EDC table names its column. A name
    an item or a derived variable already has is not given.

    >>> from consortia.domain.templates import load_template
    >>> names = event_item_names(load_template("cart-lbcl"))
    >>> names["response_day28"], "response" in names, "rand_date_randomisation" in names
    (('response', 'day28'), False, False)
    """
    events: dict[str, list[str]] = {}
    for event_name, event in study.events.items():
        if not event.repeating:
            for form_name in event.forms:
                events.setdefault(form_name, []).append(event_name)
    taken = set(study.derived)
    for each in study.forms.values():
        for group in each.groups.values():
            taken.update(group.items)
    names: dict[str, tuple[str, str]] = {}
    for form_name, form in study.forms.items():
        at = events.get(form_name, [])
        if len(at) < 2:
            continue
        for group in form.groups.values():
            if group.repeating:
                continue
            for item_name in group.items:
                for event_name in at:
                    name = f"{item_name}_{event_name}"
                    if name not in taken:
                        names.setdefault(name, (item_name, event_name))
    return names


@dataclass(frozen=True)
class StudyIndex:
    """Lookups over a study built once: items by name, repeating groups, identifiers, and
    the items at one event a derived variable may read (:func:`event_item_names`), keyed
    (item, event)."""

    study: Study
    items: Mapping[str, ItemPlace]
    repeating_group_of: Mapping[str, str]
    identifiers: frozenset[str]
    at_event: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, study: Study) -> StudyIndex:
        items: dict[str, ItemPlace] = {}
        for form_name, form in study.forms.items():
            for group_name, group in form.groups.items():
                for item_name, item in group.items.items():
                    items.setdefault(
                        item_name, ItemPlace(form_name, group_name, group.repeating, item)
                    )
        return cls(
            study=study,
            items=items,
            repeating_group_of={n: p.group for n, p in items.items() if p.repeating},
            identifiers=frozenset(n for n, p in items.items() if p.item.identifier),
            at_event={where: name for name, where in event_item_names(study).items()},
        )

    def key(self, item: str, number: int) -> str:
        """The item's key within its form (see :func:`item_key`)."""
        place = self.items.get(item)
        return item_key(item, place.group if place else None, number)
