"""An answer belongs to the rep it was made for: in a channel, nobody else can act on it or open its
reconnect link (issue 15, items 3 and 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from calsync.render.blocks import (
    ACTION_CHECK_AGAIN,
    ACTION_DETAILS,
    ACTION_HELPED,
    ACTION_RECONNECT,
    base_action_id,
)
from calsync.syncbackend.models import Feedback
from tests.bot.conftest import HELP_CHANNEL, SlackHarness, wait_for
from tests.bot.test_slack_app import final_message, text_of

CARLA, ANA, SAM = "U0DEMOCARLA", "U0DEMOANA", "U0DEMOSAM"  # Sam is a support agent
THREAD = "1764000900.000300"


def buttons(message: Any) -> dict[str, dict[str, Any]]:
    return {
        base_action_id(element["action_id"]) or "": element
        for block in message.blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
    }


def carla_asks_in_the_channel(slack: SlackHarness) -> Any:
    event = {
        "type": "app_mention",
        "user": CARLA,
        "channel": HELP_CHANNEL,
        "ts": THREAD,
        "text": "<@U0CALSYNC> why isnt my apointment showing??",
    }
    assert slack.event(event).status_code == 200
    message = final_message(slack, HELP_CHANNEL, "revoked")
    # The emulator changes the message before it logs the chat.update call: wait for the log too, so
    # a test counting updates from here on does not count the answer's own.
    wait_for(lambda: updates_of(slack, message.ts) >= 1, what="the answer's chat.update in the log")
    return message


def test_a_reconnect_button_in_a_channel_carries_no_link(slack: SlackHarness) -> None:
    message = carla_asks_in_the_channel(slack)
    reconnect = buttons(message)[ACTION_RECONNECT]
    assert "url" not in reconnect and "/connect/" not in json.dumps(message.blocks)
    assert json.loads(reconnect["value"])["provider"] == "google"


# (who clicks Reconnect on Carla's channel answer, what they privately get)
RECONNECT_CLICKS = [
    pytest.param(CARLA, "/connect/google?t=", id="the-owner-gets-her-link"),
    pytest.param(ANA, "for <@U0DEMOCARLA>'s calendar", id="anyone-else-is-told-whose"),
    pytest.param(SAM, "for <@U0DEMOCARLA>'s calendar", id="even-an-agent"),
]


@pytest.mark.parametrize(("who", "gets"), RECONNECT_CLICKS)
def test_reconnect_in_a_channel_reaches_only_its_owner(slack: SlackHarness, who: str, gets: str) -> None:
    message = carla_asks_in_the_channel(slack)
    value = buttons(message)[ACTION_RECONNECT]["value"]

    assert slack.click(who, HELP_CHANNEL, message.ts, ACTION_RECONNECT, value).status_code == 200

    private = wait_for(lambda: slack.ephemeral_for(who, HELP_CHANNEL), what="the private reply")
    assert gets in text_of(private[0])
    others = [m for m in slack.sandbox.world.slack_messages(HELP_CHANNEL) if m.ephemeral_for is None]
    assert "/connect/" not in json.dumps([m.blocks for m in others]), "no link in anything public"


def updates_of(slack: SlackHarness, ts: str) -> int:
    return len([c for c in slack.sandbox.world.slack_calls("chat.update") if c.params.get("ts") == ts])


# (who clicks Check again / Details / Helped on Carla's answer, what their private reply says)
SOMEONE_ELSE = [
    pytest.param(ANA, ACTION_CHECK_AGAIN, "That answer is for <@U0DEMOCARLA>", id="a-rep-checks-again"),
    pytest.param(ANA, ACTION_DETAILS, "That answer is for <@U0DEMOCARLA>", id="a-rep-asks-details"),
    pytest.param(ANA, ACTION_HELPED, "That answer is for <@U0DEMOCARLA>", id="a-rep-rates-it"),
    pytest.param(SAM, ACTION_CHECK_AGAIN, "connection.revoked", id="an-agent-gets-the-agent-view"),
]


@pytest.mark.parametrize(("who", "action", "says"), SOMEONE_ELSE)
def test_a_click_by_anyone_else_never_touches_the_answer(
    slack: SlackHarness, who: str, action: str, says: str
) -> None:
    message = carla_asks_in_the_channel(slack)
    value = buttons(message)[action]["value"]
    before = updates_of(slack, message.ts)

    assert slack.click(who, HELP_CHANNEL, message.ts, action, value).status_code == 200

    private = wait_for(
        lambda: [m for m in slack.ephemeral_for(who, HELP_CHANNEL) if says in text_of(m)], what="the reply"
    )
    if who == ANA:
        assert "Ana" in text_of(private[0]) or "healthy" in text_of(private[0]), "her own answer"
    assert updates_of(slack, message.ts) == before, "Carla's answer is left as it was"
    with slack.sandbox.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0


def test_the_owner_still_checks_again_in_place(slack: SlackHarness) -> None:
    message = carla_asks_in_the_channel(slack)
    before = updates_of(slack, message.ts)
    value = buttons(message)[ACTION_CHECK_AGAIN]["value"]
    assert slack.click(CARLA, HELP_CHANNEL, message.ts, ACTION_CHECK_AGAIN, value).status_code == 200
    wait_for(lambda: updates_of(slack, message.ts) > before, what="the update in place")
    updated = next(m for m in slack.sandbox.world.slack_messages(HELP_CHANNEL) if m.ts == message.ts)
    assert "url" not in buttons(updated)[ACTION_RECONNECT], "still no link in the channel"
