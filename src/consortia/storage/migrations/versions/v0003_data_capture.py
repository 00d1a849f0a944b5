"""Data capture: study versions, subject status, events, forms, item values, queries.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# frozen: not consortia.storage.tables.UTCDateTime, whose DDL is the same
UTCDateTime = sa.DateTime(timezone=True)

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _fk(name: str, target: str, *, primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        name,
        sa.Integer,
        sa.ForeignKey(f"{target}.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    with op.batch_alter_table("subject") as batch:
        batch.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="screening")
        )
        batch.add_column(sa.Column("anchor_date", sa.Date, nullable=True))
    op.create_table(
        "study_version",
        _id(),
        sa.Column("study", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("loaded_at", UTCDateTime, nullable=False),
        sa.Column("loaded_by", sa.String(320), nullable=False),
        sa.UniqueConstraint("study", "version", name="uq_study_version"),
    )
    op.create_table(
        "subject_status",
        _id(),
        _fk("subject_pk", "subject"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("on_date", sa.Date, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
        sa.Column("recorded_by", sa.String(320), nullable=False),
    )
    op.create_index("ix_subject_status_subject_pk", "subject_status", ["subject_pk"])
    op.create_table(
        "event_instance",
        _id(),
        _fk("subject_pk", "subject"),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("instance", sa.Integer, nullable=False),
        sa.Column("target_date", sa.Date, nullable=True),
        sa.Column("window_start", sa.Date, nullable=True),
        sa.Column("window_end", sa.Date, nullable=True),
        sa.Column("visit_date", sa.Date, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("subject_pk", "event", "instance", name="uq_event_instance"),
    )
    op.create_table(
        "form_instance",
        _id(),
        _fk("event_pk", "event_instance"),
        _fk("subject_pk", "subject"),
        sa.Column("form", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("study_version", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("updated_by", sa.String(320), nullable=False),
        sa.Column("verified_at", UTCDateTime, nullable=True),
        sa.Column("verified_by", sa.String(320), nullable=True),
        sa.Column("signed_at", UTCDateTime, nullable=True),
        sa.Column("signed_by", sa.String(320), nullable=True),
        sa.Column("signed_name", sa.String(200), nullable=True),
        sa.Column("signature_meaning", sa.String(200), nullable=True),
        sa.Column("locked_at", UTCDateTime, nullable=True),
        sa.Column("locked_by", sa.String(320), nullable=True),
        sa.UniqueConstraint("event_pk", "form", name="uq_form_instance"),
    )
    op.create_index("ix_form_instance_subject_pk", "form_instance", ["subject_pk"])
    op.create_table(
        "item_value",
        _id(),
        _fk("form_pk", "form_instance"),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("group_instance", sa.Integer, nullable=False),
        sa.Column("value_text", sa.Text, nullable=False),
        sa.Column("value_num", sa.Float, nullable=True),
        sa.UniqueConstraint("form_pk", "item", "group_instance", name="uq_item_value"),
    )
    op.create_table(
        "derived_value",
        _fk("subject_pk", "subject", primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value_text", sa.Text, nullable=False),
        sa.Column("value_num", sa.Float, nullable=True),
    )
    op.create_table(
        "data_query",
        _id(),
        _fk("form_pk", "form_instance"),
        _fk("subject_pk", "subject"),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("group_instance", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("opened_by", sa.String(320), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_data_query_form_pk", "data_query", ["form_pk"])
    op.create_index("ix_data_query_subject_pk", "data_query", ["subject_pk"])
    op.create_table(
        "query_message",
        _id(),
        _fk("query_pk", "data_query"),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("by", sa.String(320), nullable=False),
    )
    op.create_index("ix_query_message_query_pk", "query_message", ["query_pk"])


def downgrade() -> None:
    for table in (
        "query_message",
        "data_query",
        "derived_value",
        "item_value",
        "form_instance",
        "event_instance",
        "subject_status",
        "study_version",
    ):
        op.drop_table(table)
    with op.batch_alter_table("subject") as batch:
        batch.drop_column("anchor_date")
        batch.drop_column("status")
