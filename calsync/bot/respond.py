"""Answering the person who typed or clicked: ephemeral replies through the response URL, and the
clicked message replaced in place. A failed reply is logged, never raised."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from calsync.bot.clicks import Click
from calsync.flows import slack
from calsync.render.kit import Message

log = logging.getLogger(__name__)

Respond = Callable[..., Awaitable[Any]]


async def ephemeral(respond: Respond, message: Message, **extra: Any) -> None:
    """Only the person who typed or clicked sees it."""
    try:
        await respond(text=message.text, blocks=message.blocks, response_type="ephemeral", **extra)
    except Exception:  # the response_url expired, or Slack refused the blocks
        log.exception("responding failed")


async def privately(respond: Respond, message: Message) -> None:
    """A private reply to a click, below the clicked message (which stays as it was)."""
    await ephemeral(respond, message, replace_original=False)


async def update_clicked(client: AsyncWebClient, respond: Respond, click: Click, message: Message) -> None:
    """`message` in place of the clicked one."""
    if click.ephemeral or not (click.channel and click.message_ts):
        await ephemeral(respond, message, replace_original=True)
        return
    await slack.replace(client, click.channel, click.message_ts, message, None)
