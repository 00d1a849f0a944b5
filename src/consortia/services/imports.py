"""Bulk import of clinical data files: all of a file lands in one transaction, or none of it.

``import_file`` reads a REDCap-style wide CSV, our long CSV or ODM 1.3.2 ClinicalData
(:mod:`consortia.standards.clinical_data`), then:

1. **checks everything first**, writing nothing: structure (columns, events, forms, items),
   every form with :func:`~consortia.domain.validation.validate_form` against the subject's
   other forms in the file and on the node, sites the caller may enter data at, subjects that
   exist at another site, forms that already hold data (change those through the form, with
   a reason). Every problem is reported as ``file:line: path: message`` (up to 200);
2. **writes in one transaction**: new subjects (with status and planned schedule), events,
   forms, values, derived variables, queries for soft problems, and the same audit events as
   interactive entry (``subject.create``, ``form.save``, ``query.open``), appended in
   batches on the study's chain. A crash or kill before the commit leaves nothing.

Rows are inserted with ``executemany`` in chunks; ids are reserved up front so forms and
their values go in without a round trip per form.
"""

from __future__ import annotations

import io
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal
from consortia.domain.schedule import SubjectStatus, event_ref, plan_schedule, screening_anchor
from consortia.domain.validation import compute_derived, parse_item_value, validate_form
from consortia.domain.values import flatten, storage_number, storage_text
from consortia.exceptions import InterchangeError, Problem, ValidationError
from consortia.services.common import guarded_write, require_in_study, utc_now, visible_study
from consortia.services.data_entry import query_target, split_identifiers, subject_context
from consortia.services.queries import open_query_row
from consortia.services.studies import Definition, current_definition
from consortia.standards.clinical_data import (
    FormRecord,
    read_long_csv,
    read_odm_clinical,
    read_wide_csv,
    sniff_format,
)
from consortia.storage.audit import append_events
from consortia.storage.capture import CaptureRepository
from consortia.storage.db import READ_ONLY
from consortia.storage.repositories import SubjectRecord, SubjectRepository
from consortia.storage.tables import (
    derived_value,
    event_instance,
    form_instance,
    subject,
    subject_status,
)

__all__ = ["MAX_PROBLEMS", "ImportReport", "Progress", "import_file", "read_records"]

MAX_PROBLEMS = 200
CHUNK = 20_000
#: progress(phase, done, total): phases "read" (bytes), "check" and "write" (forms)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import wrote."""

    file: str
    format: str
    subjects_created: int
    forms: int
    values: int
    queries_opened: int


class _CountingReader(io.RawIOBase):
    """A binary stream that reports how far it has been read."""

    def __init__(self, stream: BinaryIO, total: int, progress: Progress | None) -> None:
        super().__init__()
        self.stream = stream
        self.total = total
        self.progress = progress
        self.done = 0
        self.last = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        self.done += len(data)
        if self.progress and self.done - self.last >= 1 << 20:
            self.last = self.done
            self.progress("read", self.done, self.total)
        return len(data)


def read_records(
    definition: Definition, path: Path, *, progress: Progress | None = None
) -> tuple[str, list[FormRecord]]:
    """Every form record of the file (structural problems: InterchangeError)."""
    kind = sniff_format(path)
    total = path.stat().st_size
    with path.open("rb") as raw:
        counting = io.BufferedReader(_CountingReader(raw, total, progress), 1 << 16)
        if kind == "odm":
            records = list(read_odm_clinical(definition.study, counting, file=str(path)))
        else:
            text = io.TextIOWrapper(counting, encoding="utf-8-sig", newline="")
            reader = read_long_csv if kind == "csv-long" else read_wide_csv
            records = list(reader(definition.study, text, file=str(path)))
    if progress:
        progress("read", total, total)
    return kind, records


@dataclass
class _Checked:
    record: FormRecord
    site: str
    rows: dict[tuple[str, int], tuple[str, float | None]]
    warnings: tuple[Problem, ...]


@dataclass
class _Plan:
    """What the check found: the forms to write, the subjects that exist, typed values."""

    checked: list[_Checked]
    existing: dict[str, SubjectRecord | None]
    typed_by_subject: dict[str, dict[str, object]]


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.more = 0

    def add(self, problem: Problem) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(problem)
        else:
            self.more += 1

    def raise_if_any(self) -> None:
        if self.items:
            problems = list(self.items)
            if self.more:
                problems.append(Problem("", f"... and {self.more} more problems"))
            raise ValidationError(problems)


def _check(
    connection: Connection,
    principal: Principal,
    definition: Definition,
    records: list[FormRecord],
    default_site: str | None,
    progress: Progress | None,
) -> _Plan:
    study = definition.code
    problems = _Problems()
    by_subject: dict[str, list[FormRecord]] = defaultdict(list)
    for record in records:
        by_subject[record.subject_id].append(record)
    repository = SubjectRepository(connection, principal)
    capture = CaptureRepository(connection)
    existing: dict[str, SubjectRecord | None] = {}
    checked: list[_Checked] = []
    typed_by_subject: dict[str, dict[str, object]] = {}
    tasks: list[_SubjectTask] = []
    done = 0
    for subject_id, forms in by_subject.items():
        found = repository.get(study, subject_id)
        taken = found is None and repository.exists_anywhere(study, subject_id)
        existing[subject_id] = found
        stored_rows = capture.subject_values(found.id) if found else []
        filled = {(r.event, r.instance, r.form) for r in stored_rows}
        first_pass = []
        seen: set[tuple[str, int, str]] = set()
        for record in forms:
            where = record.file
            site = found.site if found else (record.site or default_site)
            key = (record.event, record.event_instance, record.form)
            if taken:
                problems.add(
                    Problem(
                        "subject_id",
                        f"subject {subject_id} exists at a site you cannot enter data at",
                        where,
                        record.line,
                    )
                )
                continue
            if site is None:
                problems.add(
                    Problem("site", "no site: give a site column or --site", where, record.line)
                )
                continue
            if found and record.site and record.site != found.site:
                problems.add(
                    Problem(
                        "site",
                        f"subject {subject_id} is at site {found.site}, not {record.site}",
                        where,
                        record.line,
                    )
                )
            action = Action.DATA_ENTER
            if not can(principal, action, Resource(study, site)) or (
                found is None and not can(principal, Action.SUBJECT_CREATE, Resource(study, site))
            ):
                problems.add(
                    Problem("site", f"you may not enter data at site {site}", where, record.line)
                )
                continue
            if key in seen:
                problems.add(
                    Problem(
                        "form",
                        f"{record.form} at {event_ref(record.event, record.event_instance)} "
                        "appears twice in the file",
                        where,
                        record.line,
                    )
                )
                continue
            seen.add(key)
            if key in filled:
                problems.add(
                    Problem(
                        "form",
                        f"{record.form} at {event_ref(record.event, record.event_instance)} of "
                        f"{subject_id} already holds data; change it through the form, with a "
                        "reason",
                        where,
                        record.line,
                    )
                )
                continue
            first_pass.append((record, site))
        tasks.append(_SubjectTask(subject_id, subject_context(definition, stored_rows), first_pass))
    for task, result in zip(tasks, _check_subjects(definition, tasks), strict=True):
        typed_by_subject[task.subject_id] = result.typed
        checked.extend(
            _Checked(*task.forms[position], rows, warnings)
            for position, rows, warnings in result.checked
        )
        for problem in result.problems:
            problems.add(problem)
        done += len(task.forms)
        if progress:
            progress("check", done, len(records))
    problems.raise_if_any()
    if progress:
        progress("check", len(records), len(records))
    return _Plan(checked, existing, typed_by_subject)


@dataclass(frozen=True)
class _SubjectTask:
    """One subject's forms to check, with the typed values the node already holds."""

    subject_id: str
    context: dict[str, object]
    forms: list[tuple[FormRecord, str]]


@dataclass(frozen=True)
class _SubjectResult:
    """What a check sends back: typed values, and per checked form its position in the
    task, its rows and warnings (not the record: the parent has it)."""

    typed: dict[str, object]
    checked: list[tuple[int, dict[tuple[str, int], tuple[str, float | None]], tuple[Problem, ...]]]
    problems: list[Problem]


def _check_subject(definition: Definition, task: _SubjectTask) -> _SubjectResult:
    """Check one subject's forms against each other and what the node holds (pure)."""
    file_typed = _typed_values(definition, [record for record, _ in task.forms])
    checked: list[
        tuple[int, dict[tuple[str, int], tuple[str, float | None]], tuple[Problem, ...]]
    ] = []
    problems: list[Problem] = []
    for position, (record, _site) in enumerate(task.forms):
        own = _items_of(definition, record.form)
        others = {name: value for name, value in file_typed.items() if name not in own}
        check = validate_form(
            definition.study,
            record.form,
            record.values,
            complete=record.complete,
            context={**task.context, **others},
        )
        problems.extend(
            Problem(error.path, error.message, record.file, record.line_of(error.path))
            for error in check.errors
        )
        if check.ok:
            rows = {
                k: (storage_text(v), storage_number(v)) for k, v in flatten(check.values).items()
            }
            checked.append((position, rows, check.warnings))
    return _SubjectResult({**task.context, **file_typed}, checked, problems)


#: Checking is pure CPU work: an import of at least this many forms is checked in worker
#: processes (one per CPU), forked so that they inherit the parsed study.
PARALLEL_FORMS = 20_000
_FORKED_DEFINITION: Definition | None = None


def _check_in_worker(task: _SubjectTask) -> _SubjectResult:
    assert _FORKED_DEFINITION is not None
    return _check_subject(_FORKED_DEFINITION, task)


def _check_subjects(definition: Definition, tasks: list[_SubjectTask]) -> Iterator[_SubjectResult]:
    """Each task's result, in order; in parallel for large imports where fork exists."""
    global _FORKED_DEFINITION
    workers = min(os.cpu_count() or 1, 8)
    forms = sum(len(task.forms) for task in tasks)
    if forms < PARALLEL_FORMS or workers < 2 or "fork" not in get_all_start_methods():
        for task in tasks:
            yield _check_subject(definition, task)
        return
    _FORKED_DEFINITION = definition
    try:
        context = get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            yield from pool.map(_check_in_worker, tasks, chunksize=16)
    finally:
        _FORKED_DEFINITION = None


_ITEMS_OF: dict[tuple[str, str], frozenset[str]] = {}


def _items_of(definition: Definition, form: str) -> frozenset[str]:
    """The items of a form (cached by the definition's hash)."""
    key = (definition.sha256, form)
    items = _ITEMS_OF.get(key)
    if items is None:
        groups = definition.study.forms[form].groups.values()
        items = _ITEMS_OF[key] = frozenset(name for group in groups for name in group.items)
    return items


def _typed_values(definition: Definition, records: list[FormRecord]) -> dict[str, object]:
    """A subject's non-repeating values in the file, typed once (unparseable ones left
    out: the form's own check reports them); a later record's value wins."""
    typed: dict[str, object] = {}
    for record in records:
        for name, raw in record.values.items():
            place = definition.index.items.get(name)
            if place is None or isinstance(raw, list):
                continue
            try:
                value = parse_item_value(definition.study, place.item, raw)
            except ValidationError:
                continue
            if value is not None:
                typed[name] = value
    return typed


def _reserve_ids(connection: Connection, table: sa.Table, count: int) -> list[int]:
    """``count`` fresh primary keys of ``table`` for rows inserted with explicit ids."""
    if count == 0:
        return []
    if connection.dialect.name == "postgresql":
        sequence = f"{table.name}_id_seq"
        rows = connection.execute(
            sa.text(f"SELECT nextval('{sequence}') FROM generate_series(1, :n)"), {"n": count}
        )
        return [int(row[0]) for row in rows]
    # SQLite: the write transaction (BEGIN IMMEDIATE) holds the database
    start = int(connection.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0)
    return list(range(start + 1, start + count + 1))


_VALUE_COLUMNS = ("form_pk", "item", "group_instance", "value_text", "value_num")


def _insert_values(
    connection: Connection, rows: list[tuple[int, str, int, str, float | None]]
) -> None:
    """Insert item_value rows in the caller's transaction, the fastest way each driver has."""
    columns = ", ".join(_VALUE_COLUMNS)
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        assert driver is not None
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY item_value ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    markers = ", ".join("?" * len(_VALUE_COLUMNS))
    connection.exec_driver_sql(f"INSERT INTO item_value ({columns}) VALUES ({markers})", rows)


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def import_file(
    engine: Engine,
    principal: Principal,
    study: str,
    path: Path,
    *,
    site: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a clinical data file into ``study``; see the module docstring."""
    visible_study(principal, study)
    require_in_study(principal, Action.DATA_ENTER, study)
    with engine.connect() as connection:
        definition = current_definition(connection, study)
    try:
        kind, records = read_records(definition, path, progress=progress)
    except OSError as error:
        raise InterchangeError(
            [Problem("", f"cannot read the file: {error.strerror}", str(path))]
        ) from None
    # checked in a read transaction (other writers go on), written in one write transaction
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        plan = _check(connection, principal, definition, records, site, progress)
    changed = (
        f"study {study} changed while {path.name} was being checked (a subject or form it "
        "creates appeared meanwhile); nothing was imported: run the import again"
    )
    with guarded_write(engine, changed) as connection:
        return _write(connection, principal, definition, plan, str(path), kind, progress)


def _write(
    connection: Connection,
    principal: Principal,
    definition: Definition,
    plan: _Plan,
    file: str,
    kind: str,
    progress: Progress | None,
) -> ImportReport:
    study = definition.code
    checked, existing = plan.checked, plan.existing
    now = utc_now()
    today = now.date()
    reason = f"bulk import of {Path(file).name}"
    audit_entries: list[dict[str, Any]] = []
    capture = CaptureRepository(connection)

    # subjects
    new_subjects = sorted(
        {
            c.record.subject_id: c.site for c in checked if existing[c.record.subject_id] is None
        }.items()
    )
    subject_ids = _reserve_ids(connection, subject, len(new_subjects))
    subject_pk: dict[str, int] = {sid: rec.id for sid, rec in existing.items() if rec is not None}
    site_of: dict[str, str] = {sid: rec.site for sid, rec in existing.items() if rec is not None}
    anchor = screening_anchor(definition.study, today)
    schedule = plan_schedule(definition.study, anchor)
    subject_rows: list[dict[str, Any]] = []
    status_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    event_pk: dict[tuple[int, str, int], int] = {}
    for (subject_id, site), pk in zip(new_subjects, subject_ids, strict=True):
        subject_pk[subject_id], site_of[subject_id] = pk, site
        subject_rows.append(
            {
                "id": pk,
                "study": study,
                "site": site,
                "subject_id": subject_id,
                "initials": None,
                "created_at": now,
                "created_by": principal.email,
                "status": SubjectStatus.SCREENING.value,
                "anchor_date": anchor,
            }
        )
        status_rows.append(
            {
                "subject_pk": pk,
                "status": SubjectStatus.SCREENING.value,
                "on_date": today,
                "reason": reason,
                "recorded_at": now,
                "recorded_by": principal.email,
            }
        )
        audit_entries.append(
            {
                "actor": principal.email,
                "action": "subject.create",
                "entity_type": "subject",
                "entity_id": f"{study}/{subject_id}",
                "site": site,
                "after": {
                    "subject_id": subject_id,
                    "site": site,
                    "initials": None,
                    "screening_date": today.isoformat(),
                },
                "reason": reason,
            }
        )
    for chunk in _chunks(subject_rows):
        connection.execute(subject.insert(), chunk)
    for chunk in _chunks(status_rows):
        connection.execute(subject_status.insert(), chunk)
    new_pks = {subject_pk[sid] for sid, _ in new_subjects}
    for pk in sorted(new_pks):
        for planned in schedule:
            event_rows.append(
                {
                    "subject_pk": pk,
                    "event": planned.event,
                    "instance": 1,
                    "target_date": planned.target,
                    "window_start": planned.window_start,
                    "window_end": planned.window_end,
                    "visit_date": None,
                    "created_at": now,
                }
            )
    for pk in {subject_pk[sid] for sid, rec in existing.items() if rec is not None}:
        for event in capture.events(pk):
            event_pk[pk, event.event, event.instance] = event.id
    # events the file needs that do not exist yet (unscheduled, repeating, or a study loaded late)
    planned_keys = {(row["subject_pk"], row["event"], row["instance"]) for row in event_rows}
    for c in checked:
        key = (subject_pk[c.record.subject_id], c.record.event, c.record.event_instance)
        if key not in event_pk and key not in planned_keys:
            planned_keys.add(key)
            event_rows.append(
                {
                    "subject_pk": key[0],
                    "event": key[1],
                    "instance": key[2],
                    "target_date": None,
                    "window_start": None,
                    "window_end": None,
                    "visit_date": None,
                    "created_at": now,
                }
            )
    for row, pk in zip(
        event_rows, _reserve_ids(connection, event_instance, len(event_rows)), strict=True
    ):
        row["id"] = pk
        event_pk[row["subject_pk"], row["event"], row["instance"]] = pk
    for chunk in _chunks(event_rows):
        connection.execute(event_instance.insert(), chunk)

    # forms and values
    form_ids = _reserve_ids(connection, form_instance, len(checked))
    form_rows: list[dict[str, Any]] = []
    value_rows: list[tuple[int, str, int, str, float | None]] = []
    values_count = 0
    for c, form_pk in zip(checked, form_ids, strict=True):
        record = c.record
        spk = subject_pk[record.subject_id]
        status = "complete" if record.complete else "in_progress"
        form_rows.append(
            {
                "id": form_pk,
                "event_pk": event_pk[spk, record.event, record.event_instance],
                "subject_pk": spk,
                "form": record.form,
                "status": status,
                "version": 1,
                "study_version": definition.version,
                "updated_at": now,
                "updated_by": principal.email,
            }
        )
        value_rows.extend(
            (form_pk, item, number, text, num) for (item, number), (text, num) in c.rows.items()
        )
        values_count += len(c.rows)
        ref = event_ref(record.event, record.event_instance)
        audit_entries.append(
            {
                "actor": principal.email,
                "action": "form.save",
                "entity_type": "form",
                "entity_id": f"{study}/{record.subject_id}/{ref}/{record.form}",
                "site": site_of[record.subject_id],
                "after": {
                    "status": status,
                    "version": 1,
                    **split_identifiers(definition, {k: t for k, (t, _) in c.rows.items()}),
                },
                "reason": reason,
            }
        )
    for chunk in _chunks(form_rows):
        connection.execute(form_instance.insert(), chunk)
    written = 0
    # the bulk of an import: straight to the driver (PostgreSQL: COPY), no dict per value
    for start in range(0, len(value_rows), CHUNK):
        batch = value_rows[start : start + CHUNK]
        _insert_values(connection, batch)
        written += len(batch)
        if progress:
            progress("write", written, len(value_rows))
    for start in range(0, len(audit_entries), CHUNK):
        append_events(connection, study, audit_entries[start : start + CHUNK])

    # derived variables of every subject the file touched
    touched = {subject_pk[c.record.subject_id] for c in checked}
    derived_rows = []
    for subject_id in sorted({c.record.subject_id for c in checked}):
        pk = subject_pk[subject_id]
        values = plan.typed_by_subject[subject_id]
        for name, value in compute_derived(definition.study, values, strict=False).items():
            if value is not None:
                derived_rows.append(
                    {
                        "subject_pk": pk,
                        "name": name,
                        "value_text": storage_text(value),
                        "value_num": storage_number(value),
                    }
                )
    if touched:
        connection.execute(
            derived_value.delete().where(derived_value.c.subject_pk.in_(sorted(touched)))
        )
    for chunk in _chunks(derived_rows):
        connection.execute(derived_value.insert(), chunk)

    # queries for soft problems, as interactive entry opens them
    opened = 0
    repository = SubjectRepository(connection, principal)
    for c, form_pk in zip(checked, form_ids, strict=True):
        if not c.warnings:
            continue
        found = repository.get(study, c.record.subject_id)
        assert found is not None
        ref = event_ref(c.record.event, c.record.event_instance)
        entity = f"{study}/{c.record.subject_id}/{ref}/{c.record.form}"
        for warning in c.warnings:
            item, number = query_target(warning)
            open_query_row(
                connection,
                principal,
                found,
                form_pk,
                (item, number, definition.index.key(item, number) if item else ""),
                warning.message,
                entity=entity,
                origin="auto",
                now=now,
            )
            opened += 1
    return ImportReport(file, kind, len(new_subjects), len(checked), values_count, opened)
