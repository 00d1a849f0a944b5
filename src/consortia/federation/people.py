"""Minimum counts in people, for tables with a row per reading.

In a per-reading table (one row per instance of a repeating group:
:mod:`consortia.federation.edc_group_rows`) one subject may have many rows, so a count of
rows says nothing about how many people a figure describes: 5 readings in zone D may be
one patient's. Such a table carries a subject key (:attr:`Table.subject_key`, never a
column), and every minimum-count check counts the distinct subjects behind a figure
(:meth:`Table.people`) while the statistics are still computed over the readings:

* every row set a release draws on or names — its rows (``n``), each group the ledger
  keeps (a crosstab's released cells and levels, histogram bins, successes and failures,
  levels and strata of a model, event groups of a survival curve) and each count a kind
  releases outside the ledger (``Release.counted``: error-grid zones, pairs within the ISO
  limits, the cells of a diagnostic 2×2 table) — must describe 0 or at least
  ``min_cell_count`` people, else the release is refused (``min_cell_count``);
* rows left out for a missing value are released as ``"<k"`` when they come from 1 to
  k − 1 people, however many readings they are;
* the release ledger compares row sets by the people in their difference
  (:mod:`consortia.federation.disclosure`);
* a request naming the subject key is refused (``identifier_column``), and secure sums,
  whose pooled totals the lead checks in rows, are refused on these tables.

A refusal's message names the figure and the minimum, never the count that failed it.
For a table with a row per person nothing here changes anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from consortia.exceptions import PolicyRefusal
from consortia.federation.kinds.base import complete_rows
from consortia.federation.policy import NodePolicy, Release
from consortia.federation.suppression import disclose_excluded
from consortia.federation.tables import SUBJECT_KEY, Table
from consortia.stats.counts import suppressed

__all__ = ["check_people", "disclose_counts", "refuse_subject_key"]


def refuse_subject_key(table: Table, request: Any, columns: Sequence[str]) -> None:
    """Refuse a request that names the subject key of a per-reading table (as an
    identifier) or asks it for a secure sum."""
    if not table.per_reading:
        return
    if SUBJECT_KEY in columns:
        raise PolicyRefusal(
            "identifier_column",
            f"{table.name}.{SUBJECT_KEY} is the node's key of the subject of each reading; "
            "it is never analysed",
        )
    if getattr(request, "secure", False):
        raise PolicyRefusal(
            "secure_per_reading",
            f"table {table.name!r} has a row per reading: a secure sum's pooled counts cannot "
            'be checked in people; ask without "secure"',
        )


def disclose_counts(
    release: Release, policy: NodePolicy, table: Table, columns: Sequence[str]
) -> Release:
    """The release's excluded count under the cell rule
    (:func:`~consortia.federation.suppression.disclose_excluded`); in a per-reading table
    it is suppressed also when the rows left out come from 1 to k − 1 people."""
    released = disclose_excluded(release, policy, table.n_rows)
    value = released.aggregates.get("excluded")
    if not table.per_reading or not isinstance(value, int) or value == 0:
        return released
    people = table.people(~complete_rows(table, columns)[0])
    if people >= policy.min_cell_count:
        return released
    aggregates = {**released.aggregates, "excluded": suppressed(policy.min_cell_count)}
    if "missing" in aggregates:
        aggregates["missing"] = aggregates["excluded"]
    return dataclasses.replace(release, aggregates=aggregates)


def check_people(
    table: Table, release: Release, columns: Sequence[str], policy: NodePolicy
) -> None:
    """Refuse a release from a per-reading table any of whose figures describes 1 to
    ``min_cell_count`` − 1 people (nothing to check in a table with a row per person)."""
    if not table.per_reading:
        return
    minimum = policy.min_cell_count
    rows = release.rows if release.rows is not None else complete_rows(table, columns)[0]
    figures = {"rows": rows, **release.groups, **release.counted}
    for label, mask in figures.items():
        if 0 < table.people(mask) < minimum:
            raise PolicyRefusal(
                "min_cell_count",
                f"a released count ({label}) describes fewer than {minimum} people; in a table "
                f"with a row per reading every count must come from at least {minimum} "
                "subjects, however many readings they have",
            )
