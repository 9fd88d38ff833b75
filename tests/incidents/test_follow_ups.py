"""The reps told before an incident was recognised, on SQLite and PostgreSQL: their DM offered a
Reconnect that cannot work, so once the incident opens each hears — once, in that DM's thread — that
it affects N people at their organisation and reconnecting won't help yet; once access is back (a
colleague reconnected), everyone told to wait hears they can reconnect now, with the button, unless
they already did. Asserted on what the Slack emulator received; never two of one kind to one rep,
nothing to the bystander, across restarts, Slack refusals and two workers at once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from calsync.render.kit import ACTION_RECONNECT
from calsync.syncbackend.engine import SyncEngine
from calsync.syncbackend.incidents import IncidentStore
from tests.incidents.helpers import SCENARIOS, dm_threads, reconnect
from tests.incidents.test_scenarios import slack_id, texts
from tests.sync.conftest import SyncWorld


@dataclass(frozen=True)
class Org:
    scenario: str
    scope: str
    reps: tuple[str, ...]  # in the order their cycles fail; the third makes it an incident
    bystander: str
    product: str


ORGS = [
    pytest.param(
        Org(
            "incident-consent-removed.yaml",
            "tallgrass.example",
            tuple(f"{n}@tallgrass.example" for n in ("tess", "umar", "vera", "wes", "xia")),
            "ben@northwind.example",
            "Outlook",
        ),
        id="microsoft-consent-removed",
    ),
    pytest.param(
        Org(
            "incident-workspace-revoked.yaml",
            "brightline.example",
            tuple(f"{n}@brightline.example" for n in ("bo", "cleo", "dario", "esme", "finn")),
            "ana@northwind.example",
            "Google Calendar",
        ),
        id="google-workspace-revoked",
    ),
]
OPENS_AT = 3  # the incident policy's default: the third rep of one domain


def worker(sync_world: SyncWorld, *, follow_ups: bool = True) -> SyncEngine:
    """Another `calsync worker` on the same database (or this one after a restart): a worker id of its
    own, telling reps and the support channel as the first does — without the follow-ups when asked."""
    engine = sync_world.engine
    return SyncEngine(
        sessions=sync_world.services.sessions,
        providers=engine.providers,
        cipher=sync_world.services.cipher,
        clock=sync_world.services.clock,
        notify=engine.notify,
        notify_incident=engine.notify_incident,
        notify_follow_up=engine.notify_follow_up if follow_ups else None,
    )


def has_button(message: Any) -> bool:
    return f'"action_id": "{ACTION_RECONNECT}' in json.dumps(message.blocks or [])


def thread_of(sync_world: SyncWorld, email: str) -> list[Any]:
    """The rep's one disconnection DM and its replies (there is exactly one DM)."""
    (thread,) = dm_threads(sync_world, slack_id(sync_world, email))
    return thread


async def fail_in_turn(engine: SyncEngine, sync_world: SyncWorld, reps: tuple[str, ...]) -> None:
    for email in reps:
        (result,) = await engine.sync_user(email)
        assert result.status == "error", result
        sync_world.sandbox.clock.now += timedelta(minutes=2)


@pytest.mark.parametrize("org", ORGS)
async def test_reps_told_to_reconnect_before_the_incident_hear_it_once_and_then_that_access_is_back(
    sync_world: SyncWorld, org: Org
) -> None:
    sync_world.sandbox.load_file(SCENARIOS / org.scenario)
    early, opener, later = org.reps[: OPENS_AT - 1], org.reps[OPENS_AT - 1], org.reps[OPENS_AT:]

    await fail_in_turn(sync_world.engine, sync_world, early)
    for email in early:  # not an incident yet: the usual DM, with its Reconnect button
        (dm,) = thread_of(sync_world, email)
        assert has_button(dm) and "stopped syncing" in dm.text

    await fail_in_turn(sync_world.engine, sync_world, (opener,))
    for email in early:
        dm, follow_up = thread_of(sync_world, email)
        assert follow_up.thread_ts == dm.ts, "in the same conversation, under the DM it corrects"
        words = texts(follow_up)
        assert f"it affects 3 people at {org.scope}" in words
        assert "IT admin must" in words and "reconnecting won't help until then" in words
        assert not has_button(follow_up)
    (dm,) = thread_of(sync_world, opener)  # told what it is in the first place: nothing to correct
    assert not has_button(dm) and "IT admin must" in texts(dm)

    # The incident grows, rounds and restarts come and go: never a second follow-up.
    await fail_in_turn(sync_world.engine, sync_world, later)
    restarted = worker(sync_world)
    for engine in (sync_world.engine, restarted, sync_world.engine):
        await engine.watch_incidents()
        sync_world.sandbox.clock.now += timedelta(minutes=5)
    for email in early:
        assert len(thread_of(sync_world, email)) == 2
    for email in (opener, *later):
        assert len(thread_of(sync_world, email)) == 1
    (bystander,) = await sync_world.engine.sync_user(org.bystander)
    assert bystander.status == "ok"
    assert sync_world.dms_to(slack_id(sync_world, org.bystander)) == []

    # The admin restores access; the first two reps reconnect on their own before the next round.
    sync_world.world.clear_faults()
    for email in early:
        reconnect(sync_world, email)
        (result,) = await sync_world.engine.sync_user(email)
        assert result.status == "ok", result
    await restarted.watch_incidents()
    for email in early:  # already reconnected: nothing more to tell them
        assert len(thread_of(sync_world, email)) == 2
    for email in (opener, *later):  # told to wait: now told they can reconnect, with the button
        dm, back = thread_of(sync_world, email)
        assert back.thread_ts == dm.ts
        assert back.text.startswith("Access is back: 2 people at your organisation reconnected")
        assert org.product in back.text and has_button(back)
        buttons = [e for block in back.blocks if block.get("type") == "actions" for e in block["elements"]]
        assert any("/connect/" in str(button.get("url")) for button in buttons), "a working Reconnect link"

    # Once each: more rounds, more reconnects, the incident's end — nothing new for anyone.
    for email in (opener, *later):
        await sync_world.engine.watch_incidents()
        reconnect(sync_world, email)
        (result,) = await sync_world.engine.sync_user(email)
        assert result.status == "ok", result
    await sync_world.engine.watch_incidents()
    for email in early:
        assert len(thread_of(sync_world, email)) == 2
    for email in (opener, *later):
        assert len(thread_of(sync_world, email)) == 2
    assert sync_world.dms_to(slack_id(sync_world, org.bystander)) == []


async def test_an_early_rep_who_was_not_followed_up_hears_nothing_once_access_is_back(
    sync_world: SyncWorld,
) -> None:
    """Follow-ups off in the round that found the incident, and access back before the next one: the
    first DM's Reconnect is right again, so nobody hears "won't help" after the fact — only the reps
    told to wait hear it is back."""
    sync_world.sandbox.load_file(SCENARIOS / "incident-consent-removed.yaml")
    quiet = worker(sync_world, follow_ups=False)
    reps = tuple(f"{n}@tallgrass.example" for n in ("tess", "umar", "vera"))
    await fail_in_turn(quiet, sync_world, reps)
    sync_world.world.clear_faults()
    reconnect(sync_world, "tess@tallgrass.example")
    await sync_world.engine.sync_user("tess@tallgrass.example")
    await sync_world.engine.watch_incidents()
    assert len(thread_of(sync_world, "tess@tallgrass.example")) == 1
    (dm,) = thread_of(sync_world, "umar@tallgrass.example")
    assert has_button(dm), "its Reconnect works now: no follow-up"
    dm, back = thread_of(sync_world, "vera@tallgrass.example")
    assert back.text.startswith("Access is back: 1 person") and has_button(back)


async def test_two_workers_at_once_follow_each_rep_up_once(sync_world: SyncWorld) -> None:
    sync_world.sandbox.load_file(SCENARIOS / "incident-consent-removed.yaml")
    reps = tuple(f"{n}@tallgrass.example" for n in ("tess", "umar", "vera"))
    await fail_in_turn(worker(sync_world, follow_ups=False), sync_world, reps)  # recognised, not told
    for email in reps[:2]:
        assert len(thread_of(sync_world, email)) == 1

    await asyncio.gather(sync_world.engine.watch_incidents(), worker(sync_world).watch_incidents())

    for email in reps[:2]:
        dm, follow_up = thread_of(sync_world, email)
        assert follow_up.thread_ts == dm.ts and "it affects 3 people at tallgrass.example" in follow_up.text
    assert len(thread_of(sync_world, reps[2])) == 1
    posts = [
        c
        for c in sync_world.world.slack_calls("chat.postMessage")
        if str(c.params.get("text", "")).startswith("Update: it turns out")
    ]
    assert len(posts) == 2, "one per rep, not one per worker"


async def test_a_follow_up_slack_refused_or_a_worker_left_claimed_is_sent_once_later(
    sync_world: SyncWorld,
) -> None:
    sync_world.sandbox.load_file(SCENARIOS / "incident-consent-removed.yaml")
    reps = tuple(f"{n}@tallgrass.example" for n in ("tess", "umar", "vera"))
    await fail_in_turn(worker(sync_world, follow_ups=False), sync_world, reps)
    clock = sync_world.sandbox.clock

    # A worker claims Umar's follow-up and dies before sending it.
    crashed = IncidentStore(
        sync_world.services.sessions, sync_world.engine.incidents.policy, "crashed-worker"
    )
    claimed = crashed.claim_follow_ups(clock())
    assert [(c.kind, c.user_email) for c in claimed] == [
        ("followup", "tess@tallgrass.example"),
        ("followup", "umar@tallgrass.example"),
    ]
    crashed.release_follow_up(claimed[0])  # Tess's is free again; Umar's stays claimed
    # Slack refuses the next message: Tess's follow-up is released to try again.
    sync_world.world.add_fault("slack", "unavailable", endpoint="chat.postMessage", remaining=1)  # type: ignore[arg-type]
    await sync_world.engine.watch_incidents()
    assert len(thread_of(sync_world, "tess@tallgrass.example")) == 1
    assert len(thread_of(sync_world, "umar@tallgrass.example")) == 1, "still claimed by the dead worker"

    await sync_world.engine.watch_incidents()
    assert len(thread_of(sync_world, "tess@tallgrass.example")) == 2
    assert len(thread_of(sync_world, "umar@tallgrass.example")) == 1

    clock.now += sync_world.engine.incidents.policy.claim + timedelta(seconds=1)  # the claim expires
    await worker(sync_world).watch_incidents()
    await sync_world.engine.watch_incidents()
    for email in reps[:2]:
        dm, follow_up = thread_of(sync_world, email)
        assert follow_up.thread_ts == dm.ts and follow_up.text.startswith("Update: it turns out")
    assert crashed.claim_follow_ups(clock()) == []
