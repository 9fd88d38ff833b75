"""A signed click or command replayed within Slack's five-minute window is acted on once, whichever
instance the replay reaches; two real clicks on the same button are both acted on."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select

from calsync.app import (
    build_bolt_app,
    build_slack_bot,
    build_sync_engine,
    build_troubleshooter,
    build_web_app,
)
from calsync.render.blocks import ACTION_CHECK_AGAIN, ACTION_HELPED, ACTION_TALK_TO_SUPPORT
from calsync.sandbox.server import BackgroundServer
from calsync.sandbox.slack_requests import FORM, button_click_body, command_body, signed_headers
from calsync.settings import Settings
from calsync.syncbackend.models import Feedback, ProcessedEvent
from tests.bot.conftest import AGENT_BY_SETTING, SUPPORT_CHANNEL, SlackHarness, wait_for
from tests.harness import Sandbox

CARLA = "U0DEMOCARLA"


@pytest.fixture(scope="module")
def second_instance(slack_server: SlackHarness) -> Iterator[str]:
    """Another calsync instance (its own bot, Bolt app and web server) on the same database."""
    sandbox = slack_server.sandbox
    settings = sandbox.endpoints.apply(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            CALSYNC_STATE_DIR=sandbox.tmp_dir,
            CALSYNC_AGENT_SLACK_IDS=AGENT_BY_SETTING,
            CALSYNC_SUPPORT_CHANNEL=SUPPORT_CHANNEL,
        )
    )
    services = sandbox.services(settings)
    bot = build_slack_bot(services, build_troubleshooter(services), build_sync_engine(services))
    bolt_app = build_bolt_app(services, bot)
    assert bolt_app is not None
    with BackgroundServer(build_web_app(services, bolt_app)) as server:
        yield server.url


def answer_buttons(slack: SlackHarness) -> tuple[str, str, dict[str, str]]:
    """Carla asks in a DM; her answer's channel, ts and button values by action id."""
    _, channel = slack.dm(CARLA, "why isn't my appointment showing?")
    world = slack.sandbox.world
    message = wait_for(lambda: next((m for m in world.slack_messages(channel) if "revoked" in m.text), None))
    # The emulator logs a call after it has changed the message: wait for the log too, or the
    # answer's own chat.update could be counted as a click's.
    wait_for(
        lambda: any(
            "revoked" in str(call.params.get("text", ""))
            for call in world.slack_calls()
            if call.method in ("chat.update", "chat.postMessage")
        ),
        what="the answer's call in the emulator's log",
    )
    values = {
        element["action_id"]: element.get("value", "")
        for block in message.blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
    }
    return channel, message.ts, values


def click(slack: SlackHarness, channel: str, ts: str, action_id: str, value: str, trigger: str) -> bytes:
    url = slack.sandbox.world.slack_response_url(
        slack.slack_base, channel=channel, user_id=CARLA, message_ts=ts
    )
    return button_click_body(
        user=CARLA,
        channel=channel,
        message_ts=ts,
        action_id=action_id,
        value=value,
        response_url=url,
        trigger_id=trigger,
    )


def feedback_rows(sandbox: Sandbox) -> int:
    with sandbox.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Feedback)) or 0)


def support_posts(sandbox: Sandbox) -> int:
    return len([m for m in sandbox.world.slack_messages(SUPPORT_CHANNEL) if m.ephemeral_for is None])


def updates(sandbox: Sandbox) -> int:
    return len(sandbox.world.slack_calls("chat.update"))


def responses(sandbox: Sandbox) -> int:
    return len(sandbox.world.slack_calls("response_url"))


def make_command(slack: SlackHarness, trigger: str) -> bytes:
    url = slack.sandbox.world.slack_response_url(slack.slack_base, channel="C0HELP", user_id=CARLA)
    return command_body(user=CARLA, channel="C0HELP", text="diagnose", response_url=url, trigger_id=trigger)


def two_deliveries(slack: SlackHarness, action: str | None) -> tuple[bytes, bytes]:
    """The body to replay and a genuine second one of the same kind (its own trigger id)."""
    first, second = f"trig-{uuid.uuid4().hex}", f"trig-{uuid.uuid4().hex}"
    if action is None:
        return make_command(slack, first), make_command(slack, second)
    channel, ts, values = answer_buttons(slack)
    # Carla has a fix of her own, so Talk to support is in Details, not on the answer: same value.
    value = values.get(action) or json.dumps({"diagnosis": json.loads(values[ACTION_HELPED])["diagnosis"]})
    return click(slack, channel, ts, action, value, first), click(slack, channel, ts, action, value, second)


def interaction_claims(sandbox: Sandbox) -> int:
    with sandbox.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ProcessedEvent)
                .where(ProcessedEvent.event_id.like("interaction:%"))
            )
            or 0
        )


# (what is sent, how its effect is counted, how many effects one delivery has)
ROWS = [
    pytest.param(ACTION_HELPED, feedback_rows, 1, id="helped"),
    pytest.param(ACTION_TALK_TO_SUPPORT, support_posts, 1, id="talk-to-support"),
    pytest.param(ACTION_CHECK_AGAIN, updates, 1, id="check-again"),
    pytest.param(None, responses, 2, id="command-diagnose"),  # "Checking…", then the answer
]


@pytest.mark.parametrize("across", [False, True], ids=["same-instance", "other-instance"])
@pytest.mark.parametrize(("action", "effects", "per_delivery"), ROWS)
def test_a_replayed_signed_interaction_is_acted_on_once(
    slack: SlackHarness,
    second_instance: str,
    action: str | None,
    effects: Callable[[Sandbox], int],
    per_delivery: int,
    across: bool,
) -> None:
    sandbox = slack.sandbox
    body, genuine = two_deliveries(slack, action)
    claims = interaction_claims(sandbox)
    headers = signed_headers(body, slack.secret, FORM)  # one signature, one timestamp: an exact replay
    before = effects(sandbox)
    first = httpx.post(f"{slack.url}/slack/events", content=body, headers=headers, timeout=30)
    assert first.status_code == 200
    wait_for(lambda: effects(sandbox) >= before + per_delivery, what="the first delivery's effect")
    replay_to = second_instance if across else slack.url
    for _ in range(3):
        assert (
            httpx.post(f"{replay_to}/slack/events", content=body, headers=headers, timeout=30).status_code
            == 200
        )

    # A real second click (its own trigger id) is acted on: once it has been, the replays had their turn.
    assert slack.post(genuine, FORM).status_code == 200
    wait_for(lambda: effects(sandbox) >= before + 2 * per_delivery, what="the genuine click's effect")
    time.sleep(0.3)
    assert effects(sandbox) == before + 2 * per_delivery
    assert interaction_claims(sandbox) == claims + 2, "one claim per distinct payload"
