"""Failed sign-ins per client address and per account, shared by the node's processes.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# frozen: not consortia.storage.tables.UTCDateTime, whose DDL is the same
UTCDateTime = sa.DateTime(timezone=True)

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("subject", sa.String(320), primary_key=True),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("refused", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_login_throttle_window_start", "login_throttle", ["window_start"])


def downgrade() -> None:
    op.drop_table("login_throttle")
