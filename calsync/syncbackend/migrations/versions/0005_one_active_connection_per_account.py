"""One active connection per user, provider and account: existing doubles resolved, then a partial
unique index.

Two sign-ins completing at the same moment could each add an active connection for the same account
(the rep's row is now locked during completion; this index is the backstop). Before the index can
exist the doubles must go: of each group of active connections with the same user, provider and
account, the newest (latest `authorized_at`, then `created_at`, then `id`) stays active; the others
are deactivated — `active` false, status `disconnected`, `status_code` `duplicate`, a reason naming
the connection kept. Nothing is deleted and no token is touched: the rows stay for the agents (and a
downgrade), and only the kept connection is synced from now on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_calendar_connections_active_account"
DUPLICATE = "duplicate"

connections = sa.table(
    "calendar_connections",
    sa.column("id", sa.Integer()),
    sa.column("user_id", sa.Integer()),
    sa.column("provider", sa.String()),
    sa.column("account_email", sa.String()),
    sa.column("active", sa.Boolean()),
    sa.column("status", sa.String()),
    sa.column("status_code", sa.String()),
    sa.column("status_reason", sa.Text()),
    sa.column("authorized_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("disconnected_at", sa.DateTime(timezone=True)),
)


def _moment(value: datetime | None) -> datetime:
    """Aware UTC for ordering (SQLite hands back naive UTC); never-set sorts first."""
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def resolve_doubles(bind: sa.engine.Connection) -> int:
    """Deactivate every active connection but the newest of its (user, provider, account); how many."""
    rows = bind.execute(
        sa.select(
            connections.c.id,
            connections.c.user_id,
            connections.c.provider,
            connections.c.account_email,
            connections.c.authorized_at,
            connections.c.created_at,
        ).where(connections.c.active == sa.true())
    ).all()
    groups: dict[tuple[int, str, str], list[Any]] = {}
    for row in rows:
        groups.setdefault((row.user_id, row.provider, row.account_email.lower()), []).append(row)
    now = datetime.now(UTC)
    stamp = now.replace(tzinfo=None) if bind.dialect.name == "sqlite" else now
    resolved = 0
    for group in groups.values():
        if len(group) < 2:
            continue
        ordered = sorted(group, key=lambda r: (_moment(r.authorized_at), _moment(r.created_at), r.id))
        kept = ordered[-1]
        for row in ordered[:-1]:
            bind.execute(
                connections.update()
                .where(connections.c.id == row.id)
                .values(
                    active=False,
                    status="disconnected",
                    status_code=DUPLICATE,
                    status_reason=f"the same account was connected twice; connection {kept.id} is kept",
                    disconnected_at=stamp,
                )
            )
            resolved += 1
    return resolved


def upgrade() -> None:
    resolve_doubles(op.get_bind())
    op.create_index(
        INDEX,
        "calendar_connections",
        ["user_id", "provider", "account_email"],
        unique=True,
        postgresql_where=sa.text("active"),
        sqlite_where=sa.text("active"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="calendar_connections")
