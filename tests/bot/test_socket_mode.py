"""calsync over Socket Mode: the app the composition root builds for `SLACK_APP_TOKEN` connects to
the Slack emulator's WebSocket (the URL from `apps.connections.open` on `SLACK_API_URL`), and the
events, commands and clicks the emulator pushes there are acked by envelope id and answered in the
emulator as over HTTP. The web pages still serve on the HTTP port; `/slack/events` does not."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from calsync.app import (
    build_bolt_app,
    build_engine_and_bot,
    build_socket_mode,
    build_troubleshooter,
    build_web_app,
)
from calsync.bot.socket_mode import SocketModeRefused
from calsync.render.blocks import ACTION_CHECK_AGAIN
from calsync.sandbox.runtime import SLACK_BOT_USER_ID, SLACK_TEAM_ID
from calsync.sandbox.server import BackgroundServer
from calsync.sandbox.slack_emulator import build_slack_app
from calsync.sandbox.slack_requests import button_click_payload, command_payload, event_payload
from calsync.sandbox.slack_socket_mode import SocketModeAck, SocketModeHub
from tests.bot.conftest import HELP_CHANNEL, bot_settings, load_demo, wait_for
from tests.harness import Sandbox

CARLA = "U0DEMOCARLA"
_ids = itertools.count(1)


@dataclass
class SocketSlack:
    """The Slack emulator with Socket Mode on, and calsync connected to it."""

    sandbox: Sandbox
    hub: SocketModeHub
    slack_url: str
    app_url: str

    def dm(
        self, user: str, text: str, *, event_id: str | None = None, retry_attempt: int = 0
    ) -> tuple[str, str]:
        """A DM event envelope; its envelope id and the DM channel."""
        channel, _ = self.sandbox.world.slack_open_dm(user, self.sandbox.clock())
        event = {
            "type": "message",
            "channel_type": "im",
            "user": user,
            "channel": channel,
            "text": text,
            "ts": f"{1764100000 + next(_ids)}.000100",
        }
        payload = event_payload(event, event_id or f"EvSock{next(_ids):06d}")
        reason = "timeout" if retry_attempt else ""
        return self.hub.push("events_api", payload, retry_attempt=retry_attempt, retry_reason=reason), channel

    def command(self, user: str, text: str, channel: str = HELP_CHANNEL) -> str:
        response_url = self.sandbox.world.slack_response_url(self.slack_url, channel=channel, user_id=user)
        payload = command_payload(
            user=user, channel=channel, text=text, response_url=response_url, trigger_id=f"trig{next(_ids)}"
        )
        return self.hub.push("slash_commands", dict(payload))

    def click(self, user: str, channel: str, message_ts: str, action_id: str, value: str) -> str:
        response_url = self.sandbox.world.slack_response_url(
            self.slack_url, channel=channel, user_id=user, message_ts=message_ts
        )
        payload = button_click_payload(
            user=user,
            channel=channel,
            message_ts=message_ts,
            action_id=action_id,
            value=value,
            response_url=response_url,
            trigger_id=f"trig{next(_ids)}",
        )
        return self.hub.push("interactive", payload)

    def acked(self, envelope_id: str) -> SocketModeAck:
        return self.hub.wait_for_ack(envelope_id, timeout=10)

    def calls(self, method: str, channel: str) -> list[Any]:
        return [c for c in self.sandbox.world.slack_calls(method) if c.params.get("channel") == channel]

    def answer(self, channel: str, contains: str) -> Any:
        return wait_for(
            lambda: next((m for m in self.sandbox.world.slack_messages(channel) if contains in m.text), None),
            what=f"a message containing {contains!r} in {channel}",
        )


@pytest.fixture(scope="module")
def socket_server(sandbox_session: Sandbox) -> Iterator[SocketSlack]:
    """A Slack emulator of its own with an app-level token (over the shared world), and calsync's
    web app, built as `calsync serve` builds it, serving on an ephemeral port: its start-up connects."""
    bot_token, app_token = f"xoxb-sandbox-{secrets.token_hex(8)}", f"xapp-1-sandbox-{secrets.token_hex(8)}"
    emulator = build_slack_app(
        sandbox_session.world,
        bot_token=bot_token,
        app_token=app_token,
        clock=sandbox_session.clock,
        bot_user_id=SLACK_BOT_USER_ID,
        team_id=SLACK_TEAM_ID,
    )
    with BackgroundServer(emulator) as slack:
        settings = bot_settings(
            sandbox_session,
            SLACK_API_URL=f"{slack.url}/api/",
            SLACK_BOT_TOKEN=bot_token,
            SLACK_APP_TOKEN=app_token,
        )
        assert settings.slack_signing_secret is None  # Socket Mode only: nothing to verify HTTP with
        services = sandbox_session.services(settings)
        troubleshooter = build_troubleshooter(services)
        _, bot = build_engine_and_bot(services, troubleshooter)
        bolt_app = build_bolt_app(services, bot)
        assert bolt_app is not None
        with BackgroundServer(
            build_web_app(services, bolt_app, troubleshooter, bot=bot), lifespan=True
        ) as app:
            hub: SocketModeHub = emulator.state.socket_mode
            hub.wait_for_connections(1)
            yield SocketSlack(sandbox_session, hub, slack.url, app.url)


@pytest.fixture
def slack(socket_server: SocketSlack, sandbox: Sandbox) -> SocketSlack:
    load_demo(sandbox)
    return socket_server


def test_a_dm_event_is_acked_and_answered_in_place(slack: SocketSlack) -> None:
    envelope_id, channel = slack.dm(CARLA, "why isn't my appointment showing?")
    assert slack.acked(envelope_id).payload is None
    message = slack.answer(channel, "revoked")
    assert "Reconnect Google Calendar" in message.text + str(message.blocks)
    updates = wait_for(lambda: slack.calls("chat.update", channel), what="the chat.update")
    posts = slack.calls("chat.postMessage", channel)
    assert len(posts) == 1 and "Checking your calendar connection" in posts[0].params["text"]
    assert len(updates) == 1
    assert len(slack.sandbox.world.slack_messages(channel)) == 1


def test_a_slash_command_is_acked_and_answered_privately(slack: SocketSlack) -> None:
    envelope_id = slack.command(CARLA, "help")
    assert slack.acked(envelope_id).envelope_id == envelope_id
    help_text = wait_for(
        lambda: [
            m
            for m in slack.sandbox.world.slack_messages(HELP_CHANNEL)
            if m.ephemeral_for == CARLA and "/calsync diagnose" in m.text + str(m.blocks)
        ],
        what="the help, only to Carla",
    )
    assert len(help_text) == 1
    # The emulator shows the message before it logs the call: wait for the log to catch up.
    calls = wait_for(lambda: slack.sandbox.world.slack_calls("response_url"), what="the response_url post")
    assert [c.ok for c in calls] == [True]


def test_a_button_click_is_acked_and_check_again_updates_the_answer(slack: SocketSlack) -> None:
    envelope_id, channel = slack.dm(CARLA, "why isn't my appointment showing?")
    slack.acked(envelope_id)
    message = slack.answer(channel, "revoked")
    wait_for(lambda: slack.calls("chat.update", channel), what="the answer's chat.update")
    check_again = next(
        element["value"]
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == ACTION_CHECK_AGAIN
    )

    clicked = slack.click(CARLA, channel, message.ts, ACTION_CHECK_AGAIN, check_again)
    assert slack.acked(clicked).payload is None
    wait_for(lambda: len(slack.calls("chat.update", channel)) == 2, what="the fresh answer in place")
    assert len([m for m in slack.sandbox.world.slack_messages(channel) if m.ephemeral_for is None]) == 1


def test_a_redelivered_event_is_acked_each_time_and_answered_once(slack: SocketSlack) -> None:
    first, channel = slack.dm(CARLA, "my calendar says disconnected", event_id="EvSockRetry1")
    again, _ = slack.dm(CARLA, "my calendar says disconnected", event_id="EvSockRetry1", retry_attempt=1)
    assert first != again
    assert [
        len(slack.hub.acks(e)) for e in (slack.acked(first).envelope_id, slack.acked(again).envelope_id)
    ] == [1, 1]
    slack.answer(channel, "revoked")
    # A later question proves the redelivery was fully handled before we count.
    later, _ = slack.dm(CARLA, "why isn't my appointment showing")
    slack.acked(later)
    wait_for(
        lambda: (
            len([m for m in slack.sandbox.world.slack_messages(channel) if "Checking" not in m.text]) >= 2
        ),
        what="the later answer",
    )
    assert len(slack.sandbox.world.slack_messages(channel)) == 2
    assert len(slack.calls("chat.postMessage", channel)) == 2


def test_after_slack_asks_for_a_refresh_calsync_reconnects_and_still_answers(slack: SocketSlack) -> None:
    old = slack.hub.disconnect("refresh_requested")
    [new] = slack.hub.wait_for_connections(1)
    assert new > old
    envelope_id, channel = slack.dm(CARLA, "why isn't my appointment showing?")
    assert slack.acked(envelope_id).connection == new
    slack.answer(channel, "revoked")


@pytest.mark.parametrize(
    ("path", "status"),
    [("/healthz", 200), ("/playground", 200), ("/oauth/google/callback", 400), ("/slack/events", 404)],
    ids=["health", "playground", "oauth-callback", "no-http-events"],
)
def test_the_http_port_serves_the_pages_but_not_slack_events(
    slack: SocketSlack, path: str, status: int
) -> None:
    method = "POST" if path == "/slack/events" else "GET"
    assert httpx.request(method, f"{slack.app_url}{path}", timeout=10).status_code == status


async def test_an_app_token_slack_refuses_stops_the_start_with_slacks_reason(sandbox: Sandbox) -> None:
    load_demo(sandbox)
    settings = bot_settings(sandbox, SLACK_APP_TOKEN="xapp-1-not-this-apps-token")
    services = sandbox.services(settings)
    _, bot = build_engine_and_bot(services, build_troubleshooter(services))
    bolt_app = build_bolt_app(services, bot)
    connect = build_socket_mode(services, bolt_app)
    assert connect is not None
    with pytest.raises(SocketModeRefused, match=r"apps\.connections\.open: invalid_auth"):
        async with connect():
            pass


def test_without_an_app_token_there_is_no_socket_mode(sandbox: Sandbox) -> None:
    services = sandbox.services(bot_settings(sandbox))
    _, bot = build_engine_and_bot(services, build_troubleshooter(services))
    assert build_socket_mode(services, build_bolt_app(services, bot)) is None
