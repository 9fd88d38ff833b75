"""A read-only snapshot of one rep's sync state in the backend, as plain frozen values.

Checks read this, never the ORM: they run concurrently on the event loop, and a snapshot taken in
one short transaction is consistent and cannot lazy-load behind their back.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from calsync.render import labels
from calsync.syncbackend.models import (
    Appointment,
    CalendarConnection,
    CancellationHold,
    SyncRun,
    User,
)

# How far back and ahead the snapshot reaches: enough for "yesterday's demo" and next month's calls.
APPOINTMENTS_BACK = timedelta(days=30)
APPOINTMENTS_AHEAD = timedelta(days=90)
SYNC_RUNS_PER_CONNECTION = 20


@dataclass(frozen=True)
class ConnectionState:
    id: int
    provider: str
    account_email: str
    label: str
    status: str
    status_reason: str | None
    status_code: str | None
    selected_calendar_id: str | None
    selected_calendar_name: str | None
    active: bool
    authorized_at: datetime | None
    last_refreshed_at: datetime | None
    disconnected_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class LinkState:
    connection_id: int
    calendar_id: str
    event_id: str | None
    state: str
    last_pushed_at: datetime | None
    last_pulled_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class AppointmentState:
    id: str
    title: str
    description: str
    start: datetime
    end: datetime
    time_zone: str
    status: str
    cancellation_reason: str | None
    booked_at: datetime
    updated_at: datetime
    links: tuple[LinkState, ...]

    def link_for(self, connection_id: int) -> LinkState | None:
        return next((link for link in self.links if link.connection_id == connection_id), None)


@dataclass(frozen=True)
class SyncRunState:
    connection_id: int
    direction: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    error_code: str | None
    error_message: str | None
    counts: dict[str, int]


@dataclass(frozen=True)
class HoldState:
    """Cancellations a sync held back for a support agent (see `syncbackend/holds.py`)."""

    id: int
    connection_id: int
    appointment_ids: tuple[str, ...]
    detected_at: datetime
    source: str


@dataclass(frozen=True)
class RepState:
    user_id: int
    email: str
    name: str
    role: str
    slack_user_id: str | None
    connections: tuple[ConnectionState, ...]
    appointments: tuple[AppointmentState, ...]
    sync_runs: tuple[SyncRunState, ...]  # newest first
    holds: tuple[HoldState, ...] = ()  # open ones, oldest first

    @property
    def active_connections(self) -> tuple[ConnectionState, ...]:
        return tuple(connection for connection in self.connections if connection.active)

    def connection(self, connection_id: int) -> ConnectionState:
        return next(connection for connection in self.connections if connection.id == connection_id)

    def runs_for(self, connection_id: int, direction: str | None = None) -> tuple[SyncRunState, ...]:
        """Sync runs of one connection, newest first."""
        return tuple(
            run
            for run in self.sync_runs
            if run.connection_id == connection_id and (direction is None or run.direction == direction)
        )

    @property
    def work_domain(self) -> str:
        return self.email.rsplit("@", 1)[-1].lower()


_State = TypeVar("_State")


def _snapshot(state: type[_State], row: object, **derived: Any) -> _State:
    """The frozen `state` of an ORM row: each field read from the row's attribute of the same name,
    except the `derived` ones."""
    values = {field.name: getattr(row, field.name) for field in fields(state) if field.name not in derived}  # type: ignore[arg-type]
    return state(**values, **derived)


def _connection(row: CalendarConnection) -> ConnectionState:
    return _snapshot(ConnectionState, row, label=labels.connection_label(row.provider, row.account_email))


def _appointment(row: Appointment) -> AppointmentState:
    return _snapshot(AppointmentState, row, links=tuple(_snapshot(LinkState, link) for link in row.links))


def _run(row: SyncRun) -> SyncRunState:
    return _snapshot(SyncRunState, row, counts=dict(row.counts or {}))


def find_user(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email.strip().lower())).first()


def load_rep_state(session: Session, user: User, now: datetime) -> RepState:
    """The rep's connections, recent appointments with their event links, and recent sync runs."""
    connections = session.scalars(
        select(CalendarConnection)
        .where(CalendarConnection.user_id == user.id)
        .order_by(CalendarConnection.id)
    ).all()
    appointments = session.scalars(
        select(Appointment)
        .where(
            Appointment.user_id == user.id,
            Appointment.start >= now - APPOINTMENTS_BACK,
            Appointment.start <= now + APPOINTMENTS_AHEAD,
        )
        .options(selectinload(Appointment.links))
        .order_by(Appointment.start)
    ).all()
    runs: list[SyncRun] = []
    for connection in connections:
        runs.extend(
            session.scalars(
                select(SyncRun)
                .where(SyncRun.connection_id == connection.id)
                .order_by(SyncRun.started_at.desc())
                .limit(SYNC_RUNS_PER_CONNECTION)
            ).all()
        )
    runs.sort(key=lambda run: run.started_at, reverse=True)
    holds = session.scalars(
        select(CancellationHold)
        .where(CancellationHold.user_id == user.id, CancellationHold.status == "open")
        .order_by(CancellationHold.id)
    ).all()
    return RepState(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        slack_user_id=user.slack_user_id,
        connections=tuple(_connection(row) for row in connections),
        appointments=tuple(_appointment(row) for row in appointments),
        sync_runs=tuple(_run(row) for row in runs),
        holds=tuple(
            _snapshot(
                HoldState,
                row,
                appointment_ids=tuple(row.appointment_ids or ()),
                source=str((row.detail or {}).get("source", "")),
            )
            for row in holds
        ),
    )


def evidence_time(value: datetime | None) -> Any:
    """A datetime as evidence (ISO 8601, UTC) — JSON-safe."""
    return value.isoformat() if value else None
