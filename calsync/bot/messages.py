"""A rep's question, in a DM or as an @mention in a channel: recorded and queued before the ack
(`queue_question`); an answer worker posts "Checking…", then replaces it with the answer (in the
thread, for a mention). Messages that are not questions (bot messages, edits, deletions, joins —
any subtype) and messages outside DMs (channels are served through @mentions) are acked and get
nothing. A retried event (the same event id) is answered once."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from procrastinate.exceptions import ConnectorException
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError

from calsync.bot.clicks import is_private
from calsync.bot.middleware import Next
from calsync.bot.people import Asker
from calsync.bot.work import workspace_of
from calsync.flows import slack
from calsync.knowledge.matcher import MAX_QUESTION_CHARS
from calsync.knowledge.smalltalk import small_talk
from calsync.render import replies
from calsync.render.kit import checking_message
from calsync.store import questions
from calsync.store.questions import Question

if TYPE_CHECKING:
    from calsync.bot.slackbot import SlackBot

log = logging.getLogger(__name__)
# Context key: why a question was not queued ("shed": the backlog was full; "database": it could not
# be recorded); the rep is told after the ack.
NOT_QUEUED = "calsync_question_not_queued"
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
    record = queue_question(bot)

    @app.event("message", matchers=[from_a_person, in_a_dm], middleware=[record])
    async def on_direct_message(
        event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient
    ) -> None:
        """Recorded and queued by `record` before the ack; a worker answers it (`answer`). When it
        could not be queued, the rep is told so now."""
        await tell_if_not_queued(context, client, event["channel"], event.get("thread_ts"))

    @app.event("app_mention", matchers=[from_a_person], middleware=[record])
    async def on_mention(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        """As a DM, answered in the mention's thread."""
        await tell_if_not_queued(context, client, event["channel"], event.get("thread_ts") or event.get("ts"))

    @app.event("message")
    async def on_other_message() -> None:
        """Not a question (see the module's docstring): acked, nothing said."""

    @app.event("app_mention")
    async def on_other_mention() -> None:
        """A bot's or an edited @mention: acked, nothing said."""


def queue_question(bot: SlackBot) -> Callable[..., Awaitable[None]]:
    """Listener middleware (it runs before Bolt acks an event): the question is recorded, durably,
    and its job deferred, so the ack promises an answer that a crash cannot lose. A retry of an
    event already recorded queues nothing. Past a backlog limit (questions waiting in this
    workspace, or in all, across every process) the question is not queued: its event is claimed
    (so its retries say nothing) and the listener tells the rep after the ack."""

    async def middleware(
        body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext, next: Next
    ) -> None:
        channel, ts = str(event["channel"]), str(event.get("ts") or "")
        thread_ts = event.get("thread_ts")
        if event.get("type") == "app_mention":
            thread_ts = thread_ts or ts or None
        question = Question(
            event_id=str(body.get("event_id") or f"{channel}:{ts}"),
            team_id=workspace_of(context),
            channel=channel,
            user=str(event["user"]),
            text=str(event.get("text") or ""),
            thread_ts=thread_ts,
        )
        try:
            if await bot.questions.full(question.team_id):
                context[NOT_QUEUED] = "shed" if await bot.questions.shed(question.event_id) else None
            else:
                await bot.questions.enqueue(question)
        except (SQLAlchemyError, ConnectorException):  # nothing recorded: say so, promise no answer
            log.exception("database unavailable while queueing %s", question.event_id)
            context[NOT_QUEUED] = "database"
        await next()

    return middleware


async def tell_if_not_queued(
    context: AsyncBoltContext, client: AsyncWebClient, channel: str, thread_ts: str | None
) -> None:
    """After the ack: the one sentence for a question `queue_question` could not queue."""
    why = context.get(NOT_QUEUED)
    if why == "shed":
        await slack.post(client, channel, replies.too_busy_to_answer(), thread_ts)
    elif why == "database":
        await slack.post(client, channel, replies.something_went_wrong(), thread_ts)


async def orphaned_placeholder(bot: SlackBot, client: AsyncWebClient, question: Question) -> str | None:
    """A "Checking…" of ours in the question's thread (or DM) that no waiting question holds: the one a
    dead attempt posted but could not note. Replaced by the answer, so it is not left behind."""
    checking = checking_message().text
    mine = await slack.own_messages(client, question.channel, question.thread_ts, checking)
    held = await asyncio.to_thread(questions.placeholders_in_use, bot.sessions, question.channel)
    free = [ts for ts in mine if ts not in held]
    return free[0] if free else None


async def answer(
    bot: SlackBot, question: Question, placeholder_posted: Callable[[str | None], Awaitable[None]]
) -> None:
    """Post "Checking…" (unless an earlier attempt did), then replace it with the answer (in the
    thread, if the question has one). Run by an answer worker."""
    client = bot.client
    assert client is not None
    channel, thread_ts = question.channel, question.thread_ts
    try:
        person = await Asker(bot.people, client, question.user).person()
    except SQLAlchemyError:
        log.exception("database unavailable while answering %s", question.event_id)
        await slack.post(client, channel, replies.something_went_wrong(), thread_ts)
        return
    if person.email is None:
        await slack.post(client, channel, bot.answers.not_a_user(), thread_ts)
        return
    text = strip_mentions(question.text)[:MAX_QUESTION_CHARS]
    # A greeting or a thank-you is answered at once; anything else is diagnosed (a few seconds).
    placeholder = question.placeholder_ts
    if placeholder is None and small_talk(text) is None:
        if question.attempts > 1:  # an attempt died: maybe after posting "Checking…", before noting it
            placeholder = await orphaned_placeholder(bot, client, question)
        if placeholder is None:
            placeholder = await slack.post(client, channel, checking_message(), thread_ts)
        await placeholder_posted(placeholder)
    message = await bot.answers.answer(
        person, text, channel=channel, thread_ts=thread_ts, private=is_private(channel)
    )
    await slack.replace(client, channel, placeholder, message, thread_ts)
