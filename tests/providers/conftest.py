"""Fixtures for the provider tests (Google and Microsoft emulators over real HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from calsync.db import make_engine
from calsync.sandbox.microsoft_emulator import build_microsoft_app
from calsync.sandbox.server import BackgroundServer, TLSFiles
from calsync.sandbox.world import World
from calsync.syncbackend.providers.base import Authorization
from calsync.syncbackend.providers.microsoft import MicrosoftProvider
from tests.conftest import FrozenClock

# -- microsoft ------------------------------------------------------------------------------------
# The Microsoft identity platform + Graph emulator over real TLS, and the real MicrosoftProvider
# pointed at it. Every fixture and helper of this block is named microsoft_* / Microsoft*.

MICROSOFT_CLIENT_ID = "5f0c2c6e-8d1a-4b8e-9a51-calsync-test"
MICROSOFT_CLIENT_SECRET = "sandbox-secret~value.123"
MICROSOFT_EMAIL = "rep@contoso.example"
MICROSOFT_OTHER_EMAIL = "boss@contoso.example"
MICROSOFT_PRIMARY = "AAMkCal-primary"
MICROSOFT_SALES = "AAMkCal-sales"
MICROSOFT_SHARED = "AAMkCal-shared-holidays"


class MicrosoftRecordingSleep:
    """The injected sleep: records what the provider wanted to wait, waits for nothing."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass
class MicrosoftSandbox:
    world: World
    server: BackgroundServer
    tls: TLSFiles
    clock: FrozenClock
    account_id: int
    refresh_token: str
    sleep: MicrosoftRecordingSleep = field(default_factory=MicrosoftRecordingSleep)

    @property
    def authority(self) -> str:
        return f"{self.server.url}/common"

    @property
    def graph_url(self) -> str:
        return f"{self.server.url}/v1.0"

    def provider(self, **overrides: Any) -> MicrosoftProvider:
        options: dict[str, Any] = {
            "authority": self.authority,
            "graph_url": self.graph_url,
            "client_id": MICROSOFT_CLIENT_ID,
            "client_secret": MICROSOFT_CLIENT_SECRET,
            "ca_bundle": self.tls.ca_path,
            "timeout": 5.0,
            "sleep": self.sleep,
            "clock": self.clock,
        }
        options.update(overrides)
        return MicrosoftProvider(**options)

    def auth(self) -> Authorization:
        return Authorization(refresh_token=self.refresh_token)

    def pk(self, calendar_id: str) -> int:
        calendar = self.world.ms_calendar(self.account_id, calendar_id)
        assert calendar is not None
        return calendar.pk

    def run(self, provider: MicrosoftProvider, coro: Any) -> Any:
        """Run one provider coroutine on a fresh loop, closing the provider's clients afterwards."""

        async def main() -> Any:
            try:
                return await coro
            finally:
                await provider.aclose()

        return asyncio.run(main())


@pytest.fixture(scope="session")
def microsoft_tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles.generate(tmp_path_factory.mktemp("microsoft-tls"))


@pytest.fixture(scope="session")
def microsoft_foreign_tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """Another CA: a client trusting only this one must refuse the sandbox's certificate."""
    return TLSFiles.generate(tmp_path_factory.mktemp("microsoft-foreign-tls"))


@pytest.fixture
def microsoft_world(tmp_path: Path) -> Iterator[World]:
    engine = make_engine(f"sqlite:///{tmp_path}/w.db")
    world = World(engine)
    world.create_tables()
    yield world
    engine.dispose()


@pytest.fixture
def microsoft_sandbox(
    microsoft_world: World, microsoft_tls: TLSFiles, clock: FrozenClock
) -> Iterator[MicrosoftSandbox]:
    """One rep with a default calendar, a second own calendar and a read-only shared one."""
    world = microsoft_world
    account = world.add_account("microsoft", MICROSOFT_EMAIL, "Riley Rep")
    world.add_account("microsoft", MICROSOFT_OTHER_EMAIL, "Bo Boss")
    grant = world.issue_grant(account.id, "Calendars.ReadWrite User.Read offline_access openid profile")
    world.add_calendar(account.id, MICROSOFT_PRIMARY, "Calendar", primary=True, owner_email=MICROSOFT_EMAIL)
    world.add_calendar(account.id, MICROSOFT_SALES, "Sales visits", owner_email=MICROSOFT_EMAIL)
    world.add_calendar(
        account.id, MICROSOFT_SHARED, "Team holidays", access_role="reader", owner_email=MICROSOFT_OTHER_EMAIL
    )
    app = build_microsoft_app(
        world, client_id=MICROSOFT_CLIENT_ID, client_secret=MICROSOFT_CLIENT_SECRET, clock=clock
    )
    with BackgroundServer(app, tls=microsoft_tls) as server:
        yield MicrosoftSandbox(
            world=world,
            server=server,
            tls=microsoft_tls,
            clock=clock,
            account_id=account.id,
            refresh_token=grant.refresh_token,
        )


def microsoft_add_event(
    sandbox: MicrosoftSandbox,
    calendar_id: str,
    title: str,
    start_offset_hours: float,
    *,
    hours: float = 1.0,
    appointment_id: str | None = None,
) -> str:
    now = sandbox.clock()
    event, _ = sandbox.world.ms_insert_event(
        sandbox.pk(calendar_id),
        title=title,
        description=f"{title} notes",
        start=now + timedelta(hours=start_offset_hours),
        end=now + timedelta(hours=start_offset_hours + hours),
        now=now,
        appointment_id=appointment_id,
    )
    return event.event_id


# -- end microsoft --------------------------------------------------------------------------------


# -- google ---------------------------------------------------------------------------------------
# The Google OAuth + Calendar emulator over plain HTTP on loopback, and the real GoogleProvider
# pointed at it. Every fixture and helper of this block is named google_* / Google*.

import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime  # noqa: E402

from calsync.sandbox.google_emulator import build_google_app  # noqa: E402
from calsync.syncbackend.providers.google import GoogleProvider  # noqa: E402

GOOGLE_CLIENT_ID = "calsync-test.apps.googleusercontent.com"
GOOGLE_CLIENT_SECRET = "test-google-client-secret"
GOOGLE_SCOPES = "openid email https://www.googleapis.com/auth/calendar"


@dataclass(frozen=True)
class GoogleSeed:
    """One seeded Google account: its grant and its calendars (ids as clients see them)."""

    account_id: int
    email: str
    refresh_token: str
    primary_pk: int
    team_pk: int
    holidays_pk: int
    busy_pk: int

    @property
    def primary_id(self) -> str:
        return self.email

    @property
    def team_id(self) -> str:
        return "team-" + self.email.split("@")[0] + "@group.calendar.google.com"

    def auth(self, **kwargs: Any) -> Authorization:
        return Authorization(refresh_token=self.refresh_token, account_email=self.email, **kwargs)


GOOGLE_HOLIDAYS_ID = "en.usa#holiday@group.v.calendar.google.com"
GOOGLE_BUSY_ID = "boss@example.com"


class GoogleSleeps(list[float]):
    """A fake `sleep` for the provider's retry loop: records what it was asked to wait, waits nothing."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


class GoogleClockSlot:
    """The emulator's clock for a server shared by many tests: it reads the current test's clock."""

    def __init__(self) -> None:
        self.clock: Callable[[], datetime] | None = None

    def __call__(self) -> datetime:
        assert self.clock is not None, "google_world plugs the test's clock in"
        return self.clock()


class GoogleInFlight:
    """ASGI wrapper counting requests still being answered, so a test cannot end while a request of
    its own (a hang the client gave up on, say) would still write into the next test's world."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.active = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    def wait_idle(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.active and time.monotonic() < deadline:
            time.sleep(0.01)


@dataclass
class GoogleServed:
    world: World
    server: BackgroundServer
    clock_slot: GoogleClockSlot
    in_flight: GoogleInFlight


@pytest.fixture(scope="session")
def google_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoogleServed]:
    """One World (SQLite file) and one emulator for the session: starting and stopping uvicorn per
    test costs ~0.2 s. `google_world` empties the world before each test."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('google')}/w.db")
    world = World(engine)
    world.create_tables()
    slot = GoogleClockSlot()
    app = GoogleInFlight(
        build_google_app(world, client_id=GOOGLE_CLIENT_ID, client_secret=GOOGLE_CLIENT_SECRET, clock=slot)
    )
    with BackgroundServer(app) as server:
        yield GoogleServed(world, server, slot, app)
    engine.dispose()


@pytest.fixture
def google_world(google_served: GoogleServed, clock: FrozenClock) -> Iterator[World]:
    """The sandbox world, empty, with the emulator reading this test's clock."""
    google_served.world.reset()
    google_served.clock_slot.clock = clock
    yield google_served.world
    google_served.in_flight.wait_idle()
    google_served.clock_slot.clock = None


@pytest.fixture
def google_server(google_served: GoogleServed, google_world: World) -> BackgroundServer:
    return google_served.server


@pytest.fixture
def google_sleeps() -> GoogleSleeps:
    return GoogleSleeps()


@pytest.fixture
def google_provider_factory(
    google_server: BackgroundServer, clock: FrozenClock, google_sleeps: GoogleSleeps
) -> Callable[..., GoogleProvider]:
    """Makes a GoogleProvider pointed at the emulator; keyword arguments override the defaults."""

    def make(**overrides: Any) -> GoogleProvider:
        options: dict[str, Any] = {
            "api_url": google_server.url,
            "token_url": google_server.url + "/token",
            "client_id": GOOGLE_CLIENT_ID,
            "client_secret": GOOGLE_CLIENT_SECRET,
            "timeout": 5.0,
            "retry_budget": 4.0,
            "sleep": google_sleeps,
            "clock": clock,
        }
        options.update(overrides)
        return GoogleProvider(**options)

    return make


@pytest.fixture
def google_provider(google_provider_factory: Callable[..., GoogleProvider]) -> GoogleProvider:
    return google_provider_factory()


def google_seed_account(world: World, email: str) -> GoogleSeed:
    """An account with a grant and four calendars: primary (owner, New York time), team (writer),
    holidays (reader) and a boss's calendar (freeBusyReader)."""
    account = world.add_account("google", email, display_name=email.split("@")[0].title())
    grant = world.issue_grant(account.id, scopes=GOOGLE_SCOPES)
    primary = world.add_calendar(
        account.id, email, email, primary=True, access_role="owner", time_zone="America/New_York"
    )
    team = world.add_calendar(
        account.id,
        "team-" + email.split("@")[0] + "@group.calendar.google.com",
        "Team",
        access_role="writer",
        owner_email="lead@example.com",
    )
    holidays = world.add_calendar(
        account.id, GOOGLE_HOLIDAYS_ID, "Holidays in United States", access_role="reader"
    )
    busy = world.add_calendar(
        account.id, GOOGLE_BUSY_ID, "Boss", access_role="freeBusyReader", owner_email=GOOGLE_BUSY_ID
    )
    return GoogleSeed(
        account_id=account.id,
        email=account.email,
        refresh_token=grant.refresh_token,
        primary_pk=primary.pk,
        team_pk=team.pk,
        holidays_pk=holidays.pk,
        busy_pk=busy.pk,
    )


@pytest.fixture
def google_seed(google_world: World) -> GoogleSeed:
    return google_seed_account(google_world, "rep@example.com")


def google_add_events(
    world: World,
    calendar_pk: int,
    start: datetime,
    count: int,
    *,
    prefix: str = "Event",
    step_hours: int = 1,
) -> list[str]:
    """`count` one-hour events (New York time) from `start`, `step_hours` apart, each carrying
    appointment id `appt-<index>`; their event ids."""
    ids = []
    for index in range(count):
        begins = start + timedelta(hours=index * step_hours)
        event = world.google_add_event(
            calendar_pk,
            title=f"{prefix} {index}",
            start=begins,
            end=begins + timedelta(hours=1),
            now=start,
            time_zone="America/New_York",
            appointment_id=f"appt-{index}",
        )
        ids.append(event.event_id)
    return ids


# -- end google -----------------------------------------------------------------------------------
