"""The fixes as Slack sees them, on SQLite and on PostgreSQL: the real app (FastAPI + Bolt under
uvicorn on a loopback port) built by the composition root's own factories, over the calendar and
Slack emulators; signed click payloads sent to it; what the emulators hold asserted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from calsync.app import build_bolt_app, build_engine_and_bot, build_troubleshooter, build_web_app
from calsync.bot.slackbot import SlackBot
from calsync.db import make_engine
from calsync.render.answers import answer_message
from calsync.render.kit import Message
from calsync.sandbox.runtime import SandboxRuntime
from calsync.sandbox.server import BackgroundServer
from calsync.sandbox.slack_requests import FORM, button_click_payload
from calsync.sandbox.world import World
from calsync.syncbackend import migrate
from calsync.syncbackend.crypto import TokenCipher, generate_key
from calsync.syncbackend.engine import SyncEngine
from calsync.syncbackend.models import Appointment, AuditEntry, CalendarConnection
from tests.bot.conftest import SlackHarness, bot_settings, wait_for
from tests.bot.test_slack_app import text_of
from tests.conftest import DATABASE_BACKENDS, fresh_postgres_database
from tests.harness import MutableClock, Sandbox

_ids = itertools.count(1)


@dataclass(frozen=True)
class Posted:
    """An answer as it sits in Slack: where, and its buttons by action id."""

    channel: str
    ts: str
    message: Message

    @property
    def buttons(self) -> dict[str, dict[str, Any]]:
        return {
            element["action_id"]: element
            for block in self.message.blocks
            if block["type"] == "actions"
            for element in block["elements"]
        }


@dataclass
class FixHarness:
    slack: SlackHarness
    bot: SlackBot
    engine: SyncEngine

    @property
    def sandbox(self) -> Sandbox:
        return self.slack.sandbox

    def load(self, scenario: str) -> None:
        self.sandbox.load(scenario)

    def post_answer(
        self, email: str, slack_user_id: str, question: str | None, *, for_agent: bool = False
    ) -> Posted:
        """The answer the bot gives (a real diagnosis, audited), posted in the rep's DM (or, for an
        agent's view, in the agent's DM)."""
        troubleshooter = self.bot.troubleshooter
        answer = asyncio.run(troubleshooter.answer(email, question, actor=slack_user_id))
        message = answer_message(answer, for_agent=for_agent)
        channel = self.slack.dm_channel(slack_user_id)
        posted = self.sandbox.world.slack_post_message(
            channel=channel,
            user="UCALSYNC",
            text=message.text,
            blocks=message.blocks,
            attachments=None,
            now=self.sandbox.clock(),
        )
        return Posted(channel, posted.ts, message)

    def click(
        self,
        user: str,
        channel: str,
        ts: str,
        action_id: str,
        value: str,
        *,
        menu: bool = False,
        ephemeral: bool = False,
    ) -> None:
        """A signed click (a button, or with `menu` an option picked in a static_select) sent to the app."""
        world, base = self.sandbox.world, self.slack.slack_base
        response_url = world.slack_response_url(base, channel=channel, user_id=user, message_ts=ts)
        payload = button_click_payload(
            user=user,
            channel=channel,
            message_ts=ts,
            action_id=action_id,
            value=value,
            response_url=response_url,
            trigger_id=f"trig{next(_ids)}",
        )
        payload["container"]["is_ephemeral"] = ephemeral
        if menu:
            action = payload["actions"][0]
            del action["value"]
            action["type"] = "static_select"
            action["selected_option"] = {"text": {"type": "plain_text", "text": "x"}, "value": value}
        body = urlencode({"payload": json.dumps(payload)}).encode()
        assert self.slack.post(body, FORM).status_code == 200

    def reply(self, user: str, channel: str, words: str) -> Any:
        """The first message in `channel` (ephemeral to `user`, or updated in place) with `words`."""
        return wait_for(
            lambda: next(
                (
                    m
                    for m in self.sandbox.world.slack_messages(channel)
                    if words in text_of(m) and m.ephemeral_for in (None, user)
                ),
                None,
            ),
            what=f"a reply saying {words!r}",
        )

    def audit(self, action: str) -> list[AuditEntry]:
        with self.sandbox.sessions() as session:
            return list(
                session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
            )

    def connections(self, email: str) -> list[CalendarConnection]:
        with self.sandbox.sessions() as session:
            return list(
                session.scalars(
                    select(CalendarConnection)
                    .join(CalendarConnection.user)
                    .where(CalendarConnection.user.has(email=email))
                    .order_by(CalendarConnection.id)
                )
            )

    def appointment_statuses(self) -> dict[str, str]:
        with self.sandbox.sessions() as session:
            return {a.id: a.status for a in session.scalars(select(Appointment))}

    def live_events(self, appointment_id: str) -> list[Any]:
        return self.sandbox.world.find_events(appointment_id=appointment_id)


def value_of(posted: Posted, action_id: str) -> str:
    return str(posted.buttons[action_id]["value"])


@pytest.fixture(scope="module", params=DATABASE_BACKENDS)
def fix_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FixHarness]:
    directory: Path = tmp_path_factory.mktemp(f"fixes-{request.param}")
    database: contextlib.AbstractContextManager[str] = (
        contextlib.nullcontext(f"sqlite:///{directory / 'calsync.db'}")
        if request.param == "sqlite"
        else fresh_postgres_database("calsync_fixes")
    )
    with database as url:
        migrate.upgrade(url)
        engine = make_engine(url)
        world = World(engine)
        world.create_tables()
        clock = MutableClock()
        try:
            with SandboxRuntime(world, directory, clock) as endpoints:
                sandbox = Sandbox.build(
                    engine, world, TokenCipher([generate_key()]), clock, endpoints, directory
                )
                services = sandbox.services(bot_settings(sandbox))
                sync_engine, bot = build_engine_and_bot(services, build_troubleshooter(services))
                bolt_app = build_bolt_app(services, bot)
                assert bolt_app is not None
                web = build_web_app(services, bolt_app, bot=bot)
                with BackgroundServer(web, lifespan=True) as server:
                    harness = SlackHarness(sandbox, server.url, endpoints.slack_signing_secret)
                    yield FixHarness(harness, bot, sync_engine)
        finally:
            engine.dispose()


@pytest.fixture
def fixes(fix_server: FixHarness) -> FixHarness:
    """The app with an empty world (the test loads its scenario)."""
    fix_server.sandbox.reset()
    return fix_server
