"""Releasing counts as suppressed instead of refusing the analysis.

**Cells.** A table's small cells (a crosstab's, an error grid's zones) are released as
``"<5"``, with complementary cells (``">=5"``) so that none can be recovered from the
table's margins (the rule and its audit: :mod:`consortia.stats.suppression`); the rest of
the table is released (:func:`suppress_table`).

**Complete cases, counted.** A kind analyses the rows with a value in every variable the
request reads and says how many it left out (``Release.excluded``). That count is
released in the aggregates (``"excluded"``, and ``"missing"`` for the kinds whose
aggregates carry one) under the cell rule: a count 0 < n < ``min_cell_count`` is released
as suppressed (``"<5"``), never as the number, and never refuses the analysis.

The count still goes through the release ledger. A count released as a number, with the
release's n, gives the number of rows in the whole table, so the table's rows are then
recorded as one more row set of the release: a later release whose complete rows are 1 to
``min_cell_count`` − 1 short of the table (which with that total would give its suppressed
count, and by subtraction its excluded rows' values) is refused with ``differencing``, and
so is a release of the table's total after one whose suppressed count it would reveal.
A suppressed count records nothing more than the complete rows.

>>> from consortia.federation.policy import NodePolicy, Release
>>> released = disclose_excluded(Release({"n": 7}, 7, excluded=2), NodePolicy(), 9)
>>> released.aggregates
{'n': 7, 'excluded': '<5'}
>>> sorted(disclose_excluded(Release({"n": 7}, 7, excluded=6), NodePolicy(), 13).groups)
['rows of the table']
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from consortia.exceptions import PolicyRefusal
from consortia.federation.policy import NodePolicy, Release
from consortia.stats.counts import Count, suppressed
from consortia.stats.suppression import Suppression, suppress_cells

__all__ = ["TABLE_ROWS", "disclose_excluded", "released_count", "suppress_table"]

TABLE_ROWS = "rows of the table"


def released_count(count: int, policy: NodePolicy) -> Count:
    """``count`` as released under the policy's cell rule: the number when it is 0 or at
    least ``min_cell_count``, else ``"<k"``."""
    if 0 < count < policy.min_cell_count:
        return suppressed(policy.min_cell_count)
    return int(count)


def disclose_excluded(release: Release, policy: NodePolicy, table_rows: int) -> Release:
    """Put the release's excluded count into its aggregates under the cell rule, and add
    the table's rows to its ledger sets when the count is released as a number."""
    if release.excluded is None:
        return release
    value = released_count(release.excluded, policy)
    aggregates = {**release.aggregates, "excluded": value}
    if "missing" in aggregates:
        aggregates["missing"] = value
    groups = dict(release.groups)
    if isinstance(value, int) and value > 0:
        groups[TABLE_ROWS] = np.ones(table_rows, dtype=np.bool_)
    return dataclasses.replace(release, aggregates=aggregates, groups=groups)


def suppress_table(table: npt.NDArray[np.int64], policy: NodePolicy, name: str) -> Suppression:
    """The cells of a released table (a crosstab, an error grid's zones) to suppress under
    the policy's minimum cell count, with complementary cells so that none can be recovered
    from the table's margins; refused (``small_cells``) only when no choice of cells
    protects them (a table whose total is itself small)."""
    suppression = suppress_cells(table, policy.min_cell_count)
    if not suppression.protected:
        raise PolicyRefusal(
            "small_cells",
            f"the {name} holds small cells that no complementary suppression protects "
            f"(minimum cell count {policy.min_cell_count})",
        )
    return suppression
