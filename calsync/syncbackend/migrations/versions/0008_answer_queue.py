"""The answer queue: `queued_questions` (each acked question until it is answered, on every database)
and, on PostgreSQL, procrastinate's own tables, which the workers take the jobs from.

procrastinate's schema is the one of the version installed when this runs; it is created only when
missing, and a downgrade leaves it (dropping it would lose jobs other deployments may still hold).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queued_questions",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_by", sa.String(length=64), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("placeholder_ts", sa.String(length=32), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_queued_questions")),
    )
    op.create_index(op.f("ix_queued_questions_team_id"), "queued_questions", ["team_id"])
    op.create_index(op.f("ix_queued_questions_answered_at"), "queued_questions", ["answered_at"])
    bind = op.get_bind()
    if (
        bind.dialect.name == "postgresql"
        and bind.execute(sa.text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None
    ):
        from procrastinate.schema import SchemaManager

        # The schema is plain SQL; '%' is doubled for the driver's parameter style, as procrastinate does.
        bind.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))


def downgrade() -> None:
    op.drop_index(op.f("ix_queued_questions_answered_at"), table_name="queued_questions")
    op.drop_index(op.f("ix_queued_questions_team_id"), table_name="queued_questions")
    op.drop_table("queued_questions")
