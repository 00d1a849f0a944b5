"""The item-level half of the ODM import: types, labels, ranges, code lists and expressions.

:class:`ItemReader` holds the state an import shares (the indexed definitions, the names
handed out, the problems found) and turns one ItemDef, as used by one ItemRef, into the study
language's item; :mod:`consortia.standards.odm_import` walks the structure around it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consortia.domain import expressions
from consortia.domain.study import ItemType
from consortia.exceptions import ExpressionError, Problem
from consortia.standards import odm_vendors as vendors
from consortia.standards.odm_names import NAME, Namer, oid_stem, shorten
from consortia.standards.odm_xml import (
    ALIAS_CHECKS,
    ALIAS_IDENTIFIER,
    ALIAS_TYPE,
    CONTEXT,
    LANG,
    ODM_NS,
    OPENCLINICA_NS,
    SOURCE_SYSTEM,
    Node,
)
from consortia.standards.redcap_logic import logic_to_expression

DEFS = {  # element -> required attributes
    "StudyEventDef": ("OID", "Name"),
    "FormDef": ("OID", "Name"),
    "ItemGroupDef": ("OID", "Name"),
    "ItemDef": ("OID", "Name", "DataType"),
    "CodeList": ("OID", "Name", "DataType"),
    "ConditionDef": ("OID", "Name"),
    "MethodDef": ("OID", "Name"),
}
TYPES: dict[str, str] = {  # ODM DataType -> study item type
    "text": "text",
    "string": "text",
    "integer": "integer",
    "float": "decimal",
    "double": "decimal",
    "hexFloat": "decimal",
    "base64Float": "decimal",
    "date": "date",
    "partialDate": "date",
    "incompleteDate": "date",
    "datetime": "datetime",
    "partialDatetime": "datetime",
    "incompleteDatetime": "datetime",
    "time": "time",
    "partialTime": "time",
    "incompleteTime": "time",
    "boolean": "boolean",
    "URI": "text",
    "hexBinary": "file",
    "base64Binary": "file",
    "durationDatetime": "text",
    "intervalDatetime": "text",
}
_DERIVED_TYPES = {
    "integer": "integer",
    "decimal": "decimal",
    "text": "text",
    "boolean": "boolean",
    "date": "date",
}


@dataclass
class Slot:
    """An item as it will appear in a form: where, under which name, from which elements."""

    form: str
    group: str
    name: str
    item_def: Node
    ref: Node
    kind: str
    options: list[Node] = field(default_factory=list)  # REDCap checkbox option ItemDefs


class ItemReader:
    """Shared state and the item-level translation; :class:`_Importer` adds the structure."""

    def __init__(self, root: Node, file: str) -> None:
        self.root = root
        self.file = file
        self.ours = root.get("SourceSystem") == SOURCE_SYSTEM
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.defs: dict[str, dict[str, Node]] = {kind: {} for kind in DEFS}
        self.units: dict[str, Node] = {}
        self.multiselect: dict[str, Node] = {}
        self.protocol: Node | None = None
        self.copied_zh: list[Node] = []
        self.code_lists: dict[str, list[dict[str, Any]]] = {}
        self.code_list_names: dict[str, str] = {}
        self.list_namer = Namer(self.ours)
        self.item_namer = Namer(self.ours)
        self.item_names: dict[str, str] = {}  # ItemDef OID and Name -> study name
        self.checks: dict[str, list[tuple[str, dict[str, Any], int]]] = {}
        self.form_names: dict[str, str] = {}
        self.used_defs: set[str] = set()

    # --- reporting ---------------------------------------------------------------------

    def error(self, node: Node, path: str, message: str) -> None:
        self.errors.append(Problem(path, message, self.file, node.line, node.column))

    def warn(self, node: Node, path: str, message: str) -> None:
        self.warnings.append(Problem(path, message, self.file, node.line, node.column))

    # --- text --------------------------------------------------------------------------

    def _text(
        self, node: Node | None, fallback: str | None = None, anchor: Node | None = None
    ) -> dict[str, str] | None:
        found: dict[str, str] = {}
        for translated in node.odm("TranslatedText") if node is not None else ():
            text = re.sub(r"\s+", " ", translated.text)
            lang = (translated.get(LANG) or "").lower()
            key = (
                "zh"
                if lang.startswith("zh")
                else "en"
                if lang in ("", "en") or lang.startswith("en-")
                else lang
            )
            if text:
                found.setdefault(key, text)
        en = found.get("en") or next((v for k, v in found.items() if k != "zh"), "")
        zh = found.get("zh", "")
        if not en and not zh:
            if not fallback or not fallback.strip():
                return None
            en = fallback.strip()
        if not zh:
            self.copied_zh.append(node or anchor or self.root)
            zh = en
        return {"en": en or zh, "zh": zh}

    def _unit(self, ref: Node) -> str:
        """A unit's text: its Symbol (English, else any language), else its Name."""
        unit = self.units[ref.get("MeasurementUnitOID") or ""]
        symbol = unit.first("Symbol")
        texts = {
            (t.get(LANG) or "en").lower()[:2]: t.text
            for t in (symbol.odm("TranslatedText") if symbol else ())
            if t.text
        }
        return texts.get("en") or next(iter(texts.values()), "") or unit.get("Name") or "unit"

    @staticmethod
    def _aliases(node: Node) -> dict[str, str]:
        return {alias.get("Context") or "": alias.get("Name") or "" for alias in node.odm("Alias")}

    def _kind(self, item_def: Node) -> str:
        data_type = item_def.get("DataType") or "text"
        declared = self._aliases(item_def).get(ALIAS_TYPE)
        if declared in ("multichoice", "file"):
            return declared
        oc = vendors.openclinica_item(item_def)
        if next(item_def.vendor(OPENCLINICA_NS, "MultiSelectListRef"), None) is not None:
            return "multichoice"
        coded = item_def.first("CodeListRef") is not None
        if coded and oc.response_type in ("checkbox", "multi-select"):
            return "multichoice"
        if oc.response_type == "file" or vendors.redcap(item_def, "FieldType") == "file":
            return "file"
        if data_type == "boolean":
            return "boolean"
        if coded:
            return "choice"
        return TYPES.get(data_type, "text")

    def _item(self, slot: Slot, fields: Mapping[str, tuple[str, ItemType]]) -> dict[str, Any]:
        item_def, ref = slot.item_def, slot.ref
        oid = item_def.get("OID") or ""
        path = f"ItemDef[@OID={oid!r}]"
        aliases = self._aliases(item_def)
        oc = vendors.openclinica_item(item_def)
        question = item_def.first("Question")
        description = item_def.first("Description")
        label = self._text(question) if question is not None else None
        if label is None:
            label = self._text(description, item_def.get("Name"), anchor=item_def)
            description = None
        data: dict[str, Any] = {"type": slot.kind, "label": label}
        if slot.kind == "multichoice" and slot.options:
            bare, _ = vendors.strip_choice_suffix(label["en"] if label else "")
            if label is not None and bare:
                label["en"], label["zh"] = bare, vendors.strip_choice_suffix(label["zh"])[0] or bare
            data["code_list"] = self._checkbox_list(slot)
        elif slot.kind in ("choice", "multichoice"):
            code_list = self._code_list(item_def)
            if code_list is None:
                self.warn(item_def, path, "the item's code list has no codes; imported as text")
                data["type"] = "text"
            else:
                data["code_list"] = code_list
        help_text = self._text(description) if description is not None else None
        comment = item_def.get("Comment") or vendors.redcap(item_def, "FieldNote")
        if help_text is None and comment:
            help_text = self._text(None, comment, anchor=item_def)
        if help_text is not None:
            data["help"] = help_text
        unit_ref = item_def.first("MeasurementUnitRef")
        if unit_ref is not None:
            data["unit"] = self._unit(unit_ref)
        digits, length = item_def.get("SignificantDigits"), item_def.get("Length")
        if data["type"] == "decimal" and digits and digits.isdigit():
            data["precision"] = min(int(digits), 12)
        if data["type"] == "text" and length and length.isdigit() and int(length) > 0:
            data["max_length"] = int(length)
        self._ranges(item_def, data, path)
        if ref.get("Mandatory") == "Yes":
            data["required"] = True
        show_if = self._show_if(slot, oc, fields, path)
        if show_if is not None:
            data["show_if"] = show_if
        if (
            aliases.get(ALIAS_IDENTIFIER) == "Yes"
            or oc.phi
            or (vendors.redcap(item_def, "Identifier") or "").lower() == "y"
        ):
            data["identifier"] = True
        if vendors.redcap(item_def, "FieldType") == "calc":
            self.warn(
                item_def,
                path,
                "REDCap calculated field imported as a plain item; its "
                "calculation is not translated",
            )
        self._hosted_checks(slot, aliases.get(ALIAS_CHECKS, ""))
        return data

    def _ranges(self, item_def: Node, data: dict[str, Any], path: str) -> None:
        bounds: dict[str, dict[str, float]] = {"range": {}, "soft_range": {}}
        for check in item_def.odm("RangeCheck"):
            comparator = check.get("Comparator")
            if comparator is None:
                continue
            if data["type"] not in ("integer", "decimal"):
                self.warn(
                    check, path, f"RangeCheck on a {data['type']} item is not supported; ignored"
                )
                continue
            values = [value.text for value in check.odm("CheckValue")]
            if comparator not in ("GE", "GT", "LE", "LT") or len(values) != 1:
                self.warn(
                    check,
                    path,
                    f"RangeCheck {comparator} with {len(values)} value(s) is "
                    "not supported (only GE, GT, LE, LT with one value); ignored",
                )
                continue
            try:
                number = float(values[0])
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                self.warn(check, path, f"CheckValue {values[0]!r} is not a number; ignored")
                continue
            if data["type"] == "integer":
                number = {
                    "GE": math.ceil,
                    "GT": lambda v: math.floor(v) + 1,
                    "LE": math.floor,
                    "LT": lambda v: math.ceil(v) - 1,
                }[comparator](number)
            elif comparator in ("GT", "LT"):
                self.warn(
                    check,
                    path,
                    f"RangeCheck {comparator} {values[0]} is imported as "
                    f"{'GE' if comparator == 'GT' else 'LE'} (ranges include their bounds)",
                )
            key = "soft_range" if check.get("SoftHard") == "Soft" else "range"
            end, pick = ("min", max) if comparator in ("GE", "GT") else ("max", min)
            previous = bounds[key].get(end)
            bounds[key][end] = float(number) if previous is None else pick(previous, number)
        hard, soft = bounds["range"], bounds["soft_range"]
        for key, found in (("range", hard), ("soft_range", soft)):
            if "min" in found and "max" in found and found["min"] > found["max"]:
                self.warn(
                    item_def,
                    path,
                    f"{key} min {found['min']:g} is above max {found['max']:g}; ignored",
                )
                found.clear()
        outside = ("min" in soft and "min" in hard and soft["min"] < hard["min"]) or (
            "max" in soft and "max" in hard and soft["max"] > hard["max"]
        )
        if outside:
            self.warn(
                item_def,
                path,
                "the soft range is not inside the hard range; the soft range is ignored",
            )
            soft.clear()
        for key, found in (("range", hard), ("soft_range", soft)):
            if found:
                data[key] = found

    # --- code lists --------------------------------------------------------------------

    def _code_list(self, item_def: Node) -> str | None:
        ref = item_def.first("CodeListRef")
        multiselect = next(item_def.vendor(OPENCLINICA_NS, "MultiSelectListRef"), None)
        if ref is not None:
            oid = ref.get("CodeListOID") or ""
            node = self.defs["CodeList"][oid]
        elif multiselect is not None and multiselect.get("MultiSelectListID") in self.multiselect:
            oid = multiselect.get("MultiSelectListID") or ""
            node = self.multiselect[oid]
        else:
            return None
        if oid not in self.code_lists:
            self._load_code_list(oid, node, self._entries(node, oid))
        return self.code_list_names[oid] if self.code_lists[oid] else None

    def _entries(self, node: Node, oid: str) -> list[dict[str, Any]]:
        path = f"CodeList[@OID={oid!r}]"
        rows: list[tuple[float, int, dict[str, Any]]] = []
        seen: set[str] = set()
        tags = {
            f"{{{ODM_NS}}}CodeListItem",
            f"{{{ODM_NS}}}EnumeratedItem",
            f"{{{OPENCLINICA_NS}}}MultiSelectListItem",
        }
        children = [child for child in node.children if child.tag in tags]
        for index, child in enumerate(children):
            code = child.get("CodedValue") or child.get("CodedOptionValue") or ""
            code = code.strip()
            if not code or len(code) > 64 or code in seen:
                self.warn(
                    child,
                    path,
                    f"code {code!r} is empty, longer than 64 characters or repeated; skipped",
                )
                continue
            seen.add(code)
            order = child.get("OrderNumber") or ""
            label = self._text(child.first("Decode"), code, anchor=child)
            rows.append(
                (float(order) if order.isdigit() else index, index, {"code": code, "label": label})
            )
        for external in node.odm("ExternalCodeList"):
            self.warn(
                external, path, "ExternalCodeList (a dictionary outside the file) is not supported"
            )
        return [entry for *_, entry in sorted(rows, key=lambda row: (row[0], row[1]))]

    def _all_code_lists(self) -> dict[str, Any]:
        """The code lists the imported items use, and those no ItemDef uses at all, in
        document order; lists that only skipped or boolean items use (REDCap's Checked /
        Unchecked, Yes / No and form-status lists) are left out."""
        referenced = {
            ref.get("CodeListOID")
            for item in self.defs["ItemDef"].values()
            for ref in item.odm("CodeListRef")
        }
        for oid, node in self.defs["CodeList"].items():
            if oid not in self.code_lists and oid not in referenced:
                self._load_code_list(oid, node, self._entries(node, oid))
        ordered = [oid for oid in self.defs["CodeList"] if oid in self.code_lists]
        ordered += [oid for oid in self.code_lists if oid not in self.defs["CodeList"]]
        return {
            self.code_list_names[oid]: self.code_lists[oid]
            for oid in ordered
            if self.code_lists[oid]
        }

    def _load_code_list(self, oid: str, node: Node, entries: list[dict[str, Any]]) -> None:
        self.code_lists[oid] = entries
        raw = node.get("Name") or oid
        self.code_list_names[oid] = self.list_namer.claim(
            raw if NAME.match(raw) or not self.ours else oid_stem(oid, True), "codes"
        )

    def _checkbox_list(self, slot: Slot) -> str:
        first = slot.options[0]
        ref = first.first("CodeListRef")
        code_list = self.defs["CodeList"].get(ref.get("CodeListOID") or "") if ref else None
        labels = vendors.checkbox_labels(code_list)
        entries = []
        for option in slot.options:
            match = vendors.CHECKBOX_OPTION.match(option.get("Name") or "")
            code = match.group("code") if match else option.get("Name") or ""
            question = option.first("Question")
            text = next(question.odm("TranslatedText"), None) if question else None
            suffix = vendors.strip_choice_suffix(text.text)[1] if text else ""
            label = labels.get(code) or suffix
            if not label:
                self.warn(
                    option,
                    f"ItemDef[@OID={option.get('OID')!r}]",
                    f"checkbox option {code!r} has no label; its code is used",
                )
            entries.append({"code": code, "label": self._text(None, label or code, anchor=option)})
        key = f"checkbox:{slot.name}"
        self.code_lists[key] = entries
        self.code_list_names[key] = self.list_namer.claim(slot.name, "codes")
        return self.code_list_names[key]

    # --- expressions -------------------------------------------------------------------

    def _expression(self, node: Node) -> tuple[str, bool] | None:
        """The FormalExpression to read (ours first) and whether it is ours."""
        candidates = list(node.odm("FormalExpression"))
        for candidate in candidates:
            if (candidate.get("Context") or "").lower() == CONTEXT and candidate.text:
                return candidate.text, True
        return (candidates[0].text, False) if candidates and candidates[0].text else None

    def _valid(self, source: str, node: Node, path: str, what: str) -> bool:
        try:
            parsed = expressions.parse(source)
            problems = expressions.check_names(parsed, set(self.item_names.values()))
        except ExpressionError as error:
            problems = [error]
        if problems:
            self.warn(
                node,
                path,
                f"{what} {shorten(source)!r} is not a study expression "
                f"({shorten(problems[0].message)}); not imported",
            )
        return not problems

    def _method_expression(self, ref: Node) -> str | None:
        method = self.defs["MethodDef"].get(ref.get("MethodOID") or "")
        found = self._expression(method) if method is not None else None
        if found is None:
            return None
        try:
            expressions.parse(found[0])
        except ExpressionError:
            return None
        return found[0]

    def _show_if(
        self,
        slot: Slot,
        oc: vendors.OpenClinicaItem,
        fields: Mapping[str, tuple[str, ItemType]],
        path: str,
    ) -> str | None:
        condition_oid = slot.ref.get("CollectionExceptionConditionOID")
        if condition_oid is not None:
            condition = self.defs["ConditionDef"][condition_oid]
            found = self._expression(condition)
            if found is None:
                self.warn(
                    condition,
                    path,
                    "the ConditionDef has no FormalExpression; show_if not imported",
                )
                return None
            source, ours = found
            inner = re.fullmatch(r"not \((.*)\)", source, re.DOTALL)
            show_if = inner.group(1) if ours and inner else f"not ({source})"
            return show_if if self._valid(show_if, condition, path, "condition") else None
        logic = vendors.redcap(slot.item_def, "BranchingLogic")
        if logic:
            try:
                translated = logic_to_expression(logic, fields)
            except (ExpressionError, RecursionError) as error:
                reason = (
                    error.message if isinstance(error, ExpressionError) else "nested too deeply"
                )
                self.warn(
                    slot.item_def,
                    path,
                    f"REDCap branching logic {shorten(logic)!r} could not be translated "
                    f"({shorten(reason)}); show_if not imported",
                )
                return None
            return (
                translated
                if self._valid(translated, slot.item_def, path, "branching logic")
                else None
            )
        if oc.control_item and oc.control_item in self.item_names:
            control = self.item_names[oc.control_item]
            return f"{control} == {oc.option_value!r}"
        return None

    def _hosted_checks(self, slot: Slot, entries: str) -> None:
        hosted = [
            check for check in slot.item_def.odm("RangeCheck") if check.get("Comparator") is None
        ]
        labels = entries.split()
        path = f"ItemDef[@OID={slot.item_def.get('OID')!r}]"
        for index, check in enumerate(hosted):
            found = self._expression(check)
            if found is None:
                self.warn(
                    check, path, "RangeCheck has neither Comparator nor FormalExpression; ignored"
                )
                continue
            form, name = slot.form, f"{slot.name}_check"
            item: str | None = slot.name
            if index < len(labels) and "." in labels[index]:
                form, rest = labels[index].split(".", 1)
                name, has_target, target = rest.partition("=")
                item = (target or None) if has_target else slot.name
            if not self._valid(found[0], check, path, "edit check"):
                continue
            data: dict[str, Any] = {
                "name": name,
                "expression": found[0],
                "severity": "warning" if check.get("SoftHard") == "Soft" else "error",
                "message": self._text(
                    check.first("ErrorMessage"), f"Check failed: {found[0]}", anchor=check
                ),
            }
            if item is not None:
                data["item"] = item
            self.checks.setdefault(form, []).append((name, data, check.line))

    def _derived(self, refs: list[tuple[Node, Node]], slots: list[Slot]) -> dict[str, Any]:
        derived: dict[str, Any] = {}
        pending: list[tuple[str, Node, Node, str]] = []
        for ref, item_def in refs:
            oid, raw = item_def.get("OID") or "", item_def.get("Name") or ""
            source = self._method_expression(ref)
            path = f"ItemDef[@OID={oid!r}]"
            if source is None:
                self.warn(
                    ref,
                    path,
                    "the computation method is not a study expression; the "
                    "derived variable is not imported",
                )
                continue
            name = self.item_namer.claim(
                raw if NAME.match(raw) or not self.ours else oid, "derived"
            )
            self.item_names.setdefault(oid, name)
            pending.append((name, ref, item_def, source))
        for name, ref, item_def, source in pending:
            path = f"ItemDef[@OID={item_def.get('OID')!r}]"
            if not self._valid(source, ref, path, "derived variable"):
                continue
            kind = TYPES.get(item_def.get("DataType") or "", "decimal")
            data: dict[str, Any] = {
                "expression": source,
                "type": _DERIVED_TYPES.get(kind, "decimal"),
                "label": self._text(
                    item_def.first("Question"), item_def.get("Name"), anchor=item_def
                ),
            }
            unit_ref = item_def.first("MeasurementUnitRef")
            if unit_ref is not None:
                data["unit"] = self._unit(unit_ref)
            derived[name] = data
        return derived
