"""A rep's question, in a DM or as an @mention in a channel: post "Checking…" at once, then replace it
with the answer (in the thread, for a mention). Messages that are not questions (bot messages,
edits, deletions, joins — any subtype) and messages outside DMs (channels are served through
@mentions) are acked and get nothing. A retried event (the same event id) is answered once. A question
past the backlog's limits (`bot/work.py`) is shed: never checked, and the rep told so at once."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError

from calsync.bot.clicks import is_private
from calsync.bot.people import Asker
from calsync.bot.work import workspace_of
from calsync.flows import slack
from calsync.knowledge.matcher import MAX_QUESTION_CHARS
from calsync.knowledge.smalltalk import small_talk
from calsync.render import replies
from calsync.render.kit import checking_message

if TYPE_CHECKING:
    from calsync.bot.slackbot import SlackBot

log = logging.getLogger(__name__)
_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")


def strip_mentions(text: str) -> str:
    """The question without the bot's @mention (and any other user mention markup)."""
    return _MENTION.sub(" ", text).strip()


async def from_a_person(event: dict[str, Any]) -> bool:
    """Matcher: a person wrote it (not a bot), and it is no edit, deletion or join (no subtype)."""
    return not event.get("subtype") and not event.get("bot_id") and bool(event.get("user"))


async def in_a_dm(event: dict[str, Any]) -> bool:
    return event.get("channel_type") == "im" and bool(event.get("channel"))


def register(app: AsyncApp, bot: SlackBot) -> None:
    @app.event("message", matchers=[from_a_person, in_a_dm])
    async def on_direct_message(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        asker: Asker,
        client: AsyncWebClient,
    ) -> None:
        await ask(bot, client, asker, context, event, event.get("thread_ts"), body.get("event_id"))

    @app.event("app_mention", matchers=[from_a_person])
    async def on_mention(
        event: dict[str, Any],
        body: dict[str, Any],
        context: AsyncBoltContext,
        asker: Asker,
        client: AsyncWebClient,
    ) -> None:
        thread_ts = event.get("thread_ts") or event.get("ts")
        await ask(bot, client, asker, context, event, thread_ts, body.get("event_id"))

    @app.event("message")
    async def on_other_message() -> None:
        """Not a question (see the module's docstring): acked, nothing said."""

    @app.event("app_mention")
    async def on_other_mention() -> None:
        """A bot's or an edited @mention: acked, nothing said."""


async def ask(
    bot: SlackBot,
    client: AsyncWebClient,
    asker: Asker,
    context: AsyncBoltContext,
    event: dict[str, Any],
    thread_ts: str | None,
    event_id: str | None,
) -> None:
    """The question answered once (a retried event id says nothing) in its turn, or — when the
    backlog is full — the rep told at once that it was not checked."""
    channel = event["channel"]
    try:
        await bot.work.once_per_event(
            event_id,
            answer_question(bot, client, asker, channel, event.get("text"), thread_ts),
            workspace=workspace_of(context),
            kind="question",
            shed=lambda: slack.post(client, channel, replies.too_busy_to_answer(), thread_ts),
        )
    except SQLAlchemyError:  # the event id could not be claimed
        log.exception("database unavailable while answering %s", event_id)
        await slack.post(client, channel, replies.something_went_wrong(), thread_ts)


async def answer_question(
    bot: SlackBot,
    client: AsyncWebClient,
    asker: Asker,
    channel: str,
    text: str | None,
    thread_ts: str | None,
) -> None:
    """Post "Checking…" at once, then replace it with the answer (in the thread, if one is given)."""
    try:
        person = await asker.person()
    except SQLAlchemyError:
        log.exception("database unavailable while answering in %s", channel)
        await slack.post(client, channel, replies.something_went_wrong(), thread_ts)
        return
    if person.email is None:
        await slack.post(client, channel, bot.answers.not_a_user(), thread_ts)
        return
    question = strip_mentions(str(text or ""))[:MAX_QUESTION_CHARS]
    # A greeting or a thank-you is answered at once; anything else is diagnosed (a few seconds).
    placeholder = None
    if small_talk(question) is None:
        placeholder = await slack.post(client, channel, checking_message(), thread_ts)
    message = await bot.answers.answer(
        person, question, channel=channel, thread_ts=thread_ts, private=is_private(channel)
    )
    await slack.replace(client, channel, placeholder, message, thread_ts)
