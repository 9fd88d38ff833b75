"""A read-only snapshot of one rep's sync state in the backend, as plain frozen values.

Checks read this, never the ORM: they run concurrently on the event loop, and a snapshot taken in
one short transaction is consistent and cannot lazy-load behind their back. It is read with
SQLAlchemy Core statements built once (every answer reads one): the ORM's identity map, its
loading and building each statement cost several times what the database takes to run them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from calsync.db import AnyRow, table_of
from calsync.render import labels
from calsync.syncbackend.incidents import RepIncident, incidents_of_rep
from calsync.syncbackend.models import (
    Appointment,
    CalendarConnection,
    CancellationHold,
    EventLink,
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
    incidents: tuple[RepIncident, ...] = ()  # open incidents the rep is in (syncbackend/incidents.py)

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


@cache
def _field_names(state: type) -> tuple[str, ...]:
    """The fields of a state class (`dataclasses.fields` builds them again on every call; a snapshot
    makes dozens per answer)."""
    return tuple(f.name for f in fields(state))


def _snapshot(state: type[_State], row: AnyRow, **derived: Any) -> _State:
    """The frozen `state` of a row: each field read from the row's column of the same name, except
    the `derived` ones."""
    values = {name: getattr(row, name) for name in _field_names(cast(type, state)) if name not in derived}
    return state(**values, **derived)


def _connection(row: AnyRow) -> ConnectionState:
    return _snapshot(ConnectionState, row, label=labels.connection_label(row.provider, row.account_email))


def _appointment(row: AnyRow, links: Sequence[AnyRow]) -> AppointmentState:
    return _snapshot(AppointmentState, row, links=tuple(_snapshot(LinkState, link) for link in links))


def _run(row: AnyRow) -> SyncRunState:
    return _snapshot(SyncRunState, row, counts=dict(row.counts or {}))


def _hold(row: AnyRow) -> HoldState:
    return _snapshot(
        HoldState,
        row,
        appointment_ids=tuple(row.appointment_ids or ()),
        source=str((row.detail or {}).get("source", "")),
    )


_USERS = table_of(User)
_CONNECTIONS = table_of(CalendarConnection)
_APPOINTMENTS = table_of(Appointment)
_LINKS = table_of(EventLink)
_RUNS = table_of(SyncRun)
_HOLDS = table_of(CancellationHold)
_USER_BY_EMAIL = select(_USERS).where(_USERS.c.email == bindparam("email"))
_CONNECTIONS_OF = (
    select(_CONNECTIONS).where(_CONNECTIONS.c.user_id == bindparam("user_id")).order_by(_CONNECTIONS.c.id)
)
_APPOINTMENTS_OF = (
    select(_APPOINTMENTS)
    .where(
        _APPOINTMENTS.c.user_id == bindparam("user_id"),
        _APPOINTMENTS.c.start >= bindparam("since"),
        _APPOINTMENTS.c.start <= bindparam("until"),
    )
    .order_by(_APPOINTMENTS.c.start)
)
_LINKS_OF = select(_LINKS).where(_LINKS.c.appointment_id.in_(bindparam("ids", expanding=True)))
_RUNS_OF = (
    select(_RUNS)
    .where(_RUNS.c.connection_id == bindparam("connection_id"))
    .order_by(_RUNS.c.started_at.desc())
    .limit(SYNC_RUNS_PER_CONNECTION)
)
_OPEN_HOLDS_OF = (
    select(_HOLDS)
    .where(_HOLDS.c.user_id == bindparam("user_id"), _HOLDS.c.status == "open")
    .order_by(_HOLDS.c.id)
)


def find_user(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email.strip().lower())).first()


def load_rep_state(session: Session, user: User, now: datetime) -> RepState:
    """The rep's connections, recent appointments with their event links, and recent sync runs."""
    return _rep_state(session.connection(), user, now)[0]


def read_rep(connection: Connection, email: str, now: datetime) -> tuple[RepState, Sequence[AnyRow]] | None:
    """The rep with this email (`load_rep_state`) and the rows of their connections, which hold
    their tokens; None when no user has this email."""
    user = connection.execute(_USER_BY_EMAIL, {"email": email.strip().lower()}).first()
    return _rep_state(connection, user, now) if user is not None else None


def _rep_state(
    connection: Connection, user: User | AnyRow, now: datetime
) -> tuple[RepState, Sequence[AnyRow]]:
    mine = {"user_id": user.id}
    connections = connection.execute(_CONNECTIONS_OF, mine).all()
    appointments = connection.execute(
        _APPOINTMENTS_OF, {**mine, "since": now - APPOINTMENTS_BACK, "until": now + APPOINTMENTS_AHEAD}
    ).all()
    links: dict[str, list[AnyRow]] = defaultdict(list)
    if appointments:
        for link in connection.execute(_LINKS_OF, {"ids": [row.id for row in appointments]}):
            links[link.appointment_id].append(link)
    runs: list[AnyRow] = []
    for row in connections:
        runs.extend(connection.execute(_RUNS_OF, {"connection_id": row.id}))
    runs.sort(key=lambda run: run.started_at, reverse=True)
    holds = connection.execute(_OPEN_HOLDS_OF, mine)
    rep = RepState(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        slack_user_id=user.slack_user_id,
        connections=tuple(_connection(row) for row in connections),
        appointments=tuple(_appointment(row, links[row.id]) for row in appointments),
        sync_runs=tuple(_run(row) for row in runs),
        holds=tuple(_hold(row) for row in holds),
        incidents=tuple(incidents_of_rep(connection, user.id)),
    )
    return rep, connections


def evidence_time(value: datetime | None) -> Any:
    """A datetime as evidence (ISO 8601, UTC) — JSON-safe."""
    return value.isoformat() if value else None
