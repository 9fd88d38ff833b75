"""Calendars and events as `microsoft_emulator.py` (Graph) reads and writes them."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select

from calsync.db import transaction
from calsync.sandbox.world.events import _API_EVENT_FIELDS, EventsMixin
from calsync.sandbox.world.tables import SandboxCalendar, SandboxEvent


class MicrosoftMixin(EventsMixin):
    """Calendars and events as the Graph emulator reads and writes them."""

    # Used by `microsoft_emulator.py` (identity platform + Graph). Calendars and events are always
    # reached through the account that sees them; a deleted event stays as a `cancelled` tombstone
    # with a new version, so that delta queries can report it as `@removed`.

    def ms_calendars(self, account_id: int) -> list[SandboxCalendar]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SandboxCalendar)
                    .where(SandboxCalendar.account_id == account_id)
                    .order_by(SandboxCalendar.pk)
                ).all()
            )

    def ms_calendar(self, account_id: int, calendar_id: str | None) -> SandboxCalendar | None:
        """One calendar of the account by id; `None` as id means the account's default calendar."""
        with self.sessions() as session:
            query = select(SandboxCalendar).where(SandboxCalendar.account_id == account_id)
            if calendar_id is None:
                query = query.order_by(SandboxCalendar.primary.desc(), SandboxCalendar.pk)
            else:
                query = query.where(SandboxCalendar.calendar_id == calendar_id)
            return session.scalars(query).first()

    def ms_events(
        self,
        calendar_pk: int,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        appointment_id: str | None = None,
        include_cancelled: bool = False,
        after_version: int | None = None,
        max_version: int | None = None,
    ) -> list[SandboxEvent]:
        """Events of one calendar overlapping [start, end), ordered by start (or by version for deltas)."""
        with self.sessions() as session:
            query = select(SandboxEvent).where(SandboxEvent.calendar_pk == calendar_pk)
            if start is not None:
                query = query.where(SandboxEvent.end > start)
            if end is not None:
                query = query.where(SandboxEvent.start < end)
            if appointment_id is not None:
                query = query.where(SandboxEvent.appointment_id == appointment_id)
            if not include_cancelled:
                query = query.where(SandboxEvent.status != "cancelled")
            if after_version is not None:
                query = query.where(SandboxEvent.version > after_version)
            if max_version is not None:
                query = query.where(SandboxEvent.version <= max_version)
            if after_version is not None or max_version is not None:
                query = query.order_by(SandboxEvent.version, SandboxEvent.pk)
            else:
                query = query.order_by(SandboxEvent.start, SandboxEvent.pk)
            return list(session.scalars(query).all())

    def ms_find_event(
        self, account_id: int, event_id: str, calendar_id: str | None = None
    ) -> tuple[SandboxCalendar, SandboxEvent] | None:
        """A live (not deleted) event among the account's calendars, optionally in one calendar."""
        with self.sessions() as session:
            query = (
                select(SandboxCalendar, SandboxEvent)
                .join(SandboxEvent, SandboxEvent.calendar_pk == SandboxCalendar.pk)
                .where(
                    SandboxCalendar.account_id == account_id,
                    SandboxEvent.event_id == event_id,
                    SandboxEvent.status != "cancelled",
                )
            )
            if calendar_id is not None:
                query = query.where(SandboxCalendar.calendar_id == calendar_id)
            row = session.execute(query).first()
            return (row[0], row[1]) if row else None

    def ms_insert_event(
        self,
        calendar_pk: int,
        *,
        title: str,
        description: str,
        start: datetime,
        end: datetime,
        now: datetime,
        time_zone: str = "UTC",
        appointment_id: str | None = None,
        transaction_id: str | None = None,
    ) -> tuple[SandboxEvent, bool]:
        """Create an event, or return the live one made earlier with this transaction id (created=False)."""
        with transaction(self.sessions) as session:
            if transaction_id:
                existing = session.scalars(
                    select(SandboxEvent).where(
                        SandboxEvent.calendar_pk == calendar_pk,
                        SandboxEvent.transaction_id == transaction_id,
                        SandboxEvent.status != "cancelled",
                    )
                ).first()
                if existing is not None:
                    return existing, False
            event = SandboxEvent(
                calendar_pk=calendar_pk,
                event_id="AAMkAGI2" + secrets.token_urlsafe(30),
                title=title,
                description=description,
                start=start,
                end=end,
                time_zone=time_zone,
                status="confirmed",
                appointment_id=appointment_id,
                ical_uid="040000008200E00074C5B7101A82E008" + secrets.token_hex(28).upper(),
                transaction_id=transaction_id,
                updated=now,
                version=self.next_version(session),
            )
            session.add(event)
            session.flush()
            return event, True

    def ms_update_event(self, event_pk: int, changes: dict[str, Any], now: datetime) -> SandboxEvent:
        """Apply column changes (title, description, start, end, time_zone, appointment_id)."""
        with transaction(self.sessions) as session:
            event = session.get(SandboxEvent, event_pk)
            if event is None:
                raise KeyError(event_pk)
            return self._change_event(session, event, changes, now, allowed=_API_EVENT_FIELDS - {"status"})

    def ms_delete_event(self, event_pk: int, now: datetime) -> None:
        """Delete an event: it disappears from every read but stays as a tombstone for delta queries."""
        with transaction(self.sessions) as session:
            event = session.get(SandboxEvent, event_pk)
            if event is None:
                raise KeyError(event_pk)
            event.status = "cancelled"
            event.updated = now
            event.version = self.next_version(session)
