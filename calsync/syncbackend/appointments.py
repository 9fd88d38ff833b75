"""SalesPartner's side of an appointment: booked, moved, edited or cancelled in a conversation.

In production these writes come from the SalesPartner product; here they are what the demo, the
tests and the benchmarks call. Every change bumps `Appointment.revision`, which is how the sync
engine knows what its calendars do not hold yet.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.syncbackend.models import Appointment, EventLink, User

CANCELLED_IN_SALESPARTNER = "cancelled in SalesPartner"
DELETED_IN_CALENDAR = "deleted in calendar"


def cancel_deleted_in_calendar(link: EventLink, now: datetime) -> bool:
    """The help center's rule: the rep deleted the event, so the appointment is cancelled.

    The one place the rule is applied (an incremental read's deletion, a full read's confirmed
    absence, an update answered 404, an agent's decision on a hold). The link is marked deleted and
    holds the new revision, so nothing is pushed back. True when the appointment was booked."""
    appointment = link.appointment
    link.state = "deleted"
    link.last_pulled_at = now
    cancelled = appointment.status == "booked"
    if cancelled:
        appointment.status = "cancelled"
        appointment.cancellation_reason = DELETED_IN_CALENDAR
        appointment.revision += 1
        appointment.updated_at = now
    link.pushed_revision = appointment.revision
    return cancelled


class UnknownUser(LookupError):
    pass


class UnknownAppointment(LookupError):
    pass


class Appointments:
    """Book, change and cancel appointments as the SalesPartner product does."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.clock = clock

    def book(
        self,
        email: str,
        *,
        title: str,
        start: datetime,
        duration: timedelta = timedelta(minutes=30),
        description: str = "",
        time_zone: str = "UTC",
    ) -> str:
        """A new appointment for the rep with this email; its id."""
        now = self.clock()
        with transaction(self.sessions) as session:
            user_id = session.scalars(select(User.id).where(User.email == email.strip().lower())).first()
            if user_id is None:
                raise UnknownUser(email)
            appointment = Appointment(
                user_id=user_id,
                title=title,
                description=description,
                start=start,
                end=start + duration,
                time_zone=time_zone,
                booked_at=now,
                updated_at=now,
                revision=1,
            )
            session.add(appointment)
            session.flush()
            return appointment.id

    def change(
        self,
        appointment_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        """Move or edit a booked appointment; a new start keeps the duration unless `end` is given."""
        with transaction(self.sessions) as session:
            appointment = self._get(session, appointment_id)
            if start is not None and end is None:
                end = start + (appointment.end - appointment.start)
            for name, value in (
                ("title", title),
                ("description", description),
                ("start", start),
                ("end", end),
            ):
                if value is not None:
                    setattr(appointment, name, value)
            self._touch(appointment)

    def cancel(self, appointment_id: str, reason: str = CANCELLED_IN_SALESPARTNER) -> None:
        with transaction(self.sessions) as session:
            appointment = self._get(session, appointment_id)
            if appointment.status == "cancelled":
                return
            appointment.status = "cancelled"
            appointment.cancellation_reason = reason
            self._touch(appointment)

    def get(self, appointment_id: str) -> Appointment:
        """The appointment as SalesPartner has it now (detached: read, don't change)."""
        with self.sessions() as session:
            appointment = self._get(session, appointment_id)
            session.expunge(appointment)
            return appointment

    def _touch(self, appointment: Appointment) -> None:
        appointment.revision += 1
        appointment.updated_at = self.clock()

    @staticmethod
    def _get(session: Session, appointment_id: str) -> Appointment:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None:
            raise UnknownAppointment(appointment_id)
        return appointment
