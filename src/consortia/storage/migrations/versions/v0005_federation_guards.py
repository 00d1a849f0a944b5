"""Federation endpoint state shared by a node's processes: accepted nonces, refusal windows.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# frozen: not consortia.storage.tables.UTCDateTime, whose DDL is the same
UTCDateTime = sa.DateTime(timezone=True)

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "federation_nonce",
        sa.Column("sender", sa.String(200), primary_key=True),
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_federation_nonce_expires_at", "federation_nonce", ["expires_at"])
    op.create_table(
        "federation_refusal",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("unlogged", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("federation_refusal")
    op.drop_index("ix_federation_nonce_expires_at", "federation_nonce")
    op.drop_table("federation_nonce")
