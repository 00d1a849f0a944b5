"""The consortium hub: members, invitations, published studies, analyses, pull tasks; and
at a member node, the study versions its hub offered.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# frozen: not consortia.storage.tables.UTCDateTime, whose DDL is the same
UTCDateTime = sa.DateTime(timezone=True)

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "hub_member",
        sa.Column("name", sa.String(200), primary_key=True),
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
    op.create_table(
        "hub_invitation",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(320), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime, nullable=True),
    )
    op.create_table(
        "hub_study",
        sa.Column("study", sa.String(64), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("published_by", sa.String(320), nullable=False),
        sa.Column("published_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_hub_study_published_at", "hub_study", ["published_at"])
    op.create_table(
        "hub_study_site",
        sa.Column("study", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("member", sa.String(200), nullable=False),
    )
    op.create_table(
        "hub_delivery",
        sa.Column("study", sa.String(64), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("member", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "hub_analysis",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("study", sa.String(64), nullable=True),
        sa.Column("plan", sa.String(64), nullable=True),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("transport", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("requested_by", sa.String(320), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'done', 'failed')", name="ck_hub_analysis_status"
        ),
    )
    op.create_index("ix_hub_analysis_started_at", "hub_analysis", ["started_at"])
    op.create_table(
        "hub_task",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("member", sa.String(200), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("taken_at", UTCDateTime, nullable=True),
        sa.Column("reply", sa.Text, nullable=True),
    )
    op.create_index("ix_hub_task_member", "hub_task", ["member"])
    op.create_table(
        "study_offer",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("hub", sa.String(200), nullable=False),
        sa.Column("study", sa.String(64), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(320), nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'refused')", name="ck_study_offer_status"
        ),
    )


def downgrade() -> None:
    for table in (
        "study_offer",
        "hub_task",
        "hub_analysis",
        "hub_delivery",
        "hub_study_site",
        "hub_study",
        "hub_invitation",
        "hub_member",
    ):
        op.drop_table(table)
