"""Exports of a study's captured data, streamed in constant memory.

Tables (each a stream of rows read with a server-side cursor, written as they come):

* one wide table per form: ``subject_id, site, event, event_instance, group_instance,
  state, version`` and one column per item; a form with a repeating group has one row per
  form instance for its non-repeating items (``group_instance`` 0) and one per group
  instance;
* ``values``: every value long (``csv-long``): ``subject_id, site, event, event_instance,
  form, group_instance, item, value``; after each form instance's values, a row whose item
  is ``_complete`` and value ``1`` (saved complete) or ``0`` (not), as the import reads it;
* ``queries``: every query with its status and age;
* ``audit``: the study's audit trail (only for roles that may read it).

Formats: ``csv`` and ``parquet`` and ``xpt`` write one file per table into a folder,
``csv-long`` writes ``values.csv``, ``odm`` writes one ODM 1.3.2 file of ClinicalData, each
FormData with the form's status in our extension attribute ``consortia:Complete`` (``Yes`` /
``No``). A form instance none of whose values is exported is not written, status included.

Identifier (PHI) items are left out unless a study administrator asks for them and states
a reason; every export is audited (who, what, format, whether identifiers, why).

ODM ClinicalData is written one form instance at a time in the order of the form's groups
and items, whatever order the values were saved in. A value XML 1.0 cannot hold (stored
before saves refused such characters) stops an ODM export with a
:class:`~consortia.exceptions.ValidationError` naming ``subject/event/form/item``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action, site_scope
from consortia.auth.principal import Principal
from consortia.domain.parsing import character_problem
from consortia.domain.schedule import event_ref
from consortia.domain.study import ItemType
from consortia.exceptions import NotFoundError, Problem, ValidationError
from consortia.services.common import require_in_study, utc_now, visible_study
from consortia.services.studies import Definition, current_definition
from consortia.services.unit_of_work import reading, writing
from consortia.standards import exports as writers
from consortia.standards.clinical_data import COMPLETE_ITEM
from consortia.standards.exports import Column, ColumnType
from consortia.standards.odm_clinical_writer import ClinicalValue, write_odm_clinical
from consortia.storage.export_reads import ExportReads, ValueOrder
from consortia.storage.repositories import mask_event

__all__ = [
    "ExportFormat",
    "ExportRequest",
    "PlannedExport",
    "export_study",
    "export_table",
    "plan_export",
    "table_names",
]

XPT_TEXT_LIMIT = 200
_NOBODY = Principal(0, "", "", frozenset())  # may see no identifier anywhere


class ExportFormat(StrEnum):
    CSV = "csv"
    CSV_LONG = "csv-long"
    PARQUET = "parquet"
    ODM = "odm"
    XPT = "xpt"


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export; identifiers only with a stated reason (study administrators)."""

    format: ExportFormat
    include_identifiers: bool = False
    reason: str | None = None


_COLUMN_TYPES = {
    ItemType.INTEGER: ColumnType.INTEGER,
    ItemType.DECIMAL: ColumnType.DECIMAL,
    ItemType.DATE: ColumnType.DATE,
    ItemType.DATETIME: ColumnType.DATETIME,
    ItemType.TIME: ColumnType.TIME,
    ItemType.BOOLEAN: ColumnType.BOOLEAN,
}
_KEY_COLUMNS = (
    Column("subject_id", ColumnType.TEXT, "Subject", 64),
    Column("site", ColumnType.TEXT, "Site", 64),
    Column("event", ColumnType.TEXT, "Event", 64),
    Column("event_instance", ColumnType.INTEGER, "Event instance"),
    Column("group_instance", ColumnType.INTEGER, "Group instance"),
    Column("state", ColumnType.TEXT, "Form state", 16),
    Column("version", ColumnType.INTEGER, "Form version"),
)


def _typed(kind: ColumnType, text: str) -> object:
    if kind is ColumnType.INTEGER:
        return int(text)
    if kind is ColumnType.DECIMAL:
        return Decimal(text)
    if kind is ColumnType.DATE:
        return date.fromisoformat(text)
    if kind is ColumnType.DATETIME:
        moment = datetime.fromisoformat(text)
        return (
            moment if moment.tzinfo else moment.replace(tzinfo=datetime.now().astimezone().tzinfo)
        )
    if kind is ColumnType.TIME:
        return time.fromisoformat(text)
    if kind is ColumnType.BOOLEAN:
        return text == "1"
    return text


def _item_places(definition: Definition, identifiers: bool) -> dict[str, tuple[int, int, str, str]]:
    """Each exported item's (group position in its form, position in its group, group OID,
    item OID); identifier items only when ``identifiers``."""
    places: dict[str, tuple[int, int, str, str]] = {}
    for form_name, form in definition.study.forms.items():
        for group_position, (group_name, group) in enumerate(form.groups.items()):
            for item_position, name in enumerate(group.items):
                oids = f"IG.{form_name}.{group_name}", f"I.{name}"
                places.setdefault(name, (group_position, item_position, *oids))
    if not identifiers:
        for name in definition.index.identifiers:
            places.pop(name, None)
    return places


def _stored(path: str, problem: str) -> ValidationError:
    """A value XML 1.0 cannot hold, stored before saves refused such characters: the export
    stops and names it, rather than write a file that ends half way."""
    message = f"{problem}; it was stored before such characters were refused: correct it, "
    return ValidationError([Problem(path, message + "then export again")])


def _in_order(
    held: list[tuple[tuple[int, int, int], ClinicalValue]], ordered: bool
) -> Iterator[ClinicalValue]:
    if not ordered:
        held.sort(key=lambda entry: entry[0])
    for _, value in held:
        yield value


class _Export:
    """One export's reading side: scoped, streaming queries of one study."""

    def __init__(
        self,
        connection: Connection,
        principal: Principal,
        definition: Definition,
        identifiers: bool,
    ) -> None:
        self.connection = connection
        self.principal = principal
        self.definition = definition
        self.identifiers = identifiers
        self.reads = ExportReads(connection, principal, definition.code)

    def items(self, form: str) -> list[tuple[str, ColumnType]]:
        items = []
        for group in self.definition.study.forms[form].groups.values():
            for name, item in group.items.items():
                if item.identifier and not self.identifiers:
                    continue
                items.append((name, _COLUMN_TYPES.get(item.type, ColumnType.TEXT)))
        return items

    def form_columns(self, form: str) -> list[Column]:
        return [*_KEY_COLUMNS, *(Column(name, kind, name) for name, kind in self.items(form))]

    def form_rows(self, form: str) -> Generator[list[object], None, None]:
        items = self.items(form)
        position = {name: n for n, (name, _) in enumerate(items, len(_KEY_COLUMNS))}
        kinds = dict(items)
        row: list[object] | None = None
        key: tuple[int, int] | None = None
        for value in self.reads.values(ValueOrder.FORM_ROWS, form=form):
            if (value.form_pk, value.group_instance) != key:
                if row is not None:
                    yield row
                key = (value.form_pk, value.group_instance)
                state = (
                    "locked"
                    if value.locked_at
                    else "signed"
                    if value.signed_at
                    else "verified"
                    if value.verified_at
                    else value.status
                )
                row = [
                    value.subject_id,
                    value.site,
                    value.event,
                    value.instance,
                    value.group_instance,
                    state,
                    value.version,
                    *([None] * len(items)),
                ]
            column = position.get(value.item)
            if column is not None and row is not None:
                row[column] = _typed(kinds[value.item], value.value_text)
        if row is not None:
            yield row

    def _keep(self, item: str) -> bool:
        return self.identifiers or item not in self.definition.index.identifiers

    def long_rows(self) -> Generator[list[object], None, None]:
        form_pk: int | None = None
        status_row: list[object] = []  # the `_complete` row of the form instance being written
        for value in self.reads.values(ValueOrder.LONG):
            if value.form_pk != form_pk:
                if status_row:
                    yield status_row
                form_pk, status_row = value.form_pk, []
            if not self._keep(value.item):
                continue
            if not status_row:  # the form has a value in the file, so its status goes in too
                complete = "1" if value.status == "complete" else "0"
                status_row = [value.subject_id, value.site, value.event, value.instance,
                              value.form, None, COMPLETE_ITEM, complete]  # fmt: skip
            yield [
                value.subject_id,
                value.site,
                value.event,
                value.instance,
                value.form,
                value.group_instance,
                value.item,
                value.value_text,
            ]
        if status_row:
            yield status_row

    def clinical_values(self) -> Generator[ClinicalValue, None, None]:
        """The values as ODM ClinicalData wants them: grouped by subject, event, form and
        item group. The group of a value is not a column, and rows of one form's groups
        interleave in any order of saves; so one form instance's values at a time (bounded
        by the form's definition, not by the study's size) are put in the order of the
        form's groups and items."""
        places = _item_places(self.definition, self.identifiers)
        form_pk: int | None = None
        subject_id: str | None = None
        held: list[tuple[tuple[int, int, int], ClinicalValue]] = []
        last = (-1, -1, -1)
        ordered = True
        event_oid = form_oid = ""
        event_key: str | None = None
        complete = False
        for value in self.reads.values(ValueOrder.CLINICAL):
            if value.form_pk != form_pk:
                yield from _in_order(held, ordered)
                form_pk, held, last, ordered = value.form_pk, [], (-1, -1, -1), True
                if value.subject_id != subject_id:
                    subject_id = value.subject_id
                    if problem := character_problem(subject_id):
                        raise _stored(f"subject {subject_id!r}", problem)
                event_oid, form_oid = f"SE.{value.event}", f"F.{value.form}"
                event_key = str(value.instance) if value.instance > 1 else None
                complete = value.status == "complete"
            place = places.get(value.item)
            if place is None:  # not an item of the study, or an identifier left out
                continue
            if problem := character_problem(value.value_text):
                ref = event_ref(value.event, value.instance)
                key = self.definition.index.key(value.item, value.group_instance)
                raise _stored(f"{value.subject_id}/{ref}/{value.form}/{key}", problem)
            group_position, item_position, group_oid, item_oid = place
            order = (group_position, value.group_instance, item_position)
            ordered = ordered and order > last
            last = order
            group_key = str(value.group_instance) if value.group_instance else None
            held.append(
                (
                    order,
                    ClinicalValue(
                        value.subject_id,
                        value.site,  # LocationOID: the site code, as the reader takes it
                        event_oid,
                        event_key,
                        form_oid,
                        None,
                        group_oid,
                        group_key,
                        item_oid,
                        value.value_text,
                        form_complete=complete,
                    ),
                )
            )
        yield from _in_order(held, ordered)

    def query_rows(self) -> Generator[list[object], None, None]:
        for row in self.reads.queries():
            yield list(row)

    def audit_rows(self) -> Generator[list[object], None, None]:
        for event in self.reads.audit_events():
            if not self.identifiers:  # masked for everyone, whatever the caller's roles
                event = mask_event(event, _NOBODY, self.definition.code)
            yield [
                event.seq,
                event.at,
                event.actor,
                event.action,
                event.entity_type,
                event.entity_id,
                event.site,
                None if event.before is None else json.dumps(event.before, sort_keys=True),
                None if event.after is None else json.dumps(event.after, sort_keys=True),
                event.reason,
                event.hash,
            ]


_QUERY_COLUMNS = [
    Column("query_id", ColumnType.INTEGER),
    Column("subject_id", ColumnType.TEXT, length=64),
    Column("site", ColumnType.TEXT, length=64),
    Column("event", ColumnType.TEXT, length=64),
    Column("event_instance", ColumnType.INTEGER),
    Column("form", ColumnType.TEXT, length=64),
    Column("item", ColumnType.TEXT, length=64),
    Column("group_instance", ColumnType.INTEGER),
    Column("status", ColumnType.TEXT, length=16),
    Column("origin", ColumnType.TEXT, length=16),
    Column("opened_at", ColumnType.DATETIME),
    Column("opened_by", ColumnType.TEXT, length=320),
    Column("updated_at", ColumnType.DATETIME),
    Column("assigned_to", ColumnType.TEXT, length=320),
]
_AUDIT_COLUMNS = [
    Column("seq", ColumnType.INTEGER),
    Column("at", ColumnType.TEXT, length=32),
    Column("actor", ColumnType.TEXT, length=320),
    Column("action", ColumnType.TEXT, length=64),
    Column("entity_type", ColumnType.TEXT, length=32),
    Column("entity_id", ColumnType.TEXT, length=200),
    Column("site", ColumnType.TEXT, length=64),
    Column("before", ColumnType.TEXT, length=2000),
    Column("after", ColumnType.TEXT, length=2000),
    Column("reason", ColumnType.TEXT, length=2000),
    Column("hash", ColumnType.TEXT, length=64),
]
_LONG_COLUMNS = [
    Column("subject_id", ColumnType.TEXT, length=64),
    Column("site", ColumnType.TEXT, length=64),
    Column("event", ColumnType.TEXT, length=64),
    Column("event_instance", ColumnType.INTEGER),
    Column("form", ColumnType.TEXT, length=64),
    Column("group_instance", ColumnType.INTEGER),
    Column("item", ColumnType.TEXT, length=64),
    Column("value", ColumnType.TEXT, length=2000),
]


def table_names(definition: Definition, principal: Principal) -> list[str]:
    """The tables an export holds for this principal: forms, values, queries[, audit]."""
    names = [*definition.study.forms, "values", "queries"]
    if not site_scope(principal, definition.code, Action.AUDIT_READ).empty:
        names.append("audit")
    return names


def _tables_for(fmt: ExportFormat, names: list[str]) -> list[str]:
    # the audit trail's JSON does not fit XPT's 200-byte text: export it as CSV or Parquet
    return [name for name in names if not (fmt is ExportFormat.XPT and name == "audit")]


def _xpt_names(columns: Sequence[Column]) -> list[Column]:
    """SAS names: at most 8 characters, unique; the full name goes into the label."""
    taken: set[str] = set()
    renamed = []
    for column in columns:
        base = re.sub(r"[^A-Za-z0-9_]", "_", column.name)[:8].upper() or "V"
        name, number = base, 1
        while name in taken:
            suffix = str(number)
            name, number = base[: 8 - len(suffix)] + suffix, number + 1
        taken.add(name)
        label = (column.label or column.name)[:40]
        # XPT v5 holds at most 200 bytes of text; a longer value is refused by the writer
        length = min(column.length or XPT_TEXT_LIMIT, XPT_TEXT_LIMIT)
        renamed.append(Column(name, column.type, label, length))
    return renamed


def _write(
    fmt: ExportFormat,
    table: str,
    columns: list[Column],
    rows: Iterator[Sequence[object]],
    out: BinaryIO,
) -> int:
    if fmt is ExportFormat.PARQUET:
        return writers.write_parquet(columns, rows, out)
    if fmt is ExportFormat.XPT:
        dataset = re.sub(r"[^A-Za-z0-9_]", "_", table)[:8].upper()
        return writers.write_xpt(_xpt_names(columns), rows, out, dataset=dataset, label=table[:40])
    return writers.write_csv(columns, rows, out)


def _check(engine: Engine, principal: Principal, study: str, request: ExportRequest) -> None:
    visible_study(principal, study)
    require_in_study(principal, Action.SUBJECT_READ, study)
    if request.include_identifiers:
        require_in_study(principal, Action.IDENTIFIER_EXPORT, study)
        if not (request.reason and request.reason.strip()):
            raise ValidationError(
                [Problem("reason", "exporting identifiers needs a stated reason (it is audited)")]
            )


def _audit_export(
    engine: Engine, principal: Principal, study: str, request: ExportRequest, tables: list[str]
) -> None:
    with writing(engine, principal) as work:
        work.audit(
            "data.export",
            "study",
            study,
            chain=study,
            after={
                "format": request.format.value,
                "tables": tables,
                "identifiers": request.include_identifiers,
            },
            reason=(request.reason or "").strip() or None,
        )


@dataclass(frozen=True)
class PlannedExport:
    """An export that passed every check and is audited; :meth:`write` streams it."""

    engine: Engine
    principal: Principal
    definition: Definition
    table: str
    request: ExportRequest

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self.request.format]

    @property
    def filename(self) -> str:
        name = "values" if self.request.format is ExportFormat.CSV_LONG else self.table
        if self.request.format is ExportFormat.ODM:
            name = "clinical-data"
        return f"{self.definition.code}-{name}{_SUFFIX[self.request.format]}"

    def write(self, out: BinaryIO) -> int:
        """Write the table to ``out``; rows (values for ODM) written."""
        study, table, request = self.definition.code, self.table, self.request
        with reading(self.engine, self.principal) as work:
            export = _Export(
                work.connection, self.principal, self.definition, request.include_identifiers
            )
            # each reading generator is closed while its connection is still open, also
            # when writing fails half way
            if request.format is ExportFormat.ODM:
                now = utc_now()
                with closing(export.clinical_values()) as values:
                    return write_odm_clinical(
                        values,
                        out,
                        study_oid=f"S.{study}",
                        metadata_version_oid=f"MDV.{self.definition.study.study.version}",
                        file_oid=f"{study}.data.{now.strftime('%Y%m%dT%H%M%S')}",
                        creation=now,
                    )
            if request.format is ExportFormat.CSV_LONG or table == "values":
                name, columns, source = "values", _LONG_COLUMNS, export.long_rows()
            elif table == "queries":
                name, columns, source = table, _QUERY_COLUMNS, export.query_rows()
            elif table == "audit":
                name, columns, source = table, _AUDIT_COLUMNS, export.audit_rows()
            else:
                name, columns, source = table, export.form_columns(table), export.form_rows(table)
            with closing(source) as rows:
                return _write(request.format, name, columns, rows, out)


def plan_export(
    engine: Engine, principal: Principal, study: str, table: str, request: ExportRequest
) -> PlannedExport:
    """Check and audit an export of one table (a form, ``values``, ``queries``, ``audit``;
    ``odm`` ignores ``table`` and writes every value as ClinicalData) before any byte is
    written, so a refusal is an error, not a truncated file."""
    _check(engine, principal, study, request)
    with reading(engine, principal) as work:
        definition = current_definition(work.connection, study)
    names = _tables_for(request.format, table_names(definition, principal))
    if request.format is not ExportFormat.ODM and table not in names:
        raise NotFoundError(f"table {table!r} not found; tables: {', '.join(names)}")
    _audit_export(engine, principal, study, request, [table])
    return PlannedExport(engine, principal, definition, table, request)


def export_table(
    engine: Engine,
    principal: Principal,
    study: str,
    table: str,
    request: ExportRequest,
    out: BinaryIO,
) -> int:
    """Check, audit and write one table to ``out`` (see :func:`plan_export`)."""
    return plan_export(engine, principal, study, table, request).write(out)


_MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.CSV_LONG: "text/csv; charset=utf-8",
    ExportFormat.PARQUET: "application/vnd.apache.parquet",
    ExportFormat.XPT: "application/x-sas-xport",
    ExportFormat.ODM: "application/xml",
}


_SUFFIX = {
    ExportFormat.CSV: ".csv",
    ExportFormat.CSV_LONG: ".csv",
    ExportFormat.PARQUET: ".parquet",
    ExportFormat.XPT: ".xpt",
    ExportFormat.ODM: ".xml",
}


def export_study(
    engine: Engine, principal: Principal, study: str, request: ExportRequest, out: Path
) -> dict[str, int]:
    """Write the study's tables under ``out`` (a folder; for ``odm`` and ``csv-long`` a
    file); return rows written per table. Files are written to temporary names (``.partial``),
    readable by their owner only (mode 0600; a folder made here is 0700), and renamed when
    every table is written; an export that fails removes them, so it leaves no file that
    could be taken for a whole one."""
    _check(engine, principal, study, request)
    with reading(engine, principal) as work:
        definition = current_definition(work.connection, study)
    if request.format in (ExportFormat.ODM, ExportFormat.CSV_LONG):
        targets = {"values": out}
    else:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        targets = {
            table: out / f"{table}{_SUFFIX[request.format]}"
            for table in _tables_for(request.format, table_names(definition, principal))
        }
    counts = {}
    partials = {table: path.with_name(path.name + ".partial") for table, path in targets.items()}
    try:
        for table, partial in partials.items():
            # readable by its owner only (0600): an export holds subjects' data
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            if os.name == "posix":
                os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "wb") as stream:
                counts[table] = export_table(engine, principal, study, table, request, stream)
    except BaseException:
        for partial in partials.values():  # a failed export leaves no part of itself
            partial.unlink(missing_ok=True)
        raise
    for table, partial in partials.items():
        partial.replace(targets[table])
    return counts
