"""The inputs of a data-entry form page, and the values a posted form holds.

:func:`groups` turns a form of the study into groups of typed inputs (one per item; a
repeating group as rows, one per instance and one empty row for the next) filled with the
values to show; :func:`posted_values` reads the posted fields back into the nested values
``save_form`` takes. Inputs are named by the item's key in the form (``ecog``,
``events[2].ae_grade``); a multichoice is one tick box per code (``name::code``). Field
names that are not items of the form are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from consortia.domain.parsing import MULTICHOICE_SEPARATOR
from consortia.domain.study import Event, Form, Item, ItemType, Study, Text
from consortia.domain.values import item_key

__all__ = [
    "REPEATED",
    "Field",
    "Group",
    "event_text",
    "flat_texts",
    "groups",
    "posted_values",
    "text_of",
]

REPEATED = re.compile(r"(\w+)\[(\d{1,4})\]\.(\w+)")
_INPUT_KINDS = {
    ItemType.INTEGER: "number",
    ItemType.DECIMAL: "number",
    ItemType.DATE: "date",
    ItemType.DATETIME: "datetime",
    ItemType.TIME: "time",
    ItemType.BOOLEAN: "boolean",
    ItemType.CHOICE: "choice",
    ItemType.MULTICHOICE: "multichoice",
    ItemType.FILE: "readonly",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One input of the form page."""

    name: str  # the item's key in the form: ``ecog``, ``doses[2].dose_mg``
    label: str
    kind: str  # text, number, date, datetime, time, boolean, choice, multichoice, readonly
    value: str
    unit: str
    required: bool
    help: str
    max_length: int | None
    choices: tuple[tuple[str, str], ...] = ()  # (code, label)
    chosen: frozenset[str] = frozenset()  # the codes ticked, for a multichoice
    error: str = ""


@dataclass(frozen=True, slots=True)
class Group:
    """An item group of the form as the page shows it."""

    name: str
    label: str
    repeating: bool
    headers: tuple[str, ...]  # item labels, for a repeating group's table
    rows: tuple[tuple[Field, ...], ...]  # one row for a plain group


def text_of(label: Text | None, language: str) -> str:
    """A study text (label, help) in ``language``; "" for none."""
    if label is None:
        return ""
    return str(getattr(label, language, label.en))


def event_text(events: Mapping[str, Event], event: str, instance: int | None, language: str) -> str:
    """A visit as a person reads it: its label in ``language`` (its name if the study has
    no such event), with the repeat's number from the second on (``Daily CRS/ICANS (2)``)."""
    label = text_of(events[event].label, language) if event in events else event
    return f"{label} ({instance})" if instance is not None and instance > 1 else label


def _entered(item: Item, name: str, values: Mapping[str, object]) -> tuple[str, frozenset[str]]:
    """The text an input shows for ``name``, and the codes ticked for a multichoice."""
    raw = values.get(name)
    text = "" if raw is None else str(raw)
    if item.type is ItemType.MULTICHOICE:
        return "", frozenset(code for code in text.split(MULTICHOICE_SEPARATOR) if code)
    return text, frozenset()


def _field(
    study: Study,
    language: str,
    name: str,
    item: Item,
    values: Mapping[str, object],
    errors: Mapping[str, str],
) -> Field:
    value, chosen = _entered(item, name, values)
    choices = tuple(
        (entry.code, text_of(entry.label, language))
        for entry in study.code_lists.get(item.code_list or "", ())
        if not item.allocated  # shown as the service gives it: the arm or its code
    )
    return Field(
        name=name,
        label=text_of(item.label, language),
        kind="readonly" if item.allocated else _INPUT_KINDS.get(item.type, "text"),
        value=value,
        unit=item.unit or "",
        required=item.required,
        help=text_of(item.help, language),
        max_length=item.max_length,
        choices=choices,
        chosen=chosen,
        error=errors.get(name, ""),
    )


def flat_texts(values: Mapping[str, object]) -> dict[str, object]:
    """A form view's nested values keyed by input name (``group[n].item`` in a group)."""
    flat: dict[str, object] = {}
    for name, value in values.items():
        if isinstance(value, list):
            for number, instance in enumerate(value, 1):
                for item, text in instance.items():
                    flat[f"{name}[{number}].{item}"] = text
        else:
            flat[name] = value
    return flat


def groups(
    study: Study,
    form: Form,
    language: str,
    values: Mapping[str, object],
    errors: Mapping[str, str],
) -> list[Group]:
    groups = []
    for group_name, group in form.groups.items():
        label = text_of(group.label, language)
        if not group.repeating:
            row = tuple(
                _field(study, language, name, item, values, errors)
                for name, item in group.items.items()
            )
            groups.append(Group(group_name, label, False, (), (row,)))
            continue
        numbers = [
            int(match[2])
            for key, value in values.items()
            if value not in (None, "")
            and (match := REPEATED.fullmatch(key)) is not None
            and match[1] == group_name
        ]
        instances = max(numbers, default=0) + 1  # and one empty row for the next
        rows = tuple(
            tuple(
                _field(study, language, item_key(name, group_name, n), item, values, errors)
                for name, item in group.items.items()
            )
            for n in range(1, instances + 1)
        )
        headers = tuple(text_of(item.label, language) for item in group.items.values())
        groups.append(Group(group_name, label, True, headers, rows))
    return groups


def posted_values(form: Form, fields: Mapping[str, str]) -> dict[str, object]:
    """The form's values from the posted fields, nested as ``save_form`` takes them.

    An empty input is a missing value. A multichoice arrives as one checkbox per code,
    ``name::code``. Empty rows at the end of a repeating group are dropped.
    """
    items: dict[str, Item] = {}
    repeating: dict[str, dict[str, Item]] = {}
    for group_name, group in form.groups.items():
        if group.repeating:
            repeating[group_name] = dict(group.items)
        else:
            items.update(group.items)
    flat: dict[str, str] = {}
    ticked: dict[str, list[str]] = {}
    for key, text in fields.items():
        name, tick, code = key.partition("::")
        if tick:
            if code and text:
                ticked.setdefault(name, []).append(code)
        elif text.strip():
            flat[name] = text
    flat |= {name: MULTICHOICE_SEPARATOR.join(codes) for name, codes in ticked.items()}
    values: dict[str, object] = {}
    instances: dict[str, dict[int, dict[str, object]]] = {}
    for name, value in flat.items():
        if name in items:
            values[name] = value
            continue
        match = REPEATED.fullmatch(name)
        if match is None or match[3] not in repeating.get(match[1], {}):
            continue  # not an item of this form: ignored, as the page never sends it
        instances.setdefault(match[1], {}).setdefault(int(match[2]), {})[match[3]] = value
    for group_name, numbered in instances.items():
        last = max(numbered)
        values[group_name] = [numbered.get(n, {}) for n in range(1, last + 1)]
    return values
