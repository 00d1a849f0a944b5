"""What the ODM importer understands of OpenClinica 3.x and REDCap vendor extensions.

Other vendor extensions are ignored silently, as ODM's rules for extensions allow.

* OpenClinica (``xmlns:OpenClinica="http://www.openclinica.org/ns/odm_ext_v130/v3.1"``):
  ``OpenClinica:ItemDetails/ItemPresentInForm`` gives ``PHI`` (→ identifier), the
  ``ItemResponse/@ResponseType`` (checkbox and multi-select → multichoice, file → file) and
  ``SimpleConditionalDisplay`` (→ show_if); ``OpenClinica:MultiSelectList`` is a code list for
  multi-select items; ``OpenClinica:StudyDetails`` gives the sponsor and the phase.
* REDCap (``xmlns:redcap="https://projectredcap.org"``): ``redcap:BranchingLogic`` (→ show_if,
  translated by :func:`consortia.standards.redcap_logic.logic_to_expression`),
  ``redcap:Identifier="y"``, ``redcap:FieldNote`` (→ help), ``redcap:FieldType`` (checkbox,
  file, calc), ``redcap:DayOffset/OffsetMin/OffsetMax`` on events,
  checkbox fields exported as one boolean ItemDef per option (``race___1``), with the options in
  ``redcap:CheckboxChoices`` on their CodeList; and the ``<form>_complete`` status fields, which
  are REDCap bookkeeping and are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from consortia.standards.odm_xml import OPENCLINICA_NS, REDCAP_NS, Node

CHECKBOX_OPTION = re.compile(r"^(?P<base>[A-Za-z][A-Za-z0-9_]*?)___(?P<code>[A-Za-z0-9_-]+)$")
_CHOICE_SUFFIX = re.compile(r"\s*\(choice=(?P<label>.*)\)\s*$")

_PHASES = {
    "i": "1",
    "1": "1",
    "phase i": "1",
    "phase 1": "1",
    "phasei": "1",
    "i/ii": "1/2",
    "1/2": "1/2",
    "phase i/ii": "1/2",
    "phase 1/2": "1/2",
    "ii": "2",
    "2": "2",
    "phase ii": "2",
    "phase 2": "2",
    "phaseii": "2",
    "ii/iii": "2/3",
    "2/3": "2/3",
    "phase ii/iii": "2/3",
    "phase 2/3": "2/3",
    "iii": "3",
    "3": "3",
    "phase iii": "3",
    "phase 3": "3",
    "phaseiii": "3",
    "iv": "4",
    "4": "4",
    "phase iv": "4",
    "phase 4": "4",
    "phaseiv": "4",
}


def redcap(node: Node, name: str) -> str | None:
    return node.get(f"{{{REDCAP_NS}}}{name}")


@dataclass(frozen=True, slots=True)
class OpenClinicaItem:
    """What OpenClinica says about an item in its ``ItemDetails`` extension."""

    response_type: str = ""
    phi: bool = False
    control_item: str = ""
    option_value: str = ""


def openclinica_item(item_def: Node) -> OpenClinicaItem:
    for present in item_def.vendor(OPENCLINICA_NS, "ItemPresentInForm"):
        response = next(present.vendor(OPENCLINICA_NS, "ItemResponse"), None)
        control = next(present.vendor(OPENCLINICA_NS, "ControlItemName"), None)
        option = next(present.vendor(OPENCLINICA_NS, "OptionValue"), None)
        return OpenClinicaItem(
            response_type=(response.get("ResponseType") or "").lower() if response else "",
            phi=(present.get("PHI") or "").lower() in {"true", "yes", "1"},
            control_item=control.text if control else "",
            option_value=option.text if option else "",
        )
    return OpenClinicaItem()


def openclinica_study(mdv: Node, what: str) -> str:
    """``Sponsor`` or ``StudyPhase`` from ``OpenClinica:StudyDetails`` ("" when absent)."""
    node = next(mdv.vendor(OPENCLINICA_NS, what), None)
    return node.text if node else ""


def phase(text: str) -> str | None:
    """A study-language phase for a phase written by another system, or None."""
    cleaned = re.sub(r"\s+", " ", text.strip().lower().replace("phase_", "phase "))
    return _PHASES.get(cleaned)


def checkbox_labels(code_list: Node | None) -> dict[str, str]:
    """REDCap's ``redcap:CheckboxChoices="1, White | 2, Black"`` as {code: label}."""
    raw = redcap(code_list, "CheckboxChoices") if code_list is not None else None
    labels: dict[str, str] = {}
    for part in (raw or "").split("|"):
        code, _, label = part.partition(",")
        if code.strip() and label.strip():
            labels[code.strip()] = label.strip()
    return labels


def strip_choice_suffix(label: str) -> tuple[str, str]:
    """``"Race (choice=White)"`` → ("Race", "White"); other labels → (label, "")."""
    match = _CHOICE_SUFFIX.search(label)
    if match is None:
        return label, ""
    return label[: match.start()], match.group("label").strip()


def is_form_status(item_def: Node, form_name: str) -> bool:
    """REDCap's ``<form>_complete`` field (Incomplete / Unverified / Complete)."""
    oid = item_def.get("OID") or ""
    return redcap(item_def, "Variable") is not None and oid == f"{form_name}_complete"
