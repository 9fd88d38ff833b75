"""An incident's follow-ups to its reps: where each rep's disconnection DM is (its conversation and
ts, and the incident it was about, if any), and per affected rep when the follow-up ("it turns out
this affects N people; reconnecting won't help until your admin restores access") and the
"access is back" note went out, with the claim of the worker sending them; and a Microsoft
connection's tenant (the id token's `tid`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONNECTION_COLUMNS = {"disconnect_dm_channel": 32, "disconnect_dm_ts": 32}  # and the incident id
REP_TIMES = ("followup_sent_at", "access_back_sent_at", "notice_claim_until")


def upgrade() -> None:
    with op.batch_alter_table("calendar_connections") as batch:
        for name, length in CONNECTION_COLUMNS.items():
            batch.add_column(sa.Column(name, sa.String(length=length), nullable=True))
        batch.add_column(sa.Column("disconnect_dm_incident_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tenant_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("incident_reps") as batch:
        for name in REP_TIMES:
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("notice_claimed_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incident_reps") as batch:
        batch.drop_column("notice_claimed_by")
        for name in reversed(REP_TIMES):
            batch.drop_column(name)
    with op.batch_alter_table("calendar_connections") as batch:
        batch.drop_column("tenant_id")
        batch.drop_column("disconnect_dm_incident_id")
        for name in reversed(CONNECTION_COLUMNS):
            batch.drop_column(name)
