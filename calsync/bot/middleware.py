"""Bolt middleware: one HTTP connection pool, who is asking, the click, and the early ack.

Everything here runs before Bolt answers Slack, so none of it waits on the database or Slack: the
asker and a click's owner are looked up on first use, in the work after the ack (`Asker`,
`Click.owner`).

Commands and actions are acked by the `ack_at_once` listener middleware, before Bolt starts the
listener: Bolt polls for an ack a listener makes itself only every 10 ms, which would put a 10 ms
floor (and more under load) under every command's and click's ack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from sqlalchemy.orm import Session, sessionmaker

from calsync.bot.clicks import Click
from calsync.bot.people import Asker, People
from calsync.store import people
from calsync.store.people import Person

Next = Callable[[], Awaitable[None]]


async def ack_at_once(ack: AsyncAck, next: Next) -> None:
    """Listener middleware: ack before the listener starts (see the module's docstring)."""
    await ack()
    await next()


def share_http_session(app: AsyncApp) -> Callable[..., Awaitable[None]]:
    """Global middleware: one aiohttp session (a keep-alive connection pool) for every Web API call.

    Without one, slack_sdk opens a session, a TCP connection and a TLS handshake per call. The
    session must be made inside the event loop that serves requests, hence on the first request.
    """

    async def middleware(context: AsyncBoltContext, next: Next) -> None:
        if app.client.session is None:
            import aiohttp

            app.client.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=app.client.timeout)
            )
        if context.client is not None and context.client.session is None:
            context.client.session = app.client.session
        await next()

    return middleware


def who_is_asking(directory: People) -> Callable[..., Awaitable[None]]:
    """Global middleware: `context["asker"]`, the `Asker` behind any request with a user."""

    async def middleware(context: AsyncBoltContext, next: Next) -> None:
        if context.user_id and context.client is not None:
            context["asker"] = Asker(directory, context.client, context.user_id)
        await next()

    return middleware


def parse_click(sessions: sessionmaker[Session]) -> Callable[..., Awaitable[None]]:
    """Global middleware: `context["click"]`, the typed `Click` of a button click."""

    async def find_owner(diagnosis: Any) -> Person | None:
        return await asyncio.to_thread(people.owner_of, sessions, diagnosis)

    async def middleware(body: dict[str, Any], context: AsyncBoltContext, next: Next) -> None:
        if body.get("type") == "block_actions":
            context["click"] = Click.parse(body, find_owner)
        await next()

    return middleware
