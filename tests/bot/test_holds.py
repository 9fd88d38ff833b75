"""Held cancellations in the support channel: only an agent decides, once, and the message says so."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from calsync.db import transaction
from calsync.render.blocks import ACTION_HOLD_CANCEL, ACTION_HOLD_KEEP, hold_message
from calsync.syncbackend.holds import Holds, record_hold
from calsync.syncbackend.models import Appointment, AuditEntry, CalendarConnection
from tests.bot.conftest import AGENT_BY_SETTING, SUPPORT_CHANNEL, SlackHarness, wait_for
from tests.bot.test_slack_app import text_of

ANA = "ana@northwind.example"
HELD = ["ana-acme", "ana-globex"]  # both of Ana's appointments, synced to her Google Calendar
REP = "U0DEMOKATE"  # a rep, not an agent


def hold_in_support_channel(slack: SlackHarness) -> tuple[int, str]:
    """A hold as the engine records it, asked about in the support channel; (hold id, message ts)."""
    sandbox = slack.sandbox
    with transaction(sandbox.sessions) as session:
        connection = session.scalars(
            select(CalendarConnection).where(CalendarConnection.account_email == ANA)
        ).one()
        appointments = [session.get(Appointment, i) for i in HELD]
        hold_id = record_hold(
            session,
            connection,
            [a for a in appointments if a is not None],
            upcoming=2,
            source="full read",
            now=sandbox.clock(),
        )
    message = hold_message(Holds(sandbox.sessions, sandbox.clock).get(hold_id))
    posted = sandbox.world.slack_post_message(
        channel=SUPPORT_CHANNEL,
        user="UCALSYNC",
        text=message.text,
        blocks=message.blocks,
        attachments=None,
        now=sandbox.clock(),
    )
    return hold_id, posted.ts


def statuses(slack: SlackHarness) -> list[str]:
    with slack.sandbox.sessions() as session:
        return [session.get(Appointment, i).status for i in HELD]  # type: ignore[union-attr]


def test_a_rep_cannot_decide_and_nothing_changes(slack: SlackHarness) -> None:
    hold_id, ts = hold_in_support_channel(slack)

    value = json.dumps({"hold": hold_id})
    assert slack.click(REP, SUPPORT_CHANNEL, ts, ACTION_HOLD_CANCEL, value).status_code == 200

    refusal = wait_for(lambda: slack.ephemeral_for(REP, SUPPORT_CHANNEL), what="the refusal")
    assert "Only support agents" in text_of(refusal[0])
    assert statuses(slack) == ["booked", "booked"]
    assert Holds(slack.sandbox.sessions, slack.sandbox.clock).get(hold_id).status == "open"


@pytest.mark.parametrize(
    ("action", "done", "status", "appointments"),
    [
        (ACTION_HOLD_CANCEL, "cancelled 2", "cancelled", ["cancelled", "cancelled"]),
        (ACTION_HOLD_KEEP, "kept 2", "kept", ["booked", "booked"]),
    ],
)
def test_an_agent_decides_once_and_the_message_says_who(
    slack: SlackHarness, action: str, done: str, status: str, appointments: list[str]
) -> None:
    hold_id, ts = hold_in_support_channel(slack)
    value = json.dumps({"hold": hold_id})

    assert slack.click(AGENT_BY_SETTING, SUPPORT_CHANNEL, ts, action, value).status_code == 200

    updated = wait_for(
        lambda: next(
            (m for m in slack.sandbox.world.slack_messages(SUPPORT_CHANNEL) if done in text_of(m)), None
        ),
        what="the decided message",
    )
    assert updated.ts == ts and f"<@{AGENT_BY_SETTING}>" in text_of(updated)
    assert ACTION_HOLD_CANCEL not in text_of(updated), "no buttons left to click"
    assert statuses(slack) == appointments
    assert Holds(slack.sandbox.sessions, slack.sandbox.clock).get(hold_id).status == status
    with slack.sandbox.sessions() as session:
        (audit,) = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "cancellations_decided")
        ).all()
        assert (audit.actor, audit.result) == (AGENT_BY_SETTING, status)

    # A second click (a stale copy of the message) changes nothing and says who decided.
    other = ACTION_HOLD_KEEP if action == ACTION_HOLD_CANCEL else ACTION_HOLD_CANCEL
    assert slack.click(AGENT_BY_SETTING, SUPPORT_CHANNEL, ts, other, value).status_code == 200
    wait_for(
        lambda: next(
            (
                m
                for m in slack.sandbox.world.slack_messages(SUPPORT_CHANNEL)
                if "Already decided" in text_of(m)
            ),
            None,
        ),
        what="the already-decided note",
    )
    assert statuses(slack) == appointments
