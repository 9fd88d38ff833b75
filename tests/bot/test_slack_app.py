"""Signed Slack requests over real HTTP to the running app; answers asserted in the Slack emulator."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from calsync.render.blocks import (
    ACTION_CHECK_AGAIN,
    ACTION_DETAILS,
    ACTION_HELPED,
    ACTION_NOT_HELPED,
    ACTION_SEND_RECONNECT_LINK,
    ACTION_TALK_TO_SUPPORT,
    validate_blocks,
)
from calsync.syncbackend.models import AuditEntry, Feedback
from tests.bot.conftest import AGENT_BY_SETTING, HELP_CHANNEL, SUPPORT_CHANNEL, SlackHarness, sign, wait_for

CARLA, ANA, SAM, GHOST = "U0DEMOCARLA", "U0DEMOANA", "U0DEMOSAM", "U0DEMOGHOST"


def final_message(slack: SlackHarness, channel: str, contains: str) -> Any:
    """The bot's message in `channel` once its text contains `contains` (updated in place)."""
    return wait_for(
        lambda: next((m for m in slack.sandbox.world.slack_messages(channel) if contains in m.text), None),
        what=f"a message containing {contains!r} in {channel}",
    )


def text_of(message: Any) -> str:
    return message.text + json.dumps(message.blocks or [], ensure_ascii=False)


def test_a_dm_gets_one_answer_updated_in_place(slack: SlackHarness) -> None:
    response, channel = slack.dm(CARLA, "why isn't my appointment showing?")
    assert response.status_code == 200
    message = final_message(slack, channel, "revoked")
    assert len(slack.sandbox.world.slack_messages(channel)) == 1
    posts = [
        c for c in slack.sandbox.world.slack_calls("chat.postMessage") if c.params.get("channel") == channel
    ]
    # The emulator changes the message before it logs the call: wait for the log to catch up.
    updates = wait_for(
        lambda: [
            c for c in slack.sandbox.world.slack_calls("chat.update") if c.params.get("channel") == channel
        ],
        what="the chat.update in the emulator's log",
    )
    assert "Checking your calendar connection" in posts[0].params["text"]
    assert len(posts) == 1 and len(updates) == 1
    assert validate_blocks(message.blocks) == []
    assert "Reconnect Google Calendar" in text_of(message)


def test_a_mention_is_answered_in_its_thread(slack: SlackHarness) -> None:
    ts = "1764000500.000200"
    event = {
        "type": "app_mention",
        "user": ANA,
        "channel": HELP_CHANNEL,
        "ts": ts,
        "text": "<@U0CALSYNC> every appt shows up twice",
    }
    assert slack.event(event).status_code == 200
    message = wait_for(
        lambda: next(
            (
                m
                for m in slack.sandbox.world.slack_messages(HELP_CHANNEL)
                if m.thread_ts == ts and "Checking" not in m.text
            ),
            None,
        ),
        what="the threaded answer",
    )
    assert message.thread_ts == ts
    assert "duplicates" in text_of(message).lower() or "twice" in text_of(message)


def test_the_same_event_delivered_four_times_gets_one_answer(slack: SlackHarness) -> None:
    channel = slack.dm_channel(CARLA)
    event = {
        "type": "message",
        "channel_type": "im",
        "user": CARLA,
        "channel": channel,
        "text": "my calendar says disconnected",
        "ts": "1764000600.000100",
    }
    responses = [slack.event(event, event_id="EvRETRIED01", retry=retry or None) for retry in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    final_message(slack, channel, "revoked")
    # A later question proves the retries were fully handled before we count.
    slack.dm(CARLA, "why isn't my appointment showing")
    wait_for(
        lambda: len([m for m in slack.sandbox.world.slack_messages(channel) if "Checking" not in m.text]) >= 2
    )
    assert len(slack.sandbox.world.slack_messages(channel)) == 2


@pytest.mark.parametrize(
    "extra",
    [
        {"subtype": "bot_message", "bot_id": "B0OTHER"},
        {"bot_id": "B0OTHER"},
        {"subtype": "message_changed"},
        {"subtype": "message_deleted"},
        {"subtype": "channel_join"},
        {"channel_type": "channel"},
    ],
    ids=["bot-message", "bot-id", "edited", "deleted", "join", "plain-channel-message"],
)
def test_messages_that_are_not_questions_get_nothing(slack: SlackHarness, extra: dict[str, Any]) -> None:
    channel = slack.dm_channel(ANA)
    event = {
        "type": "message",
        "channel_type": "im",
        "user": ANA,
        "channel": channel,
        "text": "why isn't my appointment showing",
        "ts": "1764000700.000100",
        **extra,
    }
    assert slack.event(event).status_code == 200
    slack.dm(ANA, "every appt shows up twice")  # a real question, answered after the ignored one
    wait_for(lambda: [m for m in slack.sandbox.world.slack_messages(channel) if "Checking" not in m.text])
    assert len(slack.sandbox.world.slack_messages(channel)) == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Slack-Signature": "v0=" + "0" * 64}, 401),
        ({"X-Slack-Request-Timestamp": str(int(time.time()) - 6 * 60)}, 401),
        ({"X-Slack-Signature": ""}, 401),
    ],
    ids=["forged-signature", "older-than-five-minutes", "no-signature"],
)
def test_unsigned_forged_or_stale_requests_are_refused(
    slack: SlackHarness, headers: dict[str, str], status: int
) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "EvFORGED",
            "event": {
                "type": "message",
                "channel_type": "im",
                "user": CARLA,
                "channel": "D0X",
                "text": "hi",
                "ts": "1.1",
            },
        }
    ).encode()
    signed = {**sign(body, slack.secret), "Content-Type": "application/json", **headers}
    if "X-Slack-Request-Timestamp" in headers:  # a stale timestamp, correctly signed for that time
        signed.update(sign(body, slack.secret, int(headers["X-Slack-Request-Timestamp"])))
    response = slack.http.post(f"{slack.url}/slack/events", content=body, headers=signed)
    assert response.status_code == status
    assert slack.sandbox.world.slack_calls("chat.postMessage") == []


def test_an_agent_diagnoses_a_rep_privately_and_it_is_audited(slack: SlackHarness) -> None:
    response, channel = slack.command(SAM, f"diagnose <@{CARLA}|carla>")
    assert response.status_code == 200
    report = wait_for(
        lambda: next(
            (m for m in slack.ephemeral_for(SAM, channel) if "connection.revoked" in text_of(m)), None
        ),
        what="the agent's report",
    )
    assert "Send reconnect link" in text_of(report)
    # Nothing about Carla went into the channel for everyone.
    assert [m for m in slack.sandbox.world.slack_messages(channel) if m.ephemeral_for is None] == []
    with slack.sandbox.sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.actor == SAM)).all()
    assert [(e.action, e.result) for e in entries] == [("diagnose", "error")]


def test_an_agent_by_setting_may_diagnose_by_email(slack: SlackHarness) -> None:
    _, channel = slack.command(AGENT_BY_SETTING, "diagnose leo@northwind.example")
    wait_for(
        lambda: next(
            (
                m
                for m in slack.ephemeral_for(AGENT_BY_SETTING, channel)
                if "duplicates.old_provider_still_active" in text_of(m)
            ),
            None,
        ),
        what="the agent's report",
    )


def test_a_rep_cannot_diagnose_someone_else_and_the_refusal_is_audited(slack: SlackHarness) -> None:
    _, channel = slack.command(ANA, f"diagnose <@{CARLA}|carla>")
    refusal = wait_for(lambda: slack.ephemeral_for(ANA, channel), what="the refusal")
    assert "Only support agents" in refusal[0].text
    assert "revoked" not in text_of(refusal[0])
    with slack.sandbox.sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.actor == ANA)).one()
    assert entry.result == "refused: not an agent" and entry.detail == {"target": CARLA}


@pytest.mark.parametrize(
    ("user", "text", "expected"),
    [
        (ANA, "help", "/calsync diagnose"),
        (ANA, "", "/calsync diagnose"),
        (ANA, "frobnicate now", "I don't know the command"),
        (ANA, "diagnose one two", "one person at a time"),
        (SAM, f"diagnose <@{GHOST}|gus>", "isn't a SalesPartner user"),
        (ANA, "diagnose", "looks healthy"),
        (ANA, "reconnect", "Reconnect Google Calendar"),
        (GHOST, "diagnose", "couldn't find a SalesPartner account"),
        (ANA, "diagnose " + "x" * 5000, "I don't know who"),
    ],
    ids=[
        "help",
        "empty",
        "garbage",
        "two-targets",
        "not-a-user",
        "yourself",
        "reconnect",
        "no-account",
        "huge",
    ],
)
def test_commands_get_a_clear_ephemeral_answer(
    slack: SlackHarness, user: str, text: str, expected: str
) -> None:
    _, channel = slack.command(user, text)
    wait_for(
        lambda: next((m for m in slack.ephemeral_for(user, channel) if expected in text_of(m)), None),
        what=f"an answer containing {expected!r}",
    )


def test_buttons_check_again_feedback_and_talk_to_support(slack: SlackHarness) -> None:
    _, channel = slack.dm(CARLA, "why isn't my appointment showing?")
    message = final_message(slack, channel, "revoked")
    actions = {
        element["action_id"]: element.get("value", "")
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
    }

    # Check again: the same message is replaced by a fresh answer (one more chat.update).
    updates = len(slack.sandbox.world.slack_calls("chat.update"))
    assert (
        slack.click(CARLA, channel, message.ts, ACTION_CHECK_AGAIN, actions[ACTION_CHECK_AGAIN]).status_code
        == 200
    )
    wait_for(lambda: len(slack.sandbox.world.slack_calls("chat.update")) > updates, what="the update")
    assert len([m for m in slack.sandbox.world.slack_messages(channel) if m.ephemeral_for is None]) == 1

    # Feedback is recorded against the diagnosis and the article.
    def feedback() -> list[tuple[bool, str | None, bool]]:
        with slack.sandbox.sessions() as session:
            rows = session.scalars(select(Feedback).order_by(Feedback.id)).all()
            return [(row.helpful, row.article_id, row.diagnosis_id is not None) for row in rows]

    # Two clicks in flight at once may be stored in either order: the second waits for the first.
    slack.click(CARLA, channel, message.ts, ACTION_NOT_HELPED, actions[ACTION_NOT_HELPED])
    wait_for(lambda: len(feedback()) == 1, what="the first feedback")
    slack.click(CARLA, channel, message.ts, ACTION_HELPED, actions[ACTION_HELPED])

    assert wait_for(lambda: len(feedback()) == 2 and feedback()) == [
        (False, "not-showing", True),
        (True, "not-showing", True),
    ]

    # Carla has a fix of her own (Reconnect), so Talk to support is not beside it: it is in Details.
    assert ACTION_TALK_TO_SUPPORT not in actions
    slack.click(CARLA, channel, message.ts, ACTION_DETAILS, actions[ACTION_DETAILS])
    details = wait_for(
        lambda: [m for m in slack.ephemeral_for(CARLA, channel) if "What I checked" in text_of(m)],
        what="the details",
    )[0]
    assert "connection.revoked" not in text_of(details) and "3 hours ago" in text_of(details)
    support = next(
        element["value"]
        for block in details.blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == ACTION_TALK_TO_SUPPORT
    )

    # Talk to support: the report goes to the support channel, a follow-up into the same thread.
    slack.click(CARLA, channel, message.ts, ACTION_TALK_TO_SUPPORT, support)
    first = wait_for(lambda: slack.sandbox.world.slack_messages(SUPPORT_CHANNEL), what="the support post")[0]
    assert "Support request from" in text_of(first) and "connection.revoked" in text_of(first)
    wait_for(
        lambda: [m for m in slack.ephemeral_for(CARLA, channel) if "support team" in m.text], what="the note"
    )
    slack.click(CARLA, channel, message.ts, ACTION_TALK_TO_SUPPORT, support)
    follow_up = wait_for(
        lambda: [m for m in slack.sandbox.world.slack_messages(SUPPORT_CHANNEL) if m.thread_ts == first.ts]
    )
    assert len(follow_up) == 1


def test_an_agent_sends_a_rep_a_reconnect_link(slack: SlackHarness) -> None:
    _, channel = slack.command(SAM, f"diagnose <@{CARLA}|carla>")
    report = wait_for(
        lambda: next(
            (m for m in slack.ephemeral_for(SAM, channel) if "connection.revoked" in text_of(m)), None
        )
    )
    value = next(
        element["value"]
        for block in report.blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == ACTION_SEND_RECONNECT_LINK
    )
    slack.click(SAM, channel, report.ts, ACTION_SEND_RECONNECT_LINK, value)
    carla_dm = slack.dm_channel(CARLA)
    link = wait_for(lambda: slack.sandbox.world.slack_messages(carla_dm), what="the DM to the rep")[0]
    assert "Reconnect Google Calendar" in text_of(link)
    # A rep pressing the same button (a forged click) is refused.
    slack.click(ANA, channel, report.ts, ACTION_SEND_RECONNECT_LINK, value)
    wait_for(lambda: [m for m in slack.ephemeral_for(ANA, channel) if "Only support agents" in m.text])
    assert len(slack.sandbox.world.slack_messages(carla_dm)) == 1


@pytest.mark.parametrize(
    "value",
    ["not json", json.dumps(["a", "list"]), "", json.dumps({"diagnosis": None, "article": 7})],
    ids=["not-json", "not-an-object", "empty", "wrong-types"],
)
def test_malformed_button_values_change_nothing_and_still_answer(slack: SlackHarness, value: str) -> None:
    _, channel = slack.dm(ANA, "why isn't my appointment showing")
    message = final_message(slack, channel, "healthy")
    updates = len(slack.sandbox.world.slack_calls("chat.update"))
    slack.click(ANA, channel, message.ts, ACTION_CHECK_AGAIN, value)
    # Check again still answers: the same message is replaced by a fresh answer.
    wait_for(lambda: len(slack.sandbox.world.slack_calls("chat.update")) > updates, what="the re-check")
    slack.click(ANA, channel, message.ts, ACTION_HELPED, value)
    wait_for(lambda: [m for m in slack.ephemeral_for(ANA, channel) if "Thanks" in m.text], what="the thanks")
    bot_messages = [m for m in slack.sandbox.world.slack_messages(channel) if m.ephemeral_for is None]
    assert [m.ts for m in bot_messages] == [message.ts]
    assert ACTION_CHECK_AGAIN in json.dumps(bot_messages[0].blocks)  # an answer, not an error
    with slack.sandbox.sessions() as session:
        assert session.scalars(select(Feedback)).all() == []  # nothing recorded from a malformed click


def test_the_app_home_shows_the_reps_status(slack: SlackHarness) -> None:
    slack.event({"type": "app_home_opened", "user": CARLA, "channel": "D0HOME", "tab": "home"})
    view = wait_for(lambda: slack.sandbox.world.slack_home(CARLA), what="the published home view")
    assert view["type"] == "home"
    assert "Reconnect" in json.dumps(view) and "revoked" in json.dumps(view)
    slack.event({"type": "app_home_opened", "user": GHOST, "channel": "D0HOME2", "tab": "home"})
    assert "isn't linked" in json.dumps(wait_for(lambda: slack.sandbox.world.slack_home(GHOST)))


def test_a_slack_user_without_an_account_gets_a_clear_answer(slack: SlackHarness) -> None:
    _, channel = slack.dm(GHOST, "why isn't my appointment showing")
    message = final_message(slack, channel, "SalesPartner account")
    assert "couldn't find a SalesPartner account" in message.text


def test_the_ack_does_not_wait_for_the_diagnosis(slack: SlackHarness) -> None:
    # Google answers slowly for Carla; the HTTP ack must come back before the answer is sent.
    slack.sandbox.world.add_fault(
        "google", "latency", account_email="carla@northwind.example", params={"seconds": 1.0}
    )
    updates_before = len(slack.sandbox.world.slack_calls("chat.update"))
    response, channel = slack.dm(CARLA, "why isn't my appointment showing?")
    assert response.status_code == 200
    assert len(slack.sandbox.world.slack_calls("chat.update")) == updates_before  # still diagnosing
    final_message(slack, channel, "revoked")


def test_healthz_says_whether_calsync_can_serve(slack: SlackHarness) -> None:
    assert slack.http.get(f"{slack.url}/healthz").json() == {"ok": True, "database": "up"}


def test_healthz_fails_when_the_database_is_unreachable(tmp_path: Any) -> None:
    from calsync.db import make_engine
    from calsync.sandbox.server import BackgroundServer
    from calsync.store.web import database_is_up
    from calsync.web.app import create_web_app

    engine = make_engine(f"sqlite:///{tmp_path}/missing/dir/calsync.db")
    with BackgroundServer(create_web_app(bolt_app=None, healthy=database_is_up(engine))) as server:
        response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 503 and response.json()["database"] == "down"
