"""The buttons and the menu of the fixes beyond Reconnect (`flows.fixes`): choose a calendar (the
menu, the choice, Undo), turn the old connection off and back on, and the agent's duplicate
clean-up (its dry run, then Remove). Acked at once and claimed once like every click (`actions`).

A rep's fix acts only for the rep the answer was made for: anyone else's click is refused
privately, audited, and changes nothing. The clean-up is for support agents only."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_sdk.web.async_client import AsyncWebClient

from calsync.bot.clicks import Click
from calsync.bot.people import Asker
from calsync.bot.respond import Respond, privately, update_clicked
from calsync.flows.fixes import Fixes, Refusal
from calsync.render import fixes as words
from calsync.render import kit, replies
from calsync.store.people import Person
from calsync.syncbackend.fixes import CHOOSE_CALENDAR, TURN_OFF, TURN_ON

if TYPE_CHECKING:
    from calsync.bot.slackbot import SlackBot


def register(
    button: Callable[[str], Callable[[Any], Any]], on_click: Callable[..., Any], bot: SlackBot
) -> None:
    button(kit.ACTION_CHOOSE_CALENDAR)(on_click(bot, calendar_menu))
    button(kit.ACTION_CALENDAR_PICKED)(on_click(bot, functools.partial(choose_calendar, undo=False)))
    button(kit.ACTION_CALENDAR_UNDO)(on_click(bot, functools.partial(choose_calendar, undo=True)))
    button(kit.ACTION_TURN_OFF)(on_click(bot, turn_off))
    button(kit.ACTION_TURN_ON)(on_click(bot, turn_on))
    button(kit.ACTION_CLEANUP_DRY_RUN)(on_click(bot, functools.partial(clean_duplicates, apply=False)))
    button(kit.ACTION_CLEANUP_APPLY)(on_click(bot, functools.partial(clean_duplicates, apply=True)))


async def _owner(
    bot: SlackBot, respond: Respond, asker: Asker, click: Click, action: str
) -> tuple[Fixes, Person] | None:
    """The fixes and the clicker, when the clicker is the rep the answer was made for."""
    if bot.fixes is None:
        await privately(respond, replies.something_went_wrong())
        return None
    person = await asker.person()
    if person.email is None or person.user_id is None:
        await privately(respond, bot.answers.not_a_user())
        return None
    owner = await click.owner()
    if owner is not None and owner.user_id != person.user_id:
        refusal = await bot.fixes.not_the_owner(person, owner, action, click.value)
        await privately(respond, words.refusal_message(refusal.reason))
        return None
    return bot.fixes, person


async def calendar_menu(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click
) -> None:
    if (found := await _owner(bot, respond, asker, click, CHOOSE_CALENDAR)) is None:
        return
    fixes, person = found
    menu = await fixes.calendar_menu(person, click.value.get("connection"), click.diagnosis)
    reply = (
        words.refusal_message(menu.reason) if isinstance(menu, Refusal) else words.calendar_menu_message(menu)
    )
    await privately(respond, reply)


async def choose_calendar(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click, *, undo: bool
) -> None:
    if (found := await _owner(bot, respond, asker, click, CHOOSE_CALENDAR)) is None:
        return
    fixes, person = found
    value = click.value
    chosen = await fixes.choose_calendar(
        person, value.get("connection"), value.get("calendar"), click.diagnosis, undo=undo
    )
    if isinstance(chosen, Refusal):
        await privately(respond, words.refusal_message(chosen.reason))
        return
    await update_clicked(client, respond, click, words.calendar_chosen_message(chosen))


async def turn_off(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click
) -> None:
    if (found := await _owner(bot, respond, asker, click, TURN_OFF)) is None:
        return
    fixes, person = found
    off = await fixes.turn_off(person, click.value.get("connection"), click.diagnosis)
    await privately(
        respond,
        words.refusal_message(off.reason) if isinstance(off, Refusal) else words.turned_off_message(off),
    )


async def turn_on(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click
) -> None:
    if (found := await _owner(bot, respond, asker, click, TURN_ON)) is None:
        return
    fixes, person = found
    on = await fixes.turn_on(person, click.value.get("connection"), click.diagnosis)
    if isinstance(on, Refusal):
        await privately(respond, words.refusal_message(on.reason))
        return
    await update_clicked(client, respond, click, words.turned_on_message(on))


async def clean_duplicates(
    bot: SlackBot, client: AsyncWebClient, respond: Respond, asker: Asker, click: Click, *, apply: bool
) -> None:
    """An agent's dry run (a private listing with Remove), then the clean-up in its place."""
    if bot.fixes is None:
        await privately(respond, replies.something_went_wrong())
        return
    agent = await asker.person()
    rep = str(click.value.get("rep") or "")
    done = await bot.fixes.clean_duplicates(
        agent.slack_user_id, rep, apply=apply, is_agent=await asker.is_agent()
    )
    if isinstance(done, Refusal):
        await privately(respond, words.refusal_message(done.reason))
    elif apply:
        await update_clicked(client, respond, click, words.cleanup_message(done))
    else:
        await privately(respond, words.cleanup_message(done))
