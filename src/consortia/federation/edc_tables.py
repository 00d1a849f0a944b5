"""Analysis tables built from the data this node captured, declared as ``edc: STUDY``.

::

    database_url: sqlite:///consortia.db     # the node's database (see nodeconfig)
    tables:
      cart:
        edc: CART-LBCL              # the study whose captured data builds the table
        sites: [SG01]               # optional: only these sites' subjects (default: all)
        statuses: [enrolled, on_study, completed, withdrawn]   # optional (default: all)
        identifiers: [bridging_regimen]   # optional: more columns kept out (free text…)
        rows: readings              # optional: a row per instance of this repeating group

An EDC table has one row per subject of the study at this node (with ``rows``, one per
instance of a repeating group: :mod:`consortia.federation.edc_group_rows`), and these
columns:

* ``site`` and ``status`` (text): the subject's site and current status;
* every derived variable of the study, typed per its ``type`` (integer and decimal as
  floats, boolean 0/1, date, text);
* an item filled from the allocation (``source: randomisation``): the allocation code of
  the subject, or its arm when the reader may see every arm (``arms``, for a caller the
  blinding rule lets see them: :func:`consortia.services.randomisation.sees_arms`), never a
  typed value; a subject not randomised has none. A federated analysis reads codes;
* every other item of a non-repeating group, typed per its item type: integer and decimal as
  floats, boolean 0/1, date as a date, choice and text as text, multichoice as its codes
  joined by ``|``, datetime and time as ISO text. An item collected at several events
  becomes one column per event, ``<item>_<event>`` (``response_day28``,
  ``response_month3``); an item collected at one event keeps its name.

What never enters: identifier (PHI) items (``identifier: true`` in the study), the
subject id and initials, the columns named in ``identifiers`` and in the policy's
``identifier_columns``, items of repeating groups and of repeating events (many values
per subject: summarise them with a derived variable), and file items. Rows are numbered,
not keyed by subject: a subject id is a pseudonym the site's enrolment log links back to a
person, and no analysis needs to know whose row is whose, so a table without it cannot be
joined back to anyone even by someone holding the log. An event that happened several
times (an unscheduled visit) gives its latest instance's value.

The table is read with three set-based queries (subjects, item values, derived values)
whatever the number of subjects, and rebuilt only when the study's data changed: every
change of captured data appends an event to the study's audit chain in the same
transaction, so the chain's head sequence number tells, in one indexed lookup, whether the
table in memory is still current.

>>> from consortia.domain.templates import load_template
>>> columns = {column.name: column for column in edc_columns(load_template("cart-lbcl"))}
>>> [name in columns for name in ("site", "age", "response_day28", "pfs_days", "birth_date")]
[True, True, True, True, False]
>>> columns["response_month3"].type.value, columns["pfs_event"].source
('text', 'derived')
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from consortia.domain.study import DerivedType, ItemType, Study
from consortia.domain.study_yaml import load_study_text
from consortia.domain.values import StudyIndex
from consortia.exceptions import ConfigurationError
from consortia.federation.edc_group_rows import group_form, group_rows, per_instance_derived
from consortia.federation.tables import SUBJECT_KEY, ColumnType, Table, empty_column
from consortia.storage.capture import StudyVersionRepository
from consortia.storage.db import READ_ONLY
from consortia.storage.edc_reads import EdcReads
from consortia.storage.hub import StudyOfferRepository

__all__ = [
    "EdcColumn",
    "EdcTableSource",
    "EdcTableSpec",
    "NodeTables",
    "accepted_study_tables",
    "edc_columns",
    "plan_tables",
    "read_edc_table",
]

SUBJECT_COLUMNS = ("site", "status")
# Subject-level identifiers: refused by name, like identifier items.
SUBJECT_IDENTIFIERS = frozenset({"subject_id", "initials"})

_ITEM_TYPES: Mapping[ItemType, ColumnType] = {
    ItemType.INTEGER: ColumnType.INTEGER,
    ItemType.DECIMAL: ColumnType.DECIMAL,
    ItemType.BOOLEAN: ColumnType.BOOLEAN,
    ItemType.DATE: ColumnType.DATE,
    ItemType.CHOICE: ColumnType.TEXT,
    ItemType.MULTICHOICE: ColumnType.TEXT,
    ItemType.TEXT: ColumnType.TEXT,
    ItemType.DATETIME: ColumnType.TEXT,
    ItemType.TIME: ColumnType.TEXT,
}
_DERIVED_TYPES: Mapping[DerivedType, ColumnType] = {
    DerivedType.INTEGER: ColumnType.INTEGER,
    DerivedType.DECIMAL: ColumnType.DECIMAL,
    DerivedType.BOOLEAN: ColumnType.BOOLEAN,
    DerivedType.DATE: ColumnType.DATE,
    DerivedType.TEXT: ColumnType.TEXT,
}


class EdcTableSpec(BaseModel):
    """A table declared in the node config as built from a study captured on this node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edc: str = Field(min_length=1, max_length=64)
    sites: list[str] | None = None
    statuses: list[str] | None = None
    identifiers: list[str] = []
    rows: str | None = Field(default=None, min_length=1, max_length=64)


@dataclass(frozen=True, slots=True)
class EdcColumn:
    """One column of an EDC table and where its values come from.

    ``source`` is ``subject`` (``key`` is a subject column), ``derived`` (``key`` is a
    derived variable), ``item`` (``key`` is an item, collected at ``event``),
    ``allocation`` (``key`` is an item filled from the allocation), or, in a
    table with a row per instance of a repeating group, ``group`` (``key`` is an item of
    the group) and ``event`` (the row's event).
    """

    name: str
    type: ColumnType
    source: Literal["subject", "derived", "item", "allocation", "group", "event"]
    key: str
    event: str | None = None


def _item_events(study: Study) -> dict[str, list[str]]:
    """For each form, the non-repeating events that collect it, in schedule order."""
    events: dict[str, list[str]] = {form: [] for form in study.forms}
    for event_name, event in study.events.items():
        if event.repeating:
            continue
        for form in event.forms:
            events.setdefault(form, []).append(event_name)
    return events


def edc_columns(
    study: Study, *, exclude: Iterable[str] = (), rows: str | None = None
) -> list[EdcColumn]:
    """The columns of an EDC table of ``study``, in order (see the module docstring).

    ``exclude`` names items, derived variables or columns to keep out as well. ``rows``
    names a repeating group whose instances are the rows (:mod:`.edc_group_rows`). Two
    sources that would give one column name are refused with a :class:`ConfigurationError`.
    """
    excluded = set(exclude)
    columns = [
        EdcColumn(name, ColumnType.TEXT, "subject", name)
        for name in SUBJECT_COLUMNS
        if name not in excluded
    ]
    group_items: list[str] = []
    per_instance: set[str] = set()
    if rows is not None:
        form_of_group, group_items = group_form(study, rows)
        per_instance = per_instance_derived(study, group_items)
    for name, derived in study.derived.items():
        if name not in excluded and name not in per_instance:
            columns.append(EdcColumn(name, _DERIVED_TYPES[derived.type], "derived", name))
    events_of = _item_events(study)
    for form_name, form in study.forms.items():
        events = events_of.get(form_name, [])
        for group in form.groups.values():
            if group.repeating:
                continue
            for item_name, item in group.items.items():
                kind = _ITEM_TYPES.get(item.type)
                if item.identifier or kind is None or item_name in excluded:
                    continue
                if item.allocated:  # one per subject, whatever the events
                    columns.append(EdcColumn(item_name, ColumnType.TEXT, "allocation", item_name))
                    continue
                for event in events:
                    name = item_name if len(events) == 1 else f"{item_name}_{event}"
                    if name not in excluded:
                        columns.append(EdcColumn(name, kind, "item", item_name, event))
    if rows is not None:
        columns.extend(_group_columns(study, form_of_group, rows, group_items, excluded))
    seen: dict[str, EdcColumn] = {}
    clashes = []
    for column in columns:
        if column.name in seen:
            clashes.append(f"{column.name!r} ({_origin(seen[column.name])} and {_origin(column)})")
        seen[column.name] = column
    if clashes:
        raise ConfigurationError(
            f"study {study.study.id}: two sources would make one table column: "
            f"{'; '.join(clashes)}; rename one in the study or list the column under the "
            "table's identifiers to leave it out"
        )
    return columns


def _group_columns(
    study: Study, form: str, group: str, items: list[str], excluded: set[str]
) -> list[EdcColumn]:
    """The columns of a repeating group's items, and ``event`` when several events (or a
    repeating or unscheduled one) collect its form."""
    columns = []
    for item_name in items:
        item = study.forms[form].groups[group].items[item_name]
        kind = _ITEM_TYPES.get(item.type)
        if not item.identifier and kind is not None and item_name not in excluded:
            columns.append(EdcColumn(item_name, kind, "group", item_name))
    events = [name for name, event in study.events.items() if form in event.forms]
    several = len(events) > 1 or any(
        study.events[name].repeating or study.events[name].unscheduled for name in events
    )
    if several and "event" not in excluded:
        columns.append(EdcColumn("event", ColumnType.TEXT, "event", "event"))
    return columns


def _origin(column: EdcColumn) -> str:
    if column.source == "item":
        return f"item {column.key} at event {column.event}"
    return f"{column.source} {column.key}"


@lru_cache(maxsize=16)
def _parse_study(sha256: str, source: str, file: str) -> Study:
    del sha256  # the cache key: equal text, equal hash
    return load_study_text(source, file)


def _number(text: str, number: float | None) -> float | None:
    if number is not None:
        return number if math.isfinite(number) else None
    try:  # a value stored before the item's type changed
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _set_cell(array: npt.NDArray[Any], row: int, kind: ColumnType, text: str, number: Any) -> None:
    """Store one stored value as the column's type; a value that does not fit stays missing."""
    if kind is ColumnType.TEXT:
        array[row] = text
    elif kind is ColumnType.DATE:
        try:
            array[row] = np.datetime64(date.fromisoformat(text), "D")
        except ValueError:
            array[row] = np.datetime64("NaT")
    else:
        value = _number(text, None if number is None else float(number))
        array[row] = math.nan if value is None else value


def read_edc_table(
    connection: Connection,
    name: str,
    spec: EdcTableSpec,
    *,
    identifiers: Iterable[str] = (),
    arms: bool = False,
) -> Table:
    """Build the EDC table ``name`` from the node database in one read transaction.

    ``identifiers`` adds columns to leave out (the policy's identifier columns). ``arms``
    puts the arm, not the allocation code, in the items filled from the allocation: only
    for a caller who may see every arm of the table's sites. Raises
    :class:`ConfigurationError` when the study has no definition on this node.
    """
    return _read(connection, name, spec, identifiers, arms=arms)[0]


def _read(
    connection: Connection,
    name: str,
    spec: EdcTableSpec,
    identifiers: Iterable[str],
    *,
    arms: bool = False,
) -> tuple[Table, Study]:
    record = StudyVersionRepository(connection).current(spec.edc)
    if record is None:
        raise ConfigurationError(
            f"table {name}: study {spec.edc} has no definition on this node; load it first "
            f"(`consortia study load FILE` or PUT /api/v1/studies/{spec.edc}/definition)"
        )
    study = _parse_study(record.sha256, record.source, f"{spec.edc} v{record.version}")
    try:
        columns = edc_columns(study, exclude=[*spec.identifiers, *identifiers], rows=spec.rows)
    except ConfigurationError as exc:
        raise ConfigurationError(f"table {name}: {exc}") from None
    reads = EdcReads(connection, spec.edc, sites=spec.sites, statuses=spec.statuses)
    subjects = reads.subjects()
    row_of = {int(row.id): index for index, row in enumerate(subjects)}
    size = len(subjects)
    arrays = {column.name: empty_column(column.type, size) for column in columns}
    for column in columns:
        if column.source == "subject":
            arrays[column.name][:] = [getattr(row, column.key) for row in subjects]

    derived = {column.key: column for column in columns if column.source == "derived"}
    if derived and size:
        for pk, key, text, number in reads.derived(sorted(derived)):
            column = derived[key]
            _set_cell(arrays[column.name], row_of[pk], column.type, text, number)

    cells = {(c.key, c.event): c for c in columns if c.source == "item"}
    if cells and size:
        _read_items(reads, cells, row_of, arrays)
    allocated = [column.name for column in columns if column.source == "allocation"]
    if allocated and size:
        for pk, code, arm in reads.allocations():
            for column_name in allocated:
                arrays[column_name][row_of[pk]] = arm if arms else code
    if spec.rows is not None:
        if any(column.name == SUBJECT_KEY for column in columns):
            raise ConfigurationError(
                f"table {name}: a column may not be named {SUBJECT_KEY!r} in a table with a "
                "row per reading (the name is kept for the node's subject key)"
            )
        per_row = [c for c in columns if c.source in ("group", "event")]
        group = [(c.name, c.key, c.type) for c in per_row if c.source == "group"]
        event = next((c.name for c in per_row if c.source == "event"), None)
        subject_arrays = {n: a for n, a in arrays.items() if n not in {c.name for c in per_row}}
        by_row, keys, subjects_of_rows = group_rows(
            reads, subject_arrays, row_of, group, event, _set_cell
        )
        table = Table(
            name,
            {column.name: by_row[column.name] for column in columns},
            {column.name: column.type for column in columns},
            f"edc:{spec.edc} v{record.version} rows {spec.rows}",
            row_keys=keys,
            dataset=f"edc:{spec.edc}:{spec.rows}",
            subject_key=subjects_of_rows,
        )
        return table, study
    table = Table(
        name,
        arrays,
        {column.name: column.type for column in columns},
        f"edc:{spec.edc} v{record.version}",
        row_keys=np.array([int(row.id) for row in subjects], dtype=np.int64),
        dataset=f"edc:{spec.edc}",
    )
    return table, study


def _read_items(
    reads: EdcReads,
    cells: Mapping[tuple[str, str | None], EdcColumn],
    row_of: Mapping[int, int],
    arrays: Mapping[str, npt.NDArray[Any]],
) -> None:
    """Fill the item columns from every non-repeating value of the subjects, in one query.

    Rows come in no particular order (no sort over millions of values); when an event has
    several instances the highest instance's value wins.
    """
    items = sorted({key for key, _ in cells})
    events = sorted({event for _, event in cells if event is not None})
    size = len(row_of)
    # Only unscheduled events have instances beyond 1; their columns get an array of the
    # instance each cell holds, made when the first such instance turns up.
    latest: dict[str, npt.NDArray[np.int64]] = {}
    for pk, event, instance, item, text, number in reads.item_values(items, events):
        column = cells.get((item, event))
        if column is None:
            continue
        row = row_of[pk]
        held = latest.get(column.name)
        if held is None and instance > 1:
            held = latest[column.name] = np.zeros(size, dtype=np.int64)
        if held is not None:
            if held[row] > instance:
                continue
            held[row] = instance
        _set_cell(arrays[column.name], row, column.type, text, number)


class EdcTableSource:
    """One EDC table of a node, kept in memory and rebuilt when the study's data changed.

    Thread-safe: a node computes in worker threads; one rebuild runs at a time.
    """

    def __init__(
        self, engine: Engine, name: str, spec: EdcTableSpec, *, identifiers: Iterable[str] = ()
    ) -> None:
        self.engine = engine
        self.name = name
        self.spec = spec
        self.identifiers = frozenset(identifiers)
        self._lock = threading.Lock()
        self._table: Table | None = None
        self._marker = -1
        self._identifier_items: frozenset[str] = frozenset()

    @property
    def identifier_names(self) -> frozenset[str]:
        """The study's identifier items and the subject's identifiers (known after a load)."""
        return self._identifier_items | SUBJECT_IDENTIFIERS

    def table(self) -> Table:
        """The current table: the one in memory if the study's data has not changed."""
        with self._lock, self._read_connection() as connection:
            marker = EdcReads(connection, self.spec.edc).data_marker()
            if self._table is not None and marker == self._marker:
                return self._table
            table, study = _read(connection, self.name, self.spec, self.identifiers)
            self._table, self._marker = table, marker
            self._identifier_items = frozenset(
                name for _, _, name, item in study.iter_items() if item.identifier
            )
            return table

    def _read_connection(self) -> Connection:
        connection = self.engine.connect().execution_options(**{READ_ONLY: True})
        if connection.dialect.name == "postgresql":
            # one snapshot for the marker and the three queries
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        return connection


def plan_tables(study: Study) -> dict[str, EdcTableSpec]:
    """The EDC tables a study's analysis plan reads: each table its plan names, built from
    the study's captured data at this node (``edc: STUDY``). A table whose analyses read
    items of one repeating group has a row per instance of that group (``rows: GROUP``).

    >>> from consortia.domain.templates import load_template
    >>> plan_tables(load_template("cart-lbcl"))  # doctest: +NORMALIZE_WHITESPACE
    {'cart_efficacy': EdcTableSpec(edc='CART-LBCL', sites=None, statuses=None,
                                   identifiers=[], rows=None)}
    >>> plan_tables(load_template("glucose-iso15197"))["glucose_pairs"].rows
    'readings'
    """
    repeating = StudyIndex.of(study).repeating_group_of
    groups: dict[str, set[str]] = {}
    for analysis in study.analysis_plan.values():
        found = groups.setdefault(analysis.table, set())
        for value in (analysis.model_extra or {}).values():
            names = value if isinstance(value, list) else [value]
            found.update(repeating[n] for n in names if isinstance(n, str) and n in repeating)
    return {
        table: EdcTableSpec(edc=study.study.id, rows=next(iter(found)) if len(found) == 1 else None)
        for table, found in groups.items()
    }


def accepted_study_tables(connection: Connection) -> dict[str, EdcTableSpec]:
    """The tables this node declared by accepting its hub's study versions: the tables of
    each accepted study's plan (:func:`plan_tables`, of the study's current version)."""
    studies = {o.study for o in StudyOfferRepository(connection).list() if o.status == "accepted"}
    declared: dict[str, EdcTableSpec] = {}
    versions = StudyVersionRepository(connection)
    for study_id in sorted(studies):
        record = versions.current(study_id)
        if record is None:
            continue
        study = _parse_study(record.sha256, record.source, f"{study_id} v{record.version}")
        for name, spec in plan_tables(study).items():
            declared.setdefault(name, spec)
    return declared


class NodeTables(Mapping[str, Table]):
    """A node's tables: file tables loaded once, EDC tables current at every lookup.

    :class:`~consortia.federation.node.NodeRunner` looks a table up once per analysis
    session, so each new analysis sees the data as captured now, and a session's rounds
    all use the table it started with. ``declared`` (with ``engine``) gives the tables
    declared in the node database, read at every lookup: those of the study versions
    accepted from the node's hub (:func:`accepted_study_tables`); a table of the same
    name in the node's config comes first.
    """

    def __init__(
        self,
        files: Mapping[str, Table],
        sources: Mapping[str, EdcTableSource] | None = None,
        *,
        engine: Engine | None = None,
        declared: Callable[[Connection], Mapping[str, EdcTableSpec]] | None = None,
        identifiers: Iterable[str] = (),
    ) -> None:
        self.files = dict(files)
        self.sources = dict(sources or {})
        clash = set(self.files) & set(self.sources)
        if clash:
            raise ConfigurationError(f"tables declared twice: {sorted(clash)}")
        self.engine = engine
        self.declared = declared if engine is not None else None
        self.identifiers = frozenset(identifiers)
        self._declared_sources: dict[tuple[str, str], EdcTableSource] = {}
        self._lock = threading.Lock()

    def _declared_specs(self) -> Mapping[str, EdcTableSpec]:
        if self.declared is None or self.engine is None:
            return {}
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            specs = self.declared(connection)
        return {n: s for n, s in specs.items() if n not in self.files and n not in self.sources}

    def _declared_source(self, name: str) -> EdcTableSource | None:
        spec = self._declared_specs().get(name)
        if spec is None or self.engine is None:
            return None
        with self._lock:  # one source per declaration, so its table stays cached
            key = (name, spec.model_dump_json())
            source = self._declared_sources.get(key)
            if source is None:
                source = EdcTableSource(self.engine, name, spec, identifiers=self.identifiers)
                self._declared_sources[key] = source
        return source

    def __getitem__(self, name: str) -> Table:
        source = self.sources.get(name)
        if source is not None:
            return source.table()
        if name in self.files:
            return self.files[name]
        declared = self._declared_source(name)
        if declared is None:
            raise KeyError(name)
        return declared.table()

    def __contains__(self, name: object) -> bool:
        if name in self.files or name in self.sources:
            return True
        return isinstance(name, str) and name in self._declared_specs()

    def __iter__(self) -> Iterator[str]:
        yield from self.files
        yield from self.sources
        yield from self._declared_specs()

    def __len__(self) -> int:
        return len(self.files) + len(self.sources) + len(self._declared_specs())
