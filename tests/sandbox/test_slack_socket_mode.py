"""The Slack emulator's Socket Mode: `apps.connections.open` and the WebSocket behind it, through
slack_sdk's own Socket Mode client (aiohttp, the one Bolt's AsyncSocketModeHandler uses) and a bare
`websockets` client for what a well-behaved client never does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import websockets
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from calsync.db import make_engine
from calsync.sandbox.server import BackgroundServer
from calsync.sandbox.slack_emulator import build_slack_app
from calsync.sandbox.slack_socket_mode import SocketModeHub
from calsync.sandbox.world import World
from tests.conftest import FrozenClock

BOT_TOKEN = "xoxb-sandbox-test-socket"
APP_TOKEN = "xapp-1-sandbox-test-socket"
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@dataclass
class Emulator:
    world: World
    url: str
    hub: SocketModeHub

    def web(self, token: str) -> AsyncWebClient:
        return AsyncWebClient(token=token, base_url=f"{self.url}/api/", timeout=5)


@dataclass
class App:
    """An app on slack_sdk's Socket Mode client: it keeps what it is sent and acks every envelope,
    with a response payload where the envelope accepts one."""

    client: SocketModeClient
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[SocketModeRequest] = field(default_factory=list)

    async def on_message(self, _client: Any, message: dict[str, Any], _raw: str | None) -> None:
        self.messages.append(message)

    async def on_request(self, client: Any, request: SocketModeRequest) -> None:
        self.requests.append(request)
        payload = {"text": f"got {request.type}"} if request.accepts_response_payload else None
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id, payload=payload))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('slack-socket') / 'world.db'}")
    world = World(engine)
    world.create_tables()
    app = build_slack_app(world, bot_token=BOT_TOKEN, app_token=APP_TOKEN, clock=FrozenClock(NOW))
    with BackgroundServer(app) as server:
        yield Emulator(world, server.url, app.state.socket_mode)
    engine.dispose()


@pytest.fixture
async def app(emulator: Emulator) -> AsyncIterator[App]:
    client = SocketModeClient(app_token=APP_TOKEN, web_client=emulator.web(BOT_TOKEN), ping_interval=1)
    connected = App(client)
    client.message_listeners.append(connected.on_message)
    client.socket_mode_request_listeners.append(connected.on_request)
    await client.connect()
    await asyncio.to_thread(emulator.hub.wait_for_connections, 1)
    yield connected
    await client.close()


async def eventually(probe: Any, what: str, timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if found := probe():
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_connections_open_gives_a_websocket_url_on_the_emulator_for_the_app_token(
    emulator: Emulator,
) -> None:
    opened = await emulator.web(APP_TOKEN).apps_connections_open(app_token=APP_TOKEN)
    host = emulator.url.removeprefix("http://")
    assert opened["ok"] is True
    assert opened["url"].startswith(f"ws://{host}/link/?ticket=")


@pytest.mark.parametrize(
    ("token", "method", "error"),
    [
        (BOT_TOKEN, "apps.connections.open", "not_allowed_token_type"),
        ("xapp-1-someone-else", "apps.connections.open", "invalid_auth"),
        (APP_TOKEN, "chat.postMessage", "not_allowed_token_type"),
        (APP_TOKEN, "auth.test", "not_allowed_token_type"),
    ],
    ids=["bot-token-opens", "foreign-app-token", "app-token-posts", "app-token-auth-test"],
)
async def test_each_token_works_only_where_slack_takes_it(
    emulator: Emulator, token: str, method: str, error: str
) -> None:
    with pytest.raises(SlackApiError) as raised:
        await emulator.web(token).api_call(method, json={"channel": "C0HELP", "text": "x"})
    assert raised.value.response["error"] == error


async def test_the_app_is_greeted_and_each_envelope_type_is_acked_by_its_id(
    emulator: Emulator, app: App
) -> None:
    hello = await eventually(lambda: [m for m in app.messages if m.get("type") == "hello"], "the hello")
    assert hello[0]["connection_info"] == {"app_id": "A0CALSYNC"}
    pushed: list[tuple[str, dict[str, Any]]] = [
        ("events_api", {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_home_opened"}}),
        ("slash_commands", {"command": "/calsync", "text": "help", "user_id": "U0ANA"}),
        ("interactive", {"type": "block_actions", "actions": [{"action_id": "x"}]}),
    ]
    ids = [emulator.hub.push(kind, payload) for kind, payload in pushed]
    acks = [await asyncio.to_thread(emulator.hub.wait_for_ack, envelope_id) for envelope_id in ids]

    assert [(r.type, r.payload, r.accepts_response_payload) for r in app.requests] == [
        (kind, payload, kind == "slash_commands") for kind, payload in pushed
    ]
    assert [(a.envelope_id, a.payload) for a in acks] == [
        (ids[0], None),
        (ids[1], {"text": "got slash_commands"}),
        (ids[2], None),
    ]
    assert emulator.hub.unreadable() == []


async def test_a_redelivered_event_carries_its_retry_attempt(emulator: Emulator, app: App) -> None:
    payload = {"type": "event_callback", "event_id": "EvAgain", "event": {"type": "app_home_opened"}}
    first = emulator.hub.push("events_api", payload)
    again = emulator.hub.push(
        "events_api", payload, envelope_id=first, retry_attempt=1, retry_reason="timeout"
    )
    await eventually(lambda: len(emulator.hub.acks(first)) == 2, "both acks")
    assert again == first
    assert [(r.retry_attempt, r.retry_reason) for r in app.requests] == [(0, ""), (1, "timeout")]


async def test_after_a_disconnect_the_app_reconnects_and_envelopes_take_the_new_connection(
    emulator: Emulator, app: App
) -> None:
    [before] = emulator.hub.connections()
    told = await asyncio.to_thread(emulator.hub.disconnect, "refresh_requested")
    [after] = await asyncio.to_thread(emulator.hub.wait_for_connections, 1)
    assert told == before and after > before
    await eventually(lambda: emulator.hub.connections() == [after], "the old connection to close")

    envelope_id = emulator.hub.push("events_api", {"type": "event_callback", "event": {"type": "x"}})
    ack = await asyncio.to_thread(emulator.hub.wait_for_ack, envelope_id)
    assert ack.connection == after


async def test_a_websocket_url_works_once_and_a_made_up_one_never(emulator: Emulator) -> None:
    opened = await emulator.web(APP_TOKEN).apps_connections_open(app_token=APP_TOKEN)
    async with websockets.connect(opened["url"]) as socket:
        assert '"type": "hello"' in str(await socket.recv())
    for url in (opened["url"], opened["url"].split("?")[0] + "?ticket=made-up"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url)
        assert refused.value.response.status_code == 403


async def test_pushing_with_no_app_connected_says_so(emulator: Emulator) -> None:
    await eventually(lambda: emulator.hub.connections() == [], "the earlier connections to close")
    with pytest.raises(TimeoutError, match="no app is connected"):
        emulator.hub.push("events_api", {"type": "event_callback"}, timeout=0.2)
