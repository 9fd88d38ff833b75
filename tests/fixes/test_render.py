"""Every fix message within Block Kit's rules (`validate_message`), data escaped, the refusals one
sentence each — with names that would break markup and ids as long as Graph's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from calsync.flows.fixes import CalendarChoice, CalendarChosen, CalendarMenu, Cleanup, TurnedOff, TurnedOn
from calsync.render import fixes as words
from calsync.render.kit import Message
from calsync.render.validate import validate_message
from calsync.syncbackend.engine import CycleResult
from calsync.syncbackend.fixes import CleanupPlan, ConnectionFacts, Copy

ODD = "R&D <@U0EVIL> *team* calendar"
LONG_ID = "AAMkAGI" + "x" * 300


def _facts(provider: str, account: str, active: bool = True) -> ConnectionFacts:
    return ConnectionFacts(7, 1, provider, account, active, "connected", None, LONG_ID, ODD, None)


def _copy(n: int) -> Copy:
    return Copy(
        n,
        f"appt-{n}",
        f"{ODD} #{n}",
        datetime(2026, 11, 25, 9, tzinfo=UTC),
        7,
        "google",
        "n@x.example",
        LONG_ID,
        LONG_ID,
    )


PLAN = CleanupPlan(
    1,
    "nora@tallgrass.example",
    "Nora <Quinn>",
    _facts("microsoft", "nora@x.example"),
    tuple(_copy(n) for n in range(60)),
    (_facts("google", "n@x.example"),),
    (_facts("google", "n@x.example"),),
)
SYNCED = CycleResult(7, "google", "n@x.example", "ok")

MESSAGES = [
    pytest.param(
        words.calendar_menu_message(
            CalendarMenu(
                7,
                "microsoft",
                "n@x.example",
                ODD,
                tuple(CalendarChoice("k" * 16 + str(n), ODD, n == 0) for n in range(120)),
                "12",
            )
        ),
        id="menu",
    ),
    pytest.param(
        words.calendar_menu_message(CalendarMenu(7, "google", "n@x.example", None, (), "12")), id="menu-empty"
    ),
    pytest.param(
        words.calendar_chosen_message(CalendarChosen(7, "google", ODD, ODD, "k" * 16, False, SYNCED, "12")),
        id="chosen",
    ),
    pytest.param(
        words.calendar_chosen_message(CalendarChosen(7, "google", ODD, None, None, True, None, None)),
        id="undone",
    ),
    pytest.param(
        words.turned_off_message(
            TurnedOff(7, "google", "a&b@x.example", (("microsoft", "<b>@x.example"),), "12")
        ),
        id="turned-off",
    ),
    pytest.param(words.turned_on_message(TurnedOn(7, "google", "a&b@x.example", SYNCED)), id="turned-on"),
    pytest.param(words.cleanup_message(Cleanup(PLAN, applied=False)), id="dry-run"),
    pytest.param(
        words.cleanup_message(
            Cleanup(
                PLAN, applied=True, removed=PLAN.copies[:50], failed=((PLAN.copies[55], "grant_invalid"),)
            )
        ),
        id="applied",
    ),
    *(pytest.param(words.refusal_message(reason), id=f"refused-{reason}") for reason in words.REFUSALS),
]


@pytest.mark.parametrize("message", MESSAGES)
def test_every_fix_message_keeps_block_kits_rules(message: Message) -> None:
    assert validate_message(message) == []
    assert "<@U0EVIL>" not in message.text + " ".join(_mrkdwn(message.blocks)), "data never becomes a mention"


def _mrkdwn(value: Any) -> list[str]:
    """Every mrkdwn text in the blocks (plain_text, such as a button's label, is never parsed)."""
    if isinstance(value, dict):
        found = [str(value["text"])] if value.get("type") == "mrkdwn" else []
        return found + [text for item in value.values() for text in _mrkdwn(item)]
    if isinstance(value, list):
        return [text for item in value for text in _mrkdwn(item)]
    return []


def test_an_unknown_refusal_still_changes_nothing_in_words() -> None:
    assert "changed nothing" in words.refusal_text("something_new")
