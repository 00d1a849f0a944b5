"""Reading CDISC ODM 1.3.2 ClinicalData as form records, incrementally, refusing DOCTYPEs.

The mapping is the one our metadata export writes (:mod:`consortia.standards.odm_export`)::

    SubjectData/@SubjectKey               subject_id
    SubjectData/SiteRef/@LocationOID      site (a site code of the study)
    StudyEventData/@StudyEventOID         SE.<event>
    StudyEventData/@StudyEventRepeatKey   event_instance (1 when absent)
    FormData/@FormOID                     F.<form>
    ItemGroupData/@ItemGroupOID           IG.<form>.<group>
    ItemGroupData/@ItemGroupRepeatKey     the instance of a repeating group (when absent:
                                          the next one)
    ItemData/@ItemOID, @Value, @IsNull    I.<item>; its text value; IsNull="Yes" is missing

ODM 1.3.2 has no form status; ours is the vendor extension attribute
``FormData/@consortia:Complete`` (namespace :data:`CONSORTIA_NS`), which our ClinicalData
export writes: ``Yes`` complete, ``No`` not. Without it a form is not complete (required
items are then not demanded); any other value is a problem. A form given in several
FormData is complete when one says ``Yes`` and none says ``No``. ``TransactionType`` is not
interpreted: a file is read as a snapshot. Typed ``ItemDataString`` (etc.) elements are
refused, as are repeat keys other than whole numbers above 0.

The file is parsed with expat chunk by chunk, and nothing but the current event of the
current subject is kept, so a file of any size is read in constant memory. A DOCTYPE is
refused before anything in it is read, which rules out entity expansion ("billion laughs")
and external entities (XXE); every element's line comes from expat.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Final
from xml.parsers import expat

from consortia.domain.study import Study
from consortia.standards.clinical_records import (
    FileFormRecord,
    FormValues,
    ProblemLog,
    RecordAssembler,
    Slot,
    StudyLayout,
    whole,
)
from consortia.standards.odm_xml import CONSORTIA_NS, ODM_NS

__all__ = ["CONSORTIA_NS", "read_clinical_data"]

CHUNK: Final = 1 << 20
_SEPARATOR: Final = " "
_COMPLETE: Final = f"{CONSORTIA_NS}{_SEPARATOR}Complete"
_STATUSES: Final = {"Yes": True, "No": False}
_ITEM_DATA: Final = f"{ODM_NS}{_SEPARATOR}ItemData"
_PARENTS: Final = {
    "ClinicalData": "ODM",
    "SubjectData": "ClinicalData",
    "SiteRef": "SubjectData",
    "StudyEventData": "SubjectData",
    "FormData": "StudyEventData",
    "ItemGroupData": "FormData",
    "ItemData": "ItemGroupData",
}


class _Refused(Exception):
    """A construct a data file must not contain; ends parsing at once."""

    def __init__(self, message: str, parser: expat.XMLParserType) -> None:
        super().__init__(message)
        self.line, self.column = parser.CurrentLineNumber, parser.CurrentColumnNumber + 1


class _Reader:
    """expat handlers: they follow SubjectData > StudyEventData > FormData > ItemGroupData >
    ItemData and hand values to a :class:`RecordAssembler`."""

    def __init__(self, study: Study, file: str) -> None:
        self.layout = StudyLayout(study)
        self.problems = ProblemLog(file)
        self.assembler = RecordAssembler(file)
        self.ready: list[FileFormRecord] = []
        parser = expat.ParserCreate(namespace_separator=_SEPARATOR)
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self.doctype
        parser.EntityDeclHandler = self.entity
        parser.ExternalEntityRefHandler = self.external
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        self.parser = parser
        self.stack: list[str] = []  # ODM local names ("" for elements of other namespaces)
        self.clinical_data = False
        self.subject: str | None = None
        self.site: str | None = None
        self.event: str | None = None
        self.form: str | None = None
        self.group: str | None = None
        self.group_instance = self.group_line = 1
        self.handlers = {
            "SubjectData": self.subject_data,
            "SiteRef": self.site_ref,
            "StudyEventData": self.study_event_data,
            "FormData": self.form_data,
            "ItemGroupData": self.item_group_data,
            "ItemData": self.item_data,
        }
        self.item_oids = {f"I.{name}": slot for name, slot in self.layout.slots.items()}
        self.oids_by_group: dict[tuple[str, str], dict[str, Slot]] = {}
        for oid, slot in self.item_oids.items():
            self.oids_by_group.setdefault((slot.form, slot.group), {})[oid] = slot
        self.group_items: dict[str, Slot] = {}  # ItemOID -> slot, for the current group
        self.entry = FormValues("", 0, None)  # the current FormData's values

    # --- refusals ------------------------------------------------------------------------

    def doctype(self, *_: object) -> None:
        raise _Refused(
            "a DOCTYPE (document type declaration) is not allowed in an ODM file: it could "
            "expand entities or read other files",
            self.parser,
        )

    def entity(self, *_: object) -> None:  # pragma: no cover - needs a DOCTYPE first
        raise _Refused("an entity declaration is not allowed in an ODM file", self.parser)

    def external(self, *_: object) -> int:  # pragma: no cover - needs a DOCTYPE first
        raise _Refused("an external entity reference is not allowed in an ODM file", self.parser)

    # --- structure -----------------------------------------------------------------------

    def problem(self, path: str, message: str) -> None:
        parser = self.parser
        self.problems.add(path, message, parser.CurrentLineNumber, parser.CurrentColumnNumber + 1)

    def start(self, name: str, attributes: dict[str, str]) -> None:
        stack = self.stack
        if name == _ITEM_DATA and stack and stack[-1] == "ItemGroupData":
            stack.append("ItemData")  # the way most elements go: one per value
            self.item_data(attributes)
            return
        namespace, _, local = name.rpartition(_SEPARATOR)
        if not self.stack and (namespace != ODM_NS or local != "ODM"):
            where = f"in the namespace {namespace}" if namespace else "in no namespace"
            raise _Refused(
                f"the root element is <{local}> {where}; an ODM file has <ODM> in the "
                f"namespace {ODM_NS}",
                self.parser,
            )
        if namespace != ODM_NS:
            self.stack.append("")
            return
        parent = self.stack[-1] if self.stack else "ODM"
        self.stack.append(local)
        if local == "ClinicalData":
            self.clinical_data = True
        handler = self.handlers.get(local)
        if handler is not None:
            if parent == _PARENTS[local]:
                handler(attributes)
            elif local == "ItemData" or parent in _PARENTS:
                self.problem(local, f"{local} belongs inside {_PARENTS[local]}, not {parent}")
        elif local.startswith("ItemData") and parent == "ItemGroupData" and self.group:
            self.problem(local, f"{local} is not read; write ItemData with a Value attribute")

    def end(self, name: str) -> None:
        local = self.stack.pop()
        if local == "ItemData":
            return
        if local == "SubjectData":
            self.subject = None
        elif local == "StudyEventData":
            self.event = None
        elif local == "FormData":
            self.form = None
        elif local == "ItemGroupData":
            self.group = None

    def subject_data(self, attributes: dict[str, str]) -> None:
        self.subject = attributes.get("SubjectKey", "").strip() or None
        self.site = None
        if self.subject is None:
            self.problem("SubjectData/@SubjectKey", "SubjectData needs a SubjectKey")

    def site_ref(self, attributes: dict[str, str]) -> None:
        site, message = self.layout.site(attributes.get("LocationOID", "").strip())
        self.site = site
        if message:
            self.problem("SiteRef/@LocationOID", message)

    def study_event_data(self, attributes: dict[str, str]) -> None:
        oid = attributes.get("StudyEventOID", "")
        event = oid[3:] if oid.startswith("SE.") else ""
        self.event = event if event in self.layout.event_forms else None
        if self.event is None:
            known = ", ".join(f"SE.{name}" for name in self.layout.event_forms)
            self.problem("StudyEventData/@StudyEventOID", f"{oid!r} is not an event: {known}")
        key = attributes.get("StudyEventRepeatKey")
        instance = 1 if key is None else whole(key.strip())
        path = "StudyEventData/@StudyEventRepeatKey"
        if instance is None:
            self.problem(path, f"{key!r} is not an instance number (1, 2, …)")
        elif instance > 1 and event and event not in self.layout.repeats:
            self.problem(path, f"event {event} neither repeats nor is unscheduled")
            instance = None
        if self.subject is None or instance is None:
            self.event = None
        if self.event is not None and self.subject is not None and instance is not None:
            self.ready += self.assembler.start(self.subject, self.event, instance)

    def form_data(self, attributes: dict[str, str]) -> None:
        self.form = None
        if self.event is None:
            return  # the event is unknown (reported)
        oid = attributes.get("FormOID", "")
        form = oid[2:] if oid.startswith("F.") else ""
        if form not in self.layout.repeating_groups:
            forms = ", ".join(f"F.{name}" for name in self.layout.study.events[self.event].forms)
            self.problem("FormData/@FormOID", f"{oid!r} is not a form; forms here: {forms}")
            return
        message = self.layout.form_problem(form, self.event)
        key = attributes.get("FormRepeatKey", "1").strip()
        if not message and key != "1":
            message = f"form {form} does not repeat; FormRepeatKey {key!r} should be absent"
        if message:
            self.problem("FormData/@FormOID", message)
            return
        self.form = form
        self.entry = self.assembler.form(form, self.parser.CurrentLineNumber, self.site)
        status = attributes.get(_COMPLETE)
        complete = None if status is None else _STATUSES.get(status.strip())
        if complete is not None:  # complete when each of the form's FormData says so
            self.entry.complete = complete and self.entry.complete is not False
        elif status is not None:
            message = f"{status!r} is not a form status: Yes (complete) or No"
            self.problem("FormData/@consortia:Complete", message)

    def item_group_data(self, attributes: dict[str, str]) -> None:
        self.group = None
        if self.form is None:
            return
        oid = attributes.get("ItemGroupOID", "")
        form, _, group = oid[3:].partition(".") if oid.startswith("IG.") else ("", "", "")
        groups = self.layout.study.forms[self.form].groups
        if form != self.form or group not in groups:
            known = ", ".join(f"IG.{self.form}.{name}" for name in groups)
            self.problem(
                "ItemGroupData/@ItemGroupOID", f"{oid!r} is not a group of F.{self.form}: {known}"
            )
            return
        key = attributes.get("ItemGroupRepeatKey")
        path = "ItemGroupData/@ItemGroupRepeatKey"
        if not groups[group].repeating:
            if key is not None and key.strip() != "1":
                self.problem(path, f"group {group} does not repeat; leave the key out")
                return
            instance: int | None = 1
        elif key is None:
            instances = self.entry.groups.get(group)
            instance = max(instances) + 1 if instances else 1
        else:
            instance = whole(key.strip())
            if instance is None:
                self.problem(path, f"{key!r} is not an instance number (1, 2, …)")
                return
        self.group, self.group_instance = group, instance or 1
        self.group_items = self.oids_by_group.get((form, group), {})
        self.group_line = self.parser.CurrentLineNumber

    def item_data(self, attributes: dict[str, str]) -> None:
        if self.group is None:
            return  # outside a group that could be read (reported)
        oid = attributes.get("ItemOID", "")
        slot = self.group_items.get(oid)
        if slot is None:
            slot = self.item_oids.get(oid)
            where = f"IG.{slot.form}.{slot.group}" if slot else ""
            message = (
                f"{oid} belongs to {where}, not IG.{self.form}.{self.group}"
                if slot
                else f"{oid!r} is not an item of this study"
            )
            self.problem("ItemData/@ItemOID", message)
            return
        value = attributes.get("Value")
        if not value or value.isspace() or attributes.get("IsNull") == "Yes":
            return
        line = self.parser.CurrentLineNumber
        put = self.assembler.put
        conflict = put(self.entry, slot, self.group_instance, value, line, self.group_line)
        if conflict:
            self.problem("ItemData/@Value", conflict)


def read_clinical_data(study: Study, source: BinaryIO, *, file: str) -> Iterator[FileFormRecord]:
    """Form records from the ClinicalData of an ODM file; see the module docstring.

    Problems are collected as :func:`~consortia.standards.clinical_data.read_wide_csv`
    collects them; a file that is not well-formed XML, has a DOCTYPE or is not ODM stops
    at once.
    """
    reader = _Reader(study, file)
    parser, problems = reader.parser, reader.problems
    while True:
        chunk = source.read(CHUNK)
        try:
            parser.Parse(chunk, not chunk)
        except expat.ExpatError as error:
            message = expat.errors.messages[error.code]
            problems.fail("", f"not well-formed XML: {message}", error.lineno, error.offset + 1)
        except _Refused as refusal:
            problems.fail("", str(refusal), refusal.line, refusal.column)
        if reader.ready and not problems.count:
            yield from reader.ready
        reader.ready.clear()
        if not chunk:
            break
    if not reader.clinical_data:
        problems.add("ODM", "the file has no ClinicalData, so there are no data to import", 1)
    records = reader.assembler.finish()
    problems.check()
    yield from records
