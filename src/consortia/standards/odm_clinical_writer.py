"""The streaming writer of ODM 1.3.2 ClinicalData: one item value at a time, in constant memory.

:func:`write_odm_clinical` takes :class:`ClinicalValue` records (with their
:class:`AuditStamp`) from an iterator and writes them as one Snapshot, holding no more than
one ODM element path and the 64 KiB buffer of :mod:`consortia.standards.exports`. Study
metadata is written by :mod:`consortia.standards.odm_export`; ClinicalData is read back by
:mod:`consortia.standards.odm_clinical`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO
from xml.sax.saxutils import escape

from consortia import __version__
from consortia.exceptions import InterchangeError, Problem
from consortia.standards.exports import BufferedSink
from consortia.standards.odm_xml import CONSORTIA_NS, ODM_NS, SOURCE_SYSTEM

__all__ = ["AuditStamp", "ClinicalValue", "write_odm_clinical"]


@dataclass(frozen=True, slots=True)
class AuditStamp:
    """Who changed a value, where and when: an ODM ``AuditRecord``.

    ``user_oid`` and ``location_oid`` refer to ``User`` and ``Location`` in AdminData.
    """

    user_oid: str
    location_oid: str
    at: datetime
    reason: str | None = None
    source_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClinicalValue:
    """One item value of one subject, with the keys of every element that holds it.

    OIDs follow :mod:`consortia.standards.odm_export` (``SE.<event>``, ``F.<form>``,
    ``IG.<form>.<group>``, ``I.<item>``); ``value`` is the ODM text of the value, None for a
    null. ``unit_oid`` names a ``MeasurementUnit`` (``MU.<n>``) when the value has one.
    ``form_complete`` is the status of the form holding the value, written as our extension
    attribute ``FormData/@consortia:Complete`` (``Yes`` / ``No``); None writes no status.
    """

    subject_key: str
    site_oid: str | None
    event_oid: str
    event_repeat_key: str | None
    form_oid: str
    form_repeat_key: str | None
    group_oid: str
    group_repeat_key: str | None
    item_oid: str
    value: str | None
    audit: AuditStamp | None = None
    unit_oid: str | None = None
    form_complete: bool | None = None


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
# each element that holds item data, with the attributes (and ClinicalValue fields) of its key
_LEVELS = (
    ("SubjectData", (("SubjectKey", "subject_key"),)),
    (
        "StudyEventData",
        (("StudyEventOID", "event_oid"), ("StudyEventRepeatKey", "event_repeat_key")),
    ),
    ("FormData", (("FormOID", "form_oid"), ("FormRepeatKey", "form_repeat_key"))),
    ("ItemGroupData", (("ItemGroupOID", "group_oid"), ("ItemGroupRepeatKey", "group_repeat_key"))),
)


class _OdmWriter:
    def __init__(self, sink: BufferedSink) -> None:
        self.sink = sink
        self.number = 0
        self.where = ""
        self.open: list[tuple[str | None, ...]] = []  # the keys of the open elements
        self.seen: list[set[tuple[str | None, ...]]] = [set(), set(), set(), set()]
        self.site: str | None = None
        self.form_complete: bool | None = None

    def fail(self, field: str, message: str) -> InterchangeError:
        return InterchangeError([Problem(f"{self.where}{field}", message)])

    def text(self, value: str, field: str) -> str:
        if bad := _NOT_XML.search(value):
            raise self.fail(field, f"character {bad.group()!r} cannot be written in XML")
        return escape(value)

    def attribute(self, name: str, value: str, field: str) -> str:
        self.text(value, field)
        return f' {name}="{escape(value, _ATTRIBUTE_ENTITIES)}"'

    def oid(self, name: str, value: str | None, field: str) -> str:
        if value is None:
            return ""
        if not value:
            raise self.fail(field, "must not be empty (use None for no repeat key)")
        return self.attribute(name, value, field)

    def add(self, record: ClinicalValue) -> None:
        self.number += 1
        self.where = f"records[{self.number}]."
        keys = [tuple(getattr(record, field) for _, field in key) for _, key in _LEVELS]
        depth = 0
        while depth < len(self.open) and self.open[depth] == keys[depth]:
            depth += 1
        if depth > 0 and record.site_oid != self.site:
            message = f"{record.site_oid!r} differs from the subject's earlier {self.site!r}"
            raise self.fail("site_oid", message)
        if depth > 2 and record.form_complete != self.form_complete:
            message = f"{record.form_complete} differs from the form's earlier {self.form_complete}"
            raise self.fail("form_complete", message)
        self.close(depth)
        for level in range(depth, 4):
            self.start(level, keys[level], record)
        self.item(record)

    def start(self, level: int, key: tuple[str | None, ...], record: ClinicalValue) -> None:
        element, attributes = _LEVELS[level]
        if level > 0:
            if key in self.seen[level - 1]:
                shown = " repeat ".join(part for part in key if part is not None)
                message = (
                    f"{element} {shown} appears again after other data: records must arrive "
                    "sorted by subject, event, form and group"
                )
                raise self.fail(attributes[0][1], message)
            self.seen[level - 1].add(key)
        self.seen[level].clear()
        indent = "  " * (level + 2)
        written = "".join(
            self.oid(name, part, field) for (name, field), part in zip(attributes, key, strict=True)
        )
        if level == 2:
            self.form_complete = record.form_complete
            if record.form_complete is not None:
                written += f' consortia:Complete="{"Yes" if record.form_complete else "No"}"'
        self.sink.write(f"{indent}<{element}{written}>\n")
        if level == 0:
            self.site = record.site_oid
            if record.site_oid is not None:
                site = self.oid("LocationOID", record.site_oid, "site_oid")
                self.sink.write(f"{indent}  <SiteRef{site}/>\n")
        self.open.append(key)

    def close(self, depth: int) -> None:
        while len(self.open) > depth:
            self.open.pop()
            level = len(self.open)
            self.sink.write(f"{'  ' * (level + 2)}</{_LEVELS[level][0]}>\n")

    def item(self, record: ClinicalValue) -> None:
        if (record.item_oid,) in self.seen[3]:
            message = f"{record.item_oid} appears twice in the same item group"
            raise self.fail("item_oid", message)
        self.seen[3].add((record.item_oid,))
        indent = "  " * 6
        start = f"{indent}<ItemData{self.oid('ItemOID', record.item_oid, 'item_oid')}"
        if record.value is None:
            start += ' IsNull="Yes"'
        else:
            start += self.attribute("Value", record.value, "value")
        children = []
        if (audit := record.audit) is not None:
            if audit.at.utcoffset() is None:
                raise self.fail("audit.at", "the audit time needs a time zone")
            children += [
                f"{indent}  <AuditRecord>",
                f"{indent}    <UserRef{self.oid('UserOID', audit.user_oid, 'audit.user_oid')}/>",
                f"{indent}    <LocationRef"
                f"{self.oid('LocationOID', audit.location_oid, 'audit.location_oid')}/>",
                f"{indent}    <DateTimeStamp>{audit.at.isoformat()}</DateTimeStamp>",
            ]
            for tag, text, field in (
                ("ReasonForChange", audit.reason, "audit.reason"),
                ("SourceID", audit.source_id, "audit.source_id"),
            ):
                if text is not None:
                    children.append(f"{indent}    <{tag}>{self.text(text, field)}</{tag}>")
            children.append(f"{indent}  </AuditRecord>")
        if record.unit_oid is not None:
            unit = self.oid("MeasurementUnitOID", record.unit_oid, "unit_oid")
            children.append(f"{indent}  <MeasurementUnitRef{unit}/>")
        if children:
            self.sink.write(start + ">\n" + "\n".join(children) + f"\n{indent}</ItemData>\n")
        else:
            self.sink.write(start + "/>\n")


def write_odm_clinical(
    records: Iterable[ClinicalValue],
    out: BinaryIO,
    *,
    study_oid: str,
    metadata_version_oid: str,
    file_oid: str,
    creation: datetime,
) -> int:
    """Write ``records`` as an ODM 1.3.2 Snapshot holding one ``ClinicalData``.

    Records must arrive sorted (grouped) by subject, event, form and item group: the writer
    opens and closes ``SubjectData``, ``StudyEventData``, ``FormData`` and ``ItemGroupData``
    as the keys change, holding only the open path. A group, form or event that appears again
    after its element was closed raises :class:`InterchangeError`, as does an item twice in
    one group; a subject that reappears is not detected (that would need memory growing with
    the subjects). A subject's ``SiteRef`` comes from its records' ``site_oid``, which must
    agree, as must the ``form_complete`` of one form's records. A None value is written
    ``IsNull="Yes"`` without ``Value``, as ODM 1.3.2 allows. Without form statuses the file is
    valid against the ODM 1.3.2 XSD on its own; with them, against the XSD extended with our
    attribute (ODM's vendor extension rule: removing the extension leaves valid ODM).

    >>> import io
    >>> when = datetime(2024, 5, 1, tzinfo=UTC)
    >>> value = ClinicalValue("001", "SITE.SG01", "SE.screening", None, "F.demo", None,
    ...                       "IG.demo.main", None, "I.age", "54")
    >>> write_odm_clinical([value], io.BytesIO(), study_oid="S.X", metadata_version_oid="MDV.1",
    ...                    file_oid="X.1", creation=when)
    1
    """
    if creation.utcoffset() is None:
        raise InterchangeError([Problem("creation", "the creation time needs a time zone")])
    sink = BufferedSink(out)
    writer = _OdmWriter(sink)
    root = writer.oid("FileOID", file_oid, "file_oid")
    clinical = writer.oid("StudyOID", study_oid, "study_oid") + writer.oid(
        "MetaDataVersionOID", metadata_version_oid, "metadata_version_oid"
    )
    sink.write(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ODM xmlns="{ODM_NS}" xmlns:consortia="{CONSORTIA_NS}" FileType="Snapshot"{root}'
        f' CreationDateTime="{creation.isoformat()}"'
        f' ODMVersion="1.3.2" SourceSystem="{SOURCE_SYSTEM}" SourceSystemVersion="{__version__}">\n'
        f"  <ClinicalData{clinical}>\n"
    )
    for record in records:
        writer.add(record)
    writer.close(0)
    sink.write("  </ClinicalData>\n</ODM>\n")
    sink.flush()
    return writer.number
