"""Witnessed heads: the signed chain-head statements peers hand this node, kept append-only.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# frozen copies of consortia.storage.witness's triggers
_TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER audit_witness_no_update BEFORE UPDATE ON audit_witness "
        "BEGIN SELECT RAISE(ABORT, 'witnessed heads are append-only: UPDATE refused'); END",
        "CREATE TRIGGER audit_witness_no_delete BEFORE DELETE ON audit_witness "
        "BEGIN SELECT RAISE(ABORT, 'witnessed heads are append-only: DELETE refused'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_witness_refuse() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RAISE EXCEPTION 'witnessed heads are append-only: % refused', TG_OP; "
        "END $$",
        "CREATE TRIGGER audit_witness_no_change BEFORE UPDATE OR DELETE ON audit_witness "
        "FOR EACH ROW EXECUTE FUNCTION audit_witness_refuse()",
        "CREATE TRIGGER audit_witness_no_truncate BEFORE TRUNCATE ON audit_witness "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_witness_refuse()",
    ],
}


def upgrade() -> None:
    op.create_table(
        "audit_witness",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("node", sa.String(200), nullable=False),
        sa.Column("received_at", sa.String(32), nullable=False),
        sa.Column("heads_sha256", sa.String(64), nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_witness_node", "audit_witness", ["node", "id"])
    for statement in _TRIGGERS.get(op.get_bind().dialect.name, []):
        op.execute(sa.text(statement))


def downgrade() -> None:
    # Like the audit trail, what peers witnessed is never dropped.
    raise NotImplementedError("witnessed heads are never dropped")
