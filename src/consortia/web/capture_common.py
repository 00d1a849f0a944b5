"""What the data-entry pages share: their paths and limits, the rows and outcome a page
shows, and turning a refusal into what the page says."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from consortia.auth.policy import Resource, can
from consortia.auth.principal import Principal
from consortia.domain.parsing import MULTICHOICE_SEPARATOR
from consortia.exceptions import ConflictError, ValidationError
from consortia.services import form_states, queries
from consortia.services.queries import QueryView
from consortia.web.i18n import translate

__all__ = [
    "ENROL_FIELDS",
    "FORM_PATH",
    "MAX_DATA_FORM_BYTES",
    "MAX_DATA_FORM_FIELDS",
    "MAX_REASON_LENGTH",
    "STEPS",
    "SUBJECTS_SHOWN",
    "EventRow",
    "Outcome",
    "QueryRow",
    "as_entered",
    "outcome_of",
    "query_rows_of",
    "refusal_of",
    "refused_status",
    "review_steps",
    "state_label",
]

FORM_PATH = "/studies/{study}/subjects/{subject_id}/events/{event}/forms/{form}"
SUBJECTS_SHOWN = 200  # subjects per page of the list
MAX_DATA_FORM_BYTES = 256 * 1024
MAX_DATA_FORM_FIELDS = 2_000
MAX_REASON_LENGTH = 2_000  # as the API takes it
STEPS = tuple(form_states.STEPS)  # verify, sign, lock, unlock
ENROL_FIELDS = ("subject_id", "site", "initials", "screening_date")


@dataclass(frozen=True, slots=True)
class EventRow:
    ref: str
    label: str
    target_date: str
    window: str
    visit_date: str
    window_status: str
    forms: tuple[tuple[str, str, str], ...]  # (form, label, state label)


@dataclass(frozen=True, slots=True)
class QueryRow:
    """A query on the form as the page shows it, with the steps the reader may take."""

    id: int
    item: str  # the item's key in the form, "" for the whole form
    status: str
    age_days: int
    origin: str
    thread: tuple[tuple[str, str, str, str], ...]  # (action, by, at, text), the opening first
    steps: tuple[str, ...]
    assignee: str | None = None  # the email of the person expected to act on it
    may_assign: bool = False


@dataclass
class Outcome:
    """What the form page says above the form: saved, refused (with messages), conflict."""

    saved: int | None = None
    refused: bool = False
    conflict: str = ""
    general: list[str] = field(default_factory=list)  # messages not about one item
    by_item: dict[str, str] = field(default_factory=dict)
    reason_error: str = ""
    done: str = ""  # the state step just taken: verify, sign, lock, unlock
    step_error: str = ""  # why a state step (or a query step) was refused


def state_label(language: str, state: str) -> str:
    try:
        return translate(language, f"state.{state}")
    except KeyError:
        return state


def review_steps(principal: Principal, study: str, site: str, state: str) -> tuple[str, ...]:
    """The state steps the reader may take on a form in ``state``, in the page's order."""
    return tuple(
        step
        for step, (action, states) in form_states.STEPS.items()
        if state in states and can(principal, action, Resource(study, site))
    )


def query_rows_of(
    found: Sequence[QueryView],
    principal: Principal,
    study: str,
    site: str,
    key: Callable[[str, int], str],
) -> list[QueryRow]:
    """The form instance's queries (read with the page, threads included) as rows."""
    rows = []
    for view in found:
        record = view.record
        thread = [("open", record.opened_by, record.opened_at, record.text)]
        thread += [(m.action, m.by, m.at, m.text) for m in record.messages if m.action != "open"]
        rows.append(
            QueryRow(
                id=record.id,
                item=key(record.item, record.group_instance) if record.item else "",
                status=record.status,
                age_days=view.age_days,
                origin=record.origin,
                thread=tuple(
                    (action, by, at.strftime("%Y-%m-%d %H:%M"), text)
                    for action, by, at, text in thread
                ),
                steps=tuple(
                    step
                    for step, (action, statuses, _) in queries.STEPS.items()
                    if record.status in statuses and can(principal, action, Resource(study, site))
                ),
                assignee=record.assigned_to,
                may_assign=queries.may_assign(principal, study, record),
            )
        )
    return rows


def as_entered(fields: Mapping[str, str]) -> dict[str, object]:
    """Posted fields as the inputs show them again, ticked codes joined per item."""
    echo: dict[str, object] = {key: text for key, text in fields.items() if "::" not in key}
    for key, text in fields.items():
        name, _, code = key.partition("::")
        if code and text:
            before = str(echo.get(name, ""))
            echo[name] = f"{before}{MULTICHOICE_SEPARATOR}{code}" if before else code
    return echo


def refused_status(error: ConflictError | ValidationError) -> tuple[int, str]:
    """The HTTP status and the message of a refused step: 409 a conflict, 422 bad input."""
    if isinstance(error, ConflictError):
        return 409, str(error)
    return 422, "; ".join(problem.message for problem in error.problems)


def refusal_of(error: ConflictError | ValidationError) -> dict[str, Any]:
    """The form page's status and outcome for a refused review or query step."""
    status, message = refused_status(error)
    return {"status": status, "outcome": Outcome(step_error=message)}


def outcome_of(error: ValidationError, form: str) -> Outcome:
    outcome = Outcome(refused=True)
    prefix = f"forms.{form}."
    for problem in error.problems:
        if problem.path == "reason":
            outcome.reason_error = problem.message
        elif problem.path.startswith(prefix):
            name = problem.path[len(prefix) :]
            outcome.by_item[name] = (
                f"{outcome.by_item[name]} {problem.message}"
                if name in outcome.by_item
                else problem.message
            )
        else:
            outcome.general.append(problem.message)
    return outcome
