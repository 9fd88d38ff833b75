"""The App Home tab: the rep's calendar status, published when they open it (and on its Check
again). When the backlog is full the tab is published without a status, asking to open it again."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from calsync.bot.people import Asker
from calsync.bot.work import workspace_of
from calsync.diagnostics.answer import Answer
from calsync.render.home import home_view

if TYPE_CHECKING:
    from calsync.bot.slackbot import SlackBot

log = logging.getLogger(__name__)


async def home_tab(event: dict[str, Any]) -> bool:
    """Matcher: the Home tab (not Messages or About), opened by a person."""
    return event.get("tab", "home") == "home" and bool(event.get("user"))


def register(app: AsyncApp, bot: SlackBot) -> None:
    @app.event("app_home_opened", matchers=[home_tab])
    async def on_home_opened(context: AsyncBoltContext, asker: Asker, client: AsyncWebClient) -> None:
        await bot.work.in_turn(
            publish_home(bot, client, asker),
            workspace=workspace_of(context),
            kind="home",
            shed=lambda: publish_unchecked_home(client, asker),
        )

    @app.event("app_home_opened")
    async def on_other_tab() -> None:
        """The Messages or About tab: nothing to publish."""


async def publish_unchecked_home(client: AsyncWebClient, asker: Asker) -> None:
    """When the backlog is full (the work is shed): the tab without a status, asking to open it again
    — never a stale status shown as if just checked."""
    await _publish(client, asker.slack_user_id, home_view(None))


async def publish_home(bot: SlackBot, client: AsyncWebClient, asker: Asker) -> None:
    person = await asker.person()
    if person.email is None:
        view = home_view(None, not_a_user=True)
    else:
        try:
            answer: Answer | None = await bot.troubleshooter.diagnose(person.email, actor=asker.slack_user_id)
        except Exception:
            log.exception("home diagnosis for %s failed", asker.slack_user_id)
            answer = None
        view = home_view(answer, name=person.name)
    await _publish(client, asker.slack_user_id, view)


async def _publish(client: AsyncWebClient, slack_user_id: str, view: dict[str, Any]) -> None:
    try:
        await client.views_publish(user_id=slack_user_id, view=view)
    except SlackApiError as error:
        log.warning("views.publish failed: %s", error.response.get("error"))
