"""The innovation centre's rules, in plain Python: the kinds of partners, agreements, IP and
training; when an agreement or a training record is in force; the stage gates a project
goes through, and what a steering committee's decision needs; the documents the centre
keeps.

Nothing here touches a database: the services (:mod:`consortia.services.centre` and its
siblings) load the records, ask these functions, and store what they allow.

>>> from datetime import date
>>> in_force("active", date(2026, 1, 1), date(2026, 12, 31), date(2026, 6, 1))
True
>>> gate_refusal("idea", "prototype")
'a project moves one gate at a time: from idea the next gate is proof_of_concept, not prototype'
>>> quorum_refusal(present=2, members=5, quorum=3)
'quorum not met: 2 of 5 committee members present, the committee needs 3'
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date, timedelta

from consortia.exceptions import Problem

__all__ = [
    "AGREEMENT_KINDS",
    "AGREEMENT_STATUSES",
    "DECISIONS",
    "DOCUMENT_TYPES",
    "EXPIRY_WARNING_DAYS",
    "IDEA_STATUSES",
    "IP_KINDS",
    "IP_STATUSES",
    "MAX_DOCUMENT_BYTES",
    "PARTNER_KINDS",
    "STAGES",
    "TRAINING_KINDS",
    "agreement_state",
    "check_choice",
    "check_code_text",
    "check_dates",
    "check_document",
    "check_text",
    "expiring",
    "gate_refusal",
    "in_force",
    "next_stage",
    "parse_day",
    "quorum_refusal",
    "text_list",
]

PARTNER_KINDS = ("hospital", "university", "company", "government")
AGREEMENT_KINDS = ("mou", "collaboration", "data_sharing", "data_transfer", "clinical_trial")
#: ``active`` agreements are in force between their dates; ``draft`` ones are not yet signed,
#: ``terminated`` ones were ended before their date.
AGREEMENT_STATUSES = ("active", "draft", "terminated")
#: The stage gates, in order: a project moves to the next one only, by a ``go`` decision.
STAGES = (
    "idea",
    "proof_of_concept",
    "prototype",
    "clinical_study",
    "regulatory_submission",
    "clinical_use",
)
DECISIONS = ("go", "hold", "stop")
IDEA_STATUSES = ("submitted", "triaged", "accepted", "declined")
IP_KINDS = ("disclosure", "patent")
IP_STATUSES = ("disclosed", "filed", "published", "granted", "abandoned", "lapsed")
TRAINING_KINDS = ("gcp", "protocol")
EXPIRY_WARNING_DAYS = 30

#: The documents the centre keeps (agreements, gate papers): their type and first bytes.
DOCUMENT_TYPES: dict[str, tuple[str, tuple[bytes, ...]]] = {
    ".pdf": ("application/pdf", (b"%PDF-",)),
    ".docx": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        (b"PK\x03\x04",),
    ),
    ".png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    ".jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".txt": ("text/plain", ()),
}
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
_FILENAME = re.compile(r"^[\w][\w .()+-]{0,198}$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_day(value: str, field: str) -> date:
    """A calendar day written ``YYYY-MM-DD``.

    >>> parse_day("2026-02-30", "ends_on")
    Traceback (most recent call last):
        ...
    ValueError: ends_on: '2026-02-30' is not a day: write YYYY-MM-DD
    """
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not a day: write YYYY-MM-DD") from None


def check_choice(value: str, choices: Sequence[str], field: str) -> list[Problem]:
    """A problem when ``value`` is not one of ``choices``."""
    if value in choices:
        return []
    return [Problem(field, f"{value!r} is not one of: {', '.join(choices)}")]


def check_text(value: str, field: str, *, limit: int = 400, required: bool = True) -> list[Problem]:
    """A problem for a missing or too long text, or one with control characters."""
    if required and not value.strip():
        return [Problem(field, "required")]
    if len(value) > limit:
        return [Problem(field, f"{len(value)} characters: at most {limit}")]
    if any(ord(c) < 32 and c not in "\n\t\r" for c in value):
        return [Problem(field, "control characters are not allowed")]
    return []


def check_code_text(value: str, field: str) -> list[Problem]:
    """A problem when ``value`` is not a code (1-64 letters, digits, '_', '.', '-')."""
    if _CODE.fullmatch(value):
        return []
    return [
        Problem(
            field,
            f"{value!r} is not a code: use 1-64 letters, digits, '_', '.', '-' starting with "
            "a letter or digit",
        )
    ]


def check_dates(starts: date | None, ends: date | None, field: str) -> list[Problem]:
    """A problem when a period ends before it starts."""
    if starts is not None and ends is not None and ends < starts:
        return [Problem(field, f"ends {ends.isoformat()}, before it starts {starts.isoformat()}")]
    return []


def in_force(status: str, starts_on: date, ends_on: date | None, today: date) -> bool:
    """Whether an agreement is in force on ``today``: active, started and not ended."""
    return status == "active" and starts_on <= today and (ends_on is None or today <= ends_on)


def agreement_state(status: str, starts_on: date, ends_on: date | None, today: date) -> str:
    """``in_force``, ``expired``, ``not_started``, ``draft`` or ``terminated``.

    >>> agreement_state("active", date(2025, 1, 1), date(2025, 12, 31), date(2026, 1, 1))
    'expired'
    """
    if status != "active":
        return status
    if today < starts_on:
        return "not_started"
    if ends_on is not None and today > ends_on:
        return "expired"
    return "in_force"


def expiring(ends_on: date | None, today: date, days: int = EXPIRY_WARNING_DAYS) -> bool:
    """Whether something still valid on ``today`` ends within ``days`` days.

    >>> expiring(date(2026, 1, 30), date(2026, 1, 1))
    True
    >>> expiring(date(2026, 3, 1), date(2026, 1, 1))
    False
    """
    return ends_on is not None and today <= ends_on <= today + timedelta(days=days)


def next_stage(stage: str) -> str | None:
    """The gate after ``stage`` (None after the last)."""
    index = STAGES.index(stage)
    return STAGES[index + 1] if index + 1 < len(STAGES) else None


def gate_refusal(current: str, target: str) -> str | None:
    """Why a project at ``current`` may not pass to ``target`` (None when it may)."""
    if target not in STAGES:
        return f"{target!r} is not a stage gate: {', '.join(STAGES)}"
    following = next_stage(current)
    if following is None:
        return f"the project is at {current}, the last gate: there is no gate after it"
    if target != following:
        return (
            f"a project moves one gate at a time: from {current} the next gate is "
            f"{following}, not {target}"
        )
    return None


def quorum_refusal(*, present: int, members: int, quorum: int) -> str | None:
    """Why a committee's decision does not stand (None when the quorum is met)."""
    if present < quorum:
        return (
            f"quorum not met: {present} of {members} committee members present, the "
            f"committee needs {quorum}"
        )
    return None


def check_document(filename: str, content: bytes) -> tuple[str, list[Problem]]:
    """The media type of a document the centre keeps, from its name checked against its
    first bytes; problems for a bad name, size, type or content."""
    problems: list[Problem] = []
    if not _FILENAME.fullmatch(filename) or ".." in filename:
        problems.append(
            Problem(
                "document.filename",
                f"{filename[:80]!r} is not a plain file name (letters, digits, space, "
                "'._()+-', at most 200 characters)",
            )
        )
    suffix = filename[filename.rfind(".") :].lower() if "." in filename else ""
    if suffix == ".jpeg":
        suffix = ".jpg"
    kind = DOCUMENT_TYPES.get(suffix)
    if kind is None:
        problems.append(
            Problem(
                "document.filename",
                f"{suffix or 'no extension'}: the centre keeps {', '.join(DOCUMENT_TYPES)}",
            )
        )
        return "", problems
    if not content:
        problems.append(Problem("document", "the file is empty"))
    elif len(content) > MAX_DOCUMENT_BYTES:
        problems.append(
            Problem("document", f"{len(content)} bytes: at most {MAX_DOCUMENT_BYTES} bytes")
        )
    media_type, magics = kind
    if content and magics and not content.startswith(magics):
        problems.append(Problem("document", f"the content is not a {suffix} file"))
    if content and not magics:
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(Problem("document", "a .txt document must be UTF-8 text"))
    return media_type, problems


def text_list(values: Sequence[str]) -> str:
    """A list of short texts, as kept in one column (JSON)."""
    return json.dumps([v.strip() for v in values if v.strip()], ensure_ascii=False)
