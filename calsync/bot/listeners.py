"""The Slack listeners, registered on the Bolt app: the middleware first, then one module per
surface — messages (DMs, @mentions), `/calsync`, the buttons, App Home. Each listener acks, calls
a flow, renders and sends; the work after the ack goes through `SlackBot.work`, which holds at
most so much of it per workspace and overall (past that it is shed, and the person told at once),
bounds how much runs at once so a burst of questions cannot starve the event loop that acks the next
request, and claims questions, clicks and commands once (`bot/work.py`)."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp, AsyncRespond

from calsync.bot import actions, commands, home, messages
from calsync.bot.middleware import parse_click, share_http_session, who_is_asking
from calsync.bot.slackbot import SlackBot
from calsync.render import replies

log = logging.getLogger(__name__)


def register(app: AsyncApp, bot: SlackBot) -> None:
    app.use(share_http_session(app))
    app.use(who_is_asking(bot.people))
    app.use(parse_click(bot.sessions))

    @app.error
    async def on_error(error: Exception, respond: AsyncRespond | None = None) -> None:
        """A listener raised (the database is down, say): log it, and give whoever typed or clicked one
        plain sentence instead of silence. Events have no response URL; their listeners answer
        themselves."""
        log.error("a Slack listener failed", exc_info=error)
        if respond is None:
            return
        try:
            message = replies.something_went_wrong()
            await respond(
                text=message.text, blocks=message.blocks, response_type="ephemeral", replace_original=False
            )
        except Exception:
            log.exception("telling the person about the failure failed")

    messages.register(app, bot)
    commands.register(app, bot)
    actions.register(app, bot)
    home.register(app, bot)
