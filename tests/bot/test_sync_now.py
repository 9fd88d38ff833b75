"""The "Sync now" button: offered where a cycle can help, it runs one and answers again."""

from __future__ import annotations

import pytest

from calsync.render.blocks import ACTION_SYNC_NOW
from tests.bot.conftest import SlackHarness, wait_for
from tests.bot.test_slack_app import final_message, text_of

KATE, OMAR, CARLA = "U0DEMOKATE", "U0DEMOOMAR", "U0DEMOCARLA"


def buttons(message: object) -> dict[str, str]:
    return {
        element["action_id"]: element.get("value", "")
        for block in getattr(message, "blocks", None) or []
        if block["type"] == "actions"
        for element in block["elements"]
    }


# (rep, question, words of the first answer, what the cycle reports)
SYNC_NOW = [
    pytest.param(
        KATE,
        "just booked a demo with pied piper, where is it?",
        "Pied Piper",
        "1 appointment sent to the calendar",
        id="push",
    ),
    pytest.param(
        OMAR,
        "i moved my meeting in outlook but salespartner still shows the old time",
        "moved",
        "1 calendar edit brought back",
        id="pull",
    ),
]


@pytest.mark.parametrize(("user", "question", "first", "reported"), SYNC_NOW)
def test_sync_now_runs_a_cycle_and_answers_again(
    slack: SlackHarness, user: str, question: str, first: str, reported: str
) -> None:
    _, channel = slack.dm(user, question)
    message = final_message(slack, channel, first)
    value = buttons(message)[ACTION_SYNC_NOW]

    assert slack.click(user, channel, message.ts, ACTION_SYNC_NOW, value).status_code == 200

    updated = wait_for(
        lambda: next(
            (m for m in slack.sandbox.world.slack_messages(channel) if reported in text_of(m)), None
        ),
        what="the answer after the sync",
    )
    assert updated.ts == message.ts, "the same message, updated in place"
    assert ACTION_SYNC_NOW not in buttons(updated), "nothing left waiting for a sync"


def test_no_sync_now_where_only_a_reconnect_helps(slack: SlackHarness) -> None:
    _, channel = slack.dm(CARLA, "why isn't my appointment showing?")
    message = final_message(slack, channel, "revoked")
    assert ACTION_SYNC_NOW not in buttons(message)
