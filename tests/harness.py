"""A sandbox for tests: the real emulators on loopback ports, a migrated database, the real provider
clients pointed at the emulators, and helpers to load a scenario and run checks or whole answers.

The emulators and the database live for the test session; `reset()` empties every table between
tests. Provider retries never sleep: the providers get a recording fake `sleep`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session, sessionmaker

from calsync.app import Services
from calsync.db import make_session_factory, transaction
from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Finding
from calsync.diagnostics.live import LiveView
from calsync.diagnostics.runner import run_checks
from calsync.diagnostics.state import find_user, load_rep_state
from calsync.sandbox.runtime import GOOGLE_CLIENT_ID, MICROSOFT_CLIENT_ID, SandboxEndpoints
from calsync.sandbox.scenario import load_scenario
from calsync.sandbox.world import World
from calsync.settings import Settings
from calsync.syncbackend.crypto import TokenCipher
from calsync.syncbackend.models import Base, CalendarConnection, MissingTokenError
from calsync.syncbackend.providers.base import Authorization, CalendarProvider
from calsync.syncbackend.providers.google import GoogleProvider
from calsync.syncbackend.providers.microsoft import MicrosoftProvider

FIXED_NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


class MutableClock:
    """One clock for the emulators, the providers and the code under test; reset per test."""

    def __init__(self, now: datetime = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class RecordingSleep:
    calls: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass
class Sandbox:
    engine: Engine
    sessions: sessionmaker[Session]
    world: World
    cipher: TokenCipher
    clock: MutableClock
    endpoints: SandboxEndpoints
    sleep: RecordingSleep
    tmp_dir: Path
    providers: dict[str, CalendarProvider] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        engine: Engine,
        world: World,
        cipher: TokenCipher,
        clock: MutableClock,
        endpoints: SandboxEndpoints,
        tmp_dir: Path,
        *,
        timeout: float = 2.0,
        retry_budget: float = 1.0,
    ) -> Sandbox:
        sleep = RecordingSleep()
        sandbox = cls(engine, make_session_factory(engine), world, cipher, clock, endpoints, sleep, tmp_dir)
        sandbox.providers = {
            "google": GoogleProvider(
                api_url=endpoints.google_url,
                token_url=f"{endpoints.google_url}/token",
                client_id=GOOGLE_CLIENT_ID,
                client_secret=endpoints.google_client_secret,
                timeout=timeout,
                retry_budget=retry_budget,
                sleep=sleep,
                clock=clock,
            ),
            "microsoft": MicrosoftProvider(
                authority=f"{endpoints.microsoft_url}/common",
                graph_url=f"{endpoints.microsoft_url}/v1.0",
                client_id=MICROSOFT_CLIENT_ID,
                client_secret=endpoints.microsoft_client_secret,
                ca_bundle=endpoints.ca_path,
                timeout=timeout,
                retry_budget=retry_budget,
                sleep=sleep,
                clock=clock,
            ),
        }
        return sandbox

    def services(self, settings: Settings) -> Services:
        """What the composition root's factories take, made of this sandbox (its database, clock,
        providers and emulators) and `settings`."""
        return Services(
            settings=settings,
            engine=self.engine,
            sessions=self.sessions,
            cipher=self.cipher,
            clock=self.clock,
            providers=self.providers,
            world=self.world,
            sandbox=self.endpoints,
        )

    def reset(self) -> None:
        """Empty the product tables and the sandbox world; put the clock back."""
        with transaction(self.sessions) as session:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(delete(table))
        self.world.reset()
        self.clock.now = FIXED_NOW
        self.sleep.calls.clear()

    def load(self, scenario: str) -> None:
        """Load a scenario given as YAML text (dedented)."""
        path = self.tmp_dir / "scenario.yaml"
        path.write_text(textwrap.dedent(scenario))
        load_scenario(path, sessions=self.sessions, world=self.world, cipher=self.cipher, clock=self.clock)

    def load_file(self, path: Path) -> None:
        load_scenario(path, sessions=self.sessions, world=self.world, cipher=self.cipher, clock=self.clock)

    def context(self, email: str, question: str | None = None) -> CheckContext:
        now = self.clock()
        with self.sessions() as session:
            user = find_user(session, email)
            assert user is not None, f"no user {email} in the scenario"
            rep = load_rep_state(session, user, now)
            authorizations: dict[int, Authorization] = {}
            for connection in session.query(CalendarConnection).filter_by(user_id=user.id):
                try:
                    authorizations[connection.id] = connection.authorization(self.cipher)
                except MissingTokenError:
                    continue
        return CheckContext(rep, now, LiveView(self.providers, authorizations, now), question)

    async def run(self, checks: Sequence[Check], email: str, question: str | None = None) -> list[Finding]:
        context = self.context(email, question)
        try:
            return await run_checks(checks, context)
        finally:
            await context.live.close()


# A connection is never called any of these because a provider was slow or unwell.
DISCONNECTIONS = frozenset(
    {
        "connection.none",
        "connection.no_tokens",
        "connection.disconnected",
        "connection.revoked",
        "connection.expired",
        "connection.consent_removed",
        "connection.sign_in_required",
    }
)

# (provider, the fault's fields in a scenario's `faults:` entry, the finding it must give), per row.
FLAKY_PROVIDER_FAULTS = [
    pytest.param(provider, fault, expected, id=f"{provider}-{name}")
    for name, fault, expected in (
        ("rate-limit", "kind: rate_limit, params: {retry_after: 30}", "provider.rate_limited"),
        ("503", "kind: unavailable, params: {status: 503}", "provider.unavailable"),
        ("malformed", "kind: malformed", "provider.malformed"),
        ("hang", "kind: hang, params: {seconds: 5}", "provider.timeout"),
    )
    for provider in ("google", "microsoft")
]


class LateApp:
    """An ASGI app set after its server is listening, for an app that must know its own URL (the
    public URL its reconnect and report links point at)."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def codes(findings: Sequence[Finding]) -> list[str]:
    return [finding.code for finding in findings]


CALSYNC = str(Path(sys.executable).parent / "calsync")


def run_calsync(args: list[str], env: dict[str, str], state: Path) -> subprocess.CompletedProcess[str]:
    """`calsync ARGS` as a new user runs it: no provider, Slack or calsync settings from this
    environment, only `env`, the state dir `state`, a wide terminal."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GOOGLE_", "MICROSOFT_", "SLACK_", "CALSYNC_"))
    }
    clean.pop("DATABASE_URL", None)
    clean.update({"CALSYNC_STATE_DIR": str(state), "PYTHONIOENCODING": "utf-8", "COLUMNS": "200", **env})
    return subprocess.run(
        [CALSYNC, *args], env=clean, cwd=state.parent, capture_output=True, text=True, timeout=120
    )
