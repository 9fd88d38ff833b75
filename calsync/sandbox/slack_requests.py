"""What Slack sends to an app, for the sandbox's side of the conversation: an event, a slash command
and a button click, as the payloads a Socket Mode envelope carries (`*_payload`) and as the HTTP
request bodies (`*_body`) with their v0 signature (computed by slack_sdk's own `SignatureVerifier`).
The tests and the ack benchmark both speak to calsync through these."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

TEAM_ID = "T0SANDBOX"
APP_ID = "A0CALSYNC"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def signed_headers(
    body: bytes, secret: str, content_type: str, timestamp: int | None = None
) -> dict[str, str]:
    """Headers Slack puts on a request: its content type, the timestamp and the v0 signature."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature or "",
    }


def event_payload(
    event: dict[str, Any], event_id: str, event_time: int | None = None, *, team_id: str = TEAM_ID
) -> dict[str, Any]:
    """An Events API `event_callback` envelope around `event`, from workspace `team_id`."""
    return {
        "token": "legacy",
        "team_id": team_id,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()) if event_time is None else event_time,
    }


def event_body(
    event: dict[str, Any], event_id: str, event_time: int | None = None, *, team_id: str = TEAM_ID
) -> bytes:
    """`event_payload` as the JSON body Slack posts."""
    return json.dumps(event_payload(event, event_id, event_time, team_id=team_id)).encode()


def command_payload(
    *, user: str, channel: str, text: str, response_url: str, trigger_id: str, team_id: str = TEAM_ID
) -> dict[str, str]:
    """A `/calsync` slash command's fields."""
    return {
        "token": "legacy",
        "team_id": team_id,
        "channel_id": channel,
        "user_id": user,
        "command": "/calsync",
        "text": text,
        "response_url": response_url,
        "trigger_id": trigger_id,
        "api_app_id": APP_ID,
    }


def command_body(
    *, user: str, channel: str, text: str, response_url: str, trigger_id: str, team_id: str = TEAM_ID
) -> bytes:
    """A `/calsync` slash command, form-encoded as Slack posts it."""
    return urlencode(
        command_payload(
            user=user,
            channel=channel,
            text=text,
            response_url=response_url,
            trigger_id=trigger_id,
            team_id=team_id,
        )
    ).encode()


def button_click_payload(
    *,
    user: str,
    channel: str,
    message_ts: str,
    action_id: str,
    value: str,
    response_url: str,
    trigger_id: str,
) -> dict[str, Any]:
    """A `block_actions` payload for one button clicked on a (non-ephemeral) message."""
    return {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": TEAM_ID},
        "api_app_id": APP_ID,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "channel": {"id": channel},
        "message": {"ts": message_ts, "text": ""},
        "response_url": response_url,
        "trigger_id": trigger_id,
        "actions": [
            {"action_id": action_id, "block_id": "b", "value": value, "type": "button", "action_ts": "1"}
        ],
    }


def button_click_body(
    *,
    user: str,
    channel: str,
    message_ts: str,
    action_id: str,
    value: str,
    response_url: str,
    trigger_id: str,
) -> bytes:
    """`button_click_payload`, form-encoded as Slack posts it."""
    payload = button_click_payload(
        user=user,
        channel=channel,
        message_ts=message_ts,
        action_id=action_id,
        value=value,
        response_url=response_url,
        trigger_id=trigger_id,
    )
    return urlencode({"payload": json.dumps(payload)}).encode()
