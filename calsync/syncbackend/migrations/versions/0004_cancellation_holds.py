"""Cancellation holds: many cancellations at once wait for a support agent; sync runs may be "held".

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sync_run_statuses(values: str) -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_constraint(op.f("ck_sync_runs_status"), type_="check")
        batch.create_check_constraint("status", f"status IN ({values})")


def upgrade() -> None:
    op.create_table(
        "cancellation_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("appointment_ids", sa.JSON(), nullable=False),
        sa.Column("upcoming", sa.Integer(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'cancelled', 'kept')", name=op.f("ck_cancellation_holds_status")
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["calendar_connections.id"],
            name=op.f("fk_cancellation_holds_connection_id_calendar_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_cancellation_holds_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cancellation_holds")),
    )
    op.create_index(
        "ix_cancellation_holds_connection_status",
        "cancellation_holds",
        ["connection_id", "status"],
        unique=False,
    )
    _sync_run_statuses("'running', 'ok', 'error', 'held'")


def downgrade() -> None:
    op.execute("UPDATE sync_runs SET status = 'error' WHERE status = 'held'")
    _sync_run_statuses("'running', 'ok', 'error'")
    op.drop_index("ix_cancellation_holds_connection_status", table_name="cancellation_holds")
    op.drop_table("cancellation_holds")
