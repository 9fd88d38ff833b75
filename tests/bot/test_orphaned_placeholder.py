"""A "Checking…" left by an attempt that died after posting it but before noting it is adopted by
the next attempt and replaced by the answer — but only by a retried attempt, and never one that a
waiting question holds. The bot is the composition root's, its Slack the sandbox's emulator."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from calsync.app import build_engine_and_bot, build_troubleshooter
from calsync.bot.messages import answer
from calsync.bot.slackbot import SlackBot
from calsync.flows import slack as slack_flow
from calsync.render.kit import checking_message
from calsync.store import questions
from calsync.store.questions import Question
from tests.bot.conftest import bot_settings, load_demo
from tests.harness import Sandbox

CARLA = "U0DEMOCARLA"


@dataclass(frozen=True)
class Case:
    attempts: int  # of the question being answered, this attempt included
    held_by_other: bool  # the "Checking…" in the DM is another waiting question's
    adopted: bool  # the answer replaces that "Checking…"


CASES = [
    pytest.param(Case(attempts=2, held_by_other=False, adopted=True), id="retried-attempt-adopts-the-orphan"),
    pytest.param(Case(attempts=1, held_by_other=False, adopted=False), id="first-attempt-never-adopts"),
    pytest.param(Case(attempts=2, held_by_other=True, adopted=False), id="held-placeholder-is-not-an-orphan"),
]


@pytest.fixture
def bot(sandbox: Sandbox) -> SlackBot:
    load_demo(sandbox)
    services = sandbox.services(bot_settings(sandbox))
    _, built = build_engine_and_bot(services, build_troubleshooter(services))
    return built


@pytest.mark.parametrize("case", CASES)
async def test_a_dead_attempts_checking_is_replaced_only_when_it_is_nobodys(
    bot: SlackBot, sandbox: Sandbox, case: Case
) -> None:
    assert bot.client is not None
    channel, _ = sandbox.world.slack_open_dm(CARLA, sandbox.clock())
    asked = Question(
        event_id="EvOrphan", team_id="T1", channel=channel, user=CARLA, text="my calendar is broken"
    )
    assert questions.record(bot.sessions, bot.clock, asked)
    # The earlier attempt's (or the other question's) "Checking…", posted through the same Web API.
    left = await slack_flow.post(bot.client, channel, checking_message(), None)
    assert left is not None
    if case.held_by_other:
        other = replace(asked, event_id="EvOther")
        assert questions.record(bot.sessions, bot.clock, other)
        questions.placeholder_posted(bot.sessions, other.event_id, left)

    posted: list[str | None] = []

    async def placeholder_posted(ts: str | None) -> None:
        posted.append(ts)

    await answer(bot, replace(asked, attempts=case.attempts), placeholder_posted)

    messages = sandbox.world.slack_messages(channel)
    checking = [m for m in messages if m.text == checking_message().text]
    assert (posted == [left]) is case.adopted
    if case.adopted:
        assert [m.ts for m in messages] == [left] and not checking  # answered in its place
    else:
        assert len(messages) == 2 and [m.ts for m in checking] == [left]  # a new one, answered
        assert posted != [left] and posted[0] in {m.ts for m in messages}
