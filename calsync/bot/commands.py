"""`/calsync …`: help, reconnect, diagnose (yourself, or — for agents — someone else). Every reply is
ephemeral: only the person who typed it sees it, and so is the note when the backlog is full and the
command is shed (`bot/work.py`)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError

from calsync.bot.command_text import Command, Diagnose, Help, Reconnect, Status, Unknown, parse_command
from calsync.bot.middleware import ack_at_once
from calsync.bot.people import Asker
from calsync.bot.respond import Respond, ephemeral
from calsync.bot.work import workspace_of
from calsync.render import replies
from calsync.render.answers import help_message
from calsync.render.kit import checking_message, error_message
from calsync.store import audit
from calsync.store.people import Person

if TYPE_CHECKING:
    from calsync.bot.slackbot import SlackBot

log = logging.getLogger(__name__)


def register(app: AsyncApp, bot: SlackBot) -> None:
    @app.command("/calsync", middleware=[ack_at_once])
    async def on_calsync(
        command: dict[str, Any],
        context: AsyncBoltContext,
        asker: Asker,
        respond: AsyncRespond,
        client: AsyncWebClient,
    ) -> None:
        await bot.work.once(
            command,
            calsync(bot, client, respond, asker, parse_command(command.get("text"))),
            workspace=workspace_of(context),
            kind="command",
            shed=lambda: ephemeral(respond, replies.too_busy_to_act()),
        )


async def calsync(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, parsed: Command
) -> None:
    try:
        person = await asker.person()
        if isinstance(parsed, Unknown):
            await ephemeral(respond, error_message(parsed.reason))
        elif isinstance(parsed, Help):
            await ephemeral(respond, help_message(await asker.is_agent()))
        elif isinstance(parsed, Reconnect):
            await ephemeral(respond, await bot.links.for_person(person))
        elif isinstance(parsed, Diagnose):
            await diagnose(bot, client, respond, asker, person, parsed)
        elif isinstance(parsed, Status):
            await status(bot, respond, asker, person)
    except SQLAlchemyError:
        log.exception("database unavailable for /calsync")
        await ephemeral(respond, replies.something_went_wrong())


async def diagnose(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, agent: Person, command: Diagnose
) -> None:
    """`/calsync diagnose`: yourself; `/calsync diagnose @user|email`: agents only, the agent view."""
    if (
        command.slack_user_id is None and command.email is None
    ) or command.slack_user_id == agent.slack_user_id:
        if agent.email is None:
            await ephemeral(respond, bot.answers.not_a_user())
            return
        await ephemeral(respond, checking_message())
        await ephemeral(respond, await bot.answers.answer(agent, None))
        return
    if not await asker.is_agent():
        await asyncio.to_thread(
            audit.record_refused_diagnosis,
            bot.sessions,
            bot.clock(),
            agent.slack_user_id,
            command.slack_user_id,
            command.email,
        )
        await ephemeral(respond, replies.diagnose_someone_refused())
        return
    if command.slack_user_id is not None:
        target = await bot.people.person(client, command.slack_user_id)
        who = f"<@{command.slack_user_id}>"
    else:
        target = await bot.people.by_email(command.email)
        who = command.email or ""
    if target.email is None:
        await ephemeral(respond, replies.nothing_to_diagnose(who))
        return
    await ephemeral(respond, checking_message())
    message = await bot.answers.for_agent(agent, target.email)
    await ephemeral(respond, message or replies.not_a_salespartner_user(who))


async def status(bot: SlackBot, respond: Respond, asker: Asker, person: Person) -> None:
    """`/calsync status`: agents only, the fleet at a glance with a link to the fleet page."""
    if bot.fleet is None:
        await ephemeral(respond, replies.something_went_wrong())
        return
    if not await asker.is_agent():
        await asyncio.to_thread(
            audit.record,
            bot.sessions,
            bot.clock(),
            actor=person.slack_user_id,
            action="fleet_status",
            subject_user_id=None,
            detail={},
            result="refused: not an agent",
        )
        await ephemeral(respond, bot.fleet.refused())
        return
    await ephemeral(respond, await bot.fleet.status(person.slack_user_id))
