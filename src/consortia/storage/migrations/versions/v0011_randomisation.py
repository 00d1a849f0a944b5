"""Central randomisation: at the hub, each study's sealed scheme (seed, counter), its block
lists and its allocations; at a member, each subject's allocation and any unblinding.

Revision ID: 0011
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# frozen: not consortia.storage.tables.UTCDateTime, whose DDL is the same
UTCDateTime = sa.DateTime(timezone=True)

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "hub_randomisation",
        sa.Column("study", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("seed", sa.Text, nullable=False),
        sa.Column("study_sha256", sa.String(64), nullable=False),
        sa.Column("allocations", sa.Integer, nullable=False),
        sa.Column("generated_by", sa.String(320), nullable=False),
        sa.Column("generated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "hub_randomisation_entry",
        sa.Column("study", sa.String(64), primary_key=True),
        sa.Column("stratum", sa.String(2000), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("block", sa.Integer, nullable=False),
        sa.Column("block_size", sa.Integer, nullable=False),
    )
    op.create_table(
        "hub_allocation",
        sa.Column("study", sa.String(64), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("member", sa.String(200), nullable=False),
        sa.Column("stratum", sa.String(2000), nullable=False),
        sa.Column("position", sa.Integer, nullable=True),
        sa.Column("levels", sa.Text, nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("allocated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("study", "subject", name="uq_hub_allocation_subject"),
        sa.UniqueConstraint("study", "stratum", "position", name="uq_hub_allocation_entry"),
    )
    op.create_table(
        "subject_randomisation",
        sa.Column(
            "subject_pk",
            sa.Integer,
            sa.ForeignKey("subject.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("study", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("levels", sa.Text, nullable=False),
        sa.Column("hub", sa.String(200), nullable=False),
        sa.Column("hub_answer", sa.Text, nullable=False),
        sa.Column("randomised_at", UTCDateTime, nullable=False),
        sa.Column("randomised_by", sa.String(320), nullable=False),
        sa.Column("unblinded_at", UTCDateTime, nullable=True),
        sa.Column("unblinded_by", sa.String(320), nullable=True),
        sa.Column("unblind_reason", sa.Text, nullable=True),
        sa.UniqueConstraint("study", "subject_id", name="uq_subject_randomisation"),
    )
    op.create_index(
        "ix_subject_randomisation_study_site", "subject_randomisation", ["study", "site"]
    )


def downgrade() -> None:
    for table in (
        "subject_randomisation",
        "hub_allocation",
        "hub_randomisation_entry",
        "hub_randomisation",
    ):
        op.drop_table(table)
