"""The buttons. Every click is acked at once (`ack_at_once`) and, but for Details, claimed once
(`Work.once`: a replayed payload does nothing). A click past the backlog's limits is shed: nothing is
done, and the clicker is told so privately.

Answers belong to their owner: a click on an answer's button by anyone but the rep it was made for
acts on nothing and edits nothing — the clicker gets a private reply about themselves (agents: the
agent view of that rep; `owners_click`)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from calsync.bot import fix_actions
from calsync.bot.clicks import Click
from calsync.bot.home import publish_home, publish_unchecked_home
from calsync.bot.middleware import ack_at_once
from calsync.bot.people import Asker
from calsync.bot.respond import Respond, privately, update_clicked
from calsync.bot.work import workspace_of
from calsync.flows.holds import decide_hold
from calsync.render import kit, replies
from calsync.render.notices import hold_decided_message
from calsync.store import audit
from calsync.store.people import Person
from calsync.syncbackend.holds import Decision

if TYPE_CHECKING:
    from calsync.bot.slackbot import SlackBot


async def in_home(click: Click) -> bool:
    """Matcher: clicked in the App Home tab."""
    return click.in_home


async def carries_no_link(click: Click) -> bool:
    """Matcher: a Reconnect button in a channel (a link button in private only needs its ack)."""
    return not click.url


# (bot, client, respond, asker, click) -> the work after the ack
Handle = Callable[..., Coroutine[Any, Any, None]]


def on_click(bot: SlackBot, handle: Handle, *, claimed: bool = True) -> Callable[..., Awaitable[None]]:
    """A button's listener: the click handled after the ack, in turn, and (`claimed`) once."""

    async def listener(
        body: dict[str, Any],
        context: AsyncBoltContext,
        click: Click,
        asker: Asker,
        respond: AsyncRespond,
        client: AsyncWebClient,
    ) -> None:
        work = handle(bot, client, respond, asker, click)
        workspace = workspace_of(context)

        async def shed() -> None:
            await privately(respond, replies.too_busy_to_act())

        if claimed:
            await bot.work.once(body, work, workspace=workspace, kind="click", shed=shed)
        else:
            await bot.work.in_turn(work, workspace=workspace, kind="click", shed=shed)

    return listener


def register(app: AsyncApp, bot: SlackBot) -> None:
    def button(action: str, **options: Any) -> Callable[..., Any]:
        return app.action(kit.ACTION_PATTERNS[action], middleware=[ack_at_once], **options)

    @button(kit.ACTION_CHECK_AGAIN, matchers=[in_home])
    async def on_check_again_at_home(
        body: dict[str, Any], context: AsyncBoltContext, asker: Asker, client: AsyncWebClient
    ) -> None:
        await bot.work.once(
            body,
            publish_home(bot, client, asker),
            workspace=workspace_of(context),
            kind="click",
            shed=lambda: publish_unchecked_home(client, asker),
        )

    button(kit.ACTION_CHECK_AGAIN)(on_click(bot, check_again))
    button(kit.ACTION_DID_YOU_MEAN)(on_click(bot, functools.partial(check_again, picked=True)))
    button(kit.ACTION_SYNC_NOW)(on_click(bot, sync_now))
    button(kit.ACTION_DETAILS)(on_click(bot, details, claimed=False))
    button(kit.ACTION_HELPED)(on_click(bot, functools.partial(feedback, helpful=True)))
    button(kit.ACTION_NOT_HELPED)(on_click(bot, functools.partial(feedback, helpful=False)))
    button(kit.ACTION_TALK_TO_SUPPORT)(on_click(bot, talk_to_support))
    button(kit.ACTION_SEND_RECONNECT_LINK)(on_click(bot, send_reconnect_link))
    button(kit.ACTION_HOLD_CANCEL)(on_click(bot, functools.partial(decide, decision="cancel")))
    button(kit.ACTION_HOLD_KEEP)(on_click(bot, functools.partial(decide, decision="keep")))
    button(kit.ACTION_RECONNECT, matchers=[carries_no_link])(on_click(bot, reconnect_in_channel))
    fix_actions.register(button, on_click, bot)

    # Link buttons (a private Reconnect, Open full report) still send an action: the ack is all.
    @button(kit.ACTION_RECONNECT)
    @button(kit.ACTION_OPEN_REPORT)
    @button(kit.ACTION_OPEN_FLEET)
    async def on_link_button() -> None:
        return None  # acked by the middleware; the browser does the rest


async def owners_click(bot: SlackBot, respond: Respond, asker: Asker, click: Click) -> Person | None:
    """The clicker, when they are the one the answer was made for. Anyone else is answered
    privately and None comes back: a click never acts on, or edits, another rep's answer."""
    person = await asker.person()
    if person.email is None:
        await privately(respond, bot.answers.not_a_user())
        return None
    owner = await click.owner()
    if owner is not None and owner.user_id != person.user_id:
        message = await bot.answers.someone_elses(person, await asker.is_agent(), owner, click.asked)
        await privately(respond, message)
        return None
    return person


async def check_again(
    bot: SlackBot,
    client: AsyncWebClient,
    respond: Respond,
    asker: Asker,
    click: Click,
    *,
    picked: bool = False,
) -> None:
    """Check again (or a "Did you mean" pick, `picked`): the answer made afresh, in place."""
    if (person := await owners_click(bot, respond, asker, click)) is None:
        return
    flow = bot.answers.did_you_mean if picked else bot.answers.check_again
    await update_clicked(client, respond, click, await flow(person, click.asked, private=click.private))


async def sync_now(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click
) -> None:
    if (person := await owners_click(bot, respond, asker, click)) is None:
        return
    if not bot.answers.can_sync:
        await privately(respond, replies.sync_unavailable())
        return
    message = await bot.answers.sync_now(person, click.asked, private=click.private)
    await update_clicked(client, respond, click, message)


async def details(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click
) -> None:
    """Every finding behind the answer, for the rep who clicked (ephemeral: the answer stays)."""
    if (person := await owners_click(bot, respond, asker, click)) is None:
        return
    await privately(respond, await bot.answers.details(person, click.asked) or bot.answers.not_a_user())


async def feedback(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click, *, helpful: bool
) -> None:
    if await owners_click(bot, respond, asker, click) is None:
        return
    if click.diagnosis is not None:  # a malformed click records nothing (the person is still thanked)
        await asyncio.to_thread(
            audit.record_feedback,
            bot.sessions,
            bot.clock(),
            click.user_id,
            click.diagnosis,
            click.asked.article,
            helpful,
        )
    await privately(respond, replies.feedback_thanks(helpful))


async def talk_to_support(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click
) -> None:
    if (person := await owners_click(bot, respond, asker, click)) is None:
        return
    await privately(respond, await bot.support.talk_to_support(client, person))


async def send_reconnect_link(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click
) -> None:
    agent = await asker.person()
    if not await asker.is_agent():
        await privately(respond, replies.agents_only("send someone a reconnect link"))
        return
    rep = str(click.value.get("rep") or "")
    await privately(respond, await bot.links.send_to_rep(client, agent, rep, click.provider))


async def decide(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click, *, decision: Decision
) -> None:
    """An agent's click on a hold's message: decide once, then show the decision in its place."""
    agent = await asker.person()
    if not await asker.is_agent():
        await privately(respond, replies.agents_only("decide on held cancellations"))
        return
    decided = await decide_hold(bot.sessions, bot.clock, agent, click.value.get("hold"), decision)
    if decided is None:
        await privately(respond, replies.hold_gone())
        return
    message = hold_decided_message(decided, replies.mention(agent.slack_user_id, agent.slack_user_id))
    await update_clicked(client, respond, click, message)


async def reconnect_in_channel(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click
) -> None:
    person = await asker.person()
    owner = await click.owner()
    await privately(
        respond, bot.links.in_thread(person, owner, click.provider, click.channel, click.thread_ts)
    )
