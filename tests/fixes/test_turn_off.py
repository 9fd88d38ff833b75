"""Turn off the old provider's connection after a switch, from the answer: confirmed, audited,
the events already synced left where they are (nothing deleted, no appointment cancelled), and
reversible while the grant is valid. Every refusal changes nothing."""

from __future__ import annotations

import asyncio
import json

import pytest

from calsync.render.kit import ACTION_TURN_OFF, ACTION_TURN_ON
from calsync.syncbackend.fixes import TURN_OFF, TURN_ON
from tests.fixes.conftest import FixHarness, Posted, value_of
from tests.fixes.scenarios import BEFORE_SWITCH, DOUBLED, NORA, OTHER_REP, REP, switched

OLD_PROVIDERS = ["google", "microsoft"]
QUESTION = "ever since i switched to the new calendar every single meeting shows up twice, help"
ALL_BOOKED = {"nora-vandelay": "booked", "nora-kramerica": "booked", "nora-pendant": "booked"}


def _live(fixes: FixHarness) -> dict[str, list[str]]:
    return {a: sorted(e.event_id for e in fixes.live_events(a)) for a in (*DOUBLED, BEFORE_SWITCH)}


def _answer(fixes: FixHarness, old: str) -> tuple[Posted, int]:
    fixes.load(switched(old))
    posted = fixes.post_answer(NORA, REP, QUESTION)
    button = posted.buttons[ACTION_TURN_OFF]
    assert button["confirm"], "Slack asks before it is sent"
    old_connection = next(c for c in fixes.connections(NORA) if c.provider == old)
    return posted, old_connection.id


@pytest.mark.parametrize("old", OLD_PROVIDERS)
def test_turn_off_keeps_the_events_and_turns_back_on(fixes: FixHarness, old: str) -> None:
    posted, old_id = _answer(fixes, old)
    assert json.loads(value_of(posted, ACTION_TURN_OFF))["connection"] == old_id, "the old one, named"
    before = _live(fixes)

    fixes.click(REP, posted.channel, posted.ts, ACTION_TURN_OFF, value_of(posted, ACTION_TURN_OFF))
    reply = fixes.reply(REP, posted.channel, "Turned off")
    connection = next(c for c in fixes.connections(NORA) if c.id == old_id)
    assert (connection.active, connection.status_code) == (False, "turned_off")
    assert connection.refresh_token_encrypted is not None, "the grant is kept, so it can be turned back on"
    (entry,) = fixes.audit(TURN_OFF)
    assert (entry.actor, entry.result, entry.detail["connection"]) == (REP, "turned_off", old_id)
    assert _live(fixes) == before, "nothing deleted at either provider"

    # A further sync cycle: the old calendar keeps what it had, nothing is cancelled or moved.
    asyncio.run(fixes.engine.sync_user(NORA))
    assert fixes.appointment_statuses() == ALL_BOOKED
    assert _live(fixes) == before

    turn_on = next(e for b in reply.blocks if b["type"] == "actions" for e in b["elements"])
    assert turn_on["action_id"] == ACTION_TURN_ON
    fixes.click(REP, posted.channel, reply.ts, ACTION_TURN_ON, turn_on["value"], ephemeral=True)
    fixes.reply(REP, posted.channel, "is on again")
    assert next(c for c in fixes.connections(NORA) if c.id == old_id).active
    (on,) = fixes.audit(TURN_ON)
    assert on.result == "turned_on"
    assert fixes.appointment_statuses() == ALL_BOOKED


# (the case, what the reply says, the audited action, the audited reason)
REFUSALS = [
    pytest.param("not_owner", "belongs to someone else", TURN_OFF, "not_owner", id="not-the-owner"),
    pytest.param(
        "only_one", "only one active calendar connection", TURN_OFF, "only_one", id="only-one-active"
    ),
    pytest.param("already_off", "already turned off", TURN_OFF, "already_off", id="already-off"),
    pytest.param("gone", "no longer exists", TURN_OFF, "gone", id="connection-gone"),
    pytest.param("grant_revoked", "sign-in no longer works", TURN_ON, "grant_invalid", id="back-on-revoked"),
]


@pytest.mark.parametrize("old", OLD_PROVIDERS)
@pytest.mark.parametrize(("case", "words", "action", "reason"), REFUSALS)
def test_refusals_change_nothing(
    fixes: FixHarness, old: str, case: str, words: str, action: str, reason: str
) -> None:
    posted, old_id = _answer(fixes, old)
    value = json.loads(value_of(posted, ACTION_TURN_OFF))
    new_id = next(c.id for c in fixes.connections(NORA) if c.id != old_id)
    user, action_id = REP, ACTION_TURN_OFF
    expect_active = {old_id: True, new_id: True}
    if case == "not_owner":
        user = OTHER_REP
    elif case == "gone":
        value["connection"] = 424242
    elif case in ("only_one", "already_off", "grant_revoked"):
        fixes.click(REP, posted.channel, posted.ts, ACTION_TURN_OFF, json.dumps(value))
        fixes.reply(REP, posted.channel, "Turned off")
        expect_active[old_id] = False
        if case == "only_one":
            value["connection"] = new_id
        elif case == "grant_revoked":
            old_connection = next(c for c in fixes.connections(NORA) if c.id == old_id)
            token = old_connection.authorization(fixes.sandbox.cipher).refresh_token
            fixes.sandbox.world.revoke_grant(token)
            action_id = ACTION_TURN_ON
    before = _live(fixes)

    fixes.click(user, posted.channel, posted.ts, action_id, json.dumps(value))
    fixes.reply(user, posted.channel, words)
    assert {c.id: c.active for c in fixes.connections(NORA)} == expect_active
    refused = [e for e in fixes.audit(action) if e.result.startswith("refused")]
    assert [(e.actor, e.result) for e in refused] == [(user, f"refused: {reason}")]
    assert _live(fixes) == before
    assert fixes.appointment_statuses() == ALL_BOOKED


def test_a_cause_naming_no_connection_turns_off_the_oldest(fixes: FixHarness) -> None:
    """`connection.multiple_active` alone names no connection: the one connected first goes off."""
    posted, old_id = _answer(fixes, "google")
    value = {**json.loads(value_of(posted, ACTION_TURN_OFF)), "connection": None}
    fixes.click(REP, posted.channel, posted.ts, ACTION_TURN_OFF, json.dumps(value))
    fixes.reply(REP, posted.channel, "Turned off")
    assert [c.id for c in fixes.connections(NORA) if not c.active] == [old_id]
    assert fixes.appointment_statuses() == ALL_BOOKED
