"""Cancellations held for a support agent: many at once are asked about, never just made.

Deleting an event in the calendar cancels its appointment (the help center's rule). But one read
that shows many of a rep's upcoming appointments deleted at once is as likely a wiped or swapped
calendar, an admin's script or a provider glitch as the rep's own clean-up, and cancelling a dozen
customer meetings by mistake cannot be undone from here. So such a read cancels none of them: the
sync engine records a hold (`CancellationHold`), audits it and asks the support channel. An agent
then decides once, from Slack or the command line:

- cancel: each appointment is cancelled exactly as a single deletion would have cancelled it;
- keep: they stay booked and go back on the calendar in the next cycle (the push looks for an
  existing event by our appointment id first, so an event that was only hidden is not doubled).

The threshold is `SyncPolicy.holds_cancellations`. Nothing here talks to a provider or to Slack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from calsync.db import transaction
from calsync.syncbackend.appointments import cancel_deleted_in_calendar
from calsync.syncbackend.models import (
    Appointment,
    AuditEntry,
    CalendarConnection,
    CancellationHold,
    EventLink,
)

Decision = Literal["cancel", "keep"]
DECISIONS: tuple[Decision, ...] = ("cancel", "keep")
DECIDED_STATUS: dict[Decision, Literal["cancelled", "kept"]] = {"cancel": "cancelled", "keep": "kept"}


@dataclass(frozen=True)
class HeldAppointment:
    id: str
    title: str
    start: datetime


@dataclass(frozen=True)
class Hold:
    """A hold as people are shown it (plain values, read in one transaction)."""

    id: int
    connection_id: int
    user_email: str
    user_name: str
    provider: str
    account_email: str
    appointments: tuple[HeldAppointment, ...]
    upcoming: int
    detected_at: datetime
    status: str
    source: str
    decided_by: str | None = None
    decided_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rep": self.user_email,
            "provider": self.provider,
            "account": self.account_email,
            "status": self.status,
            "detected_at": self.detected_at.isoformat(),
            "source": self.source,
            "upcoming": self.upcoming,
            "appointments": [
                {"id": a.id, "title": a.title, "start": a.start.isoformat()} for a in self.appointments
            ],
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }


@dataclass(frozen=True)
class Decided:
    """What deciding a hold did: `changed` appointments cancelled or put back; `already` when another
    decision came first (then nothing changed)."""

    hold: Hold
    decision: Decision
    changed: int
    already: bool = False


class UnknownHold(LookupError):
    pass


# -- inside the engine's transaction -------------------------------------------------------------


def open_hold_appointments(session: Session, connection_id: int) -> set[str]:
    """Appointments of this connection an agent has yet to decide on: nothing touches them meanwhile."""
    held: set[str] = set()
    for ids in session.scalars(
        select(CancellationHold.appointment_ids).where(
            CancellationHold.connection_id == connection_id, CancellationHold.status == "open"
        )
    ):
        held.update(ids or ())
    return held


def upcoming_on_calendar(session: Session, connection_id: int, now: datetime) -> int:
    """How many booked, not yet over appointments this connection's calendar holds."""
    return len(
        session.scalars(
            select(EventLink.id)
            .join(Appointment)
            .where(
                EventLink.connection_id == connection_id,
                EventLink.event_id.is_not(None),
                EventLink.state != "deleted",
                Appointment.status == "booked",
                Appointment.end > now,
            )
        ).all()
    )


def record_hold(
    session: Session,
    connection: CalendarConnection,
    appointments: Sequence[Appointment],
    *,
    upcoming: int,
    source: str,
    now: datetime,
) -> int:
    """Write the hold and its audit entry (actor "system"); its id."""
    hold = CancellationHold(
        connection_id=connection.id,
        user_id=connection.user_id,
        appointment_ids=[appointment.id for appointment in appointments],
        upcoming=upcoming,
        detected_at=now,
        status="open",
        detail={"source": source},
    )
    session.add(hold)
    session.flush()
    session.add(
        AuditEntry(
            at=now,
            actor="system",
            action="cancellations_held",
            subject_user_id=connection.user_id,
            detail={
                "hold": hold.id,
                "connection": connection.id,
                "provider": connection.provider,
                "appointments": list(hold.appointment_ids),
                "upcoming": upcoming,
                "source": source,
            },
            result="held",
        )
    )
    return hold.id


# -- reading and deciding --------------------------------------------------------------------------


def _hold(session: Session, row: CancellationHold) -> Hold:
    found = {
        appointment.id: appointment
        for appointment in session.scalars(
            select(Appointment).where(Appointment.id.in_(list(row.appointment_ids or ())))
        )
    }
    appointments = tuple(
        HeldAppointment(found[i].id, found[i].title, found[i].start)
        for i in row.appointment_ids
        if i in found
    )
    return Hold(
        id=row.id,
        connection_id=row.connection_id,
        user_email=row.user.email,
        user_name=row.user.name,
        provider=row.connection.provider,
        account_email=row.connection.account_email,
        appointments=tuple(sorted(appointments, key=lambda a: (a.start, a.id))),
        upcoming=row.upcoming,
        detected_at=row.detected_at,
        status=row.status,
        source=str((row.detail or {}).get("source", "")),
        decided_by=row.decided_by,
        decided_at=row.decided_at,
    )


def _rows(session: Session) -> Any:
    return select(CancellationHold).options(
        selectinload(CancellationHold.user), selectinload(CancellationHold.connection)
    )


class Holds:
    """The holds in the database: list them, claim the message that asks an agent, decide."""

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.clock = clock

    def get(self, hold_id: int) -> Hold:
        with self.sessions() as session:
            row = session.scalars(_rows(session).where(CancellationHold.id == hold_id)).first()
            if row is None:
                raise UnknownHold(hold_id)
            return _hold(session, row)

    def find(self, *, status: str | None = "open", user_id: int | None = None) -> list[Hold]:
        with self.sessions() as session:
            query = _rows(session).order_by(CancellationHold.id)
            if status is not None:
                query = query.where(CancellationHold.status == status)
            if user_id is not None:
                query = query.where(CancellationHold.user_id == user_id)
            return [_hold(session, row) for row in session.scalars(query)]

    def claim_notifications(self, hold_ids: Iterable[int] | None = None) -> list[Hold]:
        """Open holds no agent was asked about yet, each claimed by one conditional UPDATE (so two
        workers never both ask)."""
        now = self.clock()
        with transaction(self.sessions) as session:
            query = _rows(session).where(
                CancellationHold.status == "open", CancellationHold.notified_at.is_(None)
            )
            if hold_ids is not None:
                query = query.where(CancellationHold.id.in_(list(hold_ids)))
            claimed: list[Hold] = []
            for row in session.scalars(query.order_by(CancellationHold.id)).all():
                won = session.execute(
                    update(CancellationHold)
                    .where(CancellationHold.id == row.id, CancellationHold.notified_at.is_(None))
                    .values(notified_at=now)
                    .execution_options(synchronize_session=False)
                )
                if getattr(won, "rowcount", 0) == 1:
                    claimed.append(_hold(session, row))
            return claimed

    def unclaim_notification(self, hold_id: int) -> None:
        with transaction(self.sessions) as session:
            session.execute(
                update(CancellationHold)
                .where(CancellationHold.id == hold_id)
                .values(notified_at=None)
                .execution_options(synchronize_session=False)
            )

    def decide(self, hold_id: int, decision: Decision, *, actor: str) -> Decided:
        """Cancel or keep the held appointments, once: a second decision changes nothing and says who
        decided first. Audited either way."""
        if decision not in DECISIONS:
            raise ValueError(f"not a decision: {decision!r}")
        now = self.clock()
        with transaction(self.sessions) as session:
            won = session.execute(
                update(CancellationHold)
                .where(CancellationHold.id == hold_id, CancellationHold.status == "open")
                .values(status=DECIDED_STATUS[decision], decided_by=actor[:320], decided_at=now)
                .execution_options(synchronize_session=False)
            )
            row = session.scalars(_rows(session).where(CancellationHold.id == hold_id)).first()
            if row is None:
                raise UnknownHold(hold_id)
            session.refresh(row)
            if getattr(won, "rowcount", 0) != 1:
                return Decided(_hold(session, row), decision, 0, already=True)
            links = session.scalars(
                select(EventLink)
                .where(
                    EventLink.connection_id == row.connection_id,
                    EventLink.appointment_id.in_(list(row.appointment_ids or ())),
                    EventLink.state != "deleted",
                )
                .options(selectinload(EventLink.appointment))
            ).all()
            changed = 0
            for link in links:
                if link.appointment.status != "booked":
                    continue
                if decision == "cancel":
                    changed += cancel_deleted_in_calendar(link, now)
                else:
                    # Back on the calendar next cycle; the push looks for the event by our id first.
                    link.event_id = None
                    link.state = "pending"
                    link.insert_attempted_at = now
                    link.error = None
                    changed += 1
            session.add(
                AuditEntry(
                    at=now,
                    actor=actor[:320],
                    action="cancellations_decided",
                    subject_user_id=row.user_id,
                    detail={"hold": row.id, "decision": decision, "changed": changed},
                    result=DECIDED_STATUS[decision],
                )
            )
            session.flush()
            return Decided(_hold(session, row), decision, changed)
