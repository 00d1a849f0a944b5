"""Bulk import of clinical data files: all of a file lands in one transaction, or none of it.

``import_file`` reads a REDCap-style wide CSV, our long CSV or ODM 1.3.2 ClinicalData
(:mod:`consortia.standards.clinical_data`), then:

1. **checks every row**: structure (columns, events, forms, items), every form with the
   rules of a save (:func:`~consortia.domain.file_check.check_subject`) against the
   subject's other forms in the file and on the node, sites the caller may enter data at,
   subjects that exist at another site, forms that already hold data (change those through
   the form, with a reason). Every problem is reported as ``file:line: path: message`` (up
   to 200);
2. **writes in one transaction**: new subjects (with status and planned schedule), events,
   forms, values, derived variables, queries for soft problems, and the same audit events as
   interactive entry (``subject.create``, ``form.save``, ``query.open``), appended in
   batches on the study's chain. A problem anywhere, a crash or a kill before the commit
   leaves nothing.

Checking is CPU work: a large file is checked in forked worker processes that inherit the
parsed file (and die with the importing process: :mod:`consortia.children`) and send back,
per subject, the problems found and the rows and audit values to write (every form's
checks are compiled once: :func:`~consortia.domain.validation.form_plan`).
Subjects, sites and forms already holding data are looked up first, in a read transaction;
if that finds no problem, the write transaction opens and the forms are written as their
checks come back, so that checking (in the workers) and writing (in this process) overlap
on a multi-core machine; the first problem stops the writing, every form is still checked,
and the problems roll the transaction back (see :func:`_write`). Rows are inserted with
``executemany`` in chunks (SQLite: tuples straight to the driver; PostgreSQL: ``COPY`` for
item values; :mod:`consortia.storage.bulk`); ids are reserved up front so forms and their
values go in without a round trip per form.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from consortia.auth.policy import Action, Resource, can
from consortia.auth.principal import Principal
from consortia.children import die_with_parent
from consortia.domain.file_check import DerivedRow, ValueToWrite, check_subject
from consortia.domain.schedule import SubjectStatus, event_ref, plan_schedule, screening_anchor
from consortia.exceptions import InterchangeError, Problem, ValidationError
from consortia.services.common import require_in_study, utc_now, visible_study
from consortia.services.data_entry import query_target, subject_context
from consortia.services.form_events import form_save_after, form_save_entry
from consortia.services.import_reading import Progress, read_records
from consortia.services.queries import open_query_row
from consortia.services.studies import Definition, current_definition
from consortia.services.unit_of_work import reading, writing
from consortia.standards.clinical_data import (
    FileFormRecord,
)
from consortia.storage.audit import append_events, stored_json
from consortia.storage.bulk_capture import BulkCapture
from consortia.storage.capture import CaptureRepository
from consortia.storage.repositories import SubjectRecord, SubjectRepository

__all__ = ["MAX_PROBLEMS", "ImportReport", "Progress", "import_file", "read_records"]

MAX_PROBLEMS = 200
CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import wrote."""

    file: str
    format: str
    subjects_created: int
    forms: int
    values: int
    queries_opened: int


@dataclass
class _Prepared:
    """The file's forms by subject, ready to check: the subjects that exist, and the
    problems found before checking any form (sites, subjects elsewhere, duplicates)."""

    tasks: list[_SubjectTask]
    existing: dict[str, SubjectRecord | None]
    problems: _Problems
    records: int


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


def _prepare(
    connection: Connection,
    principal: Principal,
    definition: Definition,
    records: list[FileFormRecord],
    default_site: str | None,
) -> _Prepared:
    study = definition.code
    problems = _Problems()
    by_subject: dict[str, list[FileFormRecord]] = defaultdict(list)
    for record in records:
        by_subject[record.subject_id].append(record)
    repository = SubjectRepository(connection, principal)
    capture = CaptureRepository(connection, principal)
    existing: dict[str, SubjectRecord | None] = {}
    tasks: list[_SubjectTask] = []
    # one query for the ids the study has at any site: a subject of the file that is not
    # among them is new, and needs no query of its own
    known_ids = BulkCapture(connection, principal, study).subject_ids()
    first = 0

    @cache
    def allowed(site: str, new: bool) -> bool:
        """Whether the principal may enter data at ``site`` (and create a subject there)."""
        return can(principal, Action.DATA_ENTER, Resource(study, site)) and (
            not new or can(principal, Action.SUBJECT_CREATE, Resource(study, site))
        )

    for subject_id, forms in by_subject.items():
        found = repository.get(study, subject_id) if subject_id in known_ids else None
        taken = found is None and subject_id in known_ids
        existing[subject_id] = found
        stored_rows = capture.subject_values(found) if found else []
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
            if not allowed(site, found is None):
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
        context = subject_context(definition, stored_rows)
        tasks.append(_SubjectTask(subject_id, context, first_pass, first))
        first += len(first_pass)
    return _Prepared(tasks, existing, problems, len(records))


def _check_only(definition: Definition, prepared: _Prepared, progress: Progress | None) -> None:
    """Check every form of a file that has problems already, to report them all."""
    problems, done = prepared.problems, 0
    for task, result in zip(
        prepared.tasks, _check_subjects(definition, prepared.tasks), strict=True
    ):
        for problem in result.problems:
            problems.add(problem)
        done += len(task.forms)
        if progress:
            progress("check", done, prepared.records)
    problems.raise_if_any()


@dataclass(frozen=True)
class _SubjectTask:
    """One subject's forms to check, with the typed values the node already holds and the
    index of its first form among all the forms of the file."""

    subject_id: str
    context: dict[str, object]
    forms: list[tuple[FileFormRecord, str]]
    first: int


@dataclass(frozen=True)
class _Checked:
    """A :class:`~consortia.domain.file_check.SubjectCheck` with each passed form's audit
    ``after`` (status, version and values) already canonical JSON: encoded in the worker,
    so that the writing process neither unpickles nor encodes the values again."""

    problems: list[Problem]
    forms: list[tuple[int, int, str, tuple[Problem, ...]]]  # position, values, after, warnings
    values: list[ValueToWrite]
    derived: list[DerivedRow]


def _check_subject(definition: Definition, task: _SubjectTask) -> _Checked:
    """Check one subject's forms (pure; in a worker for a large file)."""
    records = [record for record, _ in task.forms]
    found = check_subject(definition.study, definition.index, task.context, records, task.first)
    # the subject's last form event also carries every derived variable the import leaves
    # it with (the import replaces them), so the trail replays them (audit verify --state)
    derived = {name: text for name, text, _ in found.derived}
    last = len(found.forms) - 1
    forms = [
        (
            position,
            count,
            stored_json(
                form_save_after(
                    status=_status(records[position]),
                    version=1,
                    values=after,
                    derived_all=derived if index == last else None,
                )
            ),
            warnings,
        )
        for index, (position, count, after, warnings) in enumerate(found.forms)
    ]
    return _Checked(found.problems, forms, found.values, found.derived)


def _status(record: FileFormRecord) -> str:
    """An imported form's state: complete as the file says, else in progress."""
    return "complete" if record.complete else "in_progress"


#: Checking is pure CPU work: an import of at least this many forms is checked in worker
#: processes (one per CPU), forked so that they inherit the parsed study and file.
PARALLEL_FORMS = 20_000
#: A worker checks this many forms (whole subjects) at a time
_FORMS_PER_BATCH = 2_000
_FORKED: tuple[Definition, list[_SubjectTask]] | None = None


def _check_batch(bounds: tuple[int, int]) -> list[_Checked]:
    """In a worker: the results of tasks[start:stop] of the forked import."""
    assert _FORKED is not None
    definition, tasks = _FORKED
    return [_check_subject(definition, task) for task in tasks[bounds[0] : bounds[1]]]


def _batches(tasks: list[_SubjectTask]) -> list[tuple[int, int]]:
    bounds: list[tuple[int, int]] = []
    start = forms = 0
    for number, task in enumerate(tasks, 1):
        forms += len(task.forms)
        if forms >= _FORMS_PER_BATCH or number == len(tasks):
            bounds.append((start, number))
            start, forms = number, 0
    return bounds


def _check_subjects(definition: Definition, tasks: list[_SubjectTask]) -> Iterator[_Checked]:
    """Each task's result, in order; in parallel for large imports where fork exists."""
    global _FORKED
    workers = min(os.cpu_count() or 1, 8)
    forms = sum(len(task.forms) for task in tasks)
    if forms < PARALLEL_FORMS or workers < 2 or "fork" not in get_all_start_methods():
        for task in tasks:
            yield _check_subject(definition, task)
        return
    _FORKED = (definition, tasks)  # only batch bounds and results cross between processes
    try:
        context = get_context("fork")
        # a worker outliving an import killed with kill -9 would keep its copy of the
        # parent's files open (the writer lock's among them): workers die with the parent
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            for results in pool.map(_check_batch, _batches(tasks)):
                yield from results
    finally:
        _FORKED = None


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
    with reading(engine, principal) as work:
        definition = current_definition(work.connection, study)
    try:
        kind, records = read_records(definition, path, progress=progress)
    except OSError as error:
        raise InterchangeError(
            [Problem("", f"cannot read the file: {error.strerror}", str(path))]
        ) from None
    # subjects and sites looked up in a read transaction (other writers go on)
    with reading(engine, principal) as work:
        prepared = _prepare(work.connection, principal, definition, records, site)
    if prepared.problems.items:
        _check_only(definition, prepared, progress)
    changed = (
        f"study {study} changed while {path.name} was being checked (a subject or form it "
        "creates appeared meanwhile); nothing was imported: run the import again"
    )
    # the forms are checked while what has passed is written, in one write transaction
    # that a problem rolls back (see _write)
    with writing(engine, principal, conflict=changed) as work:
        return _write(work.connection, principal, definition, prepared, str(path), kind, progress)


def _write(
    connection: Connection,
    principal: Principal,
    definition: Definition,
    prepared: _Prepared,
    file: str,
    kind: str,
    progress: Progress | None,
) -> ImportReport:
    """Write the file, checking its forms meanwhile.

    Subjects and events are known from the records and go in first; then each subject's
    forms, values and ``form.save`` events go in as the workers send back their checks, in
    file order. The first problem stops the writing; the checks go on, so that every problem
    is reported, and the error rolls the transaction back. On two cores this is what lets a
    large import finish in the time of its write: the check, which needs no database, runs
    in the worker processes meanwhile. The write lock is held while the last forms are
    checked, which adds to the write only the check's excess over it.
    """
    study = definition.code
    existing, tasks = prepared.existing, prepared.tasks
    forms = [form for task in tasks for form in task.forms]  # (record, site), in file order
    now = utc_now()
    today = now.date()
    reason = f"bulk import of {Path(file).name}"
    capture = CaptureRepository(connection, principal)
    writes = BulkCapture(connection, principal, study)

    # subjects
    new_subjects = sorted(
        {
            record.subject_id: site for record, site in forms if existing[record.subject_id] is None
        }.items()
    )
    subject_ids = writes.reserve_subject_ids(len(new_subjects))
    subject_pk: dict[str, int] = {sid: rec.id for sid, rec in existing.items() if rec is not None}
    site_of: dict[str, str] = {sid: rec.site for sid, rec in existing.items() if rec is not None}
    anchor = screening_anchor(definition.study, today)
    schedule = plan_schedule(definition.study, anchor)
    screening = SubjectStatus.SCREENING.value
    created_at = recorded_at = writes.time(now)
    subject_rows: list[tuple[Any, ...]] = []
    status_rows: list[tuple[Any, ...]] = []
    audit_entries: list[dict[str, Any]] = []
    for (subject_id, site), pk in zip(new_subjects, subject_ids, strict=True):
        subject_pk[subject_id], site_of[subject_id] = pk, site
        subject_rows.append(
            (pk, study, site, subject_id, None, created_at, principal.email, screening, anchor)
        )
        status_rows.append((pk, screening, today, reason, recorded_at, principal.email))
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
    writes.add_subjects(subject_rows)
    writes.add_statuses(status_rows)

    # events: the planned schedule of new subjects, and those the file needs that do not
    # exist yet (unscheduled, repeating, or a study loaded late)
    event_rows: list[tuple[Any, ...]] = []
    event_pk: dict[tuple[int, str, int], int] = {}
    for pk in sorted(subject_pk[sid] for sid, _ in new_subjects):
        for planned in schedule:
            event_rows.append(
                (pk, planned.event, 1, planned.target, planned.window_start, planned.window_end)
            )
    for known in {rec.id: rec for rec in existing.values() if rec is not None}.values():
        for event in capture.events(known):
            event_pk[known.id, event.event, event.instance] = event.id
    planned_keys = {(row[0], row[1], row[2]) for row in event_rows}
    for record, _ in forms:
        key = (subject_pk[record.subject_id], record.event, record.event_instance)
        if key not in event_pk and key not in planned_keys:
            planned_keys.add(key)
            event_rows.append((*key, None, None, None))
    event_ids = writes.reserve_event_ids(len(event_rows))
    for row, pk in zip(event_rows, event_ids, strict=True):
        event_pk[row[0], row[1], row[2]] = pk
    event_created = writes.time(now)
    writes.add_events(
        [(pk, *row, None, event_created) for row, pk in zip(event_rows, event_ids, strict=True)]
    )
    if audit_entries:
        append_events(connection, study, audit_entries)

    # forms, values and their audit events, as their checks come back
    form_ids = writes.reserve_form_ids(len(forms))
    updated_at = writes.time(now)
    form_rows: list[tuple[Any, ...]] = []
    value_rows: list[ValueToWrite] = []
    audit_entries = []
    warned: list[tuple[int, FileFormRecord, tuple[Problem, ...]]] = []
    derived: dict[str, list[DerivedRow]] = {}
    problems = prepared.problems
    values_count = done = 0

    def flush() -> None:
        writes.add_forms(form_rows)
        writes.add_values(value_rows, form_ids)
        if audit_entries:
            append_events(connection, study, audit_entries)
        form_rows.clear()
        value_rows.clear()
        audit_entries.clear()

    for task, result in zip(tasks, _check_subjects(definition, tasks), strict=True):
        for problem in result.problems:
            problems.add(problem)
        done += len(task.forms)
        if progress:
            progress("check", done, prepared.records)
        if problems.items:
            continue  # nothing more is written: the transaction is rolled back
        derived[task.subject_id] = result.derived
        value_rows.extend(result.values)
        for position, count, after, warnings in result.forms:
            record = task.forms[position][0]
            index = task.first + position
            spk = subject_pk[record.subject_id]
            form_rows.append(
                (form_ids[index], event_pk[spk, record.event, record.event_instance], spk,
                 record.form, _status(record), 1, definition.version, updated_at, principal.email)
            )  # fmt: skip
            values_count += count
            ref = event_ref(record.event, record.event_instance)
            save_event = form_save_entry(
                study,
                record.subject_id,
                ref,
                record.form,
                site=site_of[record.subject_id],
                after=None,  # already canonical JSON, made in the worker
                reason=reason,
            )
            audit_entries.append({"actor": principal.email, **save_event, "after_json": after})
            if warnings:
                warned.append((form_ids[index], record, warnings))
        if len(value_rows) >= CHUNK:
            flush()
    problems.raise_if_any()
    if progress:
        progress("check", prepared.records, prepared.records)
        progress("write", 0, 1)
    flush()

    # derived variables of every subject the file touched
    touched = sorted({record.subject_id for record, _ in forms})
    derived_rows = [
        (subject_pk[subject_id], name, text, writes.number(num))
        for subject_id in touched
        for name, text, num in derived[subject_id]
    ]
    writes.replace_derived(sorted(subject_pk[subject_id] for subject_id in touched), derived_rows)

    # queries for soft problems, as interactive entry opens them
    opened = 0
    repository = SubjectRepository(connection, principal)
    for form_pk, record, warnings in warned:
        found = repository.get(study, record.subject_id)
        assert found is not None
        ref = event_ref(record.event, record.event_instance)
        entity = f"{study}/{record.subject_id}/{ref}/{record.form}"
        for warning in warnings:
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
    if progress:
        progress("write", 1, 1)
    return ImportReport(file, kind, len(new_subjects), len(forms), values_count, opened)
