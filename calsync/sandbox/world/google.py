"""Calendars and events as `google_emulator.py` (Calendar API v3) reads and writes them."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select

from calsync.db import transaction
from calsync.sandbox.world.events import _API_EVENT_FIELDS, EventsMixin
from calsync.sandbox.world.tables import SandboxCalendar, SandboxEvent


class GoogleMixin(EventsMixin):
    """Calendars and events as the Calendar API v3 emulator reads and writes them."""

    # -- google / calendar events ----------------------------------------------------------------
    # Used by `google_emulator.py` (and handy for scenario loading and tests). Every change bumps the
    # world version in the same transaction, so sync tokens built on it see the change.

    def google_calendars(self, account_id: int) -> list[SandboxCalendar]:
        """One account's calendar list: the primary calendar first, then by name."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SandboxCalendar)
                    .where(SandboxCalendar.account_id == account_id)
                    .order_by(SandboxCalendar.primary.desc(), SandboxCalendar.name, SandboxCalendar.pk)
                ).all()
            )

    def google_calendar(self, account_id: int, calendar_id: str) -> SandboxCalendar | None:
        """One calendar of an account by its id; "primary" names the account's primary calendar."""
        with self.sessions() as session:
            query = select(SandboxCalendar).where(SandboxCalendar.account_id == account_id)
            if calendar_id == "primary":
                query = query.where(SandboxCalendar.primary.is_(True))
            else:
                query = query.where(SandboxCalendar.calendar_id == calendar_id)
            return session.scalars(query.order_by(SandboxCalendar.pk)).first()

    def google_events(
        self,
        calendar_pk: int,
        *,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        appointment_id: str | None = None,
        include_cancelled: bool = False,
        since_version: int | None = None,
        order_by_start: bool = False,
    ) -> list[SandboxEvent]:
        """Events of one calendar overlapping [time_min, time_max); `since_version`: changed after it."""
        with self.sessions() as session:
            query = select(SandboxEvent).where(SandboxEvent.calendar_pk == calendar_pk)
            if time_min is not None:
                query = query.where(SandboxEvent.end > time_min)
            if time_max is not None:
                query = query.where(SandboxEvent.start < time_max)
            if appointment_id is not None:
                query = query.where(SandboxEvent.appointment_id == appointment_id)
            if not include_cancelled:
                query = query.where(SandboxEvent.status != "cancelled")
            if since_version is not None:
                query = query.where(SandboxEvent.version > since_version).order_by(SandboxEvent.version)
            elif order_by_start:
                query = query.order_by(SandboxEvent.start, SandboxEvent.pk)
            else:
                query = query.order_by(SandboxEvent.pk)
            return list(session.scalars(query).all())

    def google_event(self, calendar_pk: int, event_id: str) -> SandboxEvent | None:
        with self.sessions() as session:
            return session.scalars(
                select(SandboxEvent).where(
                    SandboxEvent.calendar_pk == calendar_pk, SandboxEvent.event_id == event_id
                )
            ).first()

    def google_add_event(
        self,
        calendar_pk: int,
        *,
        title: str,
        start: datetime,
        end: datetime,
        now: datetime,
        description: str = "",
        time_zone: str = "UTC",
        appointment_id: str | None = None,
        event_id: str | None = None,
        status: str = "confirmed",
    ) -> SandboxEvent:
        """Create an event (the emulator's insert, or a test/scenario seeding a calendar)."""
        with transaction(self.sessions) as session:
            new_id = event_id or self.google_new_event_id()
            event = SandboxEvent(
                calendar_pk=calendar_pk,
                event_id=new_id,
                title=title,
                description=description,
                start=start,
                end=end,
                time_zone=time_zone,
                status=status,
                appointment_id=appointment_id,
                ical_uid=f"{new_id}@google.com",
                updated=now,
                version=self.next_version(session),
            )
            session.add(event)
            session.flush()
            return event

    def google_update_event(
        self, calendar_pk: int, event_id: str, changes: dict[str, Any], now: datetime
    ) -> SandboxEvent | None:
        """Set columns of one event (title, description, start, end, time_zone, status, appointment_id)."""
        with transaction(self.sessions) as session:
            event = session.scalars(
                select(SandboxEvent).where(
                    SandboxEvent.calendar_pk == calendar_pk, SandboxEvent.event_id == event_id
                )
            ).first()
            if event is None:
                return None
            return self._change_event(session, event, changes, now, allowed=_API_EVENT_FIELDS)

    def google_cancel_event(self, calendar_pk: int, event_id: str, now: datetime) -> SandboxEvent | None:
        """Delete as Google does: the event stays, cancelled, so incremental reads report it."""
        return self.google_update_event(calendar_pk, event_id, {"status": "cancelled"}, now)

    @staticmethod
    def google_new_event_id() -> str:
        """An id shaped like Google's: 26 characters of base32hex, lower case."""
        return "".join(secrets.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(26))
