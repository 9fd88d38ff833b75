"""The incident through the real bot: signed Slack requests over HTTP to the running app, the sync
engine's cycles against the emulators, and what the Slack emulator received (SQLite; the scenarios'
PostgreSQL runs are in test_scenarios.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from calsync.app import build_engine_and_bot, build_troubleshooter
from calsync.render.blocks import validate_blocks
from calsync.render.kit import ACTION_RECONNECT
from tests.bot.conftest import SlackHarness, bot_settings, wait_for
from tests.harness import Sandbox
from tests.incidents.helpers import SCENARIOS, SUPPORT_CHANNEL, incident_messages

TESS, SAM = "U0INCTESS", "U0INCSAM"
TALLGRASS = ("tess", "umar", "vera", "wes")


def text_of(message: Any) -> str:
    return message.text + json.dumps(message.blocks or [], ensure_ascii=False)


def test_a_rep_and_an_agent_hear_of_the_incident_in_slack(
    slack_server: SlackHarness, sandbox: Sandbox
) -> None:
    slack = slack_server
    sandbox.load_file(SCENARIOS / "incident-consent-removed.yaml")
    services = sandbox.services(bot_settings(sandbox))
    engine, _ = build_engine_and_bot(services, build_troubleshooter(services))
    for name in TALLGRASS:
        asyncio.run(engine.sync_user(f"{name}@tallgrass.example"))
    (incident,) = incident_messages(sandbox.world)
    assert incident.version == 2 and "4 people affected" in incident.text

    _, channel = slack.dm(TESS, "my outlook calender stopped syncing?? reconnect button does nothing")
    answer = wait_for(
        lambda: next((m for m in sandbox.world.slack_messages(channel) if "This affects" in m.text), None),
        what="the answer",
    )
    assert answer.text.startswith("This affects 4 people at tallgrass.example since")
    assert "IT admin must restore access" in text_of(answer)
    assert f'"action_id": "{ACTION_RECONNECT}' not in json.dumps(answer.blocks)
    assert validate_blocks(answer.blocks or []) == []

    _, help_channel = slack.command(SAM, f"diagnose <@{TESS}|tess>")
    report = wait_for(
        lambda: next(
            (
                m
                for m in slack.ephemeral_for(SAM, help_channel)
                if "incident.org_consent_removed" in text_of(m)
            ),
            None,
        ),
        what="the agent's report",
    )
    assert "Send reconnect link" not in text_of(report)
    # Still the one message in the support channel: the rep's question did not add one.
    assert len(incident_messages(sandbox.world)) == 1
    assert [m.ts for m in sandbox.world.slack_messages(SUPPORT_CHANNEL)] == [incident.ts]
