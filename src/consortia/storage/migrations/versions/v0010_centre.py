"""The innovation centre at the hub: partners, agreements and their documents, programmes,
steering committees, projects and gate decisions, ideas, IP, people and training.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# frozen: not consortia.storage.tables.UTCDateTime, whose DDL is the same
UTCDateTime = sa.DateTime(timezone=True)

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _code() -> sa.Column[str]:
    return sa.Column("code", sa.String(64), nullable=False, unique=True)


def _ref(name: str, table: str, *, nullable: bool = False, key: bool = False) -> sa.Column[int]:
    return sa.Column(
        name, sa.Integer, sa.ForeignKey(f"{table}.id"), nullable=nullable, primary_key=key
    )


def _created() -> list[sa.Column[object]]:
    return [
        sa.Column("created_by", sa.String(320), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "centre_partner",
        _id(),
        _code(),
        sa.Column("name", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("country", sa.String(64), nullable=False),
        sa.Column("member", sa.String(200), nullable=True, unique=True),
        *_created(),
        sa.CheckConstraint(
            "kind IN ('hospital', 'university', 'company', 'government')",
            name="ck_centre_partner_kind",
        ),
    )
    op.create_table(
        "centre_programme",
        _id(),
        _code(),
        sa.Column("name", sa.String(400), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        *_created(),
    )
    op.create_table(
        "centre_programme_study",
        _ref("programme_id", "centre_programme", key=True),
        sa.Column("study", sa.String(64), primary_key=True),
    )
    op.create_table(
        "centre_agreement",
        _id(),
        _code(),
        sa.Column("title", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("ends_on", sa.Date, nullable=True),
        *_created(),
        sa.CheckConstraint(
            "kind IN ('mou', 'collaboration', 'data_sharing', 'data_transfer', 'clinical_trial')",
            name="ck_centre_agreement_kind",
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'terminated')", name="ck_centre_agreement_status"
        ),
    )
    op.create_table(
        "centre_agreement_party",
        _ref("agreement_id", "centre_agreement", key=True),
        _ref("partner_id", "centre_partner", key=True),
    )
    # What an agreement covers: a study (by its code) or a programme (and so its studies).
    op.create_table(
        "centre_agreement_scope",
        _id(),
        _ref("agreement_id", "centre_agreement"),
        sa.Column("study", sa.String(64), nullable=True),
        _ref("programme_id", "centre_programme", nullable=True),
        sa.CheckConstraint(
            "(study IS NULL) <> (programme_id IS NULL)", name="ck_centre_agreement_scope_one"
        ),
    )
    op.create_table(
        "centre_document",
        _id(),
        sa.Column("owner_type", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        *_created(),
    )
    op.create_index("ix_centre_document_owner", "centre_document", ["owner_type", "owner_id"])
    op.create_table(
        "centre_person",
        _id(),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(400), nullable=False),
        *_created(),
    )
    op.create_table(
        "centre_committee",
        _id(),
        _code(),
        sa.Column("name", sa.String(400), nullable=False),
        sa.Column("quorum", sa.Integer, nullable=False),
        *_created(),
    )
    op.create_table(
        "centre_committee_member",
        _ref("committee_id", "centre_committee", key=True),
        _ref("person_id", "centre_person", key=True),
    )
    op.create_table(
        "centre_project",
        _id(),
        _code(),
        sa.Column("title", sa.String(400), nullable=False),
        _ref("programme_id", "centre_programme", nullable=True),
        _ref("committee_id", "centre_committee"),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        *_created(),
        sa.CheckConstraint(
            "status IN ('active', 'on_hold', 'stopped')", name="ck_centre_project_status"
        ),
    )
    # A project's links: kind is study, partner, person, agreement or ip; target its code or id.
    op.create_table(
        "centre_project_link",
        _ref("project_id", "centre_project", key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("target", sa.String(64), primary_key=True),
    )
    op.create_table(
        "centre_gate_decision",
        _id(),
        _ref("project_id", "centre_project"),
        sa.Column("from_stage", sa.String(32), nullable=False),
        sa.Column("to_stage", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("decided_on", sa.Date, nullable=False),
        sa.Column("rationale", sa.Text, nullable=False),
        sa.Column("documents", sa.Text, nullable=False),
        sa.Column("present", sa.Text, nullable=False),
        *_created(),
        sa.CheckConstraint("decision IN ('go', 'hold', 'stop')", name="ck_centre_gate_decision"),
    )
    op.create_table(
        "centre_idea",
        _id(),
        sa.Column("title", sa.String(400), nullable=False),
        sa.Column("clinician", sa.String(320), nullable=False),
        sa.Column("problem", sa.Text, nullable=False),
        sa.Column("solution", sa.Text, nullable=False),
        sa.Column("patients", sa.Text, nullable=False),
        sa.Column("needs", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ref("programme_id", "centre_programme", nullable=True),
        _ref("project_id", "centre_project", nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        *_created(),
        sa.CheckConstraint(
            "status IN ('submitted', 'triaged', 'accepted', 'declined')",
            name="ck_centre_idea_status",
        ),
    )
    op.create_table(
        "centre_idea_partner",
        _ref("idea_id", "centre_idea", key=True),
        _ref("partner_id", "centre_partner", key=True),
    )
    op.create_table(
        "centre_ip",
        _id(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(400), nullable=False),
        sa.Column("inventors", sa.Text, nullable=False),
        sa.Column("application_number", sa.String(64), nullable=True),
        sa.Column("jurisdiction", sa.String(16), nullable=True),
        sa.Column("filed_on", sa.Date, nullable=True),
        sa.Column("granted_on", sa.Date, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("family", sa.String(64), nullable=True),
        _ref("project_id", "centre_project", nullable=True),
        *_created(),
        sa.CheckConstraint("kind IN ('disclosure', 'patent')", name="ck_centre_ip_kind"),
    )
    op.create_table(
        "centre_affiliation",
        _ref("person_id", "centre_person", key=True),
        _ref("partner_id", "centre_partner", key=True),
        sa.Column("title", sa.String(200), nullable=False),
    )
    op.create_table(
        "centre_placement",
        _id(),
        _ref("person_id", "centre_person"),
        _ref("from_partner_id", "centre_partner"),
        _ref("to_partner_id", "centre_partner"),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("ends_on", sa.Date, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        *_created(),
    )
    op.create_table(
        "centre_training",
        _id(),
        _ref("person_id", "centre_person"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("study", sa.String(64), nullable=True),
        sa.Column("title", sa.String(400), nullable=False),
        sa.Column("completed_on", sa.Date, nullable=False),
        sa.Column("expires_on", sa.Date, nullable=True),
        *_created(),
        sa.CheckConstraint("kind IN ('gcp', 'protocol')", name="ck_centre_training_kind"),
        sa.CheckConstraint(
            "(kind = 'protocol') = (study IS NOT NULL)", name="ck_centre_training_study"
        ),
    )
    # Per study: what granting one of its roles needs (a valid GCP certificate, the protocol
    # training for the study). A study without a row needs nothing.
    op.create_table(
        "centre_study_training",
        sa.Column("study", sa.String(64), primary_key=True),
        sa.Column("requires_gcp", sa.Boolean, nullable=False),
        sa.Column("requires_protocol", sa.Boolean, nullable=False),
        *_created(),
    )


def downgrade() -> None:
    for table in (
        "centre_study_training",
        "centre_training",
        "centre_placement",
        "centre_affiliation",
        "centre_ip",
        "centre_idea_partner",
        "centre_idea",
        "centre_gate_decision",
        "centre_project_link",
        "centre_project",
        "centre_committee_member",
        "centre_committee",
        "centre_person",
        "centre_document",
        "centre_agreement_scope",
        "centre_agreement_party",
        "centre_agreement",
        "centre_programme_study",
        "centre_programme",
        "centre_partner",
    ):
        op.drop_table(table)
