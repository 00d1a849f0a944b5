"""What every service shares: the clock, the audit call, and input checks.

A service function is one use case and one transaction: it checks policy, validates,
changes current state and appends the audit event, all inside one unit of work
(:func:`~consortia.services.unit_of_work.writing`), so the change and its audit event are
committed together or not at all.
"""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from consortia.auth.policy import Action, Resource, can, sees_study
from consortia.auth.principal import WILDCARD, Grant, Principal, Role, is_code
from consortia.domain.schedule import event_ref, parse_event_ref
from consortia.exceptions import (
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ValidationError,
)
from consortia.services.form_events import form_audit_id
from consortia.storage.audit import append_event
from consortia.storage.capture import CaptureRepository, FormRecord
from consortia.storage.repositories import NODE_CHAIN, SubjectRecord, SubjectRepository

__all__ = [
    "MAX_LIMIT",
    "MAX_OFFSET",
    "NODE_CHAIN",
    "audit",
    "check_code",
    "check_page",
    "cli_operator",
    "find_subject",
    "form_audit_id",
    "normalise_email",
    "require",
    "require_in_study",
    "saved_form",
    "utc_now",
    "visible_study",
]

#: Audit chains that are not studies: a study may not take their names.
RESERVED_CHAINS = frozenset({NODE_CHAIN, "federation", "witness", "hub"})
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def cli_operator(*roles: Role) -> Principal:
    """The person at the node's shell: a node administrator acting through the CLI.

    Shell access to a node already means access to its database and keys; the CLI acts
    with node-administrator rights (and ``roles``, at every study and site, for commands
    that act on study data) and its audit events name the operating-system user. It is
    the root that grants the first roles (``operator``: see
    :func:`~consortia.auth.policy.grant_refusal`); no request through the API or the pages
    is ever an operator.
    """
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - a container without a passwd entry
        who = "unknown"
    return Principal(
        user_id=0,
        email=f"cli:{who}",
        name=f"node operator {who}",
        grants=frozenset(Grant(WILDCARD, WILDCARD, role) for role in (Role.NODE_ADMIN, *roles)),
        operator=True,
    )


def normalise_email(email: str) -> str:
    """Trim and lower-case an email address; refuse what is not one.

    >>> normalise_email("  Alice@SG.example ")
    'alice@sg.example'
    """
    cleaned = email.strip().lower()
    if not _EMAIL.fullmatch(cleaned):
        raise ValidationError([Problem("email", f"{email!r} is not an email address")])
    return cleaned


def check_code(value: str, field: str, *, wildcard: bool = False) -> str:
    """Refuse a study or site code that is malformed (``*`` only where ``wildcard``)."""
    if wildcard and value == WILDCARD:
        return value
    if not is_code(value):
        allowed = " or *" if wildcard else ""
        raise ValidationError(
            [
                Problem(
                    field,
                    f"{value!r} is not a code: use 1-64 letters, digits, '_', '.', '-'"
                    f" starting with a letter or digit{allowed}",
                )
            ]
        )
    if field == "study" and value.lower() in RESERVED_CHAINS:
        raise ValidationError(
            [Problem(field, f"{value!r} is reserved for the node's own audit chains")]
        )
    return value


def audit(
    connection: Connection,
    principal: Principal,
    action: str,
    entity_type: str,
    entity_id: object,
    *,
    chain: str = NODE_CHAIN,
    **entry: Any,
) -> None:
    """Append one audit event by ``principal`` in the caller's transaction."""
    append_event(
        connection,
        chain,
        actor=principal.email,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        **entry,
    )


def require(principal: Principal, action: Action, resource: Resource) -> None:
    """Refuse (403) unless :func:`~consortia.auth.policy.can` allows the action."""
    if not can(principal, action, resource):
        raise PermissionDeniedError(f"{principal.email} may not {action.value}")


def visible_study(principal: Principal, study: str) -> str:
    """The study code, if the principal holds a role in it; otherwise "not found"."""
    check_code(study, "study")
    if not sees_study(principal, study):
        raise NotFoundError(f"study {study} not found")
    return study


def require_in_study(
    principal: Principal, action: Action, study: str, site: str | None = None
) -> None:
    """Refuse (403) unless the principal's roles allow ``action`` in the study (at ``site``)."""
    if not can(principal, action, Resource(study, site)):
        where = f"study {study}" + (f" at site {site}" if site else "")
        raise PermissionDeniedError(f"your roles in {where} do not allow {action.value}")


def find_subject(
    connection: Connection, principal: Principal, study: str, subject_id: str
) -> SubjectRecord:
    """The subject, if it is at a site the principal can see; otherwise not found."""
    record = SubjectRepository(connection, principal).get(study, subject_id)
    if record is None:
        raise NotFoundError(f"subject {subject_id} not found in study {study}")
    return record


def saved_form(
    connection: Connection, principal: Principal, subject: SubjectRecord, ref: str, form: str
) -> tuple[str, FormRecord]:
    """(the event's canonical reference, the form record) of a form that has been saved."""
    name, instance = parse_event_ref(ref)
    capture = CaptureRepository(connection, principal)
    event = capture.event(subject, name, instance)
    record = None if event is None else capture.form(event.id, form)
    if record is None:
        raise NotFoundError(
            f"form {form} at {ref} of subject {subject.subject_id} has not been saved"
        )
    return event_ref(name, instance), record


#: The largest page a listing returns, and the furthest it starts: past 2**31 - 1 rows no
#: node lists anything, and past 2**63 - 1 the databases cannot even take the number.
MAX_LIMIT = 1_000
MAX_OFFSET = 2**31 - 1


def check_page(limit: int, offset: int) -> None:
    """Refuse a listing's ``limit`` or ``offset`` out of range, naming the field.

    >>> try:
    ...     check_page(100, 10**23)
    ... except ValidationError as error:
    ...     print(error.problems[0].path, "-", error.problems[0].message)
    offset - 100000000000000000000000 is out of range; use a whole number from 0 to 2147483647
    """
    problems = []
    if not 1 <= limit <= MAX_LIMIT:
        problems.append(
            Problem("limit", f"{limit} is out of range; use a whole number from 1 to {MAX_LIMIT}")
        )
    if not 0 <= offset <= MAX_OFFSET:
        problems.append(
            Problem(
                "offset", f"{offset} is out of range; use a whole number from 0 to {MAX_OFFSET}"
            )
        )
    if problems:
        raise ValidationError(problems)
