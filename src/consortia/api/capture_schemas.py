"""Request and response bodies of data capture: definitions, events, forms, queries, history."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from consortia.auth.principal import CODE_PATTERN
from consortia.domain.schedule import event_ref, parse_event_ref
from consortia.services.data_entry import FormView
from consortia.services.form_states import MAX_SIGNED_AT_ONCE, FormRecord
from consortia.services.history import ItemChange
from consortia.services.queries import QueryView
from consortia.services.schedule import EventView
from consortia.services.studies import StudyVersionRecord

__all__ = [
    "EVENT_PATTERN",
    "FORM_PATTERN",
    "DefinitionLoad",
    "EventPublic",
    "FormAction",
    "FormPublic",
    "FormSaveRequest",
    "FormSign",
    "FormUnlock",
    "FormsSign",
    "ItemChangePublic",
    "QueryCreate",
    "QueryPublic",
    "QueryStep",
    "ScheduleAnchor",
    "SignedFormPublic",
    "SignedFormRef",
    "StatusChange",
    "StudyVersionPublic",
]

#: An event: NAME, or NAME.N for instance N of a repeating event; and a form's name.
EVENT_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}(\.[1-9][0-9]{0,5})?$"
FORM_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"

Reason = Field(None, max_length=2000, description="why a saved value changes")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class DefinitionLoad(_In):
    """A study definition: the whole YAML text."""

    source: str = Field(min_length=1, max_length=10_000_000)


class StudyVersionPublic(_Out):
    study: str
    version: int
    label: str
    sha256: str
    loaded_at: datetime
    loaded_by: str
    changed: bool = True

    @classmethod
    def of(cls, record: StudyVersionRecord, changed: bool = True) -> StudyVersionPublic:
        return cls(
            study=record.study,
            version=record.version,
            label=record.label,
            sha256=record.sha256,
            loaded_at=record.loaded_at,
            loaded_by=record.loaded_by,
            changed=changed,
        )


class StatusChange(_In):
    """A subject's new status, the date it happened, and (where needed) why."""

    status: str = Field(max_length=16, examples=["eligible"])
    on_date: date
    reason: str | None = Field(None, max_length=2000)


class ScheduleAnchor(_In):
    """Day 0 of the subject's schedule (e.g. the infusion date) and why it moves."""

    anchor_date: date
    reason: str = Field(min_length=1, max_length=2000)


class EventPublic(_Out):
    ref: str
    event: str
    instance: int
    target_date: date | None
    window_start: date | None
    window_end: date | None
    visit_date: date | None
    window_status: str | None = Field(
        None, description="in_window, early or late once the visit date is known"
    )
    forms: dict[str, str] = Field(description="form -> state, for forms started")

    @classmethod
    def of(cls, view: EventView) -> EventPublic:
        return cls(
            ref=view.ref,
            event=view.event,
            instance=view.instance,
            target_date=view.target_date,
            window_start=view.window_start,
            window_end=view.window_end,
            visit_date=view.visit_date,
            window_status=view.window_status,
            forms=dict(view.forms),
        )


class FormSaveRequest(_In):
    """Every value of the form (absent items are empty), the version read, and flags."""

    version: int = Field(ge=0, le=2**31 - 1, description="the version read (0: not started)")
    values: dict[str, Any] = Field(
        description="item -> value; a repeating group -> list of {item: value}"
    )
    complete: bool = False
    reason: str | None = Reason
    visit_date: date | None = None


class SignaturePublic(_Out):
    signed_by: str
    printed_name: str
    signed_at: datetime
    meaning: str


class ProblemPublic(_Out):
    path: str
    message: str


class FormPublic(_Out):
    study: str
    subject_id: str
    site: str
    event: str
    form: str
    state: str
    version: int
    values: dict[str, Any]
    identifiers_masked: bool
    updated_at: datetime | None
    updated_by: str | None
    verified_by: str | None
    verified_at: datetime | None
    signature: SignaturePublic | None
    locked_by: str | None
    locked_at: datetime | None
    open_queries: int
    warnings: list[ProblemPublic] = []
    queries_opened: list[int] = []

    @classmethod
    def of(cls, view: FormView) -> FormPublic:
        record = view.record
        signature = None
        if record is not None and record.signed_at is not None:
            signature = SignaturePublic(
                signed_by=record.signed_by or "",
                printed_name=record.signed_name or "",
                signed_at=record.signed_at,
                meaning=record.signature_meaning or "",
            )
        return cls(
            study=view.study,
            subject_id=view.subject_id,
            site=view.site,
            event=view.event,
            form=view.form,
            state=view.state,
            version=view.version,
            values=dict(view.values),
            identifiers_masked=view.identifiers_masked,
            updated_at=record.updated_at if record else None,
            updated_by=record.updated_by if record else None,
            verified_by=record.verified_by if record else None,
            verified_at=record.verified_at if record else None,
            signature=signature,
            locked_by=record.locked_by if record else None,
            locked_at=record.locked_at if record else None,
            open_queries=view.open_queries,
            warnings=[ProblemPublic(path=p.path, message=p.message) for p in view.warnings],
            queries_opened=list(view.queries_opened),
        )


class FormAction(_In):
    """The version the action applies to (verify, lock)."""

    version: int = Field(ge=1, le=2**31 - 1)


class FormSign(FormAction):
    """A signature: the password again, and what the signature means."""

    password: str = Field(min_length=1, max_length=1024)
    meaning: str = Field(examples=["approval"], max_length=32)


class FormUnlock(FormAction):
    reason: str = Field(min_length=1, max_length=2000)


class SignedFormRef(_In):
    """One form of a series to sign, at the version the signer read."""

    subject_id: str = Field(pattern=CODE_PATTERN, examples=["SG01-001"])
    event: str = Field(pattern=EVENT_PATTERN, examples=["screening"])
    form: str = Field(pattern=FORM_PATTERN, examples=["eligibility"])
    version: int = Field(ge=1, le=2**31 - 1)


class FormsSign(_In):
    """Several forms signed at once: the password once, one meaning for every signature."""

    forms: list[SignedFormRef] = Field(min_length=1, max_length=MAX_SIGNED_AT_ONCE)
    password: str = Field(min_length=1, max_length=1024)
    meaning: str = Field(examples=["approval"], max_length=32)


class SignedFormPublic(_Out):
    """A form a series signed: where it is, its new version and state, and the signature."""

    subject_id: str
    event: str
    form: str
    version: int
    state: str
    signature: SignaturePublic

    @classmethod
    def of(cls, signed: SignedFormRef, record: FormRecord) -> SignedFormPublic:
        return cls(
            subject_id=signed.subject_id,
            event=event_ref(*parse_event_ref(signed.event)),
            form=record.form,
            version=record.version,
            state=record.state,
            signature=SignaturePublic(
                signed_by=record.signed_by or "",
                printed_name=record.signed_name or "",
                signed_at=record.signed_at or datetime.min,
                meaning=record.signature_meaning or "",
            ),
        )


class QueryCreate(_In):
    """A query on an item (``ecog``, ``events[2].ae_grade``) or, with ``""``, the form."""

    item: str = Field("", max_length=200)
    text: str = Field(min_length=1, max_length=4000)
    assignee: str | None = Field(
        None,
        max_length=320,
        description="the email of someone who answers or manages queries at the subject's "
        "site; none: nobody",
    )


class QueryStep(_In):
    text: str = Field(min_length=1, max_length=4000)


class QueryAssign(_In):
    """Assign a query: an email, or ``null`` to leave it to nobody."""

    assignee: str | None = Field(max_length=320)


class QueryMessagePublic(_Out):
    action: str
    text: str
    at: datetime
    by: str


class QueryPublic(_Out):
    id: int
    site: str
    subject_id: str
    event: str
    form: str
    item: str
    group_instance: int
    status: str
    origin: str
    text: str
    opened_at: datetime
    opened_by: str
    updated_at: datetime
    assignee: str | None
    age_days: int
    messages: list[QueryMessagePublic]

    @classmethod
    def of(cls, view: QueryView) -> QueryPublic:
        r = view.record
        return cls(
            id=r.id,
            site=r.site,
            subject_id=r.subject_id,
            event=event_ref(r.event, r.event_instance),
            form=r.form,
            item=r.item,
            group_instance=r.group_instance,
            status=r.status,
            origin=r.origin,
            text=r.text,
            opened_at=r.opened_at,
            opened_by=r.opened_by,
            updated_at=r.updated_at,
            assignee=r.assigned_to,
            age_days=view.age_days,
            messages=[
                QueryMessagePublic(action=m.action, text=m.text, at=m.at, by=m.by)
                for m in r.messages
            ],
        )


class ItemChangePublic(_Out):
    seq: int
    at: str
    actor: str
    action: str
    before: str | None
    after: str | None
    reason: str | None

    @classmethod
    def of(cls, change: ItemChange) -> ItemChangePublic:
        return cls(
            seq=change.seq,
            at=change.at,
            actor=change.actor,
            action=change.action,
            before=change.before,
            after=change.after,
            reason=change.reason,
        )
