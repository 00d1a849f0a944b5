"""The record-status dashboard: subjects × events, each form's state and open queries.

Like REDCap's record-status dashboard: one row per subject (a page at a time, by subject
id), one column per event of the schedule, and in each cell the event's forms by state —
not started, in progress, complete, verified, signed, locked — and a flag where a form has
an open query. Filters: site, subject status, and "has a form in this state". It shows no
identifier value, so reading it is not an identifier access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import Engine

from consortia.auth.policy import Action
from consortia.auth.principal import Principal
from consortia.domain.study import SubjectStatus
from consortia.exceptions import Problem, ValidationError
from consortia.services.common import check_page, require_in_study, visible_study
from consortia.services.studies import Definition, current_definition
from consortia.services.unit_of_work import reading
from consortia.storage.repositories.status_grid import FORM_STATES, GridFilter, GridRow, StatusGrid

__all__ = ["FILTER_STATES", "SUBJECTS_PER_PAGE", "Dashboard", "GridFilter", "read_dashboard"]

SUBJECTS_PER_PAGE: Final = 50
#: the form states a filter may ask for ("not started" is the absence of a form)
FILTER_STATES: Final = (*FORM_STATES[1:], "open_query")


@dataclass(frozen=True, slots=True)
class Dashboard:
    """One page of the dashboard."""

    definition: Definition
    rows: tuple[GridRow, ...]
    #: subjects the filter keeps, on every page
    total: int
    offset: int
    limit: int


def _check_filter(definition: Definition, where: GridFilter) -> None:
    problems = []
    sites = definition.study.sites
    if where.site is not None and where.site not in sites:
        problems.append(
            Problem("site", f"{where.site!r} is not a site of the study: {', '.join(sites)}")
        )
    statuses = [status.value for status in SubjectStatus]
    if where.status is not None and where.status not in statuses:
        problems.append(
            Problem("status", f"{where.status!r} is not a status: {', '.join(statuses)}")
        )
    if where.form_state is not None and where.form_state not in FILTER_STATES:
        problems.append(
            Problem("state", f"{where.form_state!r} is not a state: {', '.join(FILTER_STATES)}")
        )
    if problems:
        raise ValidationError(problems)


def read_dashboard(
    engine: Engine,
    principal: Principal,
    study: str,
    where: GridFilter,
    *,
    offset: int = 0,
    limit: int = SUBJECTS_PER_PAGE,
) -> Dashboard:
    """A page of the study's dashboard at the sites where the principal may read subjects."""
    visible_study(principal, study)
    require_in_study(principal, Action.SUBJECT_READ, study)
    check_page(limit, offset)
    with reading(engine, principal) as work:
        definition = current_definition(work.connection, study)
        _check_filter(definition, where)
        grid = StatusGrid(work.connection, principal)
        rows = grid.page(study, where, limit=limit, offset=offset)
        total = grid.count(study, where) if rows or offset else 0
    return Dashboard(definition, tuple(rows), total, offset, limit)
