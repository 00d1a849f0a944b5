"""A study's names in REDCap: field, instrument and unique event names, and checkbox columns.

REDCap names are lowercase letters, digits and ``_``; :func:`redcap_names` gives each item,
form and event of a study its unique REDCap name, as the dictionary export writes them and
as a record export from REDCap uses them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from consortia.domain.study import Study

__all__ = ["RedcapNames", "checkbox_column", "redcap_names"]


def plain_name(raw: str) -> str:
    """A REDCap name as a study name: lowercase letters, digits and _, a letter first."""
    name = re.sub(r"[^a-z0-9_]", "_", raw.strip().lower())
    return (name if re.match(r"[a-z]", name) else f"f_{name}")[:64]


@dataclass(frozen=True, slots=True)
class RedcapNames:
    """The names a study has in REDCap, as :func:`export_redcap` writes them.

    ``fields``: item or derived variable -> field name; ``forms``: form -> instrument name;
    ``events``: event -> unique event name in arm 1 (REDCap derives those from the event
    names a project defines; see :func:`redcap_names`); ``derived_form``: the instrument
    holding the derived variables (calc fields).
    """

    record_id: str
    fields: Mapping[str, str]
    forms: Mapping[str, str]
    events: Mapping[str, str]
    derived_form: str


def _unique(names: Iterable[str], shorten: Callable[[str], str]) -> dict[str, str]:
    """Each name shortened, made unique with ``_2``, ``_3`` when two would collide."""
    result: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        redcap, suffix = shorten(name), 1
        while redcap in taken:
            suffix += 1
            redcap = f"{shorten(name)[:60]}_{suffix}"
        result[name] = redcap
        taken.add(redcap)
    return result


def _event_stem(name: str) -> str:
    """REDCap's stem of a unique event name: lowercase, at most 18 characters, no '_' last."""
    return re.sub(r"[^a-z0-9_]", "", name.strip().lower().replace(" ", "_"))[:18].rstrip("_")


def redcap_names(study: Study) -> RedcapNames:
    """The study's names in REDCap: lowercase, unique; ``record_id`` first.

    Unique event names follow REDCap's rule for an event named like the study's event:
    lowercase, at most 18 characters, then ``_arm_1``. Two events equal in their first 18
    characters are numbered here (``_2``); REDCap may name such a pair differently.

    >>> from consortia.domain.templates import load_template
    >>> names = redcap_names(load_template("cart-lbcl"))
    >>> names.record_id, names.forms["ae"], names.events["end_of_study"]
    ('record_id', 'ae', 'end_of_study_arm_1')
    """
    fields = _unique([*(name for _, _, name, _ in study.iter_items()), *study.derived], plain_name)
    forms = _unique(study.forms, plain_name)
    derived_form = "derived_variables"
    while derived_form in forms.values():
        derived_form += "_"
    stems = _unique(study.events, _event_stem)
    return RedcapNames(
        record_id="redcap_record_id" if "record_id" in fields.values() else "record_id",
        fields=fields,
        forms=forms,
        events={event: f"{stem}_arm_1" for event, stem in stems.items()},
        derived_form=derived_form,
    )


def checkbox_column(field_name: str, code: str) -> str:
    """The record-export column of one checkbox option: ``<field>___<code>``, the code in
    lowercase with characters other than letters, digits and ``_`` written as ``_``.

    >>> checkbox_column("ae_serious_criteria", "Life-threatening")
    'ae_serious_criteria___life_threatening'
    """
    return f"{field_name}___{re.sub(r'[^a-z0-9_]', '_', code.lower())}"
