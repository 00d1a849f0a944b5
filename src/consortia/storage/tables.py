"""The node's tables: people, roles and credentials; studies, subjects and their data.

All tables live on :data:`consortia.storage.audit.metadata`, beside the audit trail, so one
``MetaData`` describes the whole schema (Alembic compares the migrations against it in a
test). Times are timezone-aware UTC on both databases (:class:`UTCDateTime`).

Studies and sites are named by short codes (``CART01``, ``SG01``) that grants and records
share; the wildcard ``*`` in a grant means "every study" or "every site of the study".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from consortia.auth.principal import WILDCARD
from consortia.storage.audit import metadata
from consortia.storage.witness import audit_witness

__all__ = [
    "MAX_ID",
    "WILDCARD",
    "UTCDateTime",
    "api_token",
    "app_user",
    "audit_witness",
    "data_query",
    "derived_value",
    "event_instance",
    "federation_nonce",
    "federation_refusal",
    "federation_session",
    "form_instance",
    "hub_analysis",
    "hub_delivery",
    "hub_invitation",
    "hub_member",
    "hub_study",
    "hub_study_site",
    "hub_task",
    "item_value",
    "login_throttle",
    "metadata",
    "query_message",
    "release_ledger",
    "release_set",
    "role_grant",
    "study_offer",
    "study_version",
    "subject",
    "subject_status",
    "web_session",
]

CODE_LENGTH = 64
EMAIL_LENGTH = 320


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite has no time zones: values are stored as naive UTC and given ``UTC`` on the way
    out, so comparisons in SQL and in Python agree on both databases.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Consortia stores UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: The largest id a row can have: ``id`` columns are 32-bit integers on PostgreSQL, which
#: refuses a larger number in a query (an error, where no row is what is meant).
MAX_ID = 2**31 - 1


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


app_user = sa.Table(
    "app_user",
    metadata,
    _id(),
    sa.Column("email", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("email", name="uq_app_user_email"),
)

role_grant = sa.Table(
    "role_grant",
    metadata,
    _id(),
    sa.Column(
        "user_id", sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("study", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("site", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("granted_at", UTCDateTime, nullable=False),
    sa.Column("granted_by", sa.String(EMAIL_LENGTH), nullable=False),
    sa.UniqueConstraint("user_id", "study", "site", "role", name="uq_role_grant"),
)

api_token = sa.Table(
    "api_token",
    metadata,
    _id(),
    sa.Column(
        "user_id", sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    # JSON list of study codes the token may act in; NULL means all of its owner's studies
    sa.Column("studies", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("token_hash", name="uq_api_token_token_hash"),
)

web_session = sa.Table(
    "web_session",
    metadata,
    # sha256 of the cookie value: a stolen database holds no usable session
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column(
        "user_id", sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
)

# Failed sign-ins per client address and per account name typed, in fixed windows: shared
# by every server process of the node; expired rows are pruned (services/login_limits.py)
login_throttle = sa.Table(
    "login_throttle",
    metadata,
    sa.Column("kind", sa.String(8), primary_key=True),  # "address" or "account"
    sa.Column("subject", sa.String(EMAIL_LENGTH), primary_key=True),
    sa.Column("window_start", UTCDateTime, nullable=False, index=True),
    sa.Column("failures", sa.Integer, nullable=False),
    # sign-ins refused (429) while the limit held: audited as one summary per window
    sa.Column("refused", sa.Integer, nullable=False, server_default="0"),
)

subject = sa.Table(
    "subject",
    metadata,
    _id(),
    sa.Column("study", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("site", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("subject_id", sa.String(CODE_LENGTH), nullable=False),
    # an identifier (PHI) item: masked for roles without identifier access
    sa.Column("initials", sa.String(8), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(EMAIL_LENGTH), nullable=False),
    # the latest of the subject's status rows (subject_status holds each with date and reason)
    sa.Column("status", sa.String(16), nullable=False, server_default="screening"),
    # day 0 of the schedule: scheduled events' target dates are counted from it
    sa.Column("anchor_date", sa.Date, nullable=True),
    sa.UniqueConstraint("study", "subject_id", name="uq_subject_study_subject_id"),
)
sa.Index("ix_subject_study_site", subject.c.study, subject.c.site)

# --------------------------------------------------------------------------- data capture
#
# Item values are stored long (one row per value, like REDCap's data table) with the
# canonical text beside a typed numeric column, so a study can change without a schema
# change; wide tables are built on demand. Every row below changes only through a service
# function that appends the audit event in the same transaction.

study_version = sa.Table(
    "study_version",
    metadata,
    _id(),
    sa.Column("study", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # the study's YAML exactly as loaded: the definition is code, kept verbatim
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("loaded_at", UTCDateTime, nullable=False),
    sa.Column("loaded_by", sa.String(EMAIL_LENGTH), nullable=False),
    sa.UniqueConstraint("study", "version", name="uq_study_version"),
)

subject_status = sa.Table(
    "subject_status",
    metadata,
    _id(),
    sa.Column(
        "subject_pk", sa.ForeignKey("subject.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("on_date", sa.Date, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("recorded_by", sa.String(EMAIL_LENGTH), nullable=False),
)

event_instance = sa.Table(
    "event_instance",
    metadata,
    _id(),
    sa.Column("subject_pk", sa.ForeignKey("subject.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("instance", sa.Integer, nullable=False),
    sa.Column("target_date", sa.Date, nullable=True),
    sa.Column("window_start", sa.Date, nullable=True),
    sa.Column("window_end", sa.Date, nullable=True),
    sa.Column("visit_date", sa.Date, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("subject_pk", "event", "instance", name="uq_event_instance"),
)

form_instance = sa.Table(
    "form_instance",
    metadata,
    _id(),
    sa.Column("event_pk", sa.ForeignKey("event_instance.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "subject_pk", sa.ForeignKey("subject.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("form", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # optimistic concurrency: every change increments it; a save names the version it read
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("study_version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("updated_by", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("verified_at", UTCDateTime, nullable=True),
    sa.Column("verified_by", sa.String(EMAIL_LENGTH), nullable=True),
    sa.Column("signed_at", UTCDateTime, nullable=True),
    sa.Column("signed_by", sa.String(EMAIL_LENGTH), nullable=True),
    sa.Column("signed_name", sa.String(200), nullable=True),
    sa.Column("signature_meaning", sa.String(200), nullable=True),
    sa.Column("locked_at", UTCDateTime, nullable=True),
    sa.Column("locked_by", sa.String(EMAIL_LENGTH), nullable=True),
    sa.UniqueConstraint("event_pk", "form", name="uq_form_instance"),
)

item_value = sa.Table(
    "item_value",
    metadata,
    _id(),
    sa.Column("form_pk", sa.ForeignKey("form_instance.id", ondelete="CASCADE"), nullable=False),
    sa.Column("item", sa.String(CODE_LENGTH), nullable=False),
    # 0 for an item of a non-repeating group, n >= 1 for instance n of a repeating group
    sa.Column("group_instance", sa.Integer, nullable=False),
    sa.Column("value_text", sa.Text, nullable=False),
    sa.Column("value_num", sa.Float, nullable=True),
    sa.UniqueConstraint("form_pk", "item", "group_instance", name="uq_item_value"),
)

derived_value = sa.Table(
    "derived_value",
    metadata,
    sa.Column("subject_pk", sa.ForeignKey("subject.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(CODE_LENGTH), primary_key=True),
    sa.Column("value_text", sa.Text, nullable=False),
    sa.Column("value_num", sa.Float, nullable=True),
)

data_query = sa.Table(
    "data_query",
    metadata,
    _id(),
    sa.Column("form_pk", sa.ForeignKey("form_instance.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "subject_pk", sa.ForeignKey("subject.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("item", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("group_instance", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("opened_by", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # the email of the person expected to act on the query (revision 0012); NULL: nobody
    sa.Column("assigned_to", sa.String(EMAIL_LENGTH), nullable=True, index=True),
)
sa.Index("ix_data_query_form_pk", data_query.c.form_pk)

query_message = sa.Table(
    "query_message",
    metadata,
    _id(),
    sa.Column(
        "query_pk", sa.ForeignKey("data_query.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("by", sa.String(EMAIL_LENGTH), nullable=False),
)

# A node's federation endpoint: the nonces of the signed messages it accepted, each kept
# until its message's timestamp leaves the clock-skew window (a replay inserts the same key
# and fails, in whichever process of the node it arrives), and per source the window of
# the last summary logged for refused unsigned requests (at most one per source per window).
federation_nonce = sa.Table(
    "federation_nonce",
    metadata,
    sa.Column("sender", sa.String(200), primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

federation_refusal = sa.Table(
    "federation_refusal",
    metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("unlogged", sa.Integer, nullable=False),
)

# --------------------------------------------------------------------------- disclosure control
REQUESTER_LENGTH = 400  # a peer's name, or "user:" and an e-mail address

# What a node agreed for each analysis session, and which rows each release drew on (the
# release ledger). Row keys are stored as sorted internal keys, compressed; never values.

federation_session = sa.Table(
    "federation_session",
    metadata,
    sa.Column("requester", sa.String(REQUESTER_LENGTH), primary_key=True),
    sa.Column("session", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("design", sa.Text, nullable=False),
    sa.Column("levels", sa.Text, nullable=True),
    sa.Column("agreed_at", UTCDateTime, nullable=False),
)

release_set = sa.Table(
    "release_set",
    metadata,
    _id(),
    sa.Column("dataset", sa.String(200), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("row_keys", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("dataset", "digest", name="uq_release_set"),
)
sa.Index("ix_release_set_dataset_n", release_set.c.dataset, release_set.c.n)

release_ledger = sa.Table(
    "release_ledger",
    metadata,
    _id(),
    sa.Column("set_pk", sa.ForeignKey("release_set.id"), nullable=False, index=True),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("requester", sa.String(REQUESTER_LENGTH), nullable=False),
    sa.Column("kind", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("session", sa.String(64), nullable=True),
    sa.Column("task_id", sa.String(64), nullable=True),
    sa.Column("released_at", UTCDateTime, nullable=False),
    sa.Column("design_sha256", sa.String(64), nullable=True),
    sa.Column("parameters", sa.Integer, nullable=True),
)

# --------------------------------------------------------------------------- manual approval
# Analysis requests queued for the data steward (policy.manual_approval), one row per
# requester and request (``id``: the first 16 hex digits of their SHA-256, ``digest``). The
# request is the analysis specification (kind, table, variable names, options): no row
# values. Decided once: ``status`` leaves ``pending`` by a conditional update only.
approval_request = sa.Table(
    "approval_request",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("requester", sa.String(REQUESTER_LENGTH), nullable=False),
    sa.Column("kind", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(EMAIL_LENGTH), nullable=True),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.CheckConstraint(
        "status IN ('pending', 'approved', 'denied')", name="ck_approval_request_status"
    ),
    sa.UniqueConstraint("digest", name="uq_approval_request_digest"),
)

# --------------------------------------------------------------------------- the hub
# A hub (the coordinating centre's node, ``role = "hub"``) keeps the consortium here: its
# members, the invitations it issued (only the SHA-256 of each secret), the study versions
# it signed and published and which member hosts which site, the analyses it ran and the
# tasks waiting for members that poll it (pull transport). No patient record is kept here.
MEMBER_NAME_LENGTH = 200
hub_member = sa.Table(
    "hub_member",
    metadata,
    sa.Column("name", sa.String(MEMBER_NAME_LENGTH), primary_key=True),
    sa.Column("institution", sa.String(400), nullable=False),
    sa.Column("country", sa.String(64), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("transport", sa.String(8), nullable=False),
    sa.Column("public_key", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("software_version", sa.String(64), nullable=False),
    sa.Column("protocol_version", sa.String(64), nullable=False),
    sa.Column("joined_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=True),
    sa.Column("removed_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("transport IN ('push', 'pull')", name="ck_hub_member_transport"),
    sa.CheckConstraint("status IN ('active', 'removed')", name="ck_hub_member_status"),
)
hub_invitation = sa.Table(
    "hub_invitation",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(MEMBER_NAME_LENGTH), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
)
hub_study = sa.Table(
    "hub_study",
    metadata,
    sa.Column("study", sa.String(CODE_LENGTH), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("label", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("published_by", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("published_at", UTCDateTime, nullable=False, index=True),
)
hub_study_site = sa.Table(
    "hub_study_site",
    metadata,
    sa.Column("study", sa.String(CODE_LENGTH), primary_key=True),
    sa.Column("site", sa.String(CODE_LENGTH), primary_key=True),
    sa.Column("member", sa.String(MEMBER_NAME_LENGTH), nullable=False),
)
hub_delivery = sa.Table(
    "hub_delivery",
    metadata,
    sa.Column("study", sa.String(CODE_LENGTH), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("member", sa.String(MEMBER_NAME_LENGTH), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
hub_analysis = sa.Table(
    "hub_analysis",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("study", sa.String(CODE_LENGTH), nullable=True),
    sa.Column("plan", sa.String(CODE_LENGTH), nullable=True),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("transport", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("requested_by", sa.String(EMAIL_LENGTH), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False, index=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_hub_analysis_status"),
)
hub_task = sa.Table(
    "hub_task",
    metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("member", sa.String(MEMBER_NAME_LENGTH), nullable=False, index=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("taken_at", UTCDateTime, nullable=True),
    sa.Column("reply", sa.Text, nullable=True),
)
# A member node: the study versions its hub sent, waiting for (or decided by) the node's
# administrator; ``message`` is the hub-signed message as received, checked again on
# acceptance.
study_offer = sa.Table(
    "study_offer",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("hub", sa.String(MEMBER_NAME_LENGTH), nullable=False),
    sa.Column("study", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("label", sa.String(CODE_LENGTH), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(EMAIL_LENGTH), nullable=True),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.CheckConstraint(
        "status IN ('pending', 'accepted', 'refused')", name="ck_study_offer_status"
    ),
)

# The innovation centre's tables (partners, agreements, projects, ideas, IP, people) are in
# their own module, on the same metadata.
import consortia.storage.centre_tables  # noqa: E402, F401

# central randomisation's tables live in their own module, on the same metadata
from consortia.storage import randomisation as _randomisation  # noqa: E402, F401
