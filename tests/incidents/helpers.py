"""What the incident tests do to the world: load a scenario, run cycles, restore access."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from calsync.db import transaction
from calsync.syncbackend.models import CalendarConnection
from tests.sync.conftest import SyncWorld

SCENARIOS = Path(__file__).resolve().parents[2] / "calsync" / "sandbox" / "scenarios"
SUPPORT_CHANNEL = "C0SUPPORT"


def incident_messages(world: Any) -> list[Any]:
    """The support channel's messages about incidents (not the held-cancellation questions)."""
    return [m for m in world.slack_messages(SUPPORT_CHANNEL) if m.text.startswith(("Incident:", "Over:"))]


def reconnect(sync_world: SyncWorld, email: str) -> None:
    """The rep signs in again once access is back: a new grant at the provider, stored on the same
    connection as a completed reconnect stores it (`ReconnectStore.connect`)."""
    with transaction(sync_world.sandbox.sessions) as session:
        connection = session.scalars(
            select(CalendarConnection).where(CalendarConnection.account_email == email)
        ).one()
        account = sync_world.world.account(connection.provider, email)
        assert account is not None
        grant = sync_world.world.issue_grant(account.id)
        connection.set_tokens(sync_world.sandbox.cipher, refresh_token=grant.refresh_token)
        connection.status, connection.status_code, connection.status_reason = "connected", None, None
        connection.disconnected_at = None
        connection.authorized_at = sync_world.sandbox.clock()


def dm_threads(sync_world: SyncWorld, slack_user_id: str) -> list[list[Any]]:
    """The rep's DM conversation as threads: each top-level message, then its replies."""
    messages = sync_world.dms_to(slack_user_id)
    tops = [m for m in messages if m.thread_ts in (None, m.ts)]
    return [[top, *(m for m in messages if m.thread_ts == top.ts and m.ts != top.ts)] for top in tops]
