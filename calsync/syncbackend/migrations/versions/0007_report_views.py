"""Report views get their own claim: `report_views` (one row per report link, keyed by a digest of its
nonce), instead of `report-claim:` rows among the Slack event ids in `processed_events`. Claims made
before the upgrade move over (and back on a downgrade), so a report open in one browser stays its.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREFIX = "report-claim:"


def upgrade() -> None:
    op.create_table(
        "report_views",
        sa.Column("nonce_digest", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce_digest", name=op.f("pk_report_views")),
    )
    # The digest is what follows the prefix (64 hex characters); anything longer was never ours.
    op.execute(
        "INSERT INTO report_views (nonce_digest, claimed_at) "
        f"SELECT substr(event_id, {len(PREFIX) + 1}), received_at FROM processed_events "
        f"WHERE event_id LIKE '{PREFIX}%' AND length(event_id) <= {len(PREFIX) + 64}"
    )
    op.execute(f"DELETE FROM processed_events WHERE event_id LIKE '{PREFIX}%'")


def downgrade() -> None:
    op.execute(
        "INSERT INTO processed_events (event_id, received_at) "
        f"SELECT '{PREFIX}' || nonce_digest, claimed_at FROM report_views"
    )
    op.drop_table("report_views")
