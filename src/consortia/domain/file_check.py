"""Checking one subject's forms as read from a file, and preparing the rows that store them.

Bulk import (:mod:`consortia.services.imports`) calls :func:`check_subject` once per subject,
in worker processes for a large file. Each form is checked with the study's compiled checks
(:func:`~consortia.domain.validation.form_plan`, the rules of an interactive save) against
the values the node already holds for the subject (``context``) and the values of the
subject's *other* forms in the file. What comes back is all a write needs, so that the
process writing does no parsing: per form that passed, its item value rows (numbered by the
form's index in the file), its values for the audit event, and its warnings; the
subject's derived variables; and every problem, with its file and line.

The function is pure: it reads nothing but its arguments and the study.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from consortia.domain.derivation import compute_derived
from consortia.domain.study import Study
from consortia.domain.validation import form_plan, typed_value
from consortia.domain.values import StudyIndex, flatten, storage_number, storage_text
from consortia.exceptions import Problem

__all__ = ["DerivedRow", "FileForm", "FormOutcome", "SubjectCheck", "ValueToWrite", "check_subject"]

#: One item value to write: (form index in the file, item, group instance, text, number)
ValueToWrite = tuple[int, str, int, str, float | None]
#: One derived value to write: (name, text, number)
DerivedRow = tuple[str, str, float | None]
#: A form that passed: (its position among the subject's forms, how many values it has,
#: its values for the audit event, its warnings)
FormOutcome = tuple[int, int, dict[str, dict[str, str]], tuple[Problem, ...]]


class FileForm(Protocol):
    """One form instance as a reader gives it (a
    :class:`~consortia.standards.clinical_records.FileFormRecord`)."""

    @property
    def form(self) -> str: ...

    @property
    def event(self) -> str: ...

    @property
    def values(self) -> Mapping[str, object]: ...

    @property
    def complete(self) -> bool: ...

    @property
    def file(self) -> str: ...

    def line_of(self, path: str) -> int: ...


@dataclass(frozen=True)
class SubjectCheck:
    """What checking one subject's forms found (see the module docstring)."""

    problems: list[Problem]
    forms: list[FormOutcome]
    values: list[ValueToWrite]
    derived: list[DerivedRow]


def check_subject(
    study: Study,
    index: StudyIndex,
    context: Mapping[str, object],
    forms: Sequence[FileForm],
    first: int,
) -> SubjectCheck:
    """Check one subject's ``forms`` (in file order; the first is form number ``first`` of
    the file) against each other and the typed values the node holds (``context``)."""
    file_typed = _typed_values(study, index, forms)
    problems: list[Problem] = []
    passed: list[FormOutcome] = []
    values: list[ValueToWrite] = []
    # a form sees the node's values and the file's values of the subject's other forms
    # (never its own items at another visit, as when it is saved through a form): the
    # same for every instance of a form (repeating events), so built once a form
    contexts: dict[str, dict[str, object]] = {}
    for position, record in enumerate(forms):
        plan = form_plan(study, record.form)
        seen = contexts.get(record.form)
        if seen is None:
            held = {name: value for name, value in context.items() if name not in plan.own}
            others = {name: value for name, value in file_typed.items() if name not in plan.own}
            seen = contexts[record.form] = {**held, **others}
        # every value seen is typed and present: spare the check filtering them
        check = plan.check(record.values, complete=record.complete, context=seen, present=True)
        problems.extend(
            Problem(error.path, error.message, record.file, record.line_of(error.path))
            for error in check.errors
        )
        if check.ok:
            rows = [
                (first + position, item, number, *_stored(value))
                for (item, number), value in flatten(check.values).items()
            ]
            values.extend(rows)
            passed.append((position, len(rows), _audit_values(index, rows), check.warnings))
    derived: list[DerivedRow] = []
    if not problems:  # a file with a problem writes nothing
        typed = {**context, **file_typed}
        for name, value in compute_derived(study, typed, strict=False).items():
            if value is not None:
                derived.append((name, storage_text(value), storage_number(value)))
    return SubjectCheck(problems, passed, values, derived)


def _typed_values(study: Study, index: StudyIndex, forms: Sequence[FileForm]) -> dict[str, object]:
    """A subject's non-repeating values in the file, typed once (unparseable ones left
    out: the form's own check reports them); a later form's value wins. An item at one of
    the several events collecting its form is also named ``<item>_<event>``."""
    typed: dict[str, object] = {}
    at_events = index.at_event
    for record in forms:
        for name, raw in record.values.items():
            if isinstance(raw, list):
                continue
            value = typed_value(study, name, raw)
            if value is not None:
                typed[name] = value
                at_event = at_events.get((name, record.event))
                if at_event is not None:
                    typed[at_event] = value
    return typed


def _audit_values(index: StudyIndex, rows: list[ValueToWrite]) -> dict[str, dict[str, str]]:
    """A form's values for its audit event, identifiers apart, keyed as in the form
    (``ecog``, ``events[2].ae_grade``); as
    :func:`~consortia.services.data_entry.split_identifiers`, but in row order (the audit
    trail stores them as canonical JSON, with sorted keys)."""
    identifiers = index.identifiers
    split: dict[str, dict[str, str]] = {"values": {}, "identifiers": {}}
    for _, item, number, text, _ in rows:
        part = "identifiers" if item in identifiers else "values"
        split[part][item if number == 0 else index.key(item, number)] = text
    return {part: content for part, content in split.items() if content}


def _stored(value: object) -> tuple[str, float | None]:
    """(storage_text, storage_number) of a typed value; the common types without a search."""
    kind = type(value)
    if kind is str:
        return cast(str, value), None
    if kind is int:
        return str(value), float(cast(int, value))
    return storage_text(value), storage_number(value)
