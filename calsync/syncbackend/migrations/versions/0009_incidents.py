"""Incidents: one shared cause seen by many reps (an organisation's admin removed SalesPartner's
consent or revoked its access; a provider outage), the reps each one affects, and the indexes their
detection reads (connections disconnected lately; the sync runs that failed in the last minutes).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=320), nullable=False),
        sa.Column("cause_code", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("affected_count", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("posted_version", sa.Integer(), nullable=False),
        sa.Column("support_ts", sa.String(length=32), nullable=True),
        sa.Column("support_claimed_by", sa.String(length=64), nullable=True),
        sa.Column("support_claim_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('org_consent_removed', 'org_access_revoked', 'provider_outage')",
            name=op.f("ck_incidents_kind"),
        ),
        sa.CheckConstraint("provider IN ('google', 'microsoft')", name=op.f("ck_incidents_provider")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(
        "uq_incidents_open_scope",
        "incidents",
        ["kind", "provider", "scope"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL"),
        sqlite_where=sa.text("ended_at IS NULL"),
    )
    op.create_index("ix_incidents_ended_at", "incidents", ["ended_at"])
    op.create_table(
        "incident_reps",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recovered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_reps_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["calendar_connections.id"],
            name=op.f("fk_incident_reps_connection_id_calendar_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_incident_reps_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("incident_id", "connection_id", name=op.f("pk_incident_reps")),
    )
    op.create_index("ix_incident_reps_user_recovered", "incident_reps", ["user_id", "recovered_at"])
    op.create_index(
        "ix_calendar_connections_status_disconnected",
        "calendar_connections",
        ["status", "disconnected_at"],
    )
    op.create_index(
        "ix_sync_runs_errors",
        "sync_runs",
        ["error_code", "started_at"],
        postgresql_where=sa.text("status = 'error'"),
        sqlite_where=sa.text("status = 'error'"),
    )


def downgrade() -> None:
    op.drop_index("ix_sync_runs_errors", table_name="sync_runs")
    op.drop_index("ix_calendar_connections_status_disconnected", table_name="calendar_connections")
    op.drop_index("ix_incident_reps_user_recovered", table_name="incident_reps")
    op.drop_table("incident_reps")
    op.drop_index("ix_incidents_ended_at", table_name="incidents")
    op.drop_index("uq_incidents_open_scope", table_name="incidents")
    op.drop_table("incidents")
