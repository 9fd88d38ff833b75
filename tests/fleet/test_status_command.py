"""`/calsync status` over signed Slack requests to the running app, answered in the Slack emulator:
agents get the fleet at a glance (ephemeral) with a fleet-page link; anyone else is refused."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import select

from calsync.render.blocks import validate_blocks
from calsync.store.fleet import FleetStore
from calsync.syncbackend.models import AuditEntry
from tests.bot.conftest import AGENT_BY_SETTING, SlackHarness, wait_for

ANA, SAM, GHOST = "U0DEMOANA", "U0DEMOSAM", "U0DEMOGHOST"


def text_of(message: Any) -> str:
    return message.text + json.dumps(message.blocks or [], ensure_ascii=False)


def reply(slack: SlackHarness, user: str, text: str) -> Any:
    _, channel = slack.command(user, text)
    return wait_for(lambda: next(iter(slack.ephemeral_for(user, channel)), None), what="the ephemeral reply")


@pytest.mark.parametrize(
    "agent", [SAM, AGENT_BY_SETTING], ids=["agent-by-role-and-group", "agent-by-setting"]
)
def test_an_agent_gets_the_fleet_privately_with_a_link_to_the_fleet_page(
    slack: SlackHarness, agent: str
) -> None:
    fleet = FleetStore(slack.sandbox.sessions, slack.sandbox.clock).fleet()
    _, channel = slack.command(agent, "status")
    message = wait_for(
        lambda: next(
            (m for m in slack.ephemeral_for(agent, channel) if "across the team" in text_of(m)), None
        ),
        what="the status reply",
    )
    assert validate_blocks(message.blocks) == []
    body = text_of(message)
    assert f"{fleet.total} reps, {fleet.broken} with a broken connection" in body
    for label, state in [
        ("Needs reconnect", "needs_reconnect"),
        ("Failing", "failing"),
        ("Healthy", "healthy"),
    ]:
        assert f"*{label}*: {fleet.counts[state]}" in body  # type: ignore[index]
    assert fleet.counts["needs_reconnect"] >= 1 and fleet.counts["failing"] >= 1
    assert "Last health sweep" in body
    [button] = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == "open_fleet"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/fleet/[A-Za-z0-9_.-]+", button["url"])
    # Nothing went into the channel for everyone.
    assert [m for m in slack.sandbox.world.slack_messages(channel) if m.ephemeral_for is None] == []


def test_a_rep_is_refused_and_the_refusal_audited(slack: SlackHarness) -> None:
    refusal = reply(slack, ANA, "status")
    assert "Only support agents can see the team's status" in refusal.text
    assert "/fleet/" not in text_of(refusal) and "Needs reconnect" not in text_of(refusal)
    with slack.sandbox.sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.actor == ANA)).one()
    assert (entry.action, entry.result) == ("fleet_status", "refused: not an agent")


@pytest.mark.parametrize(
    ("user", "text", "expected"),
    [
        (SAM, "status now please", "`/calsync status` takes nothing after it."),
        (SAM, "STATUS", "across the team"),
        (GHOST, "status", "Only support agents"),  # in Slack, no SalesPartner account
        (SAM, "help", "/calsync status"),
    ],
)
def test_status_wording(slack: SlackHarness, user: str, text: str, expected: str) -> None:
    assert expected in text_of(reply(slack, user, text))


def test_help_for_a_rep_does_not_offer_status(slack: SlackHarness) -> None:
    assert "/calsync status" not in text_of(reply(slack, ANA, "help"))
