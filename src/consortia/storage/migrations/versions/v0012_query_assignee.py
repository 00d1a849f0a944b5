"""Data queries get an assignee: the email of the person expected to act on the query, and
an index for the query list's "assigned to" filter.

The column is added and dropped in place (SQLite's ``ALTER TABLE ... ADD/DROP COLUMN``), not
by copying the table: rebuilding ``data_query`` would drop it under ``query_message``, whose
``ON DELETE CASCADE`` would empty every thread.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("data_query", sa.Column("assigned_to", sa.String(320), nullable=True))
    op.create_index("ix_data_query_assigned_to", "data_query", ["assigned_to"])


def downgrade() -> None:
    op.drop_index("ix_data_query_assigned_to", table_name="data_query")
    op.drop_column("data_query", "assigned_to")
