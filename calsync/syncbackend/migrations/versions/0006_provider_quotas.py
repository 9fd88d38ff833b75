"""Provider quotas shared by every instance: `quota_keys` (one row per provider account, locked while
a call is admitted) and `quota_calls` (the calls in the window, and those still running).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quota_keys",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("touched_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_quota_keys")),
    )
    op.create_table(
        "quota_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("busy_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quota_calls")),
    )
    op.create_index("ix_quota_calls_key_started", "quota_calls", ["key", "started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_quota_calls_key_started", table_name="quota_calls")
    op.drop_table("quota_calls")
    op.drop_table("quota_keys")
