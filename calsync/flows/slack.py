"""Sending to Slack for the flows and the surface: post, replace in place, open a DM. A Slack API
error is logged and reported as None, never raised, except where a caller asks for it."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from calsync.render.kit import Message

log = logging.getLogger(__name__)


async def post(client: AsyncWebClient, channel: str, message: Message, thread_ts: str | None) -> str | None:
    """The new message's ts, None when Slack refused it."""
    try:
        response = await client.chat_postMessage(
            channel=channel, text=message.text, blocks=message.blocks, thread_ts=thread_ts
        )
    except SlackApiError as error:
        log.warning("chat.postMessage to %s failed: %s", channel, error.response.get("error"))
        return None
    return str(response.get("ts"))


async def replace(
    client: AsyncWebClient, channel: str, ts: str | None, message: Message, thread_ts: str | None
) -> None:
    """Put `message` in place of the one at `ts` (a new message when there is none)."""
    if ts is None:  # the placeholder could not be posted: try the answer as a new message
        await post(client, channel, message, thread_ts)
        return
    try:
        await client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)
    except SlackApiError as error:
        log.warning("chat.update in %s failed: %s", channel, error.response.get("error"))


async def own_messages(client: AsyncWebClient, channel: str, thread_ts: str | None, text: str) -> list[str]:
    """The ts of this bot's messages saying exactly `text` in the thread (or among the channel's
    latest 50), oldest first; [] when Slack will not say."""
    try:
        me = (await client.auth_test()).get("user_id")
        if thread_ts:
            found = await client.conversations_replies(channel=channel, ts=thread_ts, limit=200)
            messages = list(found.get("messages") or [])
        else:
            found = await client.conversations_history(channel=channel, limit=50)
            messages = list(reversed(found.get("messages") or []))
    except SlackApiError as error:
        log.warning("reading %s failed: %s", channel, error.response.get("error"))
        return []
    return [
        str(m["ts"])
        for m in messages
        if m.get("user") == me and m.get("text") == text and m.get("ts") and m.get("ts") != thread_ts
    ]


async def open_dm(client: AsyncWebClient, slack_user_id: str) -> str:
    """The DM channel with this user ("" when Slack gives none); a Slack API error is raised."""
    opened = await client.conversations_open(users=slack_user_id)
    return str((opened.get("channel") or {}).get("id") or "")
