"""The agent-approved duplicate clean-up: a dry run that lists what it would remove (and removes
nothing), then — confirmed — the copies the doubled connection made are deleted at the provider,
exactly one event per appointment stays, and no appointment is cancelled, not even after further
sync cycles that read the deletions back (the old connection turned on again included)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from calsync.render.kit import ACTION_CLEANUP_APPLY, ACTION_CLEANUP_DRY_RUN
from calsync.store.people import Person
from calsync.syncbackend.fixes import CLEAN_DUPLICATES
from tests.bot.conftest import AGENT_BY_SETTING
from tests.fixes.conftest import FixHarness, Posted, value_of
from tests.fixes.scenarios import AGENT, AGNES, BEFORE_SWITCH, DOUBLED, NORA, PETE, REP, switched
from tests.test_cli_answer import run

OLD_PROVIDERS = ["google", "microsoft"]
APPOINTMENTS = (*DOUBLED, BEFORE_SWITCH)
ALL_BOOKED = dict.fromkeys(APPOINTMENTS, "booked")


def _live(fixes: FixHarness) -> dict[str, list[str]]:
    return {a: sorted(e.event_id for e in fixes.live_events(a)) for a in APPOINTMENTS}


def _agent_view(fixes: FixHarness, old: str) -> Posted:
    """The doubled world after one sync cycle (so each calendar has a read cursor, and the booking
    from before the switch reached the new calendar too: three appointments, each twice), and the
    agent's `/calsync diagnose` view of the rep."""
    fixes.load(switched(old))
    asyncio.run(fixes.engine.sync_user(NORA))
    assert all(len(events) == 2 for events in _live(fixes).values()), "every appointment shows up twice"
    return fixes.post_answer(NORA, AGENT, None, for_agent=True)


def _one_each_and_booked(fixes: FixHarness) -> None:
    live = _live(fixes)
    assert all(len(events) == 1 for events in live.values()), live
    assert fixes.appointment_statuses() == ALL_BOOKED


@pytest.mark.parametrize("old", OLD_PROVIDERS)
def test_dry_run_then_clean_up_keeps_one_event_per_appointment(fixes: FixHarness, old: str) -> None:
    posted = _agent_view(fixes, old)
    before = _live(fixes)
    assert json.loads(value_of(posted, ACTION_CLEANUP_DRY_RUN)) == {"rep": NORA}

    fixes.click(
        AGENT, posted.channel, posted.ts, ACTION_CLEANUP_DRY_RUN, value_of(posted, ACTION_CLEANUP_DRY_RUN)
    )
    dry = fixes.reply(AGENT, posted.channel, "would remove 3 calendar copies")
    assert _live(fixes) == before, "a dry run removes nothing"
    (entry,) = fixes.audit(CLEAN_DUPLICATES)
    assert (entry.actor, entry.result, len(entry.detail["would_remove"])) == (AGENT, "dry_run", 3)
    apply = next(e for b in dry.blocks if b["type"] == "actions" for e in b["elements"])
    assert apply["action_id"] == ACTION_CLEANUP_APPLY and apply["confirm"]["style"] == "danger"

    fixes.click(AGENT, posted.channel, dry.ts, ACTION_CLEANUP_APPLY, apply["value"], ephemeral=True)
    fixes.reply(AGENT, posted.channel, "removed 3 calendar copies")
    _one_each_and_booked(fixes)
    old_connection, new_connection = sorted(fixes.connections(NORA), key=lambda c: c.provider != old)
    kept = {e.calendar_pk for a in APPOINTMENTS for e in fixes.live_events(a)}
    assert len(kept) == 1, "every kept event is on the new calendar"
    assert not old_connection.active and new_connection.active
    done = fixes.audit(CLEAN_DUPLICATES)[-1]
    assert (done.result, len(done.detail["removed"]), done.detail["appointments_cancelled"]) == (
        "removed",
        3,
        0,
    )

    # Further cycles read the deletions back: nothing is cancelled, nothing pushed again — not even
    # with the old connection turned back on (its incremental read reports the three deletions).
    asyncio.run(fixes.engine.sync_user(NORA))
    _one_each_and_booked(fixes)
    fixes_flow = fixes.bot.fixes
    assert fixes_flow is not None
    nora = Person(REP, NORA, user_id=old_connection.user_id)
    assert asyncio.run(fixes_flow.turn_on(nora, old_connection.id, None)).__class__.__name__ == "TurnedOn"
    asyncio.run(fixes.engine.sync_user(NORA))
    asyncio.run(fixes.engine.sync_user(NORA))
    _one_each_and_booked(fixes)


# (who clicks, for whom, what they are told, the audited reason)
REFUSALS = [
    pytest.param(REP, NORA, "Only support agents", "not_an_agent", id="not-an-agent"),
    pytest.param(AGENT, PETE, "Nothing to clean", "nothing_to_clean", id="nothing-to-clean"),
    pytest.param(
        AGENT_BY_SETTING, "nobody@tallgrass.example", "no SalesPartner user", "unknown_user", id="unknown-rep"
    ),
]


@pytest.mark.parametrize("old", OLD_PROVIDERS)
@pytest.mark.parametrize("action", [ACTION_CLEANUP_DRY_RUN, ACTION_CLEANUP_APPLY])
@pytest.mark.parametrize(("user", "rep", "words", "reason"), REFUSALS)
def test_refusals_remove_nothing(
    fixes: FixHarness, old: str, action: str, user: str, rep: str, words: str, reason: str
) -> None:
    posted = _agent_view(fixes, old)
    before = _live(fixes)
    fixes.sandbox.world.slack_add_user(
        AGENT_BY_SETTING, "agent.by.setting@tallgrass.example", "Agent Setting"
    )

    fixes.click(user, posted.channel, posted.ts, action, json.dumps({"rep": rep}))
    fixes.reply(user, posted.channel, words)
    assert _live(fixes) == before
    assert fixes.appointment_statuses() == ALL_BOOKED
    assert all(c.active for c in fixes.connections(NORA))
    (entry,) = fixes.audit(CLEAN_DUPLICATES)
    assert (entry.actor, entry.result) == (user, f"refused: {reason}")


def test_nothing_left_after_a_clean_up(fixes: FixHarness) -> None:
    posted = _agent_view(fixes, "google")
    value = json.dumps({"rep": NORA})
    fixes.click(AGENT, posted.channel, posted.ts, ACTION_CLEANUP_APPLY, value)
    fixes.reply(AGENT, posted.channel, "removed 3")
    fixes.click(AGENT, posted.channel, posted.ts, ACTION_CLEANUP_APPLY, value)
    fixes.reply(AGENT, posted.channel, "Nothing to clean")
    _one_each_and_booked(fixes)


def test_the_command_line_dry_run_then_apply(tmp_path: Path) -> None:
    """`calsync fix duplicates EMAIL` (a dry run), then `--apply`, against its own sandbox."""
    scenario = tmp_path / "switched.yaml"
    scenario.write_text(switched("google"))
    assert run(tmp_path, "sandbox", "load", str(scenario)).returncode == 0
    assert run(tmp_path, "sync", NORA).returncode == 0

    dry = run(tmp_path, "fix", "duplicates", NORA)
    assert dry.returncode == 0, dry.stderr.decode()
    assert "would remove 3 calendar copies" in dry.stdout.decode()
    again = run(tmp_path, "fix", "duplicates", NORA)
    assert "would remove 3" in again.stdout.decode(), "the dry run changed nothing"

    applied = run(tmp_path, "fix", "duplicates", NORA, "--apply", "--by", AGNES)
    assert applied.returncode == 0, applied.stderr.decode()
    assert "removed 3 calendar copies" in applied.stdout.decode()
    assert "No appointment is cancelled" in applied.stdout.decode()

    nothing = run(tmp_path, "fix", "duplicates", NORA, "--apply")
    assert nothing.returncode == 1 and "Nothing to clean" in nothing.stderr.decode()
    diagnosis = run(tmp_path, "diagnose", NORA, "--json")
    codes = {f["code"] for f in json.loads(diagnosis.stdout)["findings"]}
    assert "duplicates.old_provider_still_active" not in codes and "connection.multiple_active" not in codes
