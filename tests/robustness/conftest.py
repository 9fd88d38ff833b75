"""Shared set-up for the robustness proofs: one calsync app, built by the composition root and served
by uvicorn on a loopback port (Slack events, reconnect, pages, /healthz), wired to the sandbox
emulators; the harnesses of tests/bot and tests/web pointed at it; and a snapshot of the rows a bad
request must never touch.

One app for the whole directory because building one costs seconds (training the question
matcher): the tests reset the database and the sandbox world between them, as tests/bot and
tests/web do.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from calsync.app import (
    Services,
    build_bolt_app,
    build_engine_and_bot,
    build_troubleshooter,
    build_web_app,
)
from calsync.diagnostics.troubleshooter import Troubleshooter
from calsync.flows.reconnect import ReconnectLinks
from calsync.links import LinkSigner
from calsync.sandbox.server import BackgroundServer
from calsync.settings import Settings
from calsync.syncbackend.models import Appointment, CalendarConnection, EventLink, User
from tests.bot.conftest import AGENT_BY_SETTING, SUPPORT_CHANNEL, SlackHarness
from tests.harness import LateApp, Sandbox
from tests.web.conftest import HELP_CHANNEL, WebHarness

DEMO = Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml"


@dataclass
class Robust:
    services: Services
    troubleshooter: Troubleshooter
    app: FastAPI
    url: str
    slack: SlackHarness
    web: WebHarness


@pytest.fixture(scope="package")
def robust_app(sandbox_session: Sandbox) -> Iterator[Robust]:
    endpoints = sandbox_session.endpoints
    late = LateApp()
    server = BackgroundServer(late, lifespan=True)  # bound (its URL known) now, started below
    link_secret = secrets.token_urlsafe(32)
    settings = endpoints.apply(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            CALSYNC_STATE_DIR=sandbox_session.tmp_dir,
            CALSYNC_AGENT_SLACK_IDS=AGENT_BY_SETTING,
            CALSYNC_SUPPORT_CHANNEL=SUPPORT_CHANNEL,
        ).model_copy(update={"public_url": server.url, "link_secret": SecretStr(link_secret)})
    )
    services = sandbox_session.services(settings)
    troubleshooter = build_troubleshooter(services)
    _, bot = build_engine_and_bot(services, troubleshooter)
    bolt_app = build_bolt_app(services, bot)
    assert bolt_app is not None
    late.app = build_web_app(services, bolt_app, troubleshooter, bot=bot)
    with server:
        links = ReconnectLinks(LinkSigner(link_secret.encode(), sandbox_session.clock), server.url)
        verify = ssl.create_default_context(cafile=str(endpoints.ca_path))
        with httpx.Client(timeout=30, verify=verify, trust_env=False) as browser:
            yield Robust(
                services=services,
                troubleshooter=troubleshooter,
                app=late.app,
                url=server.url,
                slack=SlackHarness(sandbox_session, server.url, endpoints.slack_signing_secret),
                web=WebHarness(sandbox_session, server.url, links, troubleshooter, browser),
            )


@pytest.fixture
def robust(robust_app: Robust, sandbox: Sandbox) -> Robust:
    """The app with the demo world loaded afresh (the `sandbox` fixture empties it first)."""
    sandbox.load_file(DEMO)
    sandbox.world.slack_add_channel(SUPPORT_CHANNEL, "calendar-support")
    if sandbox.world.slack_channel(HELP_CHANNEL) is None:
        sandbox.world.slack_add_channel(HELP_CHANNEL, "calendar-help")
    sandbox.world.slack_add_user(AGENT_BY_SETTING, "agent.by.setting@northwind.example", "Agent Setting")
    return robust_app


# One healthy rep on Google, for tests that need someone to answer but not the whole demo world
# (loading the demo costs a few hundred milliseconds per test).
ONE_REP = """
accounts:
  - provider: google
    email: ana@northwind.example
    name: Ana Alvarez
    calendars: [{id: ana@northwind.example, name: Ana Alvarez, primary: true}]
users:
  - email: ana@northwind.example
    name: Ana Alvarez
    slack_user_id: U0DEMOANA
    connections:
      - {provider: google, account: ana@northwind.example, selected_calendar: ana@northwind.example}
"""


@pytest.fixture
def robust_one_rep(robust_app: Robust, sandbox: Sandbox) -> Robust:
    """The app with only Ana (U0DEMOANA) in the world."""
    sandbox.load(ONE_REP)
    return robust_app


# -- what "changes nothing" means ---------------------------------------------------------------------

# A diagnosis refreshes the grant and stores the refreshed tokens back (Microsoft rotates refresh
# tokens; Fernet ciphertext differs on every write), so these columns may change on any question.
# Every other column of users, connections, appointments and event links must stay as it was.
TOKEN_COLUMNS = frozenset(
    {
        "refresh_token_encrypted",
        "access_token_encrypted",
        "access_token_expires_at",
        "scopes",
        "last_refreshed_at",
    }
)
PROTECTED_TABLES: tuple[Any, ...] = (User, CalendarConnection, Appointment, EventLink)


def protected_rows(sessions: sessionmaker[Session]) -> dict[str, list[dict[str, Any]]]:
    """Every row (every column but the token ones) of users, connections, appointments and links."""
    snapshot: dict[str, list[dict[str, Any]]] = {}
    with sessions() as session:
        for model in PROTECTED_TABLES:
            table = model.__table__
            columns = [column for column in table.columns if column.name not in TOKEN_COLUMNS]
            rows = session.execute(select(*columns).order_by(*table.primary_key.columns)).all()
            snapshot[table.name] = [dict(row._mapping) for row in rows]
    return snapshot


# Marks of an exception that escaped to a person (a traceback, a class name, a driver message).
LEAK_MARKERS = (
    "Traceback",
    'File "',
    "Exception",
    "Error:",
    "sqlalchemy",
    "SQLAlchemy",
    "psycopg",
    "OperationalError",
    "sqlite3",
    "KeyError",
    "TypeError",
    "ValueError",
    "AttributeError",
)


def leaks(text: str, allowed_in: str = "") -> list[str]:
    """The leak markers in `text` that did not come from the person's own words (`allowed_in`)."""
    return [marker for marker in LEAK_MARKERS if marker in text and marker not in allowed_in]
