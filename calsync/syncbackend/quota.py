"""Staying inside the providers' per-user quotas.

Google Calendar allows about 600 requests a minute per user; Microsoft Graph 4 concurrent requests
per mailbox (the Microsoft provider already holds each mailbox to 4 at a time). `QuotaProvider`
wraps any `CalendarProvider` and spaces one account's calls so a minute never holds more than its
share; a call that would exceed it waits rather than being refused with a 429.

The budget is per process: two workers each keep their own. They never work on one connection at
the same time (the lease), so one account's calls come from one process at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

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

T = TypeVar("T")

# Requests per minute per user, below the provider's published limit.
PER_USER_PER_MINUTE: dict[str, int] = {"google": 600, "microsoft": 10_000}


@dataclass
class SlidingWindow:
    """At most `limit` starts in any `window` seconds."""

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


class QuotaProvider:
    """A `CalendarProvider` that keeps each account inside its per-minute request budget."""

    def __init__(
        self,
        inner: CalendarProvider,
        per_minute: int | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self.name: ProviderName = inner.name
        self.per_minute = per_minute or PER_USER_PER_MINUTE.get(inner.name, 600)
        self._monotonic = monotonic
        self._sleep = sleep
        self._windows: dict[str, SlidingWindow] = {}

    def window(self, auth: Authorization) -> SlidingWindow:
        key = (auth.account_email or "").lower()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SlidingWindow(
                self.per_minute, monotonic=self._monotonic, sleep=self._sleep
            )
        return window

    async def _call(self, auth: Authorization, call: Callable[[], Awaitable[T]]) -> T:
        await self.window(auth).acquire()
        return await call()

    async def check_grant(self, auth: Authorization) -> GrantInfo:
        return await self._call(auth, lambda: self.inner.check_grant(auth))

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
