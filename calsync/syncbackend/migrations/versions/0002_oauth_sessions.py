"""OAuth sessions: the state of each sign-in started from a reconnect link, and the link's single-use claim.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oauth_sessions",
        sa.Column("state", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("link_nonce", sa.String(length=64), nullable=False),
        sa.Column("flow_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.CheckConstraint("provider IN ('google', 'microsoft')", name=op.f("ck_oauth_sessions_provider")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_oauth_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("state", name=op.f("pk_oauth_sessions")),
        sa.UniqueConstraint("link_nonce", name=op.f("uq_oauth_sessions_link_nonce")),
    )
    op.create_index(
        "ix_oauth_sessions_user_created", "oauth_sessions", ["user_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_oauth_sessions_user_created", table_name="oauth_sessions")
    op.drop_table("oauth_sessions")
