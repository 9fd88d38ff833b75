"""The bot as Slack sees it: the real FastAPI + Bolt app under uvicorn on a loopback port, wired to
the sandbox (calendar emulators and the Slack emulator), and signed requests sent to it."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest

from calsync.app import (
    build_bolt_app,
    build_engine_and_bot,
    build_troubleshooter,
    build_web_app,
)
from calsync.sandbox.server import BackgroundServer
from calsync.sandbox.slack_requests import (
    FORM,
    JSON,
    TEAM_ID,
    button_click_body,
    command_body,
    event_body,
    signed_headers,
)
from calsync.settings import Settings
from tests.harness import Sandbox

T = TypeVar("T")
AGENT_BY_SETTING = "U0AGENTSET"
SUPPORT_CHANNEL = "C0SUPPORT"
HELP_CHANNEL = "C0HELP"
_ids = itertools.count(1)


def wait_for(probe: Callable[[], T | None], timeout: float = 20.0, what: str = "it") -> T:
    """Poll `probe` until it returns something truthy (the bot works after the ack, asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature headers for `body` (no content type)."""
    headers = signed_headers(body, secret, JSON, timestamp)
    del headers["Content-Type"]
    return headers


@dataclass
class SlackHarness:
    sandbox: Sandbox
    url: str
    secret: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def slack_base(self) -> str:
        return self.sandbox.endpoints.slack_url

    def post(self, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> httpx.Response:
        signed = {**signed_headers(body, self.secret, content_type), **(headers or {})}
        return self.http.post(f"{self.url}/slack/events", content=body, headers=signed)

    def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry: int | None = None,
        team_id: str = TEAM_ID,
    ) -> httpx.Response:
        body = event_body(event, event_id or f"Ev{next(_ids):08d}", team_id=team_id)
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        return self.post(body, JSON, headers)

    def dm_channel(self, user: str) -> str:
        channel, _ = self.sandbox.world.slack_open_dm(user, self.sandbox.clock())
        return channel

    def dm(self, user: str, text: str, **kwargs: Any) -> tuple[httpx.Response, str]:
        channel = self.dm_channel(user)
        ts = f"{1764000000 + next(_ids)}.000100"
        event = {
            "type": "message",
            "channel_type": "im",
            "user": user,
            "channel": channel,
            "text": text,
            "ts": ts,
        }
        return self.event(event, **kwargs), channel

    def command(
        self, user: str, text: str, channel: str = HELP_CHANNEL, *, team_id: str = TEAM_ID
    ) -> tuple[httpx.Response, str]:
        response_url = self.sandbox.world.slack_response_url(self.slack_base, channel=channel, user_id=user)
        body = command_body(
            user=user,
            channel=channel,
            text=text,
            response_url=response_url,
            trigger_id=f"trig{next(_ids)}",
            team_id=team_id,
        )
        return self.post(body, FORM), channel

    def click(self, user: str, channel: str, message_ts: str, action_id: str, value: str) -> httpx.Response:
        response_url = self.sandbox.world.slack_response_url(
            self.slack_base, channel=channel, user_id=user, message_ts=message_ts
        )
        body = button_click_body(
            user=user,
            channel=channel,
            message_ts=message_ts,
            action_id=action_id,
            value=value,
            response_url=response_url,
            trigger_id=f"trig{next(_ids)}",
        )
        return self.post(body, FORM)

    def ephemeral_for(self, user: str, channel: str) -> list[Any]:
        return [m for m in self.sandbox.world.slack_messages(channel) if m.ephemeral_for == user]


def bot_settings(sandbox: Sandbox, **env: str) -> Settings:
    """The settings the bot tests serve with (agents, the support channel), pointed at the sandbox,
    plus `env` (settings by their variable names)."""
    values: dict[str, Any] = {
        "CALSYNC_STATE_DIR": sandbox.tmp_dir,  # generated secrets stay out of the working tree
        "CALSYNC_AGENT_SLACK_IDS": AGENT_BY_SETTING,
        "CALSYNC_SUPPORT_CHANNEL": SUPPORT_CHANNEL,
        **env,
    }
    return sandbox.endpoints.apply(Settings(_env_file=None, **values))  # type: ignore[call-arg]


def load_demo(sandbox: Sandbox) -> None:
    """The demo world, the support channel and the agent by setting (the `sandbox` fixture emptied it)."""
    from pathlib import Path

    sandbox.load_file(Path(__file__).parents[2] / "calsync" / "sandbox" / "scenarios" / "demo.yaml")
    sandbox.world.slack_add_channel(SUPPORT_CHANNEL, "calendar-support")
    sandbox.world.slack_add_user(AGENT_BY_SETTING, "agent.by.setting@northwind.example", "Agent Setting")


@pytest.fixture(scope="module")
def slack_server(sandbox_session: Sandbox) -> Iterator[SlackHarness]:
    """The app, built by the composition root's own factories, serving on an ephemeral port."""
    services = sandbox_session.services(bot_settings(sandbox_session))
    _, bot = build_engine_and_bot(services, build_troubleshooter(services))
    bolt_app = build_bolt_app(services, bot)
    assert bolt_app is not None
    with BackgroundServer(build_web_app(services, bolt_app, bot=bot), lifespan=True) as server:
        yield SlackHarness(sandbox_session, server.url, sandbox_session.endpoints.slack_signing_secret)


@pytest.fixture
def slack(slack_server: SlackHarness, sandbox: Sandbox) -> SlackHarness:
    """The app with the demo world loaded afresh (the `sandbox` fixture empties it first)."""
    load_demo(sandbox)
    return slack_server
