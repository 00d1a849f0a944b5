"""What the clinical data readers share: the record a reader yields, and how it is built.

:class:`FileFormRecord` is one form instance of one subject as read from a file;
:class:`StudyLayout` maps a study's items, events and forms for fast lookups;
:class:`RecordAssembler` gathers one subject's values into records as rows or elements
arrive; :class:`ProblemLog` collects the structural problems of a file. The readers are in
:mod:`consortia.standards.clinical_data` (CSV) and :mod:`consortia.standards.odm_clinical`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NoReturn

from consortia.domain.study import ItemType, Study
from consortia.exceptions import InterchangeError, Problem
from consortia.standards.redcap_naming import redcap_names

__all__ = [
    "MAX_PROBLEMS",
    "FileFormRecord",
    "FormValues",
    "ProblemLog",
    "RecordAssembler",
    "Slot",
    "StudyLayout",
    "whole",
]

MAX_PROBLEMS: Final = 200
"""At most this many problems are listed; the rest are counted."""


@dataclass(frozen=True, slots=True)
class FileFormRecord:
    """One form instance of one subject as read from a file, with where each value was.

    ``line`` is the first line of the record (CSV) or of its FormData element (ODM);
    ``item_lines`` maps validate_form's paths to lines.
    """

    subject_id: str
    site: str | None
    event: str
    event_instance: int
    form: str
    values: dict[str, object]
    complete: bool
    line: int
    item_lines: dict[str, int]
    file: str

    def line_of(self, path: str) -> int:
        """The line of a problem path from validate_form: the item's own line, else that of
        its group instance, else the record's first line.

        >>> record = FileFormRecord("S1", None, "ae_log", 1, "ae", {}, False, 7,
        ...                     {"forms.ae.events[2]": 9}, "ae.csv")
        >>> record.line_of("forms.ae.events[2].ae_term"), record.line_of("forms.ae")
        (9, 7)
        """
        line = self.item_lines.get(path)
        if line is None:
            line = self.item_lines.get(path.rpartition(".")[0], self.line)
        return line


# ------------------------------------------------------------------ shared by the readers


@dataclass(frozen=True, slots=True)
class Slot:
    """Where an item lives: its form, its group and whether that group repeats."""

    form: str
    group: str
    repeating: bool
    item: str
    kind: ItemType
    codes: tuple[str, ...]


class ProblemLog:
    """Structural problems of one file; at most :data:`MAX_PROBLEMS` are kept."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.kept: list[Problem] = []
        self.count = 0

    def add(self, path: str, message: str, line: int, column: int = 1) -> None:
        """Note a problem; ``column`` is the CSV field or XML column (1: the line as a whole)."""
        self.count += 1
        if len(self.kept) < MAX_PROBLEMS:
            self.kept.append(Problem(path, message, self.file, line, column))

    def error(self) -> InterchangeError:
        problems = sorted(self.kept, key=lambda p: (p.line, p.column))
        if self.count > len(problems):
            more = self.count - len(problems)
            problems.append(Problem("", f"… and {more} more problems", self.file))
        return InterchangeError(problems)

    def fail(self, path: str, message: str, line: int, column: int = 1) -> NoReturn:
        """Add a problem that stops reading, and raise every problem found so far."""
        self.add(path, message, line, column)
        raise self.error()

    def check(self) -> None:
        if self.count:
            raise self.error()


class StudyLayout:
    """The study's names as data files use them, looked up in O(1); built once per file."""

    def __init__(self, study: Study) -> None:
        self.study = study
        names = redcap_names(study)
        self.names = names
        self.slots: dict[str, Slot] = {}
        for form, group_name, item_name, item in study.iter_items():
            group = study.forms[form].groups[group_name]
            codes = tuple(e.code for e in study.code_lists.get(item.code_list or "", ()))
            slot = Slot(form, group_name, group.repeating, item_name, item.type, codes)
            self.slots[item_name] = slot
        self.event_forms = {name: frozenset(event.forms) for name, event in study.events.items()}
        self.repeats = {
            name for name, event in study.events.items() if event.repeating or event.unscheduled
        }
        self.repeating_groups = {
            form: tuple(g for g, group in spec.groups.items() if group.repeating)
            for form, spec in study.forms.items()
        }
        self.forms: dict[str, str] = {redcap: form for form, redcap in names.forms.items()}
        self.forms |= {form: form for form in study.forms}
        self.events: dict[str, str | None] = {u: e for e, u in names.events.items()}
        self.events |= {e.lower(): e for e in study.events} | {e: e for e in study.events}
        self._stems = {unique.removesuffix("_arm_1"): e for e, unique in names.events.items()}
        self.sites = {code.lower(): code for code in study.sites} | {c: c for c in study.sites}

    def event(self, raw: str) -> str | None:
        """The study event of a plain or unique event name (any arm); None if unknown."""
        if raw in self.events:
            return self.events[raw]
        stem, _, arm = raw.lower().rpartition("_arm_")
        event = self._stems.get(stem) if arm.isascii() and arm.isdigit() else None
        if len(self.events) < 4096:  # files repeat the same few names: remember the answer
            self.events[raw] = event
        return event

    def site(self, raw: str) -> tuple[str | None, str]:
        """(site code, problem): a study site by code (any case), or the raw text when the
        study lists no sites; an empty cell is no site."""
        if not raw:
            return None, ""
        code = self.sites.get(raw) or self.sites.get(raw.lower())
        if code is not None or not self.sites:
            return code or raw, ""
        return None, f"{raw!r} is not a site of this study: {', '.join(self.study.sites)}"

    def form_problem(self, form: str, event: str) -> str:
        """Why ``form`` cannot be entered at ``event`` ("" when it can)."""
        if form in self.event_forms[event]:
            return ""
        return f"form {form} is not collected at event {event}; its forms: " + ", ".join(
            self.study.events[event].forms
        )


def whole(raw: str) -> int | None:
    """A whole number above 0 written in ASCII digits, else None."""
    if raw.isascii() and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return None


class FormValues:
    """The values of one form instance while its record is being gathered."""

    __slots__ = ("complete", "flat", "form", "groups", "line", "lines", "site")

    def __init__(self, form: str, line: int, site: str | None) -> None:
        self.form, self.line, self.site = form, line, site
        self.flat: dict[str, object] = {}
        self.lines: dict[str, int] = {}
        # group -> instance number -> (values, item lines, first line)
        self.groups: dict[str, dict[int, tuple[dict[str, object], dict[str, int], int]]] = {}
        self.complete: bool | None = None  # None: no status given


class RecordAssembler:
    """Gathers the forms of one subject's event instance and turns them into records."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.key: tuple[str, str, int] = ("", "", 0)
        self.forms: dict[str, FormValues] = {}

    def start(self, subject: str, event: str, instance: int) -> list[FileFormRecord]:
        """Move on to this event instance; return the records of the previous one, if it
        was another."""
        key = (subject, event, instance)
        if key == self.key:
            return []
        records = self.finish()
        self.key = key
        return records

    def form(self, form: str, line: int, site: str | None) -> FormValues:
        entry = self.forms.get(form)
        if entry is None:
            entry = self.forms[form] = FormValues(form, line, site)
        return entry

    @staticmethod
    def put(
        entry: FormValues, slot: Slot, instance: int, value: str, line: int, opened: int = 0
    ) -> str:
        """Set one item value (``instance`` counts for repeating groups only; ``opened`` is
        the line where the group instance starts, when not ``line``). Return why the value
        cannot be taken — the item has another value already — or ""."""
        if slot.repeating:
            group = entry.groups.setdefault(slot.group, {})
            if instance not in group:
                group[instance] = ({}, {}, opened or line)
            values, lines, _ = group[instance]
        else:
            values, lines = entry.flat, entry.lines
        earlier = values.get(slot.item)
        if earlier is None:
            values[slot.item] = value
            lines[slot.item] = line
            return ""
        if earlier == value:
            return ""
        shown = f"{slot.group}[{instance}]." if slot.repeating else ""
        first = f"{earlier!r} (line {lines[slot.item]})"
        return f"{shown}{slot.item} is given twice: {first} and {value!r}"

    def finish(self) -> list[FileFormRecord]:
        subject, event, instance = self.key
        records = [self._record(subject, event, instance, entry) for entry in self.forms.values()]
        self.forms = {}
        return records

    def _record(self, subject: str, event: str, instance: int, entry: FormValues) -> FileFormRecord:
        base = f"forms.{entry.form}"
        values = dict(entry.flat)
        item_lines = {f"{base}.{item}": line for item, line in entry.lines.items()}
        for group, instances in entry.groups.items():
            ordered = sorted(instances.items())
            values[group] = [group_values for _, (group_values, _, _) in ordered]
            for number, (_, (_, lines, first)) in enumerate(ordered, 1):
                prefix = f"{base}.{group}[{number}]"
                item_lines[prefix] = first
                item_lines |= {f"{prefix}.{item}": line for item, line in lines.items()}
        return FileFormRecord(
            subject, entry.site, event, instance, entry.form, values, entry.complete is True,
            entry.line, item_lines, self.file,
        )  # fmt: skip
