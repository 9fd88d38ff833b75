"""Slack listeners: ack at once, hand the work to `SlackBot`, nothing else.

Bolt acks events by itself and runs these after the ack; commands and actions call `ack()` first
thing. Messages that are not questions (bot messages, edits, deletions, joins — any subtype) and
messages outside DMs (channels are served through @mentions) are ignored.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from calsync.bot.service import SlackBot
from calsync.render import blocks


def register(app: AsyncApp, bot: SlackBot) -> None:
    @app.event("message")
    async def on_direct_message(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("subtype") or event.get("bot_id") or event.get("channel_type") != "im":
            return
        if not event.get("user") or not event.get("channel"):
            return
        await bot.answer_question(
            client,
            slack_user_id=event["user"],
            channel=event["channel"],
            text=str(event.get("text") or ""),
            thread_ts=event.get("thread_ts"),
            event_id=body.get("event_id"),
        )

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("bot_id") or event.get("subtype") or not event.get("user"):
            return
        await bot.answer_question(
            client,
            slack_user_id=event["user"],
            channel=event["channel"],
            text=str(event.get("text") or ""),
            thread_ts=event.get("thread_ts") or event.get("ts"),
            event_id=body.get("event_id"),
        )

    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            await bot.publish_home(client, event["user"])

    @app.command("/calsync")
    async def on_calsync(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        await bot.command(client, respond, slack_user_id=command["user_id"], text=command.get("text"))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_CHECK_AGAIN])
    async def on_check_again(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        if (body.get("view") or {}).get("type") == "home":
            await bot.publish_home(client, body["user"]["id"])
        else:
            await bot.check_again(client, respond, body)

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_DID_YOU_MEAN])
    async def on_did_you_mean(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        await bot.did_you_mean(client, respond, body)

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_HELPED])
    async def on_helped(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await bot.feedback(respond, body, helpful=True)

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_NOT_HELPED])
    async def on_not_helped(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await bot.feedback(respond, body, helpful=False)

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_TALK_TO_SUPPORT])
    async def on_talk_to_support(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        await bot.talk_to_support(client, respond, body)

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_SEND_RECONNECT_LINK])
    async def on_send_reconnect_link(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        await bot.send_reconnect_link(client, respond, body)

    # Link buttons (reconnect, open report) still send an action: ack it, the browser does the rest.
    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_RECONNECT])
    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_OPEN_REPORT])
    async def on_link_button(ack: AsyncAck) -> None:
        await ack()
