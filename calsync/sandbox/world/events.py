"""Calendars and events as their owner changes them, whatever the provider."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from calsync.db import transaction
from calsync.sandbox.world.base import WorldBase
from calsync.sandbox.world.tables import Provider, SandboxAccount, SandboxCalendar, SandboxEvent

# What an API client may change on an event, and what its owner changes in the calendar app.
_API_EVENT_FIELDS = frozenset(
    {"title", "description", "start", "end", "time_zone", "status", "appointment_id"}
)
_OWNER_EVENT_FIELDS = frozenset({"title", "description", "start", "end", "status"})


class EventsMixin(WorldBase):
    """Calendars, and what a person does to events in their calendar app (any provider)."""

    def add_calendar(
        self,
        account_id: int,
        calendar_id: str,
        name: str,
        *,
        primary: bool = False,
        access_role: str = "owner",
        owner_email: str = "",
        time_zone: str = "UTC",
    ) -> SandboxCalendar:
        with transaction(self.sessions) as session:
            calendar = SandboxCalendar(
                account_id=account_id,
                calendar_id=calendar_id,
                name=name,
                primary=primary,
                access_role=access_role,
                owner_email=owner_email,
                time_zone=time_zone,
            )
            session.add(calendar)
            session.flush()
            return calendar

    # -- any provider: what a person does in their calendar app -----------------------------------

    def find_events(
        self,
        *,
        appointment_id: str | None = None,
        event_id: str | None = None,
        include_cancelled: bool = False,
    ) -> list[SandboxEvent]:
        """Events on any calendar, by our appointment id or the provider's event id."""
        with self.sessions() as session:
            query = select(SandboxEvent).order_by(SandboxEvent.pk)
            if appointment_id is not None:
                query = query.where(SandboxEvent.appointment_id == appointment_id)
            if event_id is not None:
                query = query.where(SandboxEvent.event_id == event_id)
            if not include_cancelled:
                query = query.where(SandboxEvent.status != "cancelled")
            return list(session.scalars(query).all())

    def edit_event(self, event_id: str, changes: dict[str, Any], now: datetime) -> SandboxEvent:
        """Change an event as its owner would in Google Calendar or Outlook (`status: cancelled` deletes
        it, as both providers report a deletion); incremental reads see the change."""
        with transaction(self.sessions) as session:
            event = session.scalars(select(SandboxEvent).where(SandboxEvent.event_id == event_id)).one()
            return self._change_event(session, event, changes, now, allowed=_OWNER_EVENT_FIELDS)

    def forget_event(self, event_id: str) -> None:
        """The provider keeps no trace of the event any more: a deletion older than its tombstones
        (a full read does not list it, a look-up answers 404). Nothing is counted as a change."""
        with transaction(self.sessions) as session:
            session.execute(delete(SandboxEvent).where(SandboxEvent.event_id == event_id))

    def delete_calendar(self, provider: Provider, account_email: str, calendar_id: str) -> None:
        """The owner deletes (or stops sharing) a whole calendar: it and its events are gone."""
        with transaction(self.sessions) as session:
            account = session.scalars(
                select(SandboxAccount).where(
                    SandboxAccount.provider == provider, SandboxAccount.email == account_email.lower()
                )
            ).one()
            session.execute(
                delete(SandboxCalendar).where(
                    SandboxCalendar.account_id == account.id, SandboxCalendar.calendar_id == calendar_id
                )
            )

    def _change_event(
        self,
        session: Session,
        event: SandboxEvent,
        changes: dict[str, Any],
        now: datetime,
        *,
        allowed: frozenset[str],
    ) -> SandboxEvent:
        """Set the event's columns, stamp it and bump the world version (incremental reads see it)."""
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"not a changeable event field: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(event, name, value)
        event.updated = now
        event.version = self.next_version(session)
        session.flush()
        return event
