"""Telling people: the DM to a rep whose grant stopped working, and the support agents' question about
held cancellations. Each message is claimed in the database before it is sent (one conditional
UPDATE), so two workers never both send it, and released when sending fails, to be tried again.
The messages themselves are the caller's (`DisconnectNotifier`, `HoldNotifier`): the engine knows
nothing of Slack."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from calsync.db import transaction
from calsync.syncbackend import holds
from calsync.syncbackend.engine.common import (
    Context,
    Disconnection,
    DisconnectNotifier,
    FollowUpNotifier,
    HoldNotifier,
    IncidentNotifier,
    SentDM,
)
from calsync.syncbackend.incidents import (
    IncidentFollowUp,
    IncidentNotice,
    IncidentStore,
    incidents_of_connections,
)
from calsync.syncbackend.models import CalendarConnection

log = logging.getLogger(__name__)

Claimed = TypeVar("Claimed")


async def deliver(
    claimed: list[Claimed],
    send: Callable[[Claimed], Awaitable[bool]],
    release: Callable[[Claimed], None],
    what: str,
) -> int:
    """Send each claimed message; a message that fails (or raises) is released to be tried again.
    How many went out."""
    sent = 0
    for item in claimed:
        try:
            ok = await send(item)
        except Exception:
            log.exception("sending %s failed", what)
            ok = False
        if ok:
            sent += 1
        else:
            await asyncio.to_thread(release, item)
    return sent


class Notifications:
    def __init__(self, context: Context) -> None:
        self.ctx = context

    async def tell_disconnected(
        self, notify: DisconnectNotifier, connection_ids: Iterable[int] | None = None
    ) -> int:
        """DM each rep whose connection was found disconnected and not told yet; how many were told.

        The claim (setting `disconnect_notified_at`) happens before the message, in one conditional
        UPDATE, so two workers never both send it; a message that fails is released to try again."""
        pending = await asyncio.to_thread(
            self._claim_notifications, None if connection_ids is None else list(connection_ids)
        )

        async def send(disconnection: Disconnection) -> bool:
            sent = await notify(disconnection)
            if sent is None:
                return False
            await asyncio.to_thread(self._remember_dm, disconnection, sent)
            return True

        return await deliver(
            pending, send, lambda d: self._unclaim_notification(d.connection_id), "a disconnection DM"
        )

    def _remember_dm(self, disconnection: Disconnection, sent: SentDM) -> None:
        """Where the DM went and which incident it told of (None: it offered Reconnect), so an
        incident recognised later follows it up in its thread (`follow_up_incidents`)."""
        incident = disconnection.incident
        with transaction(self.ctx.sessions) as session:
            session.execute(
                update(CalendarConnection)
                .where(CalendarConnection.id == disconnection.connection_id)
                .values(
                    disconnect_dm_channel=sent.channel,
                    disconnect_dm_ts=sent.ts,
                    disconnect_dm_incident_id=incident.id if incident is not None else None,
                )
                .execution_options(synchronize_session=False)
            )

    def _claim_notifications(self, connection_ids: list[int] | None) -> list[Disconnection]:
        now = self.ctx.clock()
        with transaction(self.ctx.sessions) as session:
            query = (
                select(CalendarConnection)
                .where(
                    CalendarConnection.active.is_(True),
                    CalendarConnection.status == "disconnected",
                    CalendarConnection.disconnect_notified_at.is_(None),
                )
                .options(selectinload(CalendarConnection.user))
                .order_by(CalendarConnection.id)
            )
            if connection_ids is not None:
                query = query.where(CalendarConnection.id.in_(connection_ids))
            found: list[Disconnection] = []
            for connection in session.scalars(query).all():
                claimed = session.execute(
                    update(CalendarConnection)
                    .where(
                        CalendarConnection.id == connection.id,
                        CalendarConnection.disconnect_notified_at.is_(None),
                    )
                    .values(disconnect_notified_at=now)
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) != 1:
                    continue
                found.append(
                    Disconnection(
                        connection_id=connection.id,
                        user_email=connection.user.email,
                        user_name=connection.user.name,
                        slack_user_id=connection.user.slack_user_id,
                        provider=connection.provider,
                        account_email=connection.account_email,
                        cause=connection.status_code or "unknown",
                        reason=connection.status_reason or "",
                    )
                )
            joined = incidents_of_connections(session, [d.connection_id for d in found])
            return [replace(d, incident=joined.get(d.connection_id)) for d in found]

    def _unclaim_notification(self, connection_id: int) -> None:
        with transaction(self.ctx.sessions) as session:
            session.execute(
                update(CalendarConnection)
                .where(CalendarConnection.id == connection_id)
                .values(disconnect_notified_at=None)
                .execution_options(synchronize_session=False)
            )

    async def ask_about_holds(self, notify_hold: HoldNotifier, hold_ids: Iterable[int] | None = None) -> int:
        """Ask the support agents about each open hold not asked about yet; how many were asked.
        Claimed before sending (one conditional UPDATE), released when the message fails."""
        store = holds.Holds(self.ctx.sessions, self.ctx.clock)
        pending = await asyncio.to_thread(
            store.claim_notifications, None if hold_ids is None else list(hold_ids)
        )
        return await deliver(
            pending,
            notify_hold,
            lambda h: store.unclaim_notification(h.id),
            "a held-cancellations question",
        )

    async def announce_incidents(self, notify: IncidentNotifier, store: IncidentStore) -> int:
        """Post or update the one support message of each incident that changed since its message;
        claimed first (one conditional UPDATE), released when Slack refuses. How many went out."""
        pending = await asyncio.to_thread(store.claim_notices, self.ctx.clock())

        async def send(notice: IncidentNotice) -> bool:
            ts = await notify(notice)
            if ts is None:
                return False
            await asyncio.to_thread(store.posted, notice, ts)
            return True

        return await deliver(pending, send, store.release, "an incident's support message")

    async def follow_up_incidents(self, notify: FollowUpNotifier, store: IncidentStore) -> int:
        """Tell each rep of an organisation's incident what it means for them now, once per rep and
        message (`IncidentStore.claim_follow_ups`): claimed first, released when Slack refuses. How
        many went out."""
        pending = await asyncio.to_thread(store.claim_follow_ups, self.ctx.clock())

        async def send(follow_up: IncidentFollowUp) -> bool:
            if not await notify(follow_up):
                return False
            await asyncio.to_thread(store.follow_up_sent, follow_up, self.ctx.clock())
            return True

        return await deliver(pending, send, store.release_follow_up, "an incident's follow-up to a rep")
