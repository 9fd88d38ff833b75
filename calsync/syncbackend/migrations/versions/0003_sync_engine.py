"""The sync engine's bookkeeping: schedule and lease per connection, revisions of appointments and links.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONNECTION_COLUMNS = (
    "next_sync_at",
    "lease_owner",
    "lease_until",
    "sync_failures",
    "last_checked_at",
    "disconnect_notified_at",
)


def upgrade() -> None:
    with op.batch_alter_table("calendar_connections") as batch:
        batch.add_column(sa.Column("next_sync_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("sync_failures", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("disconnect_notified_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_calendar_connections_due",
        "calendar_connections",
        ["status", "active", "next_sync_at"],
        unique=False,
    )
    with op.batch_alter_table("appointments") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("event_links") as batch:
        batch.add_column(sa.Column("pushed_revision", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("insert_attempted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event_links") as batch:
        batch.drop_column("insert_attempted_at")
        batch.drop_column("pushed_revision")
    with op.batch_alter_table("appointments") as batch:
        batch.drop_column("revision")
    op.drop_index("ix_calendar_connections_due", table_name="calendar_connections")
    with op.batch_alter_table("calendar_connections") as batch:
        for column in reversed(CONNECTION_COLUMNS):
            batch.drop_column(column)
