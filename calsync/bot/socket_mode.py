"""Slack over Socket Mode: the Bolt app connected to Slack through a WebSocket calsync opens itself
(`SLACK_APP_TOKEN`), instead of Slack posting to `/slack/events`. Events, commands and clicks arrive as
envelopes and are acked on the same socket; the listeners are the HTTP path's, unchanged.

The WebSocket URL comes from `apps.connections.open` on the bot's Web API client, so on the
configured `SLACK_API_URL` (the Slack emulator's in the sandbox and the tests). Bolt's
`AsyncSocketModeHandler` (slack_sdk's aiohttp client) keeps the connection: it pings, and on Slack's
`disconnect` or a dropped socket it opens a new URL and reconnects.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

APP_TOKEN_PREFIX = "xapp-"


class SocketModeRefused(RuntimeError):
    """Slack would not open a Socket Mode connection for the app-level token."""


def refusal(error: str) -> str:
    return (
        f"Slack refused SLACK_APP_TOKEN for Socket Mode (apps.connections.open: {error}); it must be an "
        "app-level token (xapp-…) with connections:write, of the same app as SLACK_BOT_TOKEN"
    )


async def app_token_problem(api_url: str, app_token: str) -> str | None:
    """Why Slack (at `api_url`) will not open Socket Mode for `app_token`, or None when it will.
    Asks for one WebSocket URL and leaves it unused (Slack lets it expire)."""
    import aiohttp
    from slack_sdk.web.async_client import AsyncWebClient

    try:
        await AsyncWebClient(base_url=api_url, timeout=10).apps_connections_open(app_token=app_token)
    except SlackApiError as error:
        return refusal(str(error.response.get("error")))
    except (aiohttp.ClientError, TimeoutError) as error:
        return f"Slack's Web API at {api_url} did not answer apps.connections.open ({type(error).__name__})"
    return None


def socket_mode(bolt_app: AsyncApp, app_token: str) -> Callable[[], AbstractAsyncContextManager[None]]:
    """The app connected over Socket Mode for the life of the block.

    The first URL is asked for before connecting, so that a token Slack refuses stops the start with
    Slack's reason: slack_sdk's own `connect()` would retry that forever, and the process would look
    up (its /healthz answering) while no event could ever reach it.
    """

    @contextlib.asynccontextmanager
    async def connected() -> AsyncIterator[None]:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        # Made here, not earlier: the client starts its message processing on the running loop.
        handler = AsyncSocketModeHandler(bolt_app, app_token)
        try:
            try:
                handler.client.wss_uri = await handler.client.issue_new_wss_url()
            except SlackApiError as error:
                raise SocketModeRefused(refusal(str(error.response.get("error")))) from None
            await handler.connect_async()
            yield
        finally:
            await handler.close_async()

    return connected
