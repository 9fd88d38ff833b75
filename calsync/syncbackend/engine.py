"""The sync engine: what the help center promises, on the same provider clients the diagnostics use.

One cycle of one connection, under its lease (see `schedule.py`):

1. Pull: read what changed in the selected calendar since the stored cursor (Google syncToken,
   Graph delta link; an expired cursor means a full read). For our events (they carry the
   appointment id): a new time/date, title or description flows back to the appointment; a deleted
   event cancels it with the reason "deleted in calendar". Events added directly in the calendar
   create nothing. Where SalesPartner changed the appointment after the calendar did, SalesPartner
   wins and the push puts it back.
2. Push: appointments booked, changed or cancelled in SalesPartner reach the calendar. Before an
   insert is sent, the link records the attempt (committed); an attempt without an event id is
   looked up by the appointment id before a new insert, so a crash or lost answer between the
   provider's insert and our commit never makes a second event. Graph also gets a transactionId.
   After a provider switch, appointments already synced to the old calendar stay there; new ones
   go to the new calendar.
3. Both write a `SyncRun` with counts and, on failure, the error code the diagnostics explain. A
   revoked or expired grant marks the connection disconnected with its cause and tells the rep once
   (a DM with a Reconnect button). A rate limit, outage or timeout ends the cycle early and moves
   the next one back (never sooner than Retry-After).

The health sweep refreshes every connected grant on a schedule, so a broken connection is found
(and the rep told) before the rep notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from calsync.db import transaction
from calsync.syncbackend import holds
from calsync.syncbackend.appointments import DELETED_IN_CALENDAR, cancel_deleted_in_calendar
from calsync.syncbackend.crypto import TokenCipher, TokenDecryptError
from calsync.syncbackend.models import (
    Appointment,
    CalendarConnection,
    EventLink,
    MissingTokenError,
    SyncRun,
    User,
)
from calsync.syncbackend.providers.base import (
    Authorization,
    CalendarProvider,
    Changes,
    Event,
    EventDraft,
    GrantError,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from calsync.syncbackend.schedule import (
    SyncPolicy,
    claim,
    claim_due,
    claim_health_batch,
    new_worker_id,
    release,
)

log = logging.getLogger(__name__)

__all__ = ["DELETED_IN_CALENDAR", "CycleResult", "SyncEngine"]
# How far around an appointment a lost insert is looked for (it may have moved since).
LOOKUP_SPAN = timedelta(days=366)

CycleStatus = Literal["ok", "error", "busy", "skipped", "held"]
# How many linked events a full read lacks are looked up at once (Graph allows 4 per mailbox).
LOOKUPS_AT_ONCE = 4

# -- what a cycle reports ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleResult:
    connection_id: int
    provider: str
    account_email: str
    status: CycleStatus
    pulled: dict[str, int] = field(default_factory=dict)
    pushed: dict[str, int] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    next_sync_at: datetime | None = None
    pushed_titles: tuple[str, ...] = ()  # appointments this cycle put on the calendar

    def as_dict(self) -> dict[str, object]:
        return {
            "connection_id": self.connection_id,
            "provider": self.provider,
            "account": self.account_email,
            "status": self.status,
            "pulled": dict(self.pulled),
            "pushed": dict(self.pushed),
            "error_code": self.error_code,
            "error_message": self.error_message,
            "next_sync_at": self.next_sync_at.isoformat() if self.next_sync_at else None,
        }


@dataclass(frozen=True)
class SweepResult:
    checked: int = 0
    ok: int = 0
    disconnected: int = 0
    unreachable: int = 0  # rate limited, down or timed out: checked again next sweep
    busy: int = 0  # leased by a running cycle, which checks the grant itself
    seconds: float = 0.0


@dataclass(frozen=True)
class Disconnection:
    """A grant that just stopped working: what the rep is told."""

    connection_id: int
    user_email: str
    user_name: str
    slack_user_id: str | None
    provider: str
    account_email: str
    cause: str
    reason: str


class DisconnectNotifier(Protocol):
    async def __call__(self, disconnection: Disconnection) -> bool:
        """Tell the rep; True when the message went out."""
        ...


class HoldNotifier(Protocol):
    async def __call__(self, hold: holds.Hold) -> bool:
        """Ask the support agents to decide on held cancellations; True when the message went out."""
        ...


def error_code(error: BaseException) -> str:
    """The `SyncRun.error_code` of a failure: the codes the diagnostics explain."""
    if isinstance(error, GrantError | MissingTokenError):
        return "invalid_grant"
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, ProviderTimeout | TimeoutError):
        return "timeout"
    if isinstance(error, ProviderUnavailable):
        return "provider_unavailable"
    if isinstance(error, MalformedResponse):
        return "malformed_response"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, PermissionDenied):
        return "permission_denied"
    if isinstance(error, TokenDecryptError):
        return "token_unreadable"
    return "internal_error"


def error_message(error: BaseException) -> str:
    if isinstance(error, ProviderError):
        return error.message
    if isinstance(error, TimeoutError):
        return "the cycle ran out of time"
    if isinstance(error, MissingTokenError):
        return "no stored authorization: the calendar was never authorized or was disconnected"
    if isinstance(error, TokenDecryptError):
        return "the stored authorization cannot be decrypted with the configured key"
    return f"{type(error).__name__}"  # never str(error): it could carry anything


# -- a snapshot of one connection, read under its lease ---------------------------------------------


@dataclass
class _Target:
    connection_id: int
    user_id: int
    provider: str
    account_email: str
    calendar_id: str
    cursor: str | None
    auth: Authorization

    @classmethod
    def of(cls, connection: CalendarConnection, auth: Authorization) -> _Target:
        return cls(
            connection_id=connection.id,
            user_id=connection.user_id,
            provider=connection.provider,
            account_email=connection.account_email,
            calendar_id=connection.selected_calendar_id or "",
            cursor=connection.sync_cursor,
            auth=auth,
        )


@dataclass
class _Run:
    """A sync run in progress; written once finished."""

    direction: Literal["push", "pull"]
    started_at: datetime
    counts: dict[str, int] = field(default_factory=dict)
    titles: list[str] = field(default_factory=list)  # appointments put on the calendar

    def add(self, key: str, amount: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + amount


class _StopCycle(Exception):
    """A provider failure that ends the cycle (grant, rate limit, outage, calendar gone)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


def _draft(appointment: Appointment) -> EventDraft:
    return EventDraft(
        title=appointment.title,
        description=appointment.description,
        start=appointment.start,
        end=appointment.end,
        appointment_id=appointment.id,
        time_zone=appointment.time_zone,
    )


def _differences(appointment: Appointment, event: Event) -> list[str]:
    """What the calendar has that the appointment does not: "time", "title", "description"."""
    changed = []
    if event.start != appointment.start or event.end != appointment.end:
        changed.append("time")
    if event.title != appointment.title:
        changed.append("title")
    if (event.description or "") != (appointment.description or ""):
        changed.append("description")
    return changed


def _held_revision(appointment: Appointment, event: Event) -> int:
    """The revision a found event holds: the current one when it matches, else none (push it)."""
    return 0 if _differences(appointment, event) else appointment.revision


_Claimed = TypeVar("_Claimed")


async def _deliver(
    claimed: list[_Claimed],
    send: Callable[[_Claimed], Awaitable[bool]],
    release: Callable[[_Claimed], None],
    what: str,
) -> int:
    """Send each claimed message; a message that fails (or raises) is released to be tried again.
    How many went out."""
    sent = 0
    for item in claimed:
        try:
            ok = await send(item)
        except Exception:
            log.exception("sending %s failed", what)
            ok = False
        if ok:
            sent += 1
        else:
            await asyncio.to_thread(release, item)
    return sent


# -- the engine ------------------------------------------------------------------------------------------


class SyncEngine:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        providers: Mapping[str, CalendarProvider],
        cipher: TokenCipher,
        clock: Callable[[], datetime],
        policy: SyncPolicy | None = None,
        notify: DisconnectNotifier | None = None,
        notify_hold: HoldNotifier | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        max_concurrent_cycles: int = 16,
    ) -> None:
        self.sessions = sessions
        self.providers = providers
        self.cipher = cipher
        self.clock = clock
        self.policy = policy or SyncPolicy()
        self.notify = notify
        self.notify_hold = notify_hold
        self.worker_id = worker_id or new_worker_id()
        self.rng = rng or random.Random()
        self.max_concurrent_cycles = max(1, max_concurrent_cycles)

    # -- entry points -------------------------------------------------------------------------------

    async def sync_user(self, email: str) -> list[CycleResult]:
        """One cycle now for each of the rep's active connections ("Sync now", `calsync sync`)."""
        ids = await asyncio.to_thread(self._active_connection_ids, email)
        return list(await asyncio.gather(*(self.sync_connection(cid) for cid in ids)))

    async def sync_connection(self, connection_id: int) -> CycleResult:
        """One cycle of one connection, unless another worker is running one (then status "busy")."""
        now = self.clock()
        claimed = await asyncio.to_thread(self._claim, connection_id, now)
        if not claimed:
            return await asyncio.to_thread(self._describe, connection_id, "busy")
        try:
            return await self._cycle_under_lease(connection_id)
        finally:
            await asyncio.to_thread(self._release, [connection_id])

    async def run_due(self, limit: int = 100) -> list[CycleResult]:
        """Every connection whose next cycle is due (up to `limit`), a bounded number at a time."""
        now = self.clock()
        ids = await asyncio.to_thread(self._claim_due, now, limit)
        slots = asyncio.Semaphore(self.max_concurrent_cycles)

        async def one(connection_id: int) -> CycleResult:
            async with slots:
                try:
                    return await self._cycle_under_lease(connection_id)
                finally:
                    await asyncio.to_thread(self._release, [connection_id])

        return list(await asyncio.gather(*(one(cid) for cid in ids)))

    async def _cycle_under_lease(self, connection_id: int) -> CycleResult:
        try:
            async with asyncio.timeout(self.policy.cycle_timeout):
                return await self._cycle(connection_id)
        except TimeoutError as error:
            return await asyncio.to_thread(self._after_failure, connection_id, error)

    # -- one cycle ------------------------------------------------------------------------------------

    async def _cycle(self, connection_id: int) -> CycleResult:
        target = await asyncio.to_thread(self._load_target, connection_id)
        if isinstance(target, CycleResult):
            return target
        provider = self.providers.get(target.provider)
        if provider is None:
            return await asyncio.to_thread(
                self._describe, connection_id, "skipped", "provider_not_configured"
            )
        pull = _Run("pull", self.clock())
        push = _Run("push", self.clock())
        current = pull
        try:
            held = await self._pull(provider, target, pull)
            if held is not None:
                # Many cancellations at once: none made, an agent asked; the push waits a cycle.
                await asyncio.to_thread(self._finish_run, target, pull, None, held)
                return await self._held(target, pull, held)
            await asyncio.to_thread(self._finish_run, target, pull, None)
            current = push
            await self._push(provider, target, push)
            await asyncio.to_thread(self._finish_run, target, push, None)
        except _StopCycle as stop:
            await asyncio.to_thread(self._finish_run, target, current, stop.error)
            return await self._failed(target, stop.error)
        finally:
            await asyncio.to_thread(self._store_tokens, target)
        return await asyncio.to_thread(self._after_success, target, pull, push)

    # -- pull -----------------------------------------------------------------------------------------

    async def _pull(self, provider: CalendarProvider, target: _Target, run: _Run) -> int | None:
        """Read the calendar's changes and apply them; the id of a hold when the read would have
        cancelled too many appointments at once (then none were cancelled)."""
        try:
            changes = await provider.changes(target.auth, target.calendar_id, target.cursor)
            events = list(changes.events)
            if changes.full_read:
                run.add("full_read")
                events += await self._reconcile(provider, target, changes)
        except ProviderError as error:
            raise _StopCycle(error) from error  # nothing applied: the old cursor reads it all again
        held = await asyncio.to_thread(self._apply_changes, target, changes, events, run)
        target.cursor = changes.cursor
        return held

    async def _reconcile(self, provider: CalendarProvider, target: _Target, changes: Changes) -> list[Event]:
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
        self, target: _Target, listed: set[str], window: tuple[datetime, datetime] | None
    ) -> list[str]:
        """Our events on this calendar that should have been listed and were not."""
        with self.sessions() as session:
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

    def _apply_changes(self, target: _Target, changes: Changes, events: list[Event], run: _Run) -> int | None:
        now = self.clock()
        with transaction(self.sessions) as session:
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
        target: _Target,
        changes: Changes,
        deleted: list[EventLink],
        now: datetime,
        run: _Run,
    ) -> int | None:
        """A hold instead of the cancellations when one read deletes too many upcoming appointments."""
        soon = sum(link.appointment.end > now for link in deleted)
        if not soon:
            return None
        upcoming = holds.upcoming_on_calendar(session, target.connection_id, now)
        if not self.policy.holds_cancellations(soon, upcoming):
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
        self, session: Session, target: _Target, event: Event, by_appointment: dict[str, EventLink]
    ) -> EventLink | None:
        """Our event without a recorded id (its insert's answer was lost): record it, once."""
        link = by_appointment.get(event.appointment_id or "")
        if link is not None:
            if link.event_id is None and event.status != "cancelled":
                link.event_id = event.id
                link.state = "synced"
                link.pushed_revision = _held_revision(link.appointment, event)
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
            pushed_revision=_held_revision(appointment, event),
        )
        session.add(link)
        link.appointment = appointment
        by_appointment[appointment.id] = link
        return link

    def _pull_one(self, link: EventLink, event: Event, now: datetime, run: _Run) -> None:
        appointment = link.appointment
        if event.status == "cancelled":
            if link.state == "deleted":
                return  # we deleted it (cancelled in SalesPartner), or already counted
            if cancel_deleted_in_calendar(link, now):
                run.add("cancelled")
            return
        if link.state == "deleted" or appointment.status == "cancelled":
            return  # the push deletes it
        changed = _differences(appointment, event)
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

    # -- push -----------------------------------------------------------------------------------------

    async def _push(self, provider: CalendarProvider, target: _Target, run: _Run) -> None:
        work = await asyncio.to_thread(self._push_work, target)
        for appointment_id in work:
            await self._push_one(provider, target, appointment_id, run)

    def _push_work(self, target: _Target) -> list[str]:
        """Appointments whose calendar copy (on this connection) is missing or behind, oldest first."""
        now = self.clock()
        with self.sessions() as session:
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
        self, provider: CalendarProvider, target: _Target, appointment_id: str, run: _Run
    ) -> None:
        snapshot = await asyncio.to_thread(self._push_snapshot, target, appointment_id)
        if snapshot is None:
            return
        appointment, link = snapshot
        auth, calendar = target.auth, target.calendar_id
        draft = _draft(appointment)
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
                    # Gone from the calendar before we pulled its deletion: the same rule applies.
                    await asyncio.to_thread(self._record_vanished, target, appointment)
                    run.add("cancelled")
                    return
        except (NotFound, PermissionDenied) as error:
            await asyncio.to_thread(self._record_link_error, target, appointment, error)
            run.add("failed")
            raise _StopCycle(error) from error  # the calendar itself is gone or read-only
        except ProviderError as error:
            await asyncio.to_thread(self._record_link_error, target, appointment, error)
            run.add("failed")
            raise _StopCycle(error) from error
        await asyncio.to_thread(self._record_pushed, target, appointment, event)

    async def _look_up(
        self, provider: CalendarProvider, target: _Target, appointment: Appointment
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
        self, target: _Target, appointment_id: str
    ) -> tuple[Appointment, EventLink | None] | None:
        with self.sessions() as session:
            appointment = session.get(Appointment, appointment_id)
            if appointment is None:
                return None
            link = self._find_link(session, target, appointment_id)
            session.expunge_all()
            return appointment, link

    @staticmethod
    def _find_link(session: Session, target: _Target, appointment_id: str) -> EventLink | None:
        return session.scalars(
            select(EventLink).where(
                EventLink.appointment_id == appointment_id,
                EventLink.connection_id == target.connection_id,
            )
        ).first()

    def _link(self, session: Session, target: _Target, appointment_id: str) -> EventLink:
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

    def _record_attempt(self, target: _Target, appointment: Appointment) -> None:
        with transaction(self.sessions) as session:
            link = self._link(session, target, appointment.id)
            link.calendar_id = target.calendar_id
            link.insert_attempted_at = self.clock()
            link.state = "pending"

    def _record_pushed(self, target: _Target, appointment: Appointment, event: Event) -> None:
        now = self.clock()
        with transaction(self.sessions) as session:
            link = self._link(session, target, appointment.id)
            link.calendar_id = target.calendar_id
            link.event_id = event.id
            link.state = "synced"
            link.error = None
            link.pushed_revision = appointment.revision
            link.provider_updated = event.updated
            link.last_pushed_at = now

    def _record_deleted(self, target: _Target, appointment: Appointment) -> None:
        with transaction(self.sessions) as session:
            link = self._link(session, target, appointment.id)
            link.state = "deleted"
            link.error = None
            link.pushed_revision = appointment.revision
            link.last_pushed_at = self.clock()

    def _record_vanished(self, target: _Target, appointment: Appointment) -> None:
        with transaction(self.sessions) as session:
            link = self._link(session, target, appointment.id)
            cancel_deleted_in_calendar(link, self.clock())

    def _record_link_error(self, target: _Target, appointment: Appointment, error: ProviderError) -> None:
        with transaction(self.sessions) as session:
            link = self._link(session, target, appointment.id)
            if link.event_id is None:
                link.state = "failed" if not error.transient else "pending"
            link.error = f"{error_code(error)}: {error.message}"[:500]

    # -- bookkeeping ----------------------------------------------------------------------------------

    def _claim(self, connection_id: int, now: datetime) -> bool:
        with transaction(self.sessions) as session:
            return claim(session, connection_id, self.worker_id, now, self.policy.lease)

    def _claim_due(self, now: datetime, limit: int) -> list[int]:
        with transaction(self.sessions) as session:
            return claim_due(session, self.worker_id, now, self.policy.lease, limit)

    def _release(self, connection_ids: list[int]) -> None:
        with transaction(self.sessions) as session:
            release(session, connection_ids, self.worker_id)

    def _active_connection_ids(self, email: str) -> list[int]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(CalendarConnection.id)
                    .join(User)
                    .where(User.email == email.strip().lower(), CalendarConnection.active.is_(True))
                    .order_by(CalendarConnection.id)
                )
            )

    def _describe(self, connection_id: int, status: CycleStatus, code: str | None = None) -> CycleResult:
        with self.sessions() as session:
            connection = session.get(CalendarConnection, connection_id)
            if connection is None:
                return CycleResult(connection_id, "", "", "skipped", error_code="no_such_connection")
            return CycleResult(
                connection_id,
                connection.provider,
                connection.account_email,
                status,
                error_code=code,
                next_sync_at=connection.next_sync_at,
            )

    def _load_target(self, connection_id: int) -> _Target | CycleResult:
        with self.sessions() as session:
            connection = session.get(CalendarConnection, connection_id)
            if connection is None:
                return CycleResult(connection_id, "", "", "skipped", error_code="no_such_connection")
            skip: str | None = None
            if not connection.active:
                skip = "inactive"
            elif connection.status != "connected":
                skip = "disconnected"
            elif not connection.selected_calendar_id:
                skip = "no_calendar_selected"
            if skip is not None:
                return CycleResult(
                    connection_id, connection.provider, connection.account_email, "skipped", error_code=skip
                )
            try:
                auth = connection.authorization(self.cipher)
            except (MissingTokenError, TokenDecryptError) as error:
                return self._write_failure_now(connection_id, error)
            return _Target.of(connection, auth)

    def _write_failure_now(self, connection_id: int, error: BaseException) -> CycleResult:
        now = self.clock()
        with transaction(self.sessions) as session:
            session.add(
                SyncRun(
                    connection_id=connection_id,
                    direction="pull",
                    started_at=now,
                    finished_at=now,
                    status="error",
                    error_code=error_code(error),
                    error_message=error_message(error),
                    counts={},
                )
            )
        return self._after_failure(connection_id, error)

    def _finish_run(
        self, target: _Target, run: _Run, error: BaseException | None, hold_id: int | None = None
    ) -> None:
        now = self.clock()
        status: Literal["ok", "error", "held"] = "ok"
        code = message = None
        if error is not None:
            status, code, message = "error", error_code(error), error_message(error)[:1000]
        elif hold_id is not None:
            held = run.counts.get("held", 0)
            status, code = "held", "cancellations_held"
            message = (
                f"{held} appointment{'s' if held != 1 else ''} deleted in the calendar at once: none "
                f"cancelled, a support agent was asked (hold {hold_id})"
            )
        with transaction(self.sessions) as session:
            session.add(
                SyncRun(
                    connection_id=target.connection_id,
                    direction=run.direction,
                    started_at=run.started_at,
                    finished_at=now,
                    status=status,
                    error_code=code,
                    error_message=message,
                    counts=dict(run.counts),
                )
            )

    def _store_tokens(self, target: _Target) -> None:
        """Persist a refreshed grant (Microsoft rotates refresh tokens) whatever the cycle's outcome."""
        if not target.auth.refreshed:
            return
        with transaction(self.sessions) as session:
            connection = session.get(CalendarConnection, target.connection_id)
            if connection is not None:
                connection.store_authorization(self.cipher, target.auth)
                connection.last_refreshed_at = self.clock()
        target.auth.refreshed = False

    def _after_success(self, target: _Target, pull: _Run, push: _Run) -> CycleResult:
        now = self.clock()
        with transaction(self.sessions) as session:
            connection = session.get(CalendarConnection, target.connection_id)
            assert connection is not None
            connection.sync_failures = 0
            connection.next_sync_at = self.policy.next_run(now, self.rng)
            return CycleResult(
                target.connection_id,
                target.provider,
                target.account_email,
                "ok",
                pulled=dict(pull.counts),
                pushed=dict(push.counts),
                next_sync_at=connection.next_sync_at,
                pushed_titles=tuple(push.titles),
            )

    async def _failed(self, target: _Target, error: BaseException) -> CycleResult:
        result = await asyncio.to_thread(self._after_failure, target.connection_id, error)
        if isinstance(error, GrantError):
            await self.notify_disconnections([target.connection_id])
        return result

    async def _held(self, target: _Target, pull: _Run, hold_id: int) -> CycleResult:
        result = await asyncio.to_thread(self._after_hold, target, pull)
        await self.notify_holds([hold_id])
        return result

    def _after_hold(self, target: _Target, pull: _Run) -> CycleResult:
        """Not a failure (no backoff): the next cycle runs as usual, leaving the held ones alone."""
        with transaction(self.sessions) as session:
            connection = session.get(CalendarConnection, target.connection_id)
            assert connection is not None
            connection.next_sync_at = self.policy.next_run(self.clock(), self.rng)
            return CycleResult(
                target.connection_id,
                target.provider,
                target.account_email,
                "held",
                pulled=dict(pull.counts),
                error_code="cancellations_held",
                next_sync_at=connection.next_sync_at,
            )

    def _after_failure(self, connection_id: int, error: BaseException) -> CycleResult:
        now = self.clock()
        with transaction(self.sessions) as session:
            connection = session.get(CalendarConnection, connection_id)
            if connection is None:
                return CycleResult(connection_id, "", "", "skipped", error_code="no_such_connection")
            connection.sync_failures += 1
            retry_after = error.retry_after if isinstance(error, RateLimited) else None
            connection.next_sync_at = self.policy.retry_at(
                now, connection.sync_failures, retry_after, self.rng
            )
            if isinstance(error, GrantError | MissingTokenError):
                self._mark_disconnected(connection, error, now)
            return CycleResult(
                connection_id,
                connection.provider,
                connection.account_email,
                "error",
                error_code=error_code(error),
                error_message=error_message(error),
                next_sync_at=connection.next_sync_at,
            )

    @staticmethod
    def _mark_disconnected(connection: CalendarConnection, error: BaseException, now: datetime) -> None:
        if connection.status == "disconnected":
            return
        connection.status = "disconnected"
        connection.status_code = str(error.cause) if isinstance(error, GrantError) else "no_token"
        connection.status_reason = error_message(error)[:500]
        connection.disconnected_at = now
        connection.disconnect_notified_at = None  # a new disconnection: the rep hears of it once

    # -- telling the rep -----------------------------------------------------------------------------

    async def notify_disconnections(self, connection_ids: Iterable[int] | None = None) -> int:
        """DM each rep whose connection was found disconnected and not told yet; how many were told.

        The claim (setting `disconnect_notified_at`) happens before the message, in one conditional
        UPDATE, so two workers never both send it; a message that fails is released to try again."""
        if self.notify is None:
            return 0
        pending = await asyncio.to_thread(
            self._claim_notifications, None if connection_ids is None else list(connection_ids)
        )
        return await _deliver(
            pending, self.notify, lambda d: self._unclaim_notification(d.connection_id), "a disconnection DM"
        )

    def _claim_notifications(self, connection_ids: list[int] | None) -> list[Disconnection]:
        now = self.clock()
        with transaction(self.sessions) as session:
            query = (
                select(CalendarConnection)
                .where(
                    CalendarConnection.active.is_(True),
                    CalendarConnection.status == "disconnected",
                    CalendarConnection.disconnect_notified_at.is_(None),
                )
                .options(selectinload(CalendarConnection.user))
                .order_by(CalendarConnection.id)
            )
            if connection_ids is not None:
                query = query.where(CalendarConnection.id.in_(connection_ids))
            found: list[Disconnection] = []
            for connection in session.scalars(query).all():
                claimed = session.execute(
                    update(CalendarConnection)
                    .where(
                        CalendarConnection.id == connection.id,
                        CalendarConnection.disconnect_notified_at.is_(None),
                    )
                    .values(disconnect_notified_at=now)
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) != 1:
                    continue
                found.append(
                    Disconnection(
                        connection_id=connection.id,
                        user_email=connection.user.email,
                        user_name=connection.user.name,
                        slack_user_id=connection.user.slack_user_id,
                        provider=connection.provider,
                        account_email=connection.account_email,
                        cause=connection.status_code or "unknown",
                        reason=connection.status_reason or "",
                    )
                )
            return found

    def _unclaim_notification(self, connection_id: int) -> None:
        with transaction(self.sessions) as session:
            session.execute(
                update(CalendarConnection)
                .where(CalendarConnection.id == connection_id)
                .values(disconnect_notified_at=None)
                .execution_options(synchronize_session=False)
            )

    async def notify_holds(self, hold_ids: Iterable[int] | None = None) -> int:
        """Ask the support agents about each open hold not asked about yet; how many were asked.
        Claimed before sending (one conditional UPDATE), released when the message fails."""
        if self.notify_hold is None:
            return 0
        store = holds.Holds(self.sessions, self.clock)
        pending = await asyncio.to_thread(
            store.claim_notifications, None if hold_ids is None else list(hold_ids)
        )
        return await _deliver(
            pending,
            self.notify_hold,
            lambda h: store.unclaim_notification(h.id),
            "a held-cancellations question",
        )

    # -- the health sweep -------------------------------------------------------------------------

    async def health_sweep(self, *, concurrency: int = 64, batch: int = 500) -> SweepResult:
        """Refresh the grant of every connected connection not checked within the health interval.

        The table is walked in id order, `batch` connections leased at a time, at most `concurrency`
        grants checked at once. The database work overlaps the checks: the next batch is claimed and
        read while this one's grants are checked, and a batch is written back while the next one's
        are, so no provider call waits for the database and a slow check holds up only its own
        batch's write. At most two batches are leased at a time.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        totals = {"checked": 0, "ok": 0, "disconnected": 0, "unreachable": 0, "busy": 0}
        slots = asyncio.Semaphore(max(1, concurrency))

        async def check(target: _Target) -> tuple[_Target, BaseException | None]:
            provider = self.providers.get(target.provider)
            if provider is None:
                return target, None
            async with slots:
                try:
                    await provider.check_grant(target.auth)
                except ProviderError as error:
                    return target, error
            return target, None

        async def sweep_batch(claimed: list[int], targets: list[_Target]) -> None:
            outcomes = await asyncio.gather(*(check(t) for t in targets))
            counts, disconnected = await asyncio.to_thread(self._record_health, outcomes, claimed)
            for key, value in counts.items():
                totals[key] += value
            if disconnected:
                await self.notify_disconnections(disconnected)

        running: set[asyncio.Task[None]] = set()
        after = 0
        try:
            while True:
                claimed, candidates = await asyncio.to_thread(self._claim_health, self.clock(), batch, after)
                if not candidates:
                    break
                after = candidates[-1]
                totals["busy"] += len(candidates) - len(claimed)
                targets = await asyncio.to_thread(self._health_targets, claimed)
                running.add(asyncio.create_task(sweep_batch(claimed, targets)))
                while len(running) >= 2:  # claim the next batch once one of these two is done
                    done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
            while running:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        return SweepResult(seconds=loop.time() - started, **totals)

    def _claim_health(self, now: datetime, batch: int, after: int) -> tuple[list[int], list[int]]:
        with transaction(self.sessions) as session:
            return claim_health_batch(session, self.worker_id, now, self.policy, batch, after)

    def _health_targets(self, ids: list[int]) -> list[_Target]:
        if not ids:
            return []
        targets: list[_Target] = []
        with self.sessions() as session:
            for connection in session.scalars(
                select(CalendarConnection).where(CalendarConnection.id.in_(ids))
            ):
                try:
                    auth = connection.authorization(self.cipher)
                except (MissingTokenError, TokenDecryptError):
                    continue
                targets.append(_Target.of(connection, auth))
        return targets

    def _record_health(
        self, outcomes: list[tuple[_Target, BaseException | None]], claimed: list[int]
    ) -> tuple[dict[str, int], list[int]]:
        """Write one batch's outcomes and release its leases: (counts, ids found disconnected).

        A batch is mostly grants that are fine, so those rows are written with one executemany
        UPDATE per shape of row, their tokens encrypted before the transaction begins: the write
        lock (on SQLite, the whole database's) is held for milliseconds, not for a flush of a few
        hundred objects. The few failures go through the ORM as before."""
        from sqlalchemy import Table, bindparam

        now = self.clock()
        counts = {"checked": 0, "ok": 0, "disconnected": 0, "unreachable": 0}
        disconnected: list[int] = []
        rows: dict[frozenset[str], list[dict[str, object]]] = {}  # the fine ones, by shape
        failed: dict[int, tuple[_Target, BaseException]] = {}
        for target, error in outcomes:
            if error is not None:
                failed[target.connection_id] = (target, error)
                continue
            values: dict[str, object] = {"last_checked_at": now}
            if target.auth.refreshed:
                values.update(self._stored_tokens(target.auth), last_refreshed_at=now)
            values["connection_id"] = target.connection_id
            rows.setdefault(frozenset(values), []).append(values)
        table = CalendarConnection.__table__
        assert isinstance(table, Table)
        with transaction(self.sessions) as session:
            ids = [t.connection_id for t, _ in outcomes]
            existing = (
                set(session.scalars(select(CalendarConnection.id).where(CalendarConnection.id.in_(ids))))
                if ids
                else set()
            )
            for shape, params in rows.items():
                params = [p for p in params if p["connection_id"] in existing]
                if not params:
                    continue
                columns = sorted(shape - {"connection_id"})
                session.connection().execute(
                    update(table)
                    .where(table.c.id == bindparam("connection_id"))
                    .values({name: bindparam(name, type_=table.c[name].type) for name in columns}),
                    params,
                )
                counts["checked"] += len(params)
                counts["ok"] += len(params)
            for connection in session.scalars(
                select(CalendarConnection).where(CalendarConnection.id.in_(list(failed)))
            ):
                target, error = failed[connection.id]
                counts["checked"] += 1
                if target.auth.refreshed:
                    connection.store_authorization(self.cipher, target.auth)
                    connection.last_refreshed_at = now
                session.add(
                    SyncRun(
                        connection_id=connection.id,
                        direction="health",
                        started_at=now,
                        finished_at=now,
                        status="error",
                        error_code=error_code(error),
                        error_message=error_message(error)[:1000],
                        counts={},
                    )
                )
                if isinstance(error, GrantError):
                    counts["disconnected"] += 1
                    connection.last_checked_at = now
                    self._mark_disconnected(connection, error, now)
                    disconnected.append(connection.id)
                else:
                    counts["unreachable"] += 1
            session.flush()
            release(session, claimed, self.worker_id)
        return counts, disconnected

    def _stored_tokens(self, auth: Authorization) -> dict[str, object]:
        """The columns `CalendarConnection.store_authorization` writes for a refreshed grant."""
        stored = CalendarConnection()
        stored.store_authorization(self.cipher, auth)
        values: dict[str, object] = {
            "refresh_token_encrypted": stored.refresh_token_encrypted,
            "access_token_encrypted": stored.access_token_encrypted,
            "access_token_expires_at": stored.access_token_expires_at,
        }
        if auth.scopes:
            values["scopes"] = stored.scopes
        return values


# -- the worker loop ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickResult:
    cycles: list[CycleResult]
    sweep: SweepResult
    told: int


async def tick(engine: SyncEngine, *, batch: int = 100) -> TickResult:
    """One round of a worker: the due cycles, the health checks that are due, and the reps to tell."""
    cycles = await engine.run_due(limit=batch)
    sweep = await engine.health_sweep()
    told = await engine.notify_disconnections()
    await engine.notify_holds()  # one a failed message left unasked
    return TickResult(cycles=cycles, sweep=sweep, told=told)


async def run_worker(
    engine: SyncEngine,
    stop: asyncio.Event,
    *,
    every: float = 5.0,
    batch: int = 100,
    report: Callable[[TickResult], None] | None = None,
) -> None:
    """Tick until `stop` is set; a failing tick is logged and the next one comes as usual."""
    while not stop.is_set():
        try:
            result = await tick(engine, batch=batch)
            if report is not None:
                report(result)
        except Exception:
            log.exception("sync worker tick failed; trying again in %.0f s", every)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
