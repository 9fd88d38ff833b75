"""The push: appointments booked, changed or cancelled in SalesPartner reach the calendar.

Before an insert is sent, the link records the attempt (committed); an attempt without an event id is
looked up by the appointment id before a new insert, so a crash or lost answer between the
provider's insert and our commit never makes a second event (Graph also gets a transactionId).
After a provider switch, appointments already synced to the old calendar stay there; new ones go to
the new calendar.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from calsync.db import transaction
from calsync.syncbackend import holds
from calsync.syncbackend.appointments import cancel_deleted_in_calendar
from calsync.syncbackend.engine.common import Context, Run, StopCycle, Target, error_code
from calsync.syncbackend.models import Appointment, EventLink
from calsync.syncbackend.providers.base import (
    CalendarProvider,
    Event,
    EventDraft,
    NotFound,
    ProviderError,
)

# How far around an appointment a lost insert is looked for (it may have moved since).
LOOKUP_SPAN = timedelta(days=366)


def event_draft(appointment: Appointment) -> EventDraft:
    return EventDraft(
        title=appointment.title,
        description=appointment.description,
        start=appointment.start,
        end=appointment.end,
        appointment_id=appointment.id,
        time_zone=appointment.time_zone,
    )


class Push:
    def __init__(self, context: Context) -> None:
        self.ctx = context

    async def __call__(self, provider: CalendarProvider, target: Target, run: Run) -> None:
        work = await asyncio.to_thread(self._push_work, target)
        for appointment_id in work:
            await self._push_one(provider, target, appointment_id, run)

    def _push_work(self, target: Target) -> list[str]:
        """Appointments whose calendar copy (on this connection) is missing or behind, oldest first."""
        now = self.ctx.clock()
        with self.ctx.sessions() as session:
            appointments = session.scalars(
                select(Appointment)
                .where(Appointment.user_id == target.user_id)
                .options(selectinload(Appointment.links).selectinload(EventLink.connection))
                .order_by(Appointment.booked_at, Appointment.id)
            ).all()
            held = holds.open_hold_appointments(session, target.connection_id)
            return [
                a.id
                for a in appointments
                if a.id not in held and self._needs_push(a, target.connection_id, now)
            ]

    @staticmethod
    def _needs_push(appointment: Appointment, connection_id: int, now: datetime) -> bool:
        link = next((link for link in appointment.links if link.connection_id == connection_id), None)
        if link is None:
            if appointment.status != "booked" or appointment.end < now:
                return False
            # Switching provider moves nothing: what reached a calendar since switched off stays there.
            return not any(
                other.event_id and not other.connection.active and other.state == "synced"
                for other in appointment.links
            )
        if link.state == "deleted":
            return False
        if link.event_id is None:
            return appointment.status == "booked" or link.insert_attempted_at is not None
        return appointment.revision > link.pushed_revision

    async def _push_one(
        self, provider: CalendarProvider, target: Target, appointment_id: str, run: Run
    ) -> None:
        snapshot = await asyncio.to_thread(self._push_snapshot, target, appointment_id)
        if snapshot is None:
            return
        appointment, link = snapshot
        auth, calendar = target.auth, target.calendar_id
        # An event stays on the calendar it was synced to when the rep chooses another one since:
        # its updates and deletion go there, and a 404 there is no deletion on the current one.
        elsewhere = link is not None and link.event_id is not None and link.calendar_id != calendar
        if elsewhere:
            assert link is not None
            calendar = link.calendar_id
        draft = event_draft(appointment)
        try:
            if appointment.status == "cancelled":
                event_id = link.event_id if link else None
                if event_id is None and link is not None and link.insert_attempted_at is not None:
                    event_id = await self._look_up(provider, target, appointment)
                if event_id is not None:
                    with contextlib.suppress(NotFound):  # already gone is what we want
                        await provider.delete_event(auth, calendar, event_id)
                    run.add("deleted")
                await asyncio.to_thread(self._record_deleted, target, appointment)
                return
            if link is None or link.event_id is None:
                found = None
                if link is not None and link.insert_attempted_at is not None:
                    found = await self._look_up(provider, target, appointment)
                if found is not None:
                    event = await provider.update_event(auth, calendar, found, draft)
                    run.add("recovered")
                else:
                    await asyncio.to_thread(self._record_attempt, target, appointment)
                    event = await provider.insert_event(auth, calendar, draft)
                    run.add("created")
                run.titles.append(appointment.title)
            else:
                try:
                    event = await provider.update_event(auth, calendar, link.event_id, draft)
                    run.add("updated")
                except NotFound:
                    if elsewhere:  # a calendar no longer read: put it on the current one instead
                        await asyncio.to_thread(self._record_moved, target, appointment)
                        run.add("moved")
                        return
                    # Gone from the calendar before we pulled its deletion: the same rule applies.
                    await asyncio.to_thread(self._record_vanished, target, appointment)
                    run.add("cancelled")
                    return
        except (
            ProviderError
        ) as error:  # a NotFound or PermissionDenied here: the calendar is gone or read-only
            await asyncio.to_thread(self._record_link_error, target, appointment, error)
            run.add("failed")
            raise StopCycle(error) from error
        await asyncio.to_thread(self._record_pushed, target, appointment, event)

    async def _look_up(
        self, provider: CalendarProvider, target: Target, appointment: Appointment
    ) -> str | None:
        """The event an earlier, unconfirmed insert made for this appointment, if it exists."""
        events = await provider.list_events(
            target.auth,
            target.calendar_id,
            appointment.start - LOOKUP_SPAN,
            appointment.end + LOOKUP_SPAN,
            appointment_id=appointment.id,
        )
        live = [event for event in events if event.status != "cancelled"]
        return live[0].id if live else None

    def _push_snapshot(
        self, target: Target, appointment_id: str
    ) -> tuple[Appointment, EventLink | None] | None:
        with self.ctx.sessions() as session:
            appointment = session.get(Appointment, appointment_id)
            if appointment is None:
                return None
            link = self._find_link(session, target, appointment_id)
            session.expunge_all()
            return appointment, link

    @staticmethod
    def _find_link(session: Session, target: Target, appointment_id: str) -> EventLink | None:
        return session.scalars(
            select(EventLink).where(
                EventLink.appointment_id == appointment_id,
                EventLink.connection_id == target.connection_id,
            )
        ).first()

    def _link(self, session: Session, target: Target, appointment_id: str) -> EventLink:
        """The appointment's link on this connection, made (pending) when there is none yet."""
        link = self._find_link(session, target, appointment_id)
        if link is None:
            link = EventLink(
                appointment_id=appointment_id,
                connection_id=target.connection_id,
                calendar_id=target.calendar_id,
                state="pending",
                pushed_revision=0,
            )
            session.add(link)
        return link

    def _record_attempt(self, target: Target, appointment: Appointment) -> None:
        with transaction(self.ctx.sessions) as session:
            link = self._link(session, target, appointment.id)
            link.calendar_id = target.calendar_id
            link.insert_attempted_at = self.ctx.clock()
            link.state = "pending"

    def _record_pushed(self, target: Target, appointment: Appointment, event: Event) -> None:
        now = self.ctx.clock()
        with transaction(self.ctx.sessions) as session:
            link = self._link(session, target, appointment.id)
            link.calendar_id = event.calendar_id or target.calendar_id
            link.event_id = event.id
            link.state = "synced"
            link.error = None
            link.pushed_revision = appointment.revision
            link.provider_updated = event.updated
            link.last_pushed_at = now

    def _record_deleted(self, target: Target, appointment: Appointment) -> None:
        with transaction(self.ctx.sessions) as session:
            link = self._link(session, target, appointment.id)
            link.state = "deleted"
            link.error = None
            link.pushed_revision = appointment.revision
            link.last_pushed_at = self.ctx.clock()

    def _record_moved(self, target: Target, appointment: Appointment) -> None:
        """The event is gone from a calendar the rep no longer has selected: the next push inserts
        the appointment on the current calendar (it stays booked)."""
        with transaction(self.ctx.sessions) as session:
            link = self._link(session, target, appointment.id)
            link.calendar_id = target.calendar_id
            link.event_id = None
            link.state = "pending"
            link.insert_attempted_at = None
            link.pushed_revision = 0

    def _record_vanished(self, target: Target, appointment: Appointment) -> None:
        with transaction(self.ctx.sessions) as session:
            link = self._link(session, target, appointment.id)
            cancel_deleted_in_calendar(link, self.ctx.clock())

    def _record_link_error(self, target: Target, appointment: Appointment, error: ProviderError) -> None:
        with transaction(self.ctx.sessions) as session:
            link = self._link(session, target, appointment.id)
            if link.event_id is None:
                link.state = "failed" if not error.transient else "pending"
            link.error = f"{error_code(error)}: {error.message}"[:500]
