"""Staying inside the providers' quotas, across every calsync instance.

Google Calendar allows 600 requests a minute per user; Microsoft Graph 10 000 requests per 10 minutes
per app and mailbox, and 4 concurrent requests per mailbox. `QuotaProvider` wraps any
`CalendarProvider` and asks a `Limiter` before each call; a call that would exceed the budget waits
rather than being refused with a 429.

`DatabaseLimiter` is what `calsync serve` and `calsync worker` use: the budget lives in the database
every instance already shares, so two serves and three workers together stay inside one account's
quota. Admitting a call is one short transaction: lock the account's `quota_keys` row (`SELECT …
FOR UPDATE` on PostgreSQL; on SQLite the transaction's first statement is a write, which takes the
database's write lock), count the calls inside the window (and those still running), and insert
this one — or answer how long to wait. The calls that left the window are dropped once the key
holds `FORGET_AT` rows (or its budget, if smaller): they never count, so keeping a few costs nothing
but spares most admissions a DELETE. When the call ends its row stops
counting as running. A process that dies mid-call frees its slot when `busy_until` passes.

Why not a library: the maintained limiters with shared backends (`limits`, `pyrate-limiter`) offer
Redis, Memcached or MongoDB, and pyrate-limiter's SQL buckets keep a table per bucket (a table per
rep's account here) and refuse on lock contention instead of waiting; none bounds concurrency. A
Redis limiter would add a service that the embedded SQLite default must not need. The window is
the exact sliding log the per-process limiter always used, so the figures are the same.

`ProcessLimiter` keeps the budget in this process only (one process at a time per account): for
tools and tests that have no shared database.

Timestamps are this machine's wall clock (instances on several machines need NTP, as Slack's
signatures already do).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable

from calsync.db import core_transaction, table_of
from calsync.syncbackend.models import QuotaCall, QuotaKey
from calsync.syncbackend.providers.base import (
    Authorization,
    Calendar,
    CalendarProvider,
    Changes,
    Event,
    EventDraft,
    GrantInfo,
    ProviderName,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Budget:
    """At most `limit` calls start in any `window` seconds, and at most `concurrent` run at once."""

    limit: int
    window: float
    concurrent: int | None = None


# Each provider's published per-account limits.
BUDGETS: dict[str, Budget] = {
    "google": Budget(limit=600, window=60.0),
    "microsoft": Budget(limit=10_000, window=600.0, concurrent=4),
}
DEFAULT_BUDGET = Budget(limit=600, window=60.0)


class Permit(Protocol):
    async def release(self) -> None: ...


class Limiter(Protocol):
    async def acquire(self, key: str, budget: Budget) -> Permit:
        """Wait until a call for `key` may start within `budget`; release the permit when it ends."""
        ...


@dataclass
class SlidingWindow:
    """At most `limit` starts in any `window` seconds (in this process)."""

    limit: int
    window: float = 60.0
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _starts: deque[float] = field(default_factory=deque)

    async def acquire(self) -> None:
        while True:
            now = self.monotonic()
            while self._starts and now - self._starts[0] >= self.window:
                self._starts.popleft()
            if len(self._starts) < self.limit:
                self._starts.append(now)
                return
            await self.sleep(self.window - (now - self._starts[0]))


class _Nothing:
    async def release(self) -> None:
        return None


class ProcessLimiter:
    """The rate budget kept in this process; concurrency is left to the provider clients."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._monotonic = monotonic
        self._sleep = sleep
        self._windows: dict[str, SlidingWindow] = {}

    def window(self, key: str, budget: Budget) -> SlidingWindow:
        found = self._windows.get(key)
        if found is None:
            found = self._windows[key] = SlidingWindow(
                budget.limit, budget.window, monotonic=self._monotonic, sleep=self._sleep
            )
        return found

    async def acquire(self, key: str, budget: Budget) -> Permit:
        await self.window(key, budget).acquire()
        return _Nothing()


@dataclass
class CallPermit:
    """An admitted call: its row, and when it was admitted (epoch seconds)."""

    limiter: DatabaseLimiter
    call_id: int
    started_at: float
    running: bool

    async def release(self) -> None:
        if self.running:
            await asyncio.to_thread(self.limiter.finish, self.call_id)


# The statements of every admitted call, built once (SQLAlchemy Core on the session's connection:
# building them, and the ORM's execution layer, cost several times what SQLite takes to run them).
_KEYS = table_of(QuotaKey)
_CALLS = table_of(QuotaCall)
# Hold the key's row until the transaction ends, creating it the first time: on PostgreSQL a row
# lock (`SELECT … FOR UPDATE`); on SQLite a write first takes the database's write lock.
_LOCK: dict[bool, tuple[Executable, ...]] = {
    True: (
        postgresql.insert(_KEYS)
        .values(key=bindparam("key"), touched_at=bindparam("now"))
        .on_conflict_do_nothing(),
        select(_KEYS.c.key).where(_KEYS.c.key == bindparam("key")).with_for_update(),
    ),
    False: (
        sqlite.insert(_KEYS)
        .values(key=bindparam("key"), touched_at=bindparam("now"))
        .on_conflict_do_update(index_elements=[_KEYS.c.key], set_={"touched_at": bindparam("now")}),
    ),
}
_FORGET_ENDED = delete(_CALLS).where(
    _CALLS.c.key == bindparam("key"),
    _CALLS.c.started_at <= bindparam("since"),
    or_(_CALLS.c.busy_until.is_(None), _CALLS.c.busy_until <= bindparam("now")),
)
# The calls that started inside the window (how many, the oldest), those still running and all the
# key's rows, in one statement: the key's rows are few, the ended ones being forgotten.
_IN_WINDOW = _CALLS.c.started_at > bindparam("since")
_COUNTS = select(
    func.count().filter(_IN_WINDOW),
    func.min(_CALLS.c.started_at).filter(_IN_WINDOW),
    func.count().filter(_CALLS.c.busy_until > bindparam("now")),
    func.count(),
).where(_CALLS.c.key == bindparam("key"))
# Rows a key may hold before the calls that left its window are dropped (at most its budget).
FORGET_AT = 64
_START = insert(_CALLS).returning(_CALLS.c.id)
_FINISH = update(_CALLS).where(_CALLS.c.id == bindparam("call_id")).values(busy_until=None)


class DatabaseLimiter:
    """The budget in the shared database (see the module's docstring)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        busy_ttl: float = 120.0,
        poll: float = 0.05,
    ) -> None:
        """`busy_ttl`: how long a call counts as running if its process never says it ended;
        `poll`: how often a call waiting for a concurrency slot looks again."""
        self.sessions = sessions
        self._now = now
        self._sleep = sleep
        self.busy_ttl = busy_ttl
        self.poll = poll

    async def acquire(self, key: str, budget: Budget) -> CallPermit:
        while True:
            admitted, when = await asyncio.to_thread(self.try_start, key, budget)
            if admitted is not None:
                return CallPermit(self, admitted, when, running=budget.concurrent is not None)
            await self._sleep(max(0.001, when))

    def try_start(self, key: str, budget: Budget) -> tuple[int | None, float]:
        """(the call's id, its start) when it may start now, else (None, seconds to wait)."""
        with core_transaction(self.sessions) as connection:
            for statement in _LOCK[connection.dialect.name == "postgresql"]:
                connection.execute(statement, {"key": key, "now": self._now()})
            now = self._now()  # read once the lock is held: a waiting instance must not count stale time
            window = {"key": key, "since": now - budget.window, "now": now}
            count, oldest, running, rows = connection.execute(_COUNTS, window).one()
            if rows >= min(FORGET_AT, budget.limit):  # the counts above never include those
                connection.execute(_FORGET_ENDED, window)
            if count >= budget.limit:
                return None, float(oldest) + budget.window - now
            if budget.concurrent is not None and running >= budget.concurrent:
                return None, self.poll
            busy_until = now + self.busy_ttl if budget.concurrent is not None else None
            call_id = connection.execute(
                _START, {"key": key, "started_at": now, "busy_until": busy_until}
            ).scalar()
            assert call_id is not None
            return int(call_id), now

    def finish(self, call_id: int) -> None:
        with core_transaction(self.sessions) as connection:
            connection.execute(_FINISH, {"call_id": call_id})


def quota_key(provider: str, auth: Authorization) -> str:
    return f"{provider}:{(auth.account_email or '').strip().lower()}"


class QuotaProvider:
    """A `CalendarProvider` that keeps each account inside its provider's budget."""

    def __init__(self, inner: CalendarProvider, limiter: Limiter, budget: Budget | None = None) -> None:
        self.inner = inner
        self.name: ProviderName = inner.name
        self.limiter = limiter
        self.budget = budget or BUDGETS.get(inner.name, DEFAULT_BUDGET)

    async def _call(self, auth: Authorization, call: Callable[[], Awaitable[T]]) -> T:
        permit = await self.limiter.acquire(quota_key(self.name, auth), self.budget)
        try:
            return await call()
        finally:
            try:
                await permit.release()
            except Exception:  # the slot frees itself when busy_until passes
                log.warning("releasing a %s quota slot failed", self.name, exc_info=True)

    async def check_grant(self, auth: Authorization) -> GrantInfo:
        # A token refresh goes to the identity endpoint (Google OAuth, the Microsoft identity
        # platform), not the Calendar API or Graph whose per-account quotas these are: admitting it
        # would cost a database write per grant of the health sweep (it halved the sweep's rate).
        return await self.inner.check_grant(auth)

    async def list_calendars(self, auth: Authorization) -> list[Calendar]:
        return await self._call(auth, lambda: self.inner.list_calendars(auth))

    async def list_events(
        self,
        auth: Authorization,
        calendar_id: str,
        start: datetime,
        end: datetime,
        *,
        appointment_id: str | None = None,
    ) -> list[Event]:
        return await self._call(
            auth,
            lambda: self.inner.list_events(auth, calendar_id, start, end, appointment_id=appointment_id),
        )

    async def get_event(self, auth: Authorization, calendar_id: str, event_id: str) -> Event:
        return await self._call(auth, lambda: self.inner.get_event(auth, calendar_id, event_id))

    async def insert_event(self, auth: Authorization, calendar_id: str, draft: EventDraft) -> Event:
        return await self._call(auth, lambda: self.inner.insert_event(auth, calendar_id, draft))

    async def update_event(
        self, auth: Authorization, calendar_id: str, event_id: str, draft: EventDraft
    ) -> Event:
        return await self._call(auth, lambda: self.inner.update_event(auth, calendar_id, event_id, draft))

    async def delete_event(self, auth: Authorization, calendar_id: str, event_id: str) -> None:
        await self._call(auth, lambda: self.inner.delete_event(auth, calendar_id, event_id))

    async def changes(self, auth: Authorization, calendar_id: str, cursor: str | None) -> Changes:
        return await self._call(auth, lambda: self.inner.changes(auth, calendar_id, cursor))


__all__ = [
    "BUDGETS",
    "Budget",
    "CallPermit",
    "DatabaseLimiter",
    "Limiter",
    "Permit",
    "ProcessLimiter",
    "QuotaProvider",
    "SlidingWindow",
    "quota_key",
]
