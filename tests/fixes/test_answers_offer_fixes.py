"""The fix buttons come from the answer's causes: a rep's DM to the real app gets *Choose a
calendar* or *Turn off the old …* where the diagnosis found that cause, and nothing where it did not;
the agent's view of a doubled rep offers the clean-up's dry run, the rep's own answer never does."""

from __future__ import annotations

from typing import Any

import pytest

from calsync.render.kit import ACTION_CHOOSE_CALENDAR, ACTION_CLEANUP_DRY_RUN, ACTION_TURN_OFF
from tests.bot.conftest import wait_for
from tests.fixes.conftest import FixHarness
from tests.fixes.scenarios import AGENT, DEMO, GINA, NORA, OTHER_REP, PETE, REP, shared_calendar, switched

FIX_BUTTONS = {ACTION_CHOOSE_CALENDAR, ACTION_TURN_OFF, ACTION_CLEANUP_DRY_RUN}


def _dm_buttons(fixes: FixHarness, user: str, question: str) -> set[str]:
    _, channel = fixes.slack.dm(user, question)

    def answered() -> Any:
        return next(
            (m for m in fixes.sandbox.world.slack_messages(channel) if m.blocks and "Checking" not in m.text),
            None,
        )

    message = wait_for(answered, what="the answer")
    return {e["action_id"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]}


# (scenario, who asks, what they write, the fix button expected or None)
ROWS = [
    pytest.param(
        shared_calendar("google"),
        REP,
        "apptmts go to the sales team cal not mine?",
        ACTION_CHOOSE_CALENDAR,
        id="shared-google",
    ),
    pytest.param(
        shared_calendar("microsoft"),
        REP,
        "why is outlook putting my meetings in the team calendar",
        ACTION_CHOOSE_CALENDAR,
        id="shared-outlook",
    ),
    pytest.param(
        switched("google"),
        REP,
        "everything shows up twice since i moved to outlook!!",
        ACTION_TURN_OFF,
        id="switched-from-google",
    ),
    pytest.param(
        switched("microsoft"),
        REP,
        "every meeting twice now, google AND outlook",
        ACTION_TURN_OFF,
        id="switched-from-outlook",
    ),
    pytest.param(switched("google"), OTHER_REP, "is my calendar ok?", None, id="healthy-rep"),
    pytest.param(
        "demo",
        GINA,
        "my q3 pipeline calendar vanished and nothing syncs",
        ACTION_CHOOSE_CALENDAR,
        id="calendar-deleted",
    ),
    pytest.param(
        "demo",
        "U0DEMOHUGO",
        "outlook says access denied on the shared cal",
        ACTION_CHOOSE_CALENDAR,
        id="read-only-outlook",
    ),
    pytest.param(
        "demo", "U0DEMOCARLA", "why isn't my appointment showing", None, id="revoked-only-reconnect"
    ),
]


@pytest.mark.parametrize(("scenario", "user", "question", "expected"), ROWS)
def test_a_dm_offers_the_fix_of_its_cause(
    fixes: FixHarness, scenario: str, user: str, question: str, expected: str | None
) -> None:
    if scenario == "demo":
        fixes.sandbox.load_file(DEMO)
    else:
        fixes.load(scenario)
    offered = _dm_buttons(fixes, user, question) & FIX_BUTTONS
    assert offered == ({expected} if expected else set())


def test_only_the_agent_view_offers_the_clean_up(fixes: FixHarness) -> None:
    fixes.load(switched("google"))
    agent = fixes.post_answer(NORA, AGENT, None, for_agent=True)
    rep = fixes.post_answer(NORA, REP, "duplicates everywhere")
    healthy = fixes.post_answer(PETE, AGENT, None, for_agent=True)
    assert ACTION_CLEANUP_DRY_RUN in agent.buttons
    assert ACTION_CLEANUP_DRY_RUN not in rep.buttons
    assert ACTION_CLEANUP_DRY_RUN not in healthy.buttons
