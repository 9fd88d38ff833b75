"""Live provider reads for one diagnosis, shared between the checks that run concurrently.

Each (connection, read) is fetched at most once, however many checks ask: the first asker starts
the call and the others await the same task, failures included. Every read waits for the grant
check first (it refreshes the access token), so a full diagnosis costs about two round trips: the
refresh, then the reads in parallel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from calsync.diagnostics.state import ConnectionState
from calsync.syncbackend.providers.base import (
    Authorization,
    Calendar,
    CalendarProvider,
    Event,
    GrantInfo,
    ProviderError,
)

T = TypeVar("T")

# The window of events the checks look at: yesterday's demo to next fortnight's calls.
EVENTS_BACK = timedelta(days=2)
EVENTS_AHEAD = timedelta(days=14)


class ProviderNotConfigured(ProviderError):
    """No client for this connection's provider is configured in this deployment."""


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class LiveView:
    def __init__(
        self,
        providers: Mapping[str, CalendarProvider],
        authorizations: Mapping[int, Authorization],
        now: datetime,
    ) -> None:
        self._providers = providers
        self._authorizations = authorizations
        self.now = now
        self._tasks: dict[tuple[Any, ...], asyncio.Task[Any]] = {}

    @property
    def refreshed(self) -> dict[int, Authorization]:
        """Authorizations a provider refreshed during this diagnosis, to be stored back."""
        return {key: auth for key, auth in self._authorizations.items() if auth.refreshed}

    def has_tokens(self, connection: ConnectionState) -> bool:
        return connection.id in self._authorizations

    def provider(self, connection: ConnectionState) -> CalendarProvider:
        provider = self._providers.get(connection.provider)
        if provider is None:
            raise ProviderNotConfigured(
                connection.provider,  # type: ignore[arg-type]
                f"no {connection.provider} client is configured",
            )
        return provider

    def _once(self, key: tuple[Any, ...], make: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            # A shared read may outlive the checks that wanted it (one gave up waiting): its failure
            # is theirs to report, not asyncio's "Task exception was never retrieved" on the log.
            task.add_done_callback(_retrieve)
            self._tasks[key] = task
        return task

    def _auth(self, connection: ConnectionState) -> Authorization:
        auth = self._authorizations.get(connection.id)
        if auth is None:
            raise KeyError(f"connection {connection.id} has no stored tokens")
        return auth

    async def grant(self, connection: ConnectionState) -> GrantInfo:
        """Refresh the grant now: raises `GrantError` when it is revoked or expired."""

        async def refresh() -> GrantInfo:
            return await self.provider(connection).check_grant(self._auth(connection))

        return await self._once(("grant", connection.id), refresh)

    async def calendars(self, connection: ConnectionState) -> list[Calendar]:
        async def fetch() -> list[Calendar]:
            await self.grant(connection)
            return await self.provider(connection).list_calendars(self._auth(connection))

        return await self._once(("calendars", connection.id), fetch)

    async def events(self, connection: ConnectionState, calendar_id: str | None = None) -> list[Event]:
        """Events on a calendar (default: the selected one) in the window around now."""
        calendar = calendar_id or connection.selected_calendar_id
        if not calendar:
            return []

        async def fetch() -> list[Event]:
            await self.grant(connection)
            return await self.provider(connection).list_events(
                self._auth(connection), calendar, self.now - EVENTS_BACK, self.now + EVENTS_AHEAD
            )

        return await self._once(("events", connection.id, calendar), fetch)

    async def appointment_events(
        self, connection: ConnectionState, calendar_id: str, appointment_id: str
    ) -> list[Event]:
        """The events carrying one appointment's id on one calendar, whenever they are."""

        async def fetch() -> list[Event]:
            await self.grant(connection)
            return await self.provider(connection).list_events(
                self._auth(connection),
                calendar_id,
                self.now - timedelta(days=365),
                self.now + timedelta(days=365),
                appointment_id=appointment_id,
            )

        return await self._once(("appointment", connection.id, calendar_id, appointment_id), fetch)

    async def close(self) -> None:
        """Cancel reads nobody awaited to the end (a check that timed out leaves its call behind)."""
        for task in self._tasks.values():
            if not task.done():
                task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
