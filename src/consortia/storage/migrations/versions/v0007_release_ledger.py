"""Disclosure control: agreed analysis sessions and the release ledger.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# frozen: not consortia.storage.tables.UTCDateTime, whose DDL is the same
UTCDateTime = sa.DateTime(timezone=True)

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "federation_session",
        sa.Column("requester", sa.String(400), primary_key=True),
        sa.Column("session", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("design", sa.Text, nullable=False),
        sa.Column("levels", sa.Text, nullable=True),
        sa.Column("agreed_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "release_set",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("row_keys", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("dataset", "digest", name="uq_release_set"),
    )
    op.create_index("ix_release_set_dataset_n", "release_set", ["dataset", "n"])
    op.create_table(
        "release_ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("set_pk", sa.Integer, sa.ForeignKey("release_set.id"), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("requester", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("session", sa.String(64), nullable=True),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("released_at", UTCDateTime, nullable=False),
        sa.Column("design_sha256", sa.String(64), nullable=True),
        sa.Column("parameters", sa.Integer, nullable=True),
    )
    op.create_index("ix_release_ledger_set_pk", "release_ledger", ["set_pk"])


def downgrade() -> None:
    op.drop_table("release_ledger")
    op.drop_table("release_set")
    op.drop_table("federation_session")
