"""The database side of the fixes beyond Reconnect: choose the selected calendar, turn a connection
off (and back on), and the agent's duplicate clean-up. Codes, never words; nothing here talks to a
provider or to Slack (`calsync.flows.fixes` does).

Every change is written in one transaction with its audit entry (`AuditEntry`: who, whom, what —
the old and new state in `detail`, so it can be undone — and the result). A refusal is audited too.
None of these ever cancels an appointment:

- choosing a calendar keeps the events already synced where they are (their links keep their
  calendar); new appointments go to the chosen one;
- turning a connection off keeps its events and its grant (so it can be turned back on);
- the duplicate clean-up marks each copy it will remove as deleted by us *before* the provider is
  asked to delete it, so the sync engine reads the deletion as ours (a link in state `deleted`),
  never as "deleted in calendar → cancel". It removes only copies of appointments whose kept
  connection holds a synced event of their own, so exactly one event per appointment stays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from calsync.db import transaction
from calsync.syncbackend.crypto import TokenCipher
from calsync.syncbackend.models import (
    AuditEntry,
    CalendarConnection,
    EventLink,
    MissingTokenError,
    User,
)
from calsync.syncbackend.providers.base import Authorization

# The audit actions (README, *Fixes beyond Reconnect*).
CHOOSE_CALENDAR = "fix.choose_calendar"
TURN_OFF = "fix.turn_off"
TURN_ON = "fix.turn_on"
CLEAN_DUPLICATES = "fix.clean_duplicates"
TURNED_OFF = "turned_off"  # the status_code of a connection a rep turned off (tokens kept)


class Refused(Exception):
    """A fix that is not made; `reason` is a stable code (`not_owner`, `gone`, `inactive`, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ConnectionFacts:
    """A connection as a fix needs it: plain values and its decrypted grant (None: no tokens)."""

    id: int
    user_id: int
    provider: str
    account_email: str
    active: bool
    status: str
    status_code: str | None
    calendar_id: str | None
    calendar_name: str | None
    auth: Authorization | None

    @classmethod
    def of(cls, connection: CalendarConnection, cipher: TokenCipher) -> ConnectionFacts:
        try:
            auth: Authorization | None = connection.authorization(cipher)
        except MissingTokenError:
            auth = None
        return cls(
            id=connection.id,
            user_id=connection.user_id,
            provider=connection.provider,
            account_email=connection.account_email,
            active=connection.active,
            status=connection.status,
            status_code=connection.status_code,
            calendar_id=connection.selected_calendar_id,
            calendar_name=connection.selected_calendar_name,
            auth=auth,
        )


@dataclass(frozen=True)
class Copy:
    """One calendar copy the clean-up removes: the extra connection's event of an appointment whose
    kept connection holds an event of its own."""

    link_id: int
    appointment_id: str
    title: str
    start: datetime
    connection_id: int
    provider: str
    account_email: str
    calendar_id: str
    event_id: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "appointment": self.appointment_id,
            "title": self.title,
            "start": self.start.isoformat(),
            "connection": self.connection_id,
            "provider": self.provider,
            "account": self.account_email,
            "calendar": self.calendar_id,
            "event": self.event_id,
        }


@dataclass(frozen=True)
class CleanupPlan:
    """What the duplicate clean-up would do for one rep: the connection kept, the copies removed and
    the extra connections turned off (their grants kept)."""

    user_id: int
    email: str
    name: str
    kept: ConnectionFacts | None
    copies: tuple[Copy, ...]
    turn_off: tuple[ConnectionFacts, ...]
    extras: tuple[ConnectionFacts, ...]

    @property
    def empty(self) -> bool:
        return not self.copies


def deactivate(connection: CalendarConnection, reason: str, now: datetime) -> None:
    """Deactivate a connection and keep its grant (unlike a switch, which forgets it), so it can be
    turned back on; its events and links are left as they are."""
    connection.active = False
    connection.status = "disconnected"
    connection.status_code = TURNED_OFF
    connection.status_reason = reason[:500]
    connection.disconnected_at = now


def _connected_at(connection: CalendarConnection) -> tuple[datetime, int]:
    return (connection.authorized_at or connection.created_at, connection.id)


class FixStore:
    def __init__(
        self, sessions: sessionmaker[Session], cipher: TokenCipher, clock: Callable[[], datetime]
    ) -> None:
        self.sessions = sessions
        self.cipher = cipher
        self.clock = clock

    # -- reading --------------------------------------------------------------------------------

    def connection(self, user_id: int, connection_id: Any) -> ConnectionFacts:
        """The rep's connection `connection_id` (as a button carried it). Refused `gone` when there is
        no such connection, `not_owner` when it is someone else's."""
        try:
            wanted = int(connection_id)
        except (TypeError, ValueError):
            raise Refused("gone") from None
        with self.sessions() as session:
            connection = session.get(CalendarConnection, wanted)
            if connection is None:
                raise Refused("gone")
            if connection.user_id != user_id:
                raise Refused("not_owner")
            return ConnectionFacts.of(connection, self.cipher)

    def active_connections(self, user_id: int) -> list[ConnectionFacts]:
        """The rep's active connections, oldest first."""
        with self.sessions() as session:
            found = session.scalars(
                select(CalendarConnection).where(
                    CalendarConnection.user_id == user_id, CalendarConnection.active.is_(True)
                )
            ).all()
            return [ConnectionFacts.of(c, self.cipher) for c in sorted(found, key=_connected_at)]

    def user_id_of(self, email: str) -> int | None:
        with self.sessions() as session:
            return session.scalars(select(User.id).where(User.email == email.strip().lower())).first()

    # -- the audit --------------------------------------------------------------------------------

    def audit(
        self, *, actor: str, action: str, subject_user_id: int | None, detail: dict[str, Any], result: str
    ) -> None:
        with transaction(self.sessions) as session:
            self._audit(session, actor, action, subject_user_id, detail, result)

    def _audit(
        self,
        session: Session,
        actor: str,
        action: str,
        subject_user_id: int | None,
        detail: dict[str, Any],
        result: str,
    ) -> int:
        entry = AuditEntry(
            at=self.clock(),
            actor=actor,
            action=action,
            subject_user_id=subject_user_id,
            detail=detail,
            result=result[:200],
        )
        session.add(entry)
        session.flush()
        return entry.id

    def store_tokens(self, connection_id: int, auth: Authorization | None) -> None:
        """Keep tokens a provider refreshed while a fix used them (Microsoft rotates them)."""
        if auth is None or not auth.refreshed:
            return
        with transaction(self.sessions) as session:
            connection = session.get(CalendarConnection, connection_id)
            if connection is not None:
                connection.store_authorization(self.cipher, auth)
                connection.last_refreshed_at = self.clock()

    # -- choose the selected calendar ---------------------------------------------------------------

    def choose_calendar(
        self, user_id: int, connection_id: int, calendar_id: str, name: str, *, actor: str, undo: bool
    ) -> tuple[str | None, str | None, int]:
        """Select `calendar_id` on the rep's active connection; (the old id, the old name, the audit
        id). The read cursor belonged to the old calendar, and a cycle is due at once. The events
        already synced keep their calendar (their links), so nothing moves and nothing is deleted."""
        with transaction(self.sessions) as session:
            connection = session.get(CalendarConnection, connection_id, with_for_update=True)
            if connection is None or connection.user_id != user_id:
                raise Refused("gone")
            if not connection.active or connection.status != "connected":
                raise Refused("inactive")
            old_id, old_name = connection.selected_calendar_id, connection.selected_calendar_name
            if old_id == calendar_id:
                raise Refused("already_selected")
            connection.selected_calendar_id = calendar_id
            connection.selected_calendar_name = name
            connection.sync_cursor = None
            connection.next_sync_at = None
            entry = self._audit(
                session,
                actor,
                CHOOSE_CALENDAR,
                user_id,
                {
                    "connection": connection_id,
                    "provider": connection.provider,
                    "from": {"id": old_id, "name": old_name},
                    "to": {"id": calendar_id, "name": name},
                    "undo": undo,
                },
                "undone" if undo else "chosen",
            )
            return old_id, old_name, entry

    # -- turn a connection off, and back on -------------------------------------------------------

    def turn_off(self, user_id: int, connection_id: int, *, actor: str, reason: str) -> ConnectionFacts:
        """Deactivate one of the rep's active connections, keeping its grant and every event it
        synced; refused `already_off` / `only_one` (the last active connection is Disconnect's)."""
        with transaction(self.sessions) as session:
            user = session.get(User, user_id, with_for_update=True)
            connection = session.get(CalendarConnection, connection_id)
            if user is None or connection is None or connection.user_id != user_id:
                raise Refused("gone")
            if not connection.active:
                raise Refused("already_off")
            active = [c for c in user.connections if c.active]
            if len(active) < 2:
                raise Refused("only_one")
            deactivate(connection, reason, self.clock())
            others = [c for c in active if c.id != connection_id]
            self._audit(
                session,
                actor,
                TURN_OFF,
                user_id,
                {
                    "connection": connection_id,
                    "provider": connection.provider,
                    "account": connection.account_email,
                    "still_active": [c.id for c in others],
                    "events_deleted": 0,
                },
                "turned_off",
            )
            session.flush()
            return ConnectionFacts.of(connection, self.cipher)

    def turn_on(self, user_id: int, connection_id: int, *, actor: str) -> ConnectionFacts:
        """Reactivate a connection the rep turned off (its grant checked by the caller first)."""
        try:
            with transaction(self.sessions) as session:
                connection = session.get(CalendarConnection, connection_id, with_for_update=True)
                if connection is None or connection.user_id != user_id:
                    raise Refused("gone")
                if connection.active:
                    raise Refused("already_on")
                if connection.status_code != TURNED_OFF or not connection.has_tokens:
                    raise Refused("not_turned_off")
                connection.active = True
                connection.status = "connected"
                connection.status_code = None
                connection.status_reason = None
                connection.disconnected_at = None
                connection.next_sync_at = None
                connection.sync_failures = 0
                self._audit(
                    session,
                    actor,
                    TURN_ON,
                    user_id,
                    {"connection": connection_id, "provider": connection.provider},
                    "turned_on",
                )
                session.flush()
                return ConnectionFacts.of(connection, self.cipher)
        except IntegrityError:  # the same account is active on another connection since
            raise Refused("already_connected") from None

    # -- the duplicate clean-up ------------------------------------------------------------------

    def cleanup_plan(self, email: str) -> CleanupPlan | None:
        """What the clean-up would do for the rep `email` (None: no such user). The kept connection
        is the newest active one; the extras are the other active ones and those turned off from
        Slack (their grant is kept, so their copies can still be removed)."""
        with self.sessions() as session:
            user = session.scalars(
                select(User)
                .where(User.email == email.strip().lower())
                .options(selectinload(User.connections).selectinload(CalendarConnection.links))
            ).first()
            if user is None:
                return None
            active = sorted((c for c in user.connections if c.active), key=_connected_at)
            kept = active[-1] if active else None
            extras = [
                c
                for c in user.connections
                if c is not kept and c.has_tokens and (c.active or c.status_code == TURNED_OFF)
            ]
            copies: list[Copy] = []
            if kept is not None:
                held = {
                    link.appointment_id: link
                    for link in kept.links
                    if link.event_id and link.state == "synced" and link.appointment.status == "booked"
                }
                for extra in extras:
                    for link in sorted(extra.links, key=lambda item: item.id):
                        mine = held.get(link.appointment_id)
                        if mine is None or not link.event_id or link.state not in ("synced", "deleted"):
                            continue
                        if link.appointment.status != "booked":
                            continue
                        same_event = (extra.provider, link.calendar_id, link.event_id) == (
                            kept.provider,
                            mine.calendar_id,
                            mine.event_id,
                        )
                        if same_event:  # one event seen through two connections: nothing to remove
                            continue
                        copies.append(
                            Copy(
                                link_id=link.id,
                                appointment_id=link.appointment_id,
                                title=link.appointment.title,
                                start=link.appointment.start,
                                connection_id=extra.id,
                                provider=extra.provider,
                                account_email=extra.account_email,
                                calendar_id=link.calendar_id,
                                event_id=link.event_id,
                            )
                        )
            copies.sort(key=lambda copy: (copy.start, copy.appointment_id, copy.connection_id))
            return CleanupPlan(
                user_id=user.id,
                email=user.email,
                name=user.name,
                kept=ConnectionFacts.of(kept, self.cipher) if kept is not None else None,
                copies=tuple(copies),
                turn_off=tuple(ConnectionFacts.of(c, self.cipher) for c in extras if c.active),
                extras=tuple(ConnectionFacts.of(c, self.cipher) for c in extras),
            )

    def mark_copies(self, plan: CleanupPlan, *, actor: str) -> None:
        """Before any provider call: each copy's link is marked deleted by us (so a later read of its
        deletion cancels nothing and the push never puts it back) and the extra active connections
        are turned off (their grants kept), in one transaction."""
        now = self.clock()
        with transaction(self.sessions) as session:
            for copy in plan.copies:
                link = session.get(EventLink, copy.link_id)
                if link is not None:
                    link.state = "deleted"
                    link.last_pushed_at = now
            for extra in plan.turn_off:
                connection = session.get(CalendarConnection, extra.id)
                if connection is not None and connection.active:
                    deactivate(connection, "turned off by the duplicate clean-up", now)

    def record_removed(
        self,
        plan: CleanupPlan,
        removed: Sequence[Copy],
        failed: Sequence[tuple[Copy, str]],
        *,
        actor: str,
    ) -> int:
        """After the provider calls: removed copies lose their event id (gone), and the audit entry."""
        with transaction(self.sessions) as session:
            for copy in removed:
                link = session.get(EventLink, copy.link_id)
                if link is not None and link.event_id == copy.event_id:
                    link.event_id = None
            return self._audit(
                session,
                actor,
                CLEAN_DUPLICATES,
                plan.user_id,
                {
                    "dry_run": False,
                    "kept_connection": plan.kept.id if plan.kept else None,
                    "removed": [copy.as_dict() for copy in removed],
                    "failed": [{**copy.as_dict(), "error": error} for copy, error in failed],
                    "turned_off": [c.id for c in plan.turn_off],
                    "appointments_cancelled": 0,
                },
                "removed" if not failed else ("partly_removed" if removed else "failed"),
            )
