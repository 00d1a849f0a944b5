"""Read study metadata from CDISC ODM 1.3.x: ours exactly, other systems' as well as ODM allows.

The mapping is the one :mod:`consortia.standards.odm_export` documents, read backwards; files
written by Consortia (``ODM/@SourceSystem="Consortia"``) keep their names as written, and
everything our Alias elements carry comes back, so ``import(export(study))`` equals the study
except for sites, arms and the analysis plan, which ODM 1.3.2 metadata has no place for.

Files from other systems (OpenClinica 3.x, REDCap, ...) are translated:

* names come from OIDs (events, forms, groups) or ``Name`` (items, code lists), made valid
  study names: lowercase letters, digits and ``_``, starting with a letter, at most 64
  characters, unique (``_2``, ``_3`` are added when two would collide);
* labels come from Question / Description / Decode TranslatedText (``xml:lang`` en and zh;
  text without a language counts as English), else from ``Name``; missing Chinese text is
  copied from the English and reported once;
* RangeCheck GE/GT/LE/LT on numbers become ``range`` (Hard) and ``soft_range`` (Soft); a
  RangeCheck with a FormalExpression that parses as a study expression becomes an edit check;
* a ``CollectionExceptionConditionOID`` becomes ``show_if = not (<condition>)`` when the
  condition parses; an ItemRef ``MethodOID`` whose method parses becomes a derived variable.

Everything that cannot be carried over is a warning with its line (ClinicalData, AdminData,
Include, ImputationMethod, Presentation, ArchiveLayout, extra MetaDataVersions, expressions in
other languages, ...). Broken files — not well-formed, wrong namespace, a missing OID, Name or
DataType, a reference to an OID that is not defined — raise :class:`InterchangeError` with
every problem and its line; nothing is returned.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from consortia.domain.study import ItemType, Study
from consortia.domain.study_yaml import load_study_text
from consortia.exceptions import InterchangeError, Problem, StudyDefinitionError
from consortia.standards import odm_vendors as vendors
from consortia.standards.odm_items import DEFS, TYPES, ItemReader, Slot
from consortia.standards.odm_names import NAME, Namer, oid_stem
from consortia.standards.odm_xml import (
    ALIAS_CHECKS,
    ALIAS_DAY,
    ALIAS_DESCRIPTION_ZH,
    ALIAS_PARTNERS,
    ALIAS_PHASE,
    ALIAS_SPONSOR,
    ALIAS_VERSION,
    ALIAS_WINDOW,
    MAX_BYTES,
    ODM_NS,
    OPENCLINICA_NS,
    Node,
    parse_xml,
)

_UNSUPPORTED = {
    "Include": "Include (metadata from another file) is not followed",
    "ImputationMethod": "ImputationMethod is not supported",
    "Presentation": "Presentation is not supported",
}
_OUTSIDE_STUDY = ("AdminData", "ReferenceData", "ClinicalData", "Association")


@dataclass(frozen=True, slots=True)
class OdmImport:
    """An imported study and what could not be carried over (each with its line)."""

    study: Study
    warnings: tuple[Problem, ...]


def import_odm(path: str | Path) -> OdmImport:
    """Read an ODM file's metadata as a study; raise :class:`InterchangeError` if it is broken.

    >>> result = import_odm("tests/standards/data/odm/openclinica.xml")  # doctest: +SKIP
    >>> result.study.summary(), [str(w) for w in result.warnings]  # doctest: +SKIP
    """
    file = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_BYTES:
            raise InterchangeError(
                [
                    Problem(
                        "",
                        f"the file is {size:,} bytes; ODM files over "
                        f"{MAX_BYTES:,} bytes are refused",
                        file,
                    )
                ]
            )
        data = Path(path).read_bytes()
    except OSError as error:
        raise InterchangeError(
            [Problem("", f"cannot read the file: {error.strerror}", file)]
        ) from None
    return import_odm_bytes(data, file)


def import_odm_bytes(data: bytes, file: str = "<input>") -> OdmImport:
    """Like :func:`import_odm`, from bytes; ``file`` names the source in problems."""
    root = parse_xml(data, file)
    try:
        return _Importer(root, file).run()
    except RecursionError:  # a last guard: nesting is handled where it is read
        raise InterchangeError(
            [Problem("", "the file nests something too deeply to import", file)]
        ) from None


class _Importer(ItemReader):
    """Walks the file's structure; :class:`ItemReader` translates each item."""

    def _refusal(self, node: Node, path: str, message: str) -> InterchangeError:
        return InterchangeError([Problem(path, message, self.file, node.line, node.column)])

    # --- structure ---------------------------------------------------------------------

    def run(self) -> OdmImport:
        root = self.root
        if root.tag != f"{{{ODM_NS}}}ODM":
            found = f"namespace {root.namespace}" if root.namespace else "no namespace"
            raise self._refusal(
                root,
                "",
                f"the root element is <{root.local}> in {found}; an ODM 1.3 file has <ODM> in "
                f"the namespace {ODM_NS}",
            )
        version = root.get("ODMVersion")
        if version and not version.startswith("1.3"):
            self.warn(root, "ODM", f"ODMVersion {version!r} is read as ODM 1.3.2")
        for child in root.children:
            if child.namespace == ODM_NS and child.local in _OUTSIDE_STUDY:
                self.warn(
                    child, child.local, f"{child.local} is not read by a metadata import; ignored"
                )
        studies = list(root.odm("Study"))
        if not studies:
            raise self._refusal(root, "ODM", "the file has no Study element")
        for extra in studies[1:]:
            self.warn(
                extra,
                "Study",
                f"only the first Study is imported; Study {extra.get('OID')!r} is ignored",
            )
        study = studies[0]
        versions = list(study.odm("MetaDataVersion"))
        if not versions:
            raise self._refusal(
                study,
                "Study",
                "the Study has no MetaDataVersion, so there is no metadata to import",
            )
        for extra in versions[1:]:
            self.warn(
                extra,
                "MetaDataVersion",
                f"only the first MetaDataVersion "
                f"({versions[0].get('OID')!r}) is imported; {extra.get('OID')!r} is ignored",
            )
        mdv = versions[0]
        for node, required in ((study, ("OID",)), (mdv, ("OID", "Name"))):
            for name in required:
                if not node.get(name):
                    self.error(node, node.local, f"{node.local} needs a {name} attribute")
        self._index(study, mdv)
        self._check_references()
        if self.errors:
            raise InterchangeError(sorted(self.errors, key=lambda p: (p.line, p.column)))
        data: dict[str, Any] = {"study": self._study_info(study, mdv)}
        forms, derived = self._forms()
        events = self._events()
        data["code_lists"] = self._all_code_lists()
        data["events"] = events
        data["forms"] = forms
        data["derived"] = derived
        if self.copied_zh:
            first = self.copied_zh[0]
            self.warn(
                first,
                "",
                f"{len(self.copied_zh)} text(s) have no Chinese (zh) "
                f"translation; the English text was copied (the first is here)",
            )
        imported = self._validate(data)
        return OdmImport(imported, tuple(sorted(self.warnings, key=lambda p: (p.line, p.column))))

    def _index(self, study: Node, mdv: Node) -> None:
        basic = study.first("BasicDefinitions")
        for unit in basic.odm("MeasurementUnit") if basic else ():
            oid = unit.get("OID")
            if oid is None or unit.get("Name") is None:
                self.error(unit, "MeasurementUnit", "MeasurementUnit needs OID and Name")
            else:
                self.units[oid] = unit
        for child in mdv.children:
            if child.tag == f"{{{OPENCLINICA_NS}}}MultiSelectList" and child.get("ID"):
                self.multiselect[child.get("ID") or ""] = child
            if child.namespace != ODM_NS:
                continue
            local = child.local
            if local in _UNSUPPORTED:
                self.warn(child, local, f"{_UNSUPPORTED[local]}; ignored")
            elif local == "Protocol":
                self.protocol = child
            elif local in DEFS:
                missing = [name for name in DEFS[local] if not child.get(name)]
                oid = child.get("OID")
                path = f"{local}[@OID={oid!r}]" if oid else local
                for name in missing:
                    self.error(child, path, f"{local} needs a {name} attribute")
                if oid is None:
                    continue
                if oid in self.defs[local]:
                    self.error(
                        child,
                        path,
                        f"OID {oid!r} is defined twice; the first "
                        f"{local} is at line {self.defs[local][oid].line}",
                    )
                    continue
                data_type = child.get("DataType")
                if local == "ItemDef" and data_type and data_type not in TYPES:
                    self.error(
                        child,
                        path,
                        f"DataType {data_type!r} is not an ODM 1.3.2 data "
                        f"type; expected one of {', '.join(sorted(TYPES))}",
                    )
                self.defs[local][oid] = child
            else:
                self.warn(
                    child, local, f"{local} is not an ODM 1.3.2 MetaDataVersion element; ignored"
                )

    def _ref(self, node: Node, attribute: str, kind: str, path: str) -> None:
        oid = node.get(attribute)
        if oid is None:
            self.error(node, path, f"{node.local} needs a {attribute} attribute")
        elif oid not in (self.units if kind == "MeasurementUnit" else self.defs[kind]):
            self.error(node, path, f"{node.local} refers to {kind} {oid!r}, which is not defined")

    def _check_references(self) -> None:
        if self.protocol is not None:
            for ref in self.protocol.odm("StudyEventRef"):
                self._ref(ref, "StudyEventOID", "StudyEventDef", "Protocol")
        for oid, event in self.defs["StudyEventDef"].items():
            for ref in event.odm("FormRef"):
                self._ref(ref, "FormOID", "FormDef", f"StudyEventDef[@OID={oid!r}]")
        for oid, form in self.defs["FormDef"].items():
            path = f"FormDef[@OID={oid!r}]"
            for ref in form.odm("ItemGroupRef"):
                self._ref(ref, "ItemGroupOID", "ItemGroupDef", path)
            for layout in form.odm("ArchiveLayout"):
                self.warn(
                    layout, path, "ArchiveLayout (a PDF of the form) is not supported; ignored"
                )
        for oid, group in self.defs["ItemGroupDef"].items():
            path = f"ItemGroupDef[@OID={oid!r}]"
            for ref in group.odm("ItemRef"):
                self._ref(ref, "ItemOID", "ItemDef", path)
                if ref.get("CollectionExceptionConditionOID") is not None:
                    self._ref(ref, "CollectionExceptionConditionOID", "ConditionDef", path)
                if ref.get("MethodOID") is not None:
                    self._ref(ref, "MethodOID", "MethodDef", path)
                if ref.get("ImputationMethodOID") is not None:
                    self.warn(ref, path, "ImputationMethodOID is not supported; ignored")
        for oid, item in self.defs["ItemDef"].items():
            path = f"ItemDef[@OID={oid!r}]"
            for ref in item.odm("CodeListRef"):
                self._ref(ref, "CodeListOID", "CodeList", path)
            for ref in item.odm("MeasurementUnitRef"):
                self._ref(ref, "MeasurementUnitOID", "MeasurementUnit", path)
            for external in item.odm("ExternalQuestion"):
                self.warn(external, path, "ExternalQuestion is not supported; ignored")
        for oid, code_list in self.defs["CodeList"].items():
            for entry in code_list.odm("CodeListItem"):
                if entry.get("CodedValue") is None:
                    self.error(
                        entry,
                        f"CodeList[@OID={oid!r}]",
                        "CodeListItem needs a CodedValue attribute",
                    )

    # --- study, events -----------------------------------------------------------------

    def _study_info(self, study: Node, mdv: Node) -> dict[str, Any]:
        global_vars = study.first("GlobalVariables")

        def part(name: str) -> str:
            node = global_vars.first(name) if global_vars else None
            return node.text if node else ""

        aliases = self._aliases(self.protocol) if self.protocol is not None else {}
        raw_id = part("ProtocolName") or study.get("OID") or ""
        study_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw_id).strip("_.-")[:64] or "imported"
        description = self.protocol.first("Description") if self.protocol is not None else None
        title = (
            (self._text(description) if description is not None else None)
            or self._text(None, part("StudyName") or study_id, anchor=global_vars or study)
            or {"en": study_id, "zh": study_id}
        )
        info: dict[str, Any] = {"id": study_id, "title": title}
        phase = aliases.get(ALIAS_PHASE) or vendors.phase(
            vendors.openclinica_study(mdv, "StudyPhase")
        )
        if phase is None:
            self.warn(study, "Study", "the file does not say the trial phase; set to 'n/a'")
        info["phase"] = phase or "n/a"
        sponsor = aliases.get(ALIAS_SPONSOR) or vendors.openclinica_study(mdv, "Sponsor")
        if not sponsor:
            self.warn(study, "Study", "the file does not name the sponsor; set to 'unknown'")
        info["sponsor"] = sponsor or "unknown"
        try:
            partners = json.loads(aliases.get(ALIAS_PARTNERS) or "[]")
        except (ValueError, RecursionError):
            partners = []
        if isinstance(partners, list) and partners:
            info["partners"] = [str(partner) for partner in partners]
        info["version"] = aliases.get(ALIAS_VERSION) or mdv.get("OID") or "1"
        text = part("StudyDescription")
        if ALIAS_DESCRIPTION_ZH in aliases:
            info["description"] = {"en": text or title["en"], "zh": aliases[ALIAS_DESCRIPTION_ZH]}
        elif text and text != part("StudyName") and not self.ours:
            info["description"] = self._text(None, text, anchor=global_vars)
        return info

    def _events(self) -> dict[str, Any]:
        order: list[Node] = []
        refs = list(self.protocol.odm("StudyEventRef")) if self.protocol is not None else []
        for ref in refs:
            event = self.defs["StudyEventDef"][ref.get("StudyEventOID") or ""]
            if event not in order:
                order.append(event)
        for oid, event in self.defs["StudyEventDef"].items():
            if event not in order:
                if refs:
                    self.warn(
                        event,
                        f"StudyEventDef[@OID={oid!r}]",
                        "the Protocol does not list this event; it is added at the end",
                    )
                order.append(event)
        namer = Namer(self.ours)
        events: dict[str, Any] = {}
        for event in order:
            oid = event.get("OID") or ""
            aliases = self._aliases(event)
            data: dict[str, Any] = {
                "label": self._text(event.first("Description"), event.get("Name"), anchor=event)
            }
            day = aliases.get(ALIAS_DAY) or vendors.redcap(event, "DayOffset")
            if day is not None and re.fullmatch(r"-?\d+", day.strip()):
                data["day"] = int(day)
            window = (aliases.get(ALIAS_WINDOW) or "").split()
            if not window and data.get("day") is not None:
                window = [
                    vendors.redcap(event, "OffsetMin") or "0",
                    vendors.redcap(event, "OffsetMax") or "0",
                ]
            if len(window) == 2 and all(re.fullmatch(r"\d+(\.0+)?", w) for w in window):
                before, after = (int(float(w)) for w in window)
                if before or after:
                    data["window"] = {"before": before, "after": after}
            data["repeating"] = event.get("Repeating") == "Yes"
            data["unscheduled"] = event.get("Type") == "Unscheduled"
            forms = [self.form_names[ref.get("FormOID") or ""] for ref in event.odm("FormRef")]
            data["forms"] = list(dict.fromkeys(forms))
            events[namer.claim(oid_stem(oid, self.ours), "event")] = data
        return events

    # --- forms, items ------------------------------------------------------------------

    def _forms(self) -> tuple[dict[str, Any], dict[str, Any]]:
        namer = Namer(self.ours)
        self.form_names = {
            oid: namer.claim(oid_stem(oid, self.ours), "form") for oid in self.defs["FormDef"]
        }
        used_groups: set[str] = set()
        slots: list[Slot] = []
        derived_refs: list[tuple[Node, Node]] = []
        form_groups: dict[str, dict[str, Node]] = {}
        for oid, form in self.defs["FormDef"].items():
            form_name = self.form_names[oid]
            if form.get("Repeating") == "Yes":
                self.warn(
                    form,
                    f"FormDef[@OID={oid!r}]",
                    "repeating forms are not supported; "
                    "the form is imported once per event (make the event repeating)",
                )
            group_namer = Namer(self.ours)
            form_groups[form_name] = {}
            for ref in form.odm("ItemGroupRef"):
                group_oid = ref.get("ItemGroupOID") or ""
                group = self.defs["ItemGroupDef"][group_oid]
                used_groups.add(group_oid)
                group_name = group_namer.claim(oid_stem(group_oid, self.ours), "group")
                form_groups[form_name][group_name] = group
                slots += self._slots(form_name, group_name, group, derived_refs)
        for oid, group in self.defs["ItemGroupDef"].items():
            if oid in used_groups:
                continue
            refs = list(group.odm("ItemRef"))
            if refs and all(ref.get("MethodOID") for ref in refs):
                derived_refs += [
                    (ref, self.defs["ItemDef"][ref.get("ItemOID") or ""]) for ref in refs
                ]
            else:
                self.warn(
                    group,
                    f"ItemGroupDef[@OID={oid!r}]",
                    "no FormDef uses this ItemGroupDef; ignored",
                )
        derived = self._derived(derived_refs, slots)
        # what REDCap logic may name: each item under its OID, Name and REDCap variable
        fields: dict[str, tuple[str, ItemType]] = {}
        for slot in slots:
            for key in (
                slot.item_def.get("OID"),
                slot.item_def.get("Name"),
                vendors.redcap(slot.item_def, "Variable"),
            ):
                if key:
                    fields.setdefault(key, (slot.name, ItemType(slot.kind)))
        forms: dict[str, Any] = {}
        for oid, form in self.defs["FormDef"].items():
            form_name = self.form_names[oid]
            groups: dict[str, Any] = {}
            for group_name, group in form_groups[form_name].items():
                items = {
                    slot.name: self._item(slot, fields)
                    for slot in slots
                    if slot.form == form_name and slot.group == group_name
                }
                if not items and list(group.odm("ItemRef")):
                    continue  # only REDCap form-status fields or derived items were in it
                data: dict[str, Any] = {"items": items}
                label = self._group_label(group, group_name)
                if label is not None:
                    data["label"] = label
                if group.get("Repeating") == "Yes":
                    data["repeating"] = True
                groups[group_name] = data
            entry: dict[str, Any] = {
                "label": self._text(form.first("Description"), form.get("Name"), anchor=form),
                "groups": groups,
            }
            checks = self._form_checks(form_name, form)
            if checks:
                entry["checks"] = checks
            forms[form_name] = entry
        return forms, derived

    def _form_checks(self, form_name: str, form: Node) -> list[dict[str, Any]]:
        order = self._aliases(form).get(ALIAS_CHECKS, "").split()
        found = self.checks.get(form_name, [])

        def rank(entry: tuple[str, dict[str, Any], int]) -> tuple[int, int]:
            return order.index(entry[0]) if entry[0] in order else len(order), entry[2]

        namer = Namer(True)
        checks = []
        for name, data, _ in sorted(found, key=rank):
            data["name"] = namer.claim(name, "check")
            checks.append(data)
        return checks

    def _group_label(self, group: Node, name: str) -> dict[str, str] | None:
        description = group.first("Description")
        if description is not None:
            return self._text(description, group.get("Name"), anchor=group)
        if self.ours or group.get("Name") in (None, name, group.get("OID")):
            return None
        return self._text(None, group.get("Name"), anchor=group)

    def _slots(
        self, form_name: str, group_name: str, group: Node, derived_refs: list[tuple[Node, Node]]
    ) -> list[Slot]:
        slots: list[Slot] = []
        checkbox: dict[str, Slot] = {}
        for ref in group.odm("ItemRef"):
            item_def = self.defs["ItemDef"][ref.get("ItemOID") or ""]
            if vendors.is_form_status(item_def, form_name):
                continue
            if ref.get("MethodOID") and self._method_expression(ref) is not None:
                if not self.ours:
                    self.warn(
                        ref,
                        f"ItemGroupDef[@OID={group.get('OID')!r}]",
                        f"computed item {item_def.get('OID')!r} becomes a derived variable",
                    )
                derived_refs.append((ref, item_def))
                continue
            oid, raw = item_def.get("OID") or "", item_def.get("Name") or ""
            option = vendors.CHECKBOX_OPTION.match(raw)
            if option and item_def.get("DataType") == "boolean" and not self.ours:
                base = vendors.redcap(item_def, "Variable") or option.group("base")
                if base in checkbox:
                    checkbox[base].options.append(item_def)
                    self.item_names[oid] = checkbox[base].name
                    continue
                name = self.item_namer.claim(base, "item")
                slot = Slot(form_name, group_name, name, item_def, ref, "multichoice", [item_def])
                checkbox[base] = slot
            else:
                if oid in self.used_defs:
                    self.warn(
                        ref,
                        f"ItemGroupDef[@OID={group.get('OID')!r}]",
                        f"ItemDef {oid!r} is used twice; the second use gets its own name",
                    )
                self.used_defs.add(oid)
                name = self.item_namer.claim(
                    raw if NAME.match(raw) or not self.ours else oid, "item"
                )
                slot = Slot(form_name, group_name, name, item_def, ref, self._kind(item_def))
            self.item_names.setdefault(oid, name)
            self.item_names.setdefault(raw, name)
            self.item_names.setdefault(vendors.redcap(item_def, "Variable") or oid, name)
            slots.append(slot)
        return slots

    # --- validation --------------------------------------------------------------------

    def _validate(self, data: dict[str, Any]) -> Study:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
        try:
            return load_study_text(text, self.file)
        except StudyDefinitionError as error:
            raise InterchangeError(
                [
                    Problem(
                        problem.path,
                        f"the imported study is not valid: {problem.message}",
                        self.file,
                    )
                    for problem in error.problems
                ]
            ) from None
