"""Slack listeners: ack at once, hand the work to `SlackBot`, nothing else.

Bolt acks events by itself and runs these after the ack. Commands and actions are acked by the
`ack_at_once` listener middleware, before Bolt starts the listener: Bolt polls for an ack a listener
makes itself only every 10 ms, which would put a 10 ms floor (and more under load) under every
command's and click's ack. The work after the ack goes through `SlackBot.in_turn`, which bounds
how much of it runs at once so a burst of questions cannot starve the event loop that acks the
next request. The Web API client shares one HTTP connection pool (`share_http_session`) instead of
opening a connection per call. Messages that are not questions (bot messages, edits, deletions, joins — any subtype) and
messages outside DMs (channels are served through @mentions) are ignored.

Slack signs a request, not an occasion: a click or a command replayed within the five minutes the
signature stays valid would be acted on again. So every click and command is claimed once, like an
event id, in `processed_events` (`once`), after the ack and before any work: the key is a digest of
the whole payload, which differs for every real click (its `trigger_id` and `action_ts`) and is the
same for a replay, whichever instance it reaches.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from calsync.bot.service import SOMETHING_WENT_WRONG, SlackBot
from calsync.render import blocks

log = logging.getLogger(__name__)


async def ack_at_once(ack: AsyncAck, next: Callable[[], Awaitable[None]]) -> None:
    """Listener middleware: ack before the listener starts (see the module's docstring)."""
    await ack()
    await next()


def interaction_key(body: dict[str, Any]) -> str:
    """The claim of one signed click or command: a digest of its whole payload."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "interaction:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def once(bot: SlackBot, body: dict[str, Any], work: Coroutine[Any, Any, None]) -> None:
    """Run `work` in turn (`SlackBot.in_turn`) unless this very payload was claimed before (a
    replay), in any instance sharing the database."""
    try:
        claimed = await bot.claim(interaction_key(body))
    except BaseException:
        work.close()
        raise
    if claimed:
        await bot.in_turn(work)
    else:
        work.close()  # a replay's work never starts


def share_http_session(app: AsyncApp) -> Callable[..., Awaitable[None]]:
    """Global middleware: one aiohttp session (a keep-alive connection pool) for every Web API call.

    Without one, slack_sdk opens a session, a TCP connection and a TLS handshake per call. The
    session must be made inside the event loop that serves requests, hence on the first request.
    """

    async def middleware(context: AsyncBoltContext, next: Callable[[], Awaitable[None]]) -> None:
        if app.client.session is None:
            import aiohttp

            app.client.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=app.client.timeout)
            )
        if context.client is not None and context.client.session is None:
            context.client.session = app.client.session
        await next()

    return middleware


def register(app: AsyncApp, bot: SlackBot) -> None:
    app.use(share_http_session(app))

    @app.error
    async def on_error(error: Exception, respond: AsyncRespond | None = None) -> None:
        """A listener raised (the database is down, say): log it, and give whoever typed or clicked one
        plain sentence instead of silence. Events have no response URL; their listeners answer
        themselves."""
        log.error("a Slack listener failed", exc_info=error)
        if respond is None:
            return
        message = blocks.error_message(SOMETHING_WENT_WRONG)
        try:
            await respond(
                text=message.text, blocks=message.blocks, response_type="ephemeral", replace_original=False
            )
        except Exception:
            log.exception("telling the person about the failure failed")

    @app.event("message")
    async def on_direct_message(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("subtype") or event.get("bot_id") or event.get("channel_type") != "im":
            return
        if not event.get("user") or not event.get("channel"):
            return
        await bot.in_turn(
            bot.answer_question(
                client,
                slack_user_id=event["user"],
                channel=event["channel"],
                text=str(event.get("text") or ""),
                thread_ts=event.get("thread_ts"),
                event_id=body.get("event_id"),
            )
        )

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("bot_id") or event.get("subtype") or not event.get("user"):
            return
        await bot.in_turn(
            bot.answer_question(
                client,
                slack_user_id=event["user"],
                channel=event["channel"],
                text=str(event.get("text") or ""),
                thread_ts=event.get("thread_ts") or event.get("ts"),
                event_id=body.get("event_id"),
            )
        )

    @app.event("app_home_opened")
    async def on_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            await bot.in_turn(bot.publish_home(client, event["user"]))

    @app.command("/calsync", middleware=[ack_at_once])
    async def on_calsync(command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        work = bot.command(client, respond, slack_user_id=command["user_id"], text=command.get("text"))
        await once(bot, command, work)

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_CHECK_AGAIN], middleware=[ack_at_once])
    async def on_check_again(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        if (body.get("view") or {}).get("type") == "home":
            await once(bot, body, bot.publish_home(client, body["user"]["id"]))
        else:
            await once(bot, body, bot.check_again(client, respond, body))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_SYNC_NOW], middleware=[ack_at_once])
    async def on_sync_now(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        await once(bot, body, bot.sync_now(client, respond, body))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_DETAILS], middleware=[ack_at_once])
    async def on_details(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        await bot.in_turn(bot.details(client, respond, body))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_DID_YOU_MEAN], middleware=[ack_at_once])
    async def on_did_you_mean(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        await once(bot, body, bot.did_you_mean(client, respond, body))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_HELPED], middleware=[ack_at_once])
    async def on_helped(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        await once(bot, body, bot.feedback(client, respond, body, helpful=True))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_NOT_HELPED], middleware=[ack_at_once])
    async def on_not_helped(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        await once(bot, body, bot.feedback(client, respond, body, helpful=False))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_TALK_TO_SUPPORT], middleware=[ack_at_once])
    async def on_talk_to_support(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        await once(bot, body, bot.talk_to_support(client, respond, body))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_SEND_RECONNECT_LINK], middleware=[ack_at_once])
    async def on_send_reconnect_link(
        body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await once(bot, body, bot.send_reconnect_link(client, respond, body))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_HOLD_CANCEL], middleware=[ack_at_once])
    async def on_hold_cancel(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        await once(bot, body, bot.decide_hold(client, respond, body, "cancel"))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_HOLD_KEEP], middleware=[ack_at_once])
    async def on_hold_keep(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        await once(bot, body, bot.decide_hold(client, respond, body, "keep"))

    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_RECONNECT], middleware=[ack_at_once])
    async def on_reconnect(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        """A link button (in private) only needs its ack; one in a channel carries no link."""
        action = (body.get("actions") or [{}])[0]
        if not action.get("url"):
            await once(bot, body, bot.reconnect_in_channel(client, respond, body))

    # Link buttons (open report) still send an action: ack it, the browser does the rest.
    @app.action(blocks.ACTION_PATTERNS[blocks.ACTION_OPEN_REPORT], middleware=[ack_at_once])
    async def on_link_button() -> None:
        return None  # acked by the middleware; the browser does the rest
