"""Write a study's metadata as CDISC ODM 1.3.2 (a Snapshot with one MetaDataVersion).

How the study language maps to ODM (element order follows the schema's sequences):

=====================  ==========================================================================
study                  ``Study/@OID`` = ``S.<id>``; GlobalVariables: StudyName = title.en,
                       StudyDescription = description.en (else title.en), ProtocolName = id;
                       Protocol/Description = title en+zh; Protocol/Alias for phase, sponsor,
                       version, partners (JSON) and description.zh
events                 ``StudyEventDef SE.<name>``: Repeating, Type Scheduled|Unscheduled,
                       Description = label, FormRef per form; Alias day and window
forms                  ``FormDef F.<name>`` (Name = label.en, Description = label), ItemGroupRef
                       per group; Alias ``consortia:checks`` = the edit checks' order
groups                 ``ItemGroupDef IG.<form>.<group>``: Repeating, ItemRef Mandatory = required,
                       CollectionExceptionConditionOID for show_if
items                  ``ItemDef I.<name>``: DataType (below), Length = max_length,
                       SignificantDigits = precision, Description = help, Question = label en+zh,
                       MeasurementUnitRef, RangeCheck, CodeListRef, Alias for what ODM lacks
range / soft_range     RangeCheck Comparator GE / LE with CheckValue, SoftHard Hard / Soft
edit checks            RangeCheck *without* Comparator: FormalExpression Context="consortia"
                       (true = valid, as ODM defines it), SoftHard Hard = error, Soft = warning,
                       ErrorMessage = message; hosted by the check's item (else the first item
                       its expression names, else the form's first item); the ItemDef's Alias
                       ``consortia:checks`` names them ("form.check", "=" + the item otherwise)
show_if                ``ConditionDef CD.<item>`` with FormalExpression ``not (show_if)``: ODM's
                       CollectionExceptionCondition means "do not collect when true"
derived                ``MethodDef MT.<name>`` Type="Computation" with the FormalExpression, and an
                       ItemDef in the ItemGroupDef ``IG.derived``, whose ItemRefs carry MethodOID;
                       no FormDef refers to that group because nothing in it is collected
units                  ``BasicDefinitions/MeasurementUnit MU.<n>`` with Symbol = the unit text
code_lists             ``CodeList CL.<name>``, DataType integer when every code is a plain integer,
                       else text; CodeListItem/Decode en+zh
=====================  ==========================================================================

Data types: text→text, integer→integer, decimal→float, date, datetime, time, boolean as
themselves; choice→the code list's DataType; multichoice→text with CodeListRef and Alias
``consortia:type=multichoice`` (ODM 1.3.2 has no multi-select; a value lists the codes);
file→URI with Alias ``consortia:type=file`` (the value references the stored file).
``identifier`` → Alias ``consortia:identifier=Yes``. Sites, arms, the randomisation scheme and
the analysis plan have no home in ODM 1.3.2 metadata and are not written.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from consortia import __version__
from consortia.domain.study import (
    DerivedType,
    EditCheck,
    Item,
    ItemType,
    Range,
    Severity,
    Study,
    Text,
)
from consortia.standards.odm_xml import (
    ALIAS_CHECKS,
    ALIAS_DAY,
    ALIAS_DESCRIPTION_ZH,
    ALIAS_IDENTIFIER,
    ALIAS_PARTNERS,
    ALIAS_PHASE,
    ALIAS_SPONSOR,
    ALIAS_TYPE,
    ALIAS_VERSION,
    ALIAS_WINDOW,
    CONTEXT,
    DERIVED_GROUP_OID,
    LANG,
    ODM_NS,
    SOURCE_SYSTEM,
)

_DATA_TYPES = {
    ItemType.TEXT: "text",
    ItemType.INTEGER: "integer",
    ItemType.DECIMAL: "float",
    ItemType.DATE: "date",
    ItemType.DATETIME: "datetime",
    ItemType.TIME: "time",
    ItemType.BOOLEAN: "boolean",
    ItemType.MULTICHOICE: "text",
    ItemType.FILE: "URI",
}
_DERIVED_DATA_TYPES = {
    DerivedType.INTEGER: "integer",
    DerivedType.DECIMAL: "float",
    DerivedType.TEXT: "text",
    DerivedType.BOOLEAN: "boolean",
    DerivedType.DATE: "date",
}
_INTEGER_CODE = re.compile(r"-?(0|[1-9][0-9]*)")


def export_odm(study: Study, *, creation_datetime: datetime | None = None) -> bytes:
    """The study's metadata as an ODM 1.3.2 Snapshot (UTF-8 bytes, valid against the XSD).

    >>> from consortia.domain.study_yaml import load_study
    >>> xml = export_odm(load_study("examples/cart-tour.yaml"))  # doctest: +SKIP
    >>> xml[:38]  # doctest: +SKIP
    b"<?xml version='1.0' encoding='UTF-8'?>"
    """
    created = creation_datetime or datetime.now(UTC).replace(microsecond=0)
    info = study.study
    root = ET.Element(
        "ODM",
        {
            "xmlns": ODM_NS,
            "FileType": "Snapshot",
            "FileOID": f"{info.id}.v{info.version}.{created.strftime('%Y%m%dT%H%M%S')}",
            "CreationDateTime": created.isoformat(),
            "ODMVersion": "1.3.2",
            "Originator": info.sponsor,
            "SourceSystem": SOURCE_SYSTEM,
            "SourceSystemVersion": __version__,
        },
    )
    study_node = _el(root, "Study", {"OID": f"S.{info.id}"})
    global_vars = _el(study_node, "GlobalVariables")
    _el(global_vars, "StudyName", text=info.title.en)
    _el(
        global_vars,
        "StudyDescription",
        text=info.description.en if info.description else info.title.en,
    )
    _el(global_vars, "ProtocolName", text=info.id)
    units = _units(study)
    if units:
        basic = _el(study_node, "BasicDefinitions")
        for unit, oid in units.items():
            measurement = _el(basic, "MeasurementUnit", {"OID": oid, "Name": unit})
            _el(_el(measurement, "Symbol"), "TranslatedText", text=unit)
    _Writer(study, units).metadata(
        _el(
            study_node,
            "MetaDataVersion",
            {"OID": f"MDV.{info.version}", "Name": f"{info.id} version {info.version}"},
        )
    )
    ET.indent(root, space="  ")
    xml: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return xml + b"\n"


def export_odm_file(
    study: Study, path: str | Path, *, creation_datetime: datetime | None = None
) -> None:
    """Write :func:`export_odm` to ``path``."""
    Path(path).write_bytes(export_odm(study, creation_datetime=creation_datetime))


def _el(
    parent: ET.Element, tag: str, attrib: dict[str, str] | None = None, text: str | None = None
) -> ET.Element:
    node = ET.SubElement(parent, tag, attrib or {})
    if text is not None:
        node.text = text
    return node


def _translated(parent: ET.Element, tag: str, text: Text) -> None:
    node = _el(parent, tag)
    _el(node, "TranslatedText", {LANG: "en"}, text.en)
    _el(node, "TranslatedText", {LANG: "zh"}, text.zh)


def _aliases(parent: ET.Element, aliases: Iterable[tuple[str, str]]) -> None:
    for context, name in aliases:
        _el(parent, "Alias", {"Context": context, "Name": name})


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _units(study: Study) -> dict[str, str]:
    found: list[str] = [item.unit for *_, item in study.iter_items() if item.unit]
    found += [derived.unit for derived in study.derived.values() if derived.unit]
    return {unit: f"MU.{index}" for index, unit in enumerate(dict.fromkeys(found), start=1)}


def _yes(flag: bool) -> str:
    return "Yes" if flag else "No"


def _names_in(source: str) -> list[str]:
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return [node.id for node in ast.walk(tree) if isinstance(node, ast.Name)]


class _Writer:
    def __init__(self, study: Study, units: dict[str, str]) -> None:
        self.study = study
        self.units = units
        self.item_form = {name: form for form, _, name, _ in study.iter_items()}
        # host item -> [(form, check)] for the RangeChecks that carry edit checks
        self.hosted: dict[str, list[tuple[str, EditCheck]]] = {}
        for form_name, form in study.forms.items():
            for check in form.checks:
                host = self._host(form_name, check)
                if host is not None:
                    self.hosted.setdefault(host, []).append((form_name, check))

    def _host(self, form_name: str, check: EditCheck) -> str | None:
        if check.item in self.item_form:
            return check.item
        for name in _names_in(check.expression):
            if name in self.item_form:
                return name
        for group in self.study.forms[form_name].groups.values():
            for name in group.items:
                return name
        return next(iter(self.item_form), None)

    def metadata(self, mdv: ET.Element) -> None:
        study = self.study
        info = study.study
        protocol = _el(mdv, "Protocol")
        _translated(protocol, "Description", info.title)
        for order, (name, event) in enumerate(study.events.items(), start=1):
            _el(
                protocol,
                "StudyEventRef",
                {
                    "StudyEventOID": f"SE.{name}",
                    "OrderNumber": str(order),
                    "Mandatory": _yes(not event.unscheduled),
                },
            )
        aliases = [
            (ALIAS_PHASE, info.phase.value),
            (ALIAS_SPONSOR, info.sponsor),
            (ALIAS_VERSION, info.version),
        ]
        if info.partners:
            aliases.append((ALIAS_PARTNERS, json.dumps(list(info.partners), ensure_ascii=False)))
        if info.description:
            aliases.append((ALIAS_DESCRIPTION_ZH, info.description.zh))
        _aliases(protocol, aliases)

        for name, event in study.events.items():
            node = _el(
                mdv,
                "StudyEventDef",
                {
                    "OID": f"SE.{name}",
                    "Name": event.label.en,
                    "Repeating": _yes(event.repeating),
                    "Type": "Unscheduled" if event.unscheduled else "Scheduled",
                },
            )
            _translated(node, "Description", event.label)
            for order, form_name in enumerate(event.forms, start=1):
                _el(
                    node,
                    "FormRef",
                    {"FormOID": f"F.{form_name}", "OrderNumber": str(order), "Mandatory": "Yes"},
                )
            event_aliases = []
            if event.day is not None:
                event_aliases.append((ALIAS_DAY, str(event.day)))
            if event.window.before or event.window.after:
                event_aliases.append((ALIAS_WINDOW, f"{event.window.before} {event.window.after}"))
            _aliases(node, event_aliases)

        for name, form in study.forms.items():
            node = _el(
                mdv, "FormDef", {"OID": f"F.{name}", "Name": form.label.en, "Repeating": "No"}
            )
            _translated(node, "Description", form.label)
            for order, (group_name, group) in enumerate(form.groups.items(), start=1):
                _el(
                    node,
                    "ItemGroupRef",
                    {
                        "ItemGroupOID": f"IG.{name}.{group_name}",
                        "OrderNumber": str(order),
                        "Mandatory": _yes(not group.repeating),
                    },
                )
            if form.checks:
                _aliases(node, [(ALIAS_CHECKS, " ".join(check.name for check in form.checks))])

        self._item_groups(mdv)
        for _, _, name, item in study.iter_items():
            self._item_def(mdv, name, item)
        for name, derived in study.derived.items():
            node = _el(
                mdv,
                "ItemDef",
                {"OID": f"I.{name}", "Name": name, "DataType": _DERIVED_DATA_TYPES[derived.type]},
            )
            _translated(node, "Question", derived.label)
            if derived.unit:
                _el(node, "MeasurementUnitRef", {"MeasurementUnitOID": self.units[derived.unit]})
        for name, entries in study.code_lists.items():
            codes = [entry.code for entry in entries]
            node = _el(
                mdv,
                "CodeList",
                {"OID": f"CL.{name}", "Name": name, "DataType": _code_list_type(codes)},
            )
            for order, entry in enumerate(entries, start=1):
                code_node = _el(
                    node, "CodeListItem", {"CodedValue": entry.code, "OrderNumber": str(order)}
                )
                _translated(code_node, "Decode", entry.label)
        for _, _, name, item in study.iter_items():
            if item.show_if is not None:
                node = _el(
                    mdv, "ConditionDef", {"OID": f"CD.{name}", "Name": f"{name} not collected"}
                )
                _translated(
                    node,
                    "Description",
                    Text(
                        en=f"Do not collect {name} unless: {item.show_if}",
                        zh=f"除非满足 {item.show_if}，否则不采集 {name}",
                    ),
                )
                _el(node, "FormalExpression", {"Context": CONTEXT}, f"not ({item.show_if})")
        for name, derived in study.derived.items():
            node = _el(mdv, "MethodDef", {"OID": f"MT.{name}", "Name": name, "Type": "Computation"})
            _translated(node, "Description", derived.label)
            _el(node, "FormalExpression", {"Context": CONTEXT}, derived.expression)

    def _item_groups(self, mdv: ET.Element) -> None:
        for form_name, form in self.study.forms.items():
            for group_name, group in form.groups.items():
                node = _el(
                    mdv,
                    "ItemGroupDef",
                    {
                        "OID": f"IG.{form_name}.{group_name}",
                        "Name": group.label.en if group.label else group_name,
                        "Repeating": _yes(group.repeating),
                    },
                )
                if group.label:
                    _translated(node, "Description", group.label)
                for order, (name, item) in enumerate(group.items.items(), start=1):
                    ref = {
                        "ItemOID": f"I.{name}",
                        "OrderNumber": str(order),
                        "Mandatory": _yes(item.required),
                    }
                    if item.show_if is not None:
                        ref["CollectionExceptionConditionOID"] = f"CD.{name}"
                    _el(node, "ItemRef", ref)
        if self.study.derived:
            node = _el(
                mdv,
                "ItemGroupDef",
                {"OID": DERIVED_GROUP_OID, "Name": "Derived variables", "Repeating": "No"},
            )
            _translated(node, "Description", Text(en="Derived variables", zh="衍生变量"))
            for order, name in enumerate(self.study.derived, start=1):
                _el(
                    node,
                    "ItemRef",
                    {
                        "ItemOID": f"I.{name}",
                        "OrderNumber": str(order),
                        "Mandatory": "No",
                        "MethodOID": f"MT.{name}",
                    },
                )

    def _item_def(self, mdv: ET.Element, name: str, item: Item) -> None:
        if item.type is ItemType.CHOICE and item.code_list in self.study.code_lists:
            codes = [entry.code for entry in self.study.code_lists[item.code_list]]
            data_type = _code_list_type(codes)
        else:
            data_type = _DATA_TYPES.get(item.type, "text")
        attrib = {"OID": f"I.{name}", "Name": name, "DataType": data_type}
        if item.max_length is not None:
            attrib["Length"] = str(item.max_length)
        if item.precision is not None:
            attrib["SignificantDigits"] = str(item.precision)
        node = _el(mdv, "ItemDef", attrib)
        if item.help:
            _translated(node, "Description", item.help)
        _translated(node, "Question", item.label)
        if item.unit:
            _el(node, "MeasurementUnitRef", {"MeasurementUnitOID": self.units[item.unit]})
        _range_checks(node, item.range, "Hard")
        _range_checks(node, item.soft_range, "Soft")
        entries = []
        for form_name, check in self.hosted.get(name, []):
            check_node = _el(
                node,
                "RangeCheck",
                {"SoftHard": "Hard" if check.severity is Severity.ERROR else "Soft"},
            )
            _el(check_node, "FormalExpression", {"Context": CONTEXT}, check.expression)
            _translated(check_node, "ErrorMessage", check.message)
            target = "" if check.item == name else f"={check.item or ''}"
            entries.append(f"{form_name}.{check.name}{target}")
        if item.code_list is not None:
            _el(node, "CodeListRef", {"CodeListOID": f"CL.{item.code_list}"})
        aliases = []
        if item.type in (ItemType.MULTICHOICE, ItemType.FILE):
            aliases.append((ALIAS_TYPE, item.type.value))
        if item.identifier:
            aliases.append((ALIAS_IDENTIFIER, "Yes"))
        if entries:
            aliases.append((ALIAS_CHECKS, " ".join(entries)))
        _aliases(node, aliases)


def _code_list_type(codes: list[str]) -> str:
    return "integer" if codes and all(_INTEGER_CODE.fullmatch(c) for c in codes) else "text"


def _range_checks(node: ET.Element, bounds: Range | None, soft_hard: str) -> None:
    if bounds is None:
        return
    for comparator, value in (("GE", bounds.min), ("LE", bounds.max)):
        if value is None:
            continue
        check = _el(node, "RangeCheck", {"Comparator": comparator, "SoftHard": soft_hard})
        _el(check, "CheckValue", text=_number(value))
        shown = _number(value)
        if soft_hard == "Hard":
            en = f"The value must be {'at least' if comparator == 'GE' else 'at most'} {shown}"
            zh = f"数值必须{'不小于' if comparator == 'GE' else '不大于'} {shown}"
        else:
            en = (
                f"The value is {'below' if comparator == 'GE' else 'above'} the expected "
                f"{shown}; please confirm it"
            )
            zh = f"数值{'低于' if comparator == 'GE' else '高于'}预期的 {shown}，请核实"
        _translated(check, "ErrorMessage", Text(en=en, zh=zh))
