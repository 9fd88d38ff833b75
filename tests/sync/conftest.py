"""The sync engine end to end: the real emulators, the real provider clients, the composition root's
own factories, on SQLite and on PostgreSQL (where the lease and SKIP LOCKED matter most)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from calsync.app import (
    Services,
    build_engine_and_bot,
    build_sync_policy,
    build_troubleshooter,
    quota_providers,
)
from calsync.db import make_engine
from calsync.diagnostics.troubleshooter import Troubleshooter
from calsync.sandbox.runtime import SandboxRuntime
from calsync.sandbox.world import SandboxEvent, World
from calsync.settings import Settings
from calsync.syncbackend import migrate
from calsync.syncbackend.appointments import Appointments
from calsync.syncbackend.crypto import TokenCipher, generate_key
from calsync.syncbackend.engine import SyncEngine
from calsync.syncbackend.models import Appointment, CalendarConnection, EventLink, SyncRun
from calsync.syncbackend.providers.base import CalendarProvider
from tests.conftest import DATABASE_BACKENDS, fresh_postgres_database
from tests.harness import MutableClock, Sandbox


@pytest.fixture(scope="session", params=DATABASE_BACKENDS)
def sync_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of the sync tests' own (PostgreSQL: a separate database, not the per-test schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sync') / 'calsync.db'}"
        return
    with fresh_postgres_database("calsync_sync") as url:
        yield url


@dataclass
class SyncWorld:
    """A sandbox plus the sync engine, the bot that DMs reps, and SalesPartner's booking side."""

    sandbox: Sandbox
    services: Services
    troubleshooter: Troubleshooter
    engine: SyncEngine
    appointments: Appointments

    @property
    def world(self) -> World:
        return self.sandbox.world

    def second_engine(self, providers: Mapping[str, CalendarProvider] | None = None) -> SyncEngine:
        """Another worker on the same database, as a second `calsync worker` process would be (with
        `build_sync_engine`'s providers and policy unless `providers` says otherwise), telling reps
        and agents as the first one does."""
        return SyncEngine(
            sessions=self.services.sessions,
            providers=quota_providers(self.services) if providers is None else providers,
            cipher=self.services.cipher,
            clock=self.services.clock,
            policy=build_sync_policy(self.services.settings),
            notify=self.engine.notify,
            notify_hold=self.engine.notify_hold,
        )

    def events(self, appointment_id: str, *, include_cancelled: bool = False) -> list[SandboxEvent]:
        return self.world.find_events(appointment_id=appointment_id, include_cancelled=include_cancelled)

    def appointment(self, appointment_id: str) -> Appointment:
        with self.sandbox.sessions() as session:
            found = session.get(Appointment, appointment_id)
            assert found is not None
            return found

    def links(self, appointment_id: str) -> list[EventLink]:
        with self.sandbox.sessions() as session:
            return list(session.scalars(select(EventLink).where(EventLink.appointment_id == appointment_id)))

    def connection(self, account_email: str) -> CalendarConnection:
        with self.sandbox.sessions() as session:
            return session.scalars(
                select(CalendarConnection).where(CalendarConnection.account_email == account_email)
            ).one()

    def add_direct_event(self, provider: str, account_email: str, title: str, start: datetime) -> None:
        """The rep adds an event in their calendar app, not through SalesPartner."""
        account = self.world.account(provider, account_email)  # type: ignore[arg-type]
        assert account is not None
        now, end = self.sandbox.clock(), start + timedelta(hours=1)
        if provider == "google":
            (calendar, *_) = self.world.google_calendars(account.id)
            self.world.google_add_event(calendar.pk, title=title, start=start, end=end, now=now)
        else:
            (calendar, *_) = self.world.ms_calendars(account.id)
            self.world.ms_insert_event(
                calendar.pk, title=title, description="", start=start, end=end, now=now
            )

    def revoke(self, account_email: str) -> None:
        """The rep (or their admin) revokes calsync's access at the provider."""
        connection = self.connection(account_email)
        self.world.revoke_grant(connection.authorization(self.sandbox.cipher).refresh_token)

    def runs(self, account_email: str | None = None) -> list[SyncRun]:
        with self.sandbox.sessions() as session:
            query = select(SyncRun).order_by(SyncRun.id)
            if account_email is not None:
                query = query.join(CalendarConnection).where(
                    CalendarConnection.account_email == account_email
                )
            return list(session.scalars(query))

    def dms_to(self, slack_user_id: str) -> list[Any]:
        channel = self.world.slack_dm_channel(slack_user_id)
        return self.world.slack_messages(channel) if channel else []


@pytest.fixture(scope="session")
def sync_world_session(
    sync_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncWorld]:
    directory: Path = tmp_path_factory.mktemp("syncworld")
    migrate.upgrade(sync_database_url)
    engine = make_engine(sync_database_url)
    world = World(engine)
    world.create_tables()
    clock = MutableClock()
    with SandboxRuntime(world, directory, clock) as endpoints:
        sandbox = Sandbox.build(engine, world, TokenCipher([generate_key()]), clock, endpoints, directory)
        settings = endpoints.apply(
            Settings(  # type: ignore[call-arg]
                _env_file=None,
                CALSYNC_STATE_DIR=directory,
                CALSYNC_SUPPORT_CHANNEL="C0SUPPORT",  # where held cancellations are asked about
            )
        )
        services = sandbox.services(settings)
        troubleshooter = build_troubleshooter(services)
        sync_engine, _ = build_engine_and_bot(services, troubleshooter)
        yield SyncWorld(sandbox, services, troubleshooter, sync_engine, Appointments(sandbox.sessions, clock))
    engine.dispose()


@pytest.fixture
def sync_world(sync_world_session: SyncWorld) -> SyncWorld:
    sync_world_session.sandbox.reset()
    return sync_world_session
