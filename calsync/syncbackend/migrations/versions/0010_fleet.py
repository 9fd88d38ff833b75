"""The fleet view and the resolution stats: `answer_records` (each cause an answer gave, with the
article of its fix, and when a later diagnosis found the rep healthy), and the indexes their
aggregations read — a connection's newest sync run, the failed runs of a week, a rep's reconnects
after an answer, the feedback on a diagnosis.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAILED = sa.text("status = 'error'")


def upgrade() -> None:
    op.create_table(
        "answer_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("diagnosis_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.String(length=64), nullable=False),
        sa.Column("article", sa.String(length=64), nullable=True),
        sa.Column("fixed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_answer_records_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_answer_records")),
    )
    op.create_index("ix_answer_records_user_at", "answer_records", ["user_id", "at"])
    op.create_index("ix_answer_records_at", "answer_records", ["at"])
    op.create_index("ix_answer_records_diagnosis_id", "answer_records", ["diagnosis_id"])
    op.create_index(
        "ix_sync_runs_connection_started",
        "sync_runs",
        ["connection_id", "started_at"],
        postgresql_include=["status", "error_code"],
    )
    op.create_index(
        "ix_sync_runs_failed_started",
        "sync_runs",
        ["started_at", "connection_id"],
        postgresql_where=FAILED,
        sqlite_where=FAILED,
    )
    op.create_index("ix_audit_log_action_subject_at", "audit_log", ["action", "subject_user_id", "at"])
    op.create_index("ix_feedback_diagnosis_id", "feedback", ["diagnosis_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_diagnosis_id", table_name="feedback")
    op.drop_index("ix_audit_log_action_subject_at", table_name="audit_log")
    op.drop_index("ix_sync_runs_failed_started", table_name="sync_runs")
    op.drop_index("ix_sync_runs_connection_started", table_name="sync_runs")
    op.drop_table("answer_records")
