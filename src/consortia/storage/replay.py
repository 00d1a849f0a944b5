"""State replayed from the audit trail, compared with the tables (``audit verify --state``).

Every change goes through a service that writes the change and its audit event in one
transaction, so the events alone give the current state. Someone with write access to the
database file can edit a table without an event (``UPDATE item_value ...``): the hash
chain does not see that, but replaying the trail and comparing does. :func:`compare_state`
rebuilds from the events, and reads from the tables, the same description of:

============================  ===========================================================
what                          where it is named (and its fields)
============================  ===========================================================
item values                   ``STUDY SUBJECT / EVENT / FORM.ITEM`` (the value's text)
forms                         ``STUDY SUBJECT / EVENT / FORM`` (status, version, verified
                              by, signed by, printed name, meaning, locked by)
visit dates                   ``STUDY SUBJECT / EVENT`` (visit_date)
derived variables             ``STUDY SUBJECT derived NAME`` (the value's text)
subjects                      ``STUDY SUBJECT`` (site, initials, status, status history)
queries                       ``STUDY query ID`` (status, form, item, assignee, messages)
study definitions             ``STUDY definition version N`` (sha256)
accounts, grants, tokens      ``user EMAIL`` (name), ``grant ROLE at STUDY/SITE to EMAIL``,
                              ``token ID`` (owner, name, revoked)
============================  ===========================================================

and reports each difference as ``WHERE[ FIELD]: table X, trail Y`` (``absent`` where one
side has nothing), e.g. ``CART-LBCL SG01-001 / day0 / crs_icans.fever_temp: table 38.5,
trail 39.1``; identifier (PHI) values are never shown, only that they differ. The float
stored beside a number (``value_num``, what SQL aggregates read) is
checked against its text. What the events do not carry is not compared (see
docs/security.md): times of changes, planned event dates and windows, the schedule anchor,
account state other than name (password hashes, lockouts, sessions), approval decisions
(audited on the node chain, not replayed).

The whole state is held in memory while comparing: about a hundred bytes per value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from consortia.domain.schedule import event_ref
from consortia.storage.audit import AuditEvent, iter_events
from consortia.storage.db import READ_ONLY
from consortia.storage.tables import (
    api_token,
    app_user,
    data_query,
    derived_value,
    event_instance,
    form_instance,
    item_value,
    query_message,
    role_grant,
    study_version,
    subject,
    subject_status,
)

__all__ = ["StateDifference", "compare_state", "state_from_tables", "state_from_trail"]

#: ``{where: {field: value}}``: one entity per ``where``; field ``""`` is the entity's value.
State = dict[str, dict[str, str | None]]

IDENTIFIER = "identifier"
#: Fields whose values a report never shows (identifiers, PHI): only that they differ.
MASKED = frozenset({IDENTIFIER, "initials"})
_KEY = re.compile(r"^(?:(\w+)\[(\d+)\]\.)?(\w+)$")
FORM_FIELDS = (
    "status",
    "version",
    "verified_by",
    "signed_by",
    "signed_name",
    "signature_meaning",
    "locked_by",
)


@dataclass(frozen=True, slots=True)
class StateDifference:
    """One place where the tables and the replayed trail disagree."""

    where: str
    field: str
    table: str | None
    trail: str | None

    def __str__(self) -> str:
        name = f"{self.where} {self.field}" if self.field else self.where
        table, trail = _shown(self.table), _shown(self.trail)
        if self.field in MASKED:  # say that an identifier differs, never what it is
            table, trail = _masked(self.table), _masked(self.trail)
        return f"{name}: table {table}, trail {trail}"


def _shown(value: str | None) -> str:
    return "absent" if value is None else value


def _masked(value: str | None) -> str:
    return "absent" if value is None else "(an identifier value)"


class _Groups:
    """Which repeating group an item belongs to, learned from the keys in the trail
    (``events[2].ae_grade``), so both sides name a repeating item the same way."""

    def __init__(self) -> None:
        self._group: dict[tuple[str, str], str] = {}
        self.identifiers: set[tuple[str, str]] = set()  # (study, item) saved as identifiers

    def field(self, study: str, item: str) -> str:
        """The field an item's value is compared under: identifier (PHI) values under
        ``identifier``, which reports show masked."""
        return IDENTIFIER if (study, item) in self.identifiers else ""

    def parse(self, study: str, key: str) -> tuple[str, int]:
        match = _KEY.fullmatch(key)
        if match is None:
            return key, 0
        group, number, item = match.groups()
        if group is None:
            return item, 0
        self._group[study, item] = group
        return item, int(number)

    def key(self, study: str, item: str, number: int) -> str:
        if number == 0:
            return item
        group = self._group.get((study, item))
        return f"{group}[{number}].{item}" if group else f"{item}[{number}]"


def _form_where(entity_id: str) -> tuple[str, str, str, str] | None:
    parts = entity_id.split("/")
    return (parts[0], parts[1], parts[2], parts[3]) if len(parts) == 4 else None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _status_line(status: str, on_date: object, reason: str | None) -> str:
    return f"{status} {on_date}" + (f" ({reason})" if reason else "")


class _Replay:
    """Applies events in chain order to the state they describe."""

    def __init__(self, groups: _Groups) -> None:
        self.groups = groups
        self.values: dict[tuple[str, str, str, str, str, int], str] = {}
        self.forms: State = {}
        self.visits: State = {}
        self.derived: State = {}
        self.subjects: State = {}
        self.statuses: dict[str, list[str]] = {}
        self.queries: State = {}
        self.messages: dict[str, list[str]] = {}
        self.versions: State = {}
        self.users: State = {}
        self.grants: dict[str, int] = {}
        self.tokens: State = {}

    def apply(self, event: AuditEvent) -> None:
        handler = _HANDLERS.get(event.action)
        if handler is not None:
            after = event.after if isinstance(event.after, Mapping) else {}
            before = event.before if isinstance(event.before, Mapping) else {}
            handler(self, event, after, before)

    # ------------------------------------------------------------------ study data

    def study_load(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        where = f"{e.entity_id} definition version {after.get('version')}"
        self.versions[where] = {"sha256": _text(after.get("sha256"))}

    def subject_create(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        study, subject_id = e.entity_id.split("/", 1)
        where = f"{study} {subject_id}"
        self.subjects[where] = {
            "site": _text(after.get("site")),
            "initials": _text(after.get("initials")),
            "status": "screening",
        }
        self.statuses[where] = [_status_line("screening", after.get("screening_date"), e.reason)]

    def subject_status(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        study, subject_id = e.entity_id.split("/", 1)
        where = f"{study} {subject_id}"
        status = str(after.get("status"))
        self.subjects.setdefault(where, {})["status"] = status
        line = _status_line(status, after.get("on_date"), e.reason)
        self.statuses.setdefault(where, []).append(line)

    def form_save(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        place = _form_where(e.entity_id)
        if place is None:
            return
        study, subject_id, ref, form = place
        for part in ("values", "identifiers"):
            for key, text in (after.get(part) or {}).items():
                item, number = self.groups.parse(study, key)
                self.values[study, subject_id, ref, form, item, number] = str(text)
                if part == "identifiers":
                    self.groups.identifiers.add((study, item))
        for key in after.get("removed") or ():
            item, number = self.groups.parse(study, key)
            self.values.pop((study, subject_id, ref, form, item, number), None)
        where = f"{study} {subject_id} / {ref} / {form}"
        state = self.forms.setdefault(where, dict.fromkeys(FORM_FIELDS))
        state.update(
            status=_text(after.get("status")),
            version=_text(after.get("version")),
            verified_by=None,
            signed_by=None,
            signed_name=None,
            signature_meaning=None,
        )
        if after.get("visit_date") is not None:
            self.visits[f"{study} {subject_id} / {ref}"] = {"visit_date": after["visit_date"]}
        prefix = f"{study} {subject_id} derived "
        if "derived_all" in after:  # an import replaces the subject's derived variables
            for name in [w for w in self.derived if w.startswith(prefix)]:
                del self.derived[name]
            changes = after["derived_all"] or {}
        else:
            changes = after.get("derived") or {}
        for name, text in changes.items():
            if text is None:
                self.derived.pop(prefix + name, None)
            else:
                self.derived[prefix + name] = {"": str(text)}

    def form_step(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        place = _form_where(e.entity_id)
        if place is None:
            return
        study, subject_id, ref, form = place
        state = self.forms.setdefault(
            f"{study} {subject_id} / {ref} / {form}", dict.fromkeys(FORM_FIELDS)
        )
        state["version"] = _text(after.get("version"))
        if e.action == "form.verify":
            state["verified_by"] = _text(after.get("by"))
        elif e.action == "form.sign":
            state["signed_by"] = _text(after.get("signed_by"))
            state["signed_name"] = _text(after.get("printed_name"))
            state["signature_meaning"] = _text(after.get("meaning"))
        elif e.action == "form.lock":
            state["locked_by"] = _text(after.get("by"))
        elif e.action == "form.unlock":
            state["locked_by"] = None

    def query_open(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        where = f"{e.chain} query {e.entity_id}"
        item, number = self.groups.parse(e.chain, str(after.get("item") or ""))
        form = _form_where(str(after.get("form") or ""))
        self.queries[where] = {
            "status": "open",
            "form": None if form is None else f"{form[1]} / {form[2]} / {form[3]}",
            "item": self.groups.key(e.chain, item, number) if item else "",
            "assignee": _text(after.get("assignee")),
        }
        self.messages[where] = [f"open: {after.get('text')}"]

    def query_assign(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        where = f"{e.chain} query {e.entity_id}"
        self.queries.setdefault(where, {})["assignee"] = _text(after.get("assignee"))

    def query_step(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        where = f"{e.chain} query {e.entity_id}"
        self.queries.setdefault(where, {})["status"] = _text(after.get("status"))
        step = e.action.split(".", 1)[1]
        self.messages.setdefault(where, []).append(f"{step}: {after.get('text')}")

    # ------------------------------------------------------------------ people

    def user_create(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        self.users[f"user {e.entity_id}"] = {"name": _text(after.get("name"))}

    def grant_add(self, _e: AuditEvent, after: Mapping[str, Any], _b: Any) -> None:
        where = _grant_where(after)
        self.grants[where] = self.grants.get(where, 0) + 1

    def grant_revoke(self, _e: AuditEvent, _a: Any, before: Mapping[str, Any]) -> None:
        where = _grant_where(before)
        self.grants[where] = self.grants.get(where, 0) - 1

    def token_create(self, e: AuditEvent, after: Mapping[str, Any], _: Any) -> None:
        self.tokens[f"token {e.entity_id}"] = {
            "owner": _text(after.get("owner")),
            "name": _text(after.get("name")),
            "revoked": "no",
        }

    def token_revoke(self, e: AuditEvent, _a: Any, _b: Any) -> None:
        self.tokens.setdefault(f"token {e.entity_id}", {})["revoked"] = "yes"

    def state(self) -> State:
        state: State = {}
        for (study, subject_id, ref, form, item, number), text in self.values.items():
            key = self.groups.key(study, item, number)
            field = self.groups.field(study, item)
            state[f"{study} {subject_id} / {ref} / {form}.{key}"] = {field: text}
        for where, statuses in self.statuses.items():
            self.subjects.setdefault(where, {})["status history"] = "; ".join(statuses)
        for where, messages in self.messages.items():
            self.queries.setdefault(where, {})["messages"] = " | ".join(messages)
        for part in (
            self.forms,
            self.visits,
            self.derived,
            self.subjects,
            self.queries,
            self.versions,
            self.users,
            self.tokens,
        ):
            state.update(part)
        state.update({where: {} for where, count in self.grants.items() if count > 0})
        return state


def _grant_where(grant: Mapping[str, Any]) -> str:
    return (
        f"grant {grant.get('role')} at {grant.get('study')}/{grant.get('site')} "
        f"to {grant.get('email')}"
    )


_HANDLERS: dict[str, Any] = {
    "study.load": _Replay.study_load,
    "subject.create": _Replay.subject_create,
    "subject.status": _Replay.subject_status,
    "form.save": _Replay.form_save,
    "form.verify": _Replay.form_step,
    "form.sign": _Replay.form_step,
    "form.lock": _Replay.form_step,
    "form.unlock": _Replay.form_step,
    "query.open": _Replay.query_open,
    "query.answer": _Replay.query_step,
    "query.close": _Replay.query_step,
    "query.reopen": _Replay.query_step,
    "query.assign": _Replay.query_assign,
    "user.create": _Replay.user_create,
    "grant.add": _Replay.grant_add,
    "grant.revoke": _Replay.grant_revoke,
    "token.create": _Replay.token_create,
    "token.revoke": _Replay.token_revoke,
}


def state_from_trail(connection: Connection, groups: _Groups | None = None) -> State:
    """The state the audit events describe, replayed in chain order."""
    replay = _Replay(groups or _Groups())
    for event in iter_events(connection):
        replay.apply(event)
    return replay.state()


def _rows(connection: Connection, query: sa.Select[Any]) -> Iterator[Any]:
    yield from connection.execute(query)


def state_from_tables(connection: Connection, groups: _Groups | None = None) -> State:
    """The same description, read from the tables."""
    groups = groups or _Groups()
    state: State = {}
    forms = (
        sa.select(
            form_instance,
            subject.c.study,
            subject.c.subject_id,
            event_instance.c.event,
            event_instance.c.instance,
        )
        .join(event_instance, event_instance.c.id == form_instance.c.event_pk)
        .join(subject, subject.c.id == form_instance.c.subject_pk)
    )
    form_where: dict[int, tuple[str, str]] = {}
    for row in _rows(connection, forms):
        ref = event_ref(row.event, row.instance)
        where = f"{row.study} {row.subject_id} / {ref} / {row.form}"
        form_where[row.id] = (row.study, where)
        state[where] = {name: _text(getattr(row, name)) for name in FORM_FIELDS}
    values = sa.select(
        item_value.c.form_pk,
        item_value.c.item,
        item_value.c.group_instance,
        item_value.c.value_text,
        item_value.c.value_num,
    )
    for row in _rows(connection, values):
        study, where = form_where.get(row.form_pk, ("?", f"form row {row.form_pk}"))
        item_where = f"{where}.{groups.key(study, row.item, row.group_instance)}"
        state[item_where] = {groups.field(study, row.item): row.value_text}
        if row.value_num is not None and _number(row.value_text) != row.value_num:
            state[item_where]["value_num"] = repr(row.value_num)
    visits = (
        sa.select(
            event_instance.c.event,
            event_instance.c.instance,
            event_instance.c.visit_date,
            subject.c.study,
            subject.c.subject_id,
        )
        .join(subject, subject.c.id == event_instance.c.subject_pk)
        .where(event_instance.c.visit_date.is_not(None))
    )
    for row in _rows(connection, visits):
        where = f"{row.study} {row.subject_id} / {event_ref(row.event, row.instance)}"
        state[where] = {"visit_date": row.visit_date.isoformat()}
    derived = sa.select(
        derived_value.c.name,
        derived_value.c.value_text,
        derived_value.c.value_num,
        subject.c.study,
        subject.c.subject_id,
    ).join(subject, subject.c.id == derived_value.c.subject_pk)
    for row in _rows(connection, derived):
        where = f"{row.study} {row.subject_id} derived {row.name}"
        state[where] = {"": row.value_text}
        if row.value_num is not None and _number(row.value_text) != row.value_num:
            state[where]["value_num"] = repr(row.value_num)
    _subjects(connection, state)
    _queries(connection, state, form_where, groups)
    for row in _rows(connection, sa.select(study_version)):
        state[f"{row.study} definition version {row.version}"] = {"sha256": row.sha256}
    for row in _rows(connection, sa.select(app_user.c.email, app_user.c.name)):
        state[f"user {row.email}"] = {"name": row.name}
    grants = sa.select(role_grant, app_user.c.email).join(
        app_user, app_user.c.id == role_grant.c.user_id
    )
    for row in _rows(connection, grants):
        state[_grant_where(row._mapping)] = {}
    tokens = sa.select(api_token, app_user.c.email).join(
        app_user, app_user.c.id == api_token.c.user_id
    )
    for row in _rows(connection, tokens):
        state[f"token {row.id}"] = {
            "owner": row.email,
            "name": row.name,
            "revoked": "no" if row.revoked_at is None else "yes",
        }
    return state


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _subjects(connection: Connection, state: State) -> None:
    where_of: dict[int, str] = {}
    for row in _rows(connection, sa.select(subject)):
        where = f"{row.study} {row.subject_id}"
        where_of[row.id] = where
        state[where] = {"site": row.site, "initials": row.initials, "status": row.status}
    history: dict[int, list[str]] = {}
    for row in _rows(connection, sa.select(subject_status).order_by(subject_status.c.id)):
        line = _status_line(row.status, row.on_date.isoformat(), row.reason)
        history.setdefault(row.subject_pk, []).append(line)
    for pk, lines in history.items():
        where = where_of.get(pk, f"subject row {pk}")
        state.setdefault(where, {})["status history"] = "; ".join(lines)


def _queries(
    connection: Connection, state: State, form_where: Mapping[int, tuple[str, str]], groups: _Groups
) -> None:
    where_of: dict[int, str] = {}
    for row in _rows(connection, sa.select(data_query)):
        study, form = form_where.get(row.form_pk, ("?", f"? form row {row.form_pk}"))
        where = f"{study} query {row.id}"
        where_of[row.id] = where
        state[where] = {
            "status": row.status,
            "form": form.split(" ", 1)[1],
            "item": groups.key(study, row.item, row.group_instance) if row.item else "",
            "assignee": row.assigned_to,
        }
    messages: dict[int, list[str]] = {}
    for row in _rows(connection, sa.select(query_message).order_by(query_message.c.id)):
        messages.setdefault(row.query_pk, []).append(f"{row.action}: {row.text}")
    for pk, lines in messages.items():
        where = where_of.get(pk, f"query row {pk}")
        state.setdefault(where, {})["messages"] = " | ".join(lines)


def differences(table: State, trail: State) -> list[StateDifference]:
    """Every difference between two descriptions, sorted by where they are."""
    found: list[StateDifference] = []
    for where in sorted(table.keys() | trail.keys()):
        ours, theirs = table.get(where), trail.get(where)
        if ours is None or theirs is None:
            present = ours if ours is not None else theirs
            assert present is not None
            summary = _summary(present)
            found.append(
                StateDifference(
                    where,
                    "",
                    None if ours is None else summary,
                    None if theirs is None else summary,
                )
            )
            continue
        for field in sorted(ours.keys() | theirs.keys()):
            if field == "value_num":
                continue
            if ours.get(field) != theirs.get(field):
                found.append(StateDifference(where, field, ours.get(field), theirs.get(field)))
        if "value_num" in ours and "" in ours and ours[""] == theirs.get(""):
            found.append(StateDifference(where, "value_num", ours["value_num"], ours[""]))
    return found


def _summary(fields: Mapping[str, str | None]) -> str:
    if not fields:
        return "present"
    if set(fields) <= {"", "value_num"}:
        return _shown(fields.get(""))
    if IDENTIFIER in fields:
        return "(an identifier value)"
    return ", ".join(
        f"{name} {_masked(value) if name in MASKED else _shown(value)}"
        for name, value in fields.items()
        if name
    )


def compare_state(engine: Engine) -> list[StateDifference]:
    """Replay the trail and read the tables in one snapshot; every difference, sorted."""
    groups = _Groups()
    options: dict[str, Any] = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"  # one snapshot for both reads
    with engine.connect().execution_options(**options) as connection, connection.begin():
        trail = state_from_trail(connection, groups)
        table = state_from_tables(connection, groups)
    return differences(table, trail)
