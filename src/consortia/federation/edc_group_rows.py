"""An EDC table with one row per instance of a repeating group (``rows: GROUP``).

A plan whose variables are items of a repeating group (glucose-iso15197's paired
readings: ``ref_mgdl`` and ``meter_mgdl`` of group ``readings``) reads a table with one row
per saved instance of that group, not one per subject. Each row holds the instance's items,
and its subject's columns repeated: ``site``, ``status``, the non-repeating items and the
derived variables that do not read the group (a derived variable reading the group's items
is computed per subject from its latest values, so it is left out of these rows). When
several events (or a repeating or unscheduled one) collect the group's form, an ``event``
column names the row's event (its instance appended after the first, ``ae_log.2``).

Rows are ordered by subject (as the subject rows), then form instance, then group
instance. Many rows describe one person, so the table carries a subject key (each row's
subject's row number, never a column, never released) and every minimum-count check counts
the distinct subjects behind a figure, not its rows (:mod:`consortia.federation.people`).
A row's key for the release ledger is its subject's internal key times 2**32 plus its
reading's place within the subject (the form instance's rank among the subject's form
instances holding the group, times 2**20, plus the group instance), so the ledger can count
the people behind a difference of two row sets; its dataset is ``edc:STUDY:GROUP``: row
sets of readings are compared with row sets of readings, never with row sets of subjects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from consortia.domain.derivation import expression
from consortia.domain.study import Study
from consortia.exceptions import ConfigurationError
from consortia.federation.tables import SUBJECT_SHIFT, ColumnType, empty_column
from consortia.storage.edc_reads import EdcReads

__all__ = ["GROUP_ROW_FACTOR", "group_form", "group_rows", "per_instance_derived"]

#: Within a subject, a reading's place: form instance rank * GROUP_ROW_FACTOR + instance.
GROUP_ROW_FACTOR = 1 << 20
_MAX_RANK = 1 << (SUBJECT_SHIFT - 20)


def group_form(study: Study, group: str) -> tuple[str, list[str]]:
    """The form holding repeating group ``group`` and its items; a
    :class:`ConfigurationError` when the study has no such repeating group."""
    for form_name, form in study.forms.items():
        found = form.groups.get(group)
        if found is not None and found.repeating:
            return form_name, list(found.items)
    groups = sorted(
        name for form in study.forms.values() for name, g in form.groups.items() if g.repeating
    )
    raise ConfigurationError(
        f"study {study.study.id} has no repeating group {group!r}; its repeating groups: "
        f"{', '.join(groups) or 'none'}"
    )


def per_instance_derived(study: Study, group_items: Iterable[str]) -> set[str]:
    """The derived variables that read the group's items, directly or through another."""
    reading = set(group_items)
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, derived in study.derived.items():
            if name not in found and expression(derived.expression).names & (reading | found):
                found.add(name)
                changed = True
    return found


def _event_ref(event: str, instance: int) -> str:
    return event if instance == 1 else f"{event}.{instance}"


def group_rows(
    reads: EdcReads,
    subject_arrays: Mapping[str, npt.NDArray[Any]],
    row_of: Mapping[int, int],
    group_columns: Sequence[tuple[str, str, ColumnType]],
    event_column: str | None,
    set_cell: Any,
) -> tuple[dict[str, npt.NDArray[Any]], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The table's columns, one row per group instance, the rows' ledger keys and their
    subject key (the subject's row among the subject rows).

    ``subject_arrays`` hold the subject columns (one row per subject, ``row_of`` maps a
    subject's key to its row); ``group_columns`` are (column, item, type) of the group.
    """
    cells: dict[tuple[int, int], list[tuple[str, str, Any]]] = {}
    owner: dict[tuple[int, int], tuple[int, str]] = {}
    subject_of: dict[tuple[int, int], int] = {}
    by_item = {item: (name, kind) for name, item, kind in group_columns}
    for pk, form_pk, event, instance, number, item, text, value in reads.group_values(
        sorted(by_item)
    ):
        key = (int(form_pk), int(number))
        if key not in owner:
            owner[key] = (row_of[int(pk)], _event_ref(event, int(instance)))
            subject_of[key] = int(pk)
            cells[key] = []
        cells[key].append((item, text, value))
    keys = sorted(owner, key=lambda key: (owner[key][0], key))
    size = len(keys)
    subject_row = np.array([owner[key][0] for key in keys], dtype=np.int64)
    columns = {name: array[subject_row] for name, array in subject_arrays.items()}
    for name, _, kind in group_columns:
        columns[name] = empty_column(kind, size)
    if event_column is not None:
        columns[event_column] = np.array([owner[key][1] for key in keys], dtype=object)
    for row, key in enumerate(keys):
        for item, text, value in cells[key]:
            name, kind = by_item[item]
            set_cell(columns[name], row, kind, text, value)
    return columns, _ledger_keys(keys, subject_of), subject_row


def _ledger_keys(
    keys: Sequence[tuple[int, int]], subject_of: Mapping[tuple[int, int], int]
) -> npt.NDArray[np.int64]:
    """subject key << SUBJECT_SHIFT | form rank * GROUP_ROW_FACTOR + group instance."""
    forms: dict[int, set[int]] = {}
    for key in keys:
        forms.setdefault(subject_of[key], set()).add(key[0])
    rank = {form_pk: index for held in forms.values() for index, form_pk in enumerate(sorted(held))}
    row_keys: list[int] = []
    for form_pk, number in keys:
        subject = subject_of[(form_pk, number)]
        if rank[form_pk] >= _MAX_RANK or number >= GROUP_ROW_FACTOR or subject >= 1 << 31:
            raise ConfigurationError(
                f"a subject holds more than {_MAX_RANK} forms or a form more than "
                f"{GROUP_ROW_FACTOR} instances of one repeating group (or a subject's key "
                "exceeds 2**31): too many to key its readings"
            )
        within = rank[form_pk] * GROUP_ROW_FACTOR + number
        row_keys.append((subject << SUBJECT_SHIFT) | within)
    return np.array(row_keys, dtype=np.int64)
