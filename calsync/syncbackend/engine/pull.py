"""The pull: read what changed in the selected calendar since the stored cursor and apply it.

An expired cursor means a full read, after which our events the read did not list are looked up
(`Pull.reconcile`). For our events (they carry the appointment id): a new time/date, title or
description flows back to the appointment; a deleted event cancels it with the reason "deleted in
calendar" — unless one read would cancel too many upcoming appointments at once, which holds them
for an agent instead. Events added directly in the calendar create nothing. Where SalesPartner
changed the appointment after the calendar did, SalesPartner wins and the push puts it back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from calsync.db import transaction
from calsync.syncbackend import holds
from calsync.syncbackend.appointments import cancel_deleted_in_calendar
from calsync.syncbackend.engine.common import Context, Run, StopCycle, Target
from calsync.syncbackend.models import Appointment, CalendarConnection, EventLink
from calsync.syncbackend.providers.base import CalendarProvider, Changes, Event, NotFound, ProviderError

log = logging.getLogger(__name__)

# How many linked events a full read lacks are looked up at once (Graph allows 4 per mailbox).
LOOKUPS_AT_ONCE = 4


def differences(appointment: Appointment, event: Event) -> list[str]:
    """What the calendar has that the appointment does not: "time", "title", "description"."""
    changed = []
    if event.start != appointment.start or event.end != appointment.end:
        changed.append("time")
    if event.title != appointment.title:
        changed.append("title")
    if (event.description or "") != (appointment.description or ""):
        changed.append("description")
    return changed


def held_revision(appointment: Appointment, event: Event) -> int:
    """The revision a found event holds: the current one when it matches, else none (push it)."""
    return 0 if differences(appointment, event) else appointment.revision


class Pull:
    def __init__(self, context: Context) -> None:
        self.ctx = context

    async def __call__(self, provider: CalendarProvider, target: Target, run: Run) -> int | None:
        """Read the calendar's changes and apply them; the id of a hold when the read would have
        cancelled too many appointments at once (then none were cancelled)."""
        try:
            changes = await provider.changes(target.auth, target.calendar_id, target.cursor)
            events = list(changes.events)
            if changes.full_read:
                run.add("full_read")
                events += await self.reconcile(provider, target, changes)
        except ProviderError as error:
            raise StopCycle(error) from error  # nothing applied: the old cursor reads it all again
        held = await asyncio.to_thread(self._apply_changes, target, changes, events, run)
        target.cursor = changes.cursor
        return held

    async def reconcile(self, provider: CalendarProvider, target: Target, changes: Changes) -> list[Event]:
        """What became of our events a full read did not list: a full read lists the events that
        exist, so a deleted one shows only as an absence — and so does an event moved out of the
        read's window, or one a short page left out. Each is looked up by id: a 404/410 or a
        cancelled event is a deletion (the same change an incremental read reports), an event
        found is applied like any change. An absence alone never cancels anything, and a lookup that
        fails ends the cycle before anything is applied."""
        listed = {event.id for event in changes.events}
        missing = await asyncio.to_thread(self._unlisted_event_ids, target, listed, changes.window)
        if not missing:
            return []
        # Each 404 would look like a deletion if the calendar itself were gone: that is
        # `calendar.not_found` (pick another calendar), never a reason to cancel.
        calendars = await provider.list_calendars(target.auth)
        if not any(calendar.id == target.calendar_id for calendar in calendars):
            raise NotFound(provider.name, "The selected calendar no longer exists for this account.")
        slots = asyncio.Semaphore(LOOKUPS_AT_ONCE)

        async def look_up(event_id: str) -> Event:
            async with slots:
                try:
                    return await provider.get_event(target.auth, target.calendar_id, event_id)
                except NotFound:
                    return Event.removed(event_id, target.calendar_id)

        try:
            async with asyncio.TaskGroup() as group:  # one failing cancels the rest
                lookups = [group.create_task(look_up(event_id)) for event_id in missing]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [lookup.result() for lookup in lookups]

    def _unlisted_event_ids(
        self, target: Target, listed: set[str], window: tuple[datetime, datetime] | None
    ) -> list[str]:
        """Our events on this calendar that should have been listed and were not."""
        with self.ctx.sessions() as session:
            held = holds.open_hold_appointments(session, target.connection_id)
            query = (
                select(EventLink.event_id, EventLink.appointment_id)
                .join(Appointment)
                .where(
                    EventLink.connection_id == target.connection_id,
                    EventLink.calendar_id == target.calendar_id,
                    EventLink.event_id.is_not(None),
                    EventLink.state != "deleted",
                    Appointment.status == "booked",
                )
                .order_by(Appointment.start, EventLink.id)
            )
            if window is not None:
                query = query.where(Appointment.end > window[0], Appointment.start < window[1])
            return [
                event_id
                for event_id, appointment_id in session.execute(query)
                if event_id and event_id not in listed and appointment_id not in held
            ]

    def _apply_changes(self, target: Target, changes: Changes, events: list[Event], run: Run) -> int | None:
        now = self.ctx.clock()
        with transaction(self.ctx.sessions) as session:
            links = session.scalars(
                select(EventLink)
                .where(EventLink.connection_id == target.connection_id)
                .options(selectinload(EventLink.appointment))
            ).all()
            by_event = {link.event_id: link for link in links if link.event_id}
            by_appointment = {link.appointment_id: link for link in links}
            held = holds.open_hold_appointments(session, target.connection_id)
            ours: list[tuple[EventLink, Event]] = []
            for event in events:
                link = by_event.get(event.id)
                if link is None and event.appointment_id is not None:
                    link = self._adopt(session, target, event, by_appointment)
                    if link is not None and link.event_id == event.id:
                        run.add("recovered")  # ours, from an insert whose answer never came back
                if link is None:
                    if event.status != "cancelled":
                        run.add("ignored")  # added directly in the calendar: creates nothing
                    continue
                if link.appointment_id not in held:  # an agent decides on these
                    ours.append((link, event))
            deleted = [
                link
                for link, event in ours
                if event.status == "cancelled"
                and link.state != "deleted"
                and link.appointment.status == "booked"
            ]
            hold_id = self._hold_if_too_many(session, target, changes, deleted, now, run)
            for link, event in ours:
                if hold_id is None or link not in deleted:
                    self._pull_one(link, event, now, run)
            connection = session.get(CalendarConnection, target.connection_id)
            if connection is not None:
                connection.sync_cursor = changes.cursor
            return hold_id

    def _hold_if_too_many(
        self,
        session: Session,
        target: Target,
        changes: Changes,
        deleted: list[EventLink],
        now: datetime,
        run: Run,
    ) -> int | None:
        """A hold instead of the cancellations when one read deletes too many upcoming appointments."""
        soon = sum(link.appointment.end > now for link in deleted)
        if not soon:
            return None
        upcoming = holds.upcoming_on_calendar(session, target.connection_id, now)
        if not self.ctx.policy.holds_cancellations(soon, upcoming):
            return None
        connection = session.get(CalendarConnection, target.connection_id)
        assert connection is not None
        run.add("held", len(deleted))
        source = "full read" if changes.full_read else "incremental read"
        hold_id = holds.record_hold(
            session,
            connection,
            [link.appointment for link in deleted],
            upcoming=upcoming,
            source=source,
            now=now,
        )
        log.warning(
            "connection %s: %d of %d upcoming appointments deleted in one %s; held for an agent (hold %d)",
            target.connection_id,
            soon,
            upcoming,
            source,
            hold_id,
        )
        return hold_id

    def _adopt(
        self, session: Session, target: Target, event: Event, by_appointment: dict[str, EventLink]
    ) -> EventLink | None:
        """Our event without a recorded id (its insert's answer was lost): record it, once."""
        link = by_appointment.get(event.appointment_id or "")
        if link is not None:
            if link.event_id is None and event.status != "cancelled":
                link.event_id = event.id
                link.state = "synced"
                link.pushed_revision = held_revision(link.appointment, event)
            return link if link.event_id == event.id else None
        appointment = session.get(Appointment, event.appointment_id)
        if appointment is None or appointment.user_id != target.user_id or event.status == "cancelled":
            return None
        link = EventLink(
            appointment_id=appointment.id,
            connection_id=target.connection_id,
            calendar_id=target.calendar_id,
            event_id=event.id,
            state="synced",
            pushed_revision=held_revision(appointment, event),
        )
        session.add(link)
        link.appointment = appointment
        by_appointment[appointment.id] = link
        return link

    def _pull_one(self, link: EventLink, event: Event, now: datetime, run: Run) -> None:
        appointment = link.appointment
        if event.status == "cancelled":
            if link.state == "deleted":
                return  # we deleted it (cancelled in SalesPartner), or already counted
            if cancel_deleted_in_calendar(link, now):
                run.add("cancelled")
            return
        if link.state == "deleted" or appointment.status == "cancelled":
            return  # the push deletes it
        changed = differences(appointment, event)
        link.provider_updated = event.updated or link.provider_updated
        link.last_pulled_at = now
        if not changed:
            return
        local_newer = appointment.revision > link.pushed_revision and (
            event.updated is None or appointment.updated_at >= event.updated
        )
        if local_newer:
            return  # changed in SalesPartner after the calendar: the push wins
        appointment.title = event.title
        appointment.description = event.description or ""
        appointment.start = event.start
        appointment.end = event.end
        appointment.revision += 1
        appointment.updated_at = now
        link.pushed_revision = appointment.revision
        for what in changed:
            run.add(f"{what}_changed")
        run.add("updated")
