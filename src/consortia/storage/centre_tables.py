"""The innovation centre's tables, at the hub: partners and their agreements (with the
documents attached, kept with their SHA-256), programmes, steering committees, projects
and their gate decisions, doctors' ideas, inventions and patents, people with their
affiliations, exchange placements and training, and each study's training rule.

They live on the same :data:`~consortia.storage.audit.metadata` as every other table
(:mod:`consortia.storage.tables` imports this module), built by migration 0010.
"""

from __future__ import annotations

import sqlalchemy as sa

from consortia.storage.audit import metadata
from consortia.storage.tables import CODE_LENGTH, EMAIL_LENGTH, MEMBER_NAME_LENGTH, UTCDateTime

__all__ = [
    "centre_affiliation",
    "centre_agreement",
    "centre_agreement_party",
    "centre_agreement_scope",
    "centre_committee",
    "centre_committee_member",
    "centre_document",
    "centre_gate_decision",
    "centre_idea",
    "centre_idea_partner",
    "centre_ip",
    "centre_partner",
    "centre_person",
    "centre_placement",
    "centre_programme",
    "centre_programme_study",
    "centre_project",
    "centre_project_link",
    "centre_study_training",
    "centre_training",
]


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _code() -> sa.Column[str]:
    return sa.Column("code", sa.String(CODE_LENGTH), nullable=False, unique=True)


def _ref(name: str, table: str, *, nullable: bool = False, key: bool = False) -> sa.Column[int]:
    return sa.Column(
        name, sa.Integer, sa.ForeignKey(f"{table}.id"), nullable=nullable, primary_key=key
    )


def _created() -> list[sa.Column[object]]:
    return [
        sa.Column("created_by", sa.String(EMAIL_LENGTH), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    ]


centre_partner = sa.Table(
    "centre_partner",
    metadata,
    _id(),
    _code(),
    sa.Column("name", sa.String(400), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("country", sa.String(64), nullable=False),
    sa.Column("member", sa.String(MEMBER_NAME_LENGTH), nullable=True, unique=True),
    *_created(),
    sa.CheckConstraint(
        "kind IN ('hospital', 'university', 'company', 'government')",
        name="ck_centre_partner_kind",
    ),
)
centre_programme = sa.Table(
    "centre_programme",
    metadata,
    _id(),
    _code(),
    sa.Column("name", sa.String(400), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    *_created(),
)
centre_programme_study = sa.Table(
    "centre_programme_study",
    metadata,
    _ref("programme_id", "centre_programme", key=True),
    sa.Column("study", sa.String(CODE_LENGTH), primary_key=True),
)
centre_agreement = sa.Table(
    "centre_agreement",
    metadata,
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
centre_agreement_party = sa.Table(
    "centre_agreement_party",
    metadata,
    _ref("agreement_id", "centre_agreement", key=True),
    _ref("partner_id", "centre_partner", key=True),
)
# What an agreement covers: a study (by its code) or a programme (and so its studies).
centre_agreement_scope = sa.Table(
    "centre_agreement_scope",
    metadata,
    _id(),
    _ref("agreement_id", "centre_agreement"),
    sa.Column("study", sa.String(CODE_LENGTH), nullable=True),
    _ref("programme_id", "centre_programme", nullable=True),
    sa.CheckConstraint(
        "(study IS NULL) <> (programme_id IS NULL)", name="ck_centre_agreement_scope_one"
    ),
)
centre_document = sa.Table(
    "centre_document",
    metadata,
    _id(),
    sa.Column("owner_type", sa.String(16), nullable=False),
    sa.Column("owner_id", sa.Integer, nullable=False),
    sa.Column("filename", sa.String(200), nullable=False),
    sa.Column("media_type", sa.String(100), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    *_created(),
    sa.Index("ix_centre_document_owner", "owner_type", "owner_id"),
)
centre_person = sa.Table(
    "centre_person",
    metadata,
    _id(),
    sa.Column("email", sa.String(EMAIL_LENGTH), nullable=False, unique=True),
    sa.Column("name", sa.String(400), nullable=False),
    *_created(),
)
centre_committee = sa.Table(
    "centre_committee",
    metadata,
    _id(),
    _code(),
    sa.Column("name", sa.String(400), nullable=False),
    sa.Column("quorum", sa.Integer, nullable=False),
    *_created(),
)
centre_committee_member = sa.Table(
    "centre_committee_member",
    metadata,
    _ref("committee_id", "centre_committee", key=True),
    _ref("person_id", "centre_person", key=True),
)
centre_project = sa.Table(
    "centre_project",
    metadata,
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
centre_project_link = sa.Table(
    "centre_project_link",
    metadata,
    _ref("project_id", "centre_project", key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("target", sa.String(CODE_LENGTH), primary_key=True),
)
centre_gate_decision = sa.Table(
    "centre_gate_decision",
    metadata,
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
centre_idea = sa.Table(
    "centre_idea",
    metadata,
    _id(),
    sa.Column("title", sa.String(400), nullable=False),
    sa.Column("clinician", sa.String(EMAIL_LENGTH), nullable=False),
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
centre_idea_partner = sa.Table(
    "centre_idea_partner",
    metadata,
    _ref("idea_id", "centre_idea", key=True),
    _ref("partner_id", "centre_partner", key=True),
)
centre_ip = sa.Table(
    "centre_ip",
    metadata,
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
centre_affiliation = sa.Table(
    "centre_affiliation",
    metadata,
    _ref("person_id", "centre_person", key=True),
    _ref("partner_id", "centre_partner", key=True),
    sa.Column("title", sa.String(200), nullable=False),
)
centre_placement = sa.Table(
    "centre_placement",
    metadata,
    _id(),
    _ref("person_id", "centre_person"),
    _ref("from_partner_id", "centre_partner"),
    _ref("to_partner_id", "centre_partner"),
    sa.Column("starts_on", sa.Date, nullable=False),
    sa.Column("ends_on", sa.Date, nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
    *_created(),
)
centre_training = sa.Table(
    "centre_training",
    metadata,
    _id(),
    _ref("person_id", "centre_person"),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("study", sa.String(CODE_LENGTH), nullable=True),
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
centre_study_training = sa.Table(
    "centre_study_training",
    metadata,
    sa.Column("study", sa.String(CODE_LENGTH), primary_key=True),
    sa.Column("requires_gcp", sa.Boolean, nullable=False),
    sa.Column("requires_protocol", sa.Boolean, nullable=False),
    *_created(),
)
