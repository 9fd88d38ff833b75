"""The three incident scenarios end to end, on SQLite and PostgreSQL: the sync engine's cycles against
the emulators → the incident recognised → the rep's answer says so (no Reconnect that cannot work)
→ exactly one support-channel message in the Slack emulator, updated as reps join, recover and when
it ends."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from calsync.diagnostics.causes import REP_FIXES
from calsync.render.answers import answer_message, details_message
from calsync.render.kit import ACTION_RECONNECT
from calsync.syncbackend.engine import SyncEngine, tick
from calsync.syncbackend.incidents import affected_reps, open_incidents
from calsync.syncbackend.models import User
from tests.incidents.helpers import SCENARIOS, incident_messages, reconnect
from tests.sync.conftest import SyncWorld


@dataclass(frozen=True)
class Case:
    scenario: str
    code: str
    scope: str
    reps: tuple[str, ...]  # in the order their cycles fail
    opens_at: int  # the rep whose failure makes it an incident (the thresholds' defaults)
    bystander: str  # a rep on the same provider or domain who is not affected
    question: str
    says: str  # what the headline says
    restore: bool  # access must be restored and each rep reconnect (else: the provider recovers)


CASES = [
    pytest.param(
        Case(
            "incident-consent-removed.yaml",
            "incident.org_consent_removed",
            "tallgrass.example",
            tuple(f"{n}@tallgrass.example" for n in ("tess", "umar", "vera", "wes", "xia")),
            3,
            "ben@northwind.example",
            "outlook stopped syncing my meetings?? it says something about admin approval, tried "
            "reconnect twice and nothing. Acme renewal is tmrw",
            "This affects 5 people at tallgrass.example since",
            True,
        ),
        id="microsoft-consent-removed",
    ),
    pytest.param(
        Case(
            "incident-workspace-revoked.yaml",
            "incident.org_access_revoked",
            "brightline.example",
            tuple(f"{n}@brightline.example" for n in ("bo", "cleo", "dario", "esme", "finn")),
            3,
            "ana@northwind.example",
            "hey my google cal disconnected out of nowhere, half my team says the same. globex demo tmrw!!",
            "This affects 5 people at brightline.example since",
            True,
        ),
        id="google-workspace-revoked",
    ),
    pytest.param(
        Case(
            "incident-provider-outage.yaml",
            "incident.provider_outage",
            "google",
            (
                "gil@tallgrass.example",
                "hana@tallgrass.example",
                "ivo@brightline.example",
                "jade@brightline.example",
                "kai@northwind.example",
                "lena@northwind.example",
            ),
            5,
            "ben@northwind.example",
            "nothing is syncing to google since like an hour, is it me?? initech review is tomorrow",
            "Google is having an outage",
            False,
        ),
        id="google-outage",
    ),
]


def slack_id(sync_world: SyncWorld, email: str) -> str:
    with sync_world.sandbox.sessions() as session:
        user = session.scalars(select(User).where(User.email == email)).one()
        assert user.slack_user_id is not None
        return user.slack_user_id


def texts(message: object) -> str:
    return json.dumps(getattr(message, "blocks", None) or []) + getattr(message, "text", "")


@pytest.mark.parametrize("case", CASES)
async def test_a_shared_cause_is_one_incident_from_start_to_end(sync_world: SyncWorld, case: Case) -> None:
    sync_world.sandbox.load_file(SCENARIOS / case.scenario)
    world, clock = sync_world.world, sync_world.sandbox.clock
    started = clock()

    # The reps' cycles fail one after another; the incident opens at the threshold and grows.
    for number, email in enumerate(case.reps, start=1):
        (result,) = await sync_world.engine.sync_user(email)
        assert result.status == "error", result
        messages = incident_messages(world)
        if number < case.opens_at:
            assert messages == [], "not an incident yet: one message per rep would be noise"
            assert open_incidents(sync_world.sandbox.sessions, clock()) == []
        else:
            (message,) = messages
            assert message.version == number - case.opens_at + 1, "updated in place as reps join"
            assert f"{number} people affected" in message.text
        clock.now += timedelta(minutes=2)
    if case.restore:
        # Reps told before it was an incident got the usual Reconnect, then one follow-up in its
        # thread once it was recognised; from the one that made it an incident on, the DM says what
        # it is and offers no Reconnect that cannot work.
        for number, email in enumerate(case.reps, start=1):
            dm, *follow_ups = sync_world.dms_to(slack_id(sync_world, email))
            if number < case.opens_at:
                assert f'"action_id": "{ACTION_RECONNECT}' in json.dumps(dm.blocks)
                (follow_up,) = follow_ups
                assert follow_up.thread_ts == dm.ts
                assert "reconnecting won't help until then" in texts(follow_up)
            else:
                assert follow_ups == []
                assert f'"action_id": "{ACTION_RECONNECT}' not in json.dumps(dm.blocks)
                assert "IT admin must" in texts(dm) and case.scope in dm.text
    else:
        assert all(sync_world.dms_to(slack_id(sync_world, email)) == [] for email in case.reps)
    (bystander,) = await sync_world.engine.sync_user(case.bystander)
    assert bystander.status == "ok"

    (incident,) = open_incidents(sync_world.sandbox.sessions, clock())
    assert (incident.scope, incident.affected, incident.ended_at) == (case.scope, len(case.reps), None)
    assert "incident." + incident.kind == case.code
    assert started <= incident.started_at < started + timedelta(minutes=1)
    assert [rep.email for rep in affected_reps(sync_world.sandbox.sessions, incident.id)] == list(case.reps)

    # The first rep asks: the answer leads with the incident, and offers no Reconnect.
    answer = await sync_world.troubleshooter.answer(case.reps[0], case.question)
    assert answer.causes[0].code == case.code
    assert answer.headline.startswith(case.says) or case.says in answer.headline
    assert all(action.kind != "reconnect" for action in answer.actions)
    assert not any(cause.fix.kind in REP_FIXES for cause in answer.shown_causes), "no fix that cannot work"
    if case.restore:
        assert "IT admin must" in answer.causes[0].fix.words
        assert "reconnecting won't help until then" in answer.causes[0].fix.words
    assert answer.articles == (), "no how-to-connect guidance beside 'reconnecting won't help'"
    details = texts(details_message(answer))
    assert "Settings &gt; Calendar Connections &gt; Reconnect" not in details, "Details agrees with it"
    blocks = json.dumps(answer_message(answer).blocks)
    assert f'"action_id": "{ACTION_RECONNECT}' not in blocks
    # An agent's diagnosis shows the incident's code.
    agent_view = answer_message(await sync_world.troubleshooter.diagnose(case.reps[0]), for_agent=True)
    assert case.code in texts(agent_view)
    # Someone the incident does not touch hears nothing of it.
    other = await sync_world.troubleshooter.answer(case.bystander, "is my calendar ok?")
    assert all(not f.code.startswith("incident.") for f in other.findings)

    # Access comes back (the admin restores it / the provider recovers): reps recover one by one.
    world.clear_faults()
    for number, email in enumerate(case.reps, start=1):
        clock.now += timedelta(minutes=2)
        if case.restore:
            reconnect(sync_world, email)
        (result,) = await sync_world.engine.sync_user(email)
        assert result.status == "ok", result
        await sync_world.engine.watch_incidents()
        (message,) = incident_messages(world)  # still the one message
        left = len(case.reps) - number
        if left:
            assert f"{left} people affected" in message.text or f"{left} person affected" in message.text
            assert f"{number} healthy again" in texts(message)
            if number == 1 and case.restore:
                # A colleague reconnected: access is back, so now Reconnect is the fix — and offered.
                waiting = await sync_world.troubleshooter.answer(case.reps[1], "still broken for me?")
                assert waiting.causes[0].code == case.code
                assert waiting.causes[0].fix.words.startswith("Access is back: 1 person")
                assert [a.kind for a in waiting.actions][:1] == ["reconnect"]
        else:
            assert message.text.startswith("Over:")
            assert f"{len(case.reps)} people were affected" in message.text
    assert open_incidents(sync_world.sandbox.sessions, clock()) == []
    after = await sync_world.troubleshooter.answer(case.reps[0], case.question)
    assert all(not f.code.startswith("incident.") for f in after.findings)
    # One post, every other change an update of it.
    posts = [c for c in world.slack_calls("chat.postMessage") if c.params.get("channel") == "C0SUPPORT"]
    assert len([c for c in posts if str(c.params.get("text", "")).startswith("Incident:")]) == 1


async def test_two_workers_at_once_post_one_message(sync_world: SyncWorld) -> None:
    """Two `calsync worker` processes detect and announce at the same moment: one message."""
    sync_world.sandbox.load_file(SCENARIOS / "incident-consent-removed.yaml")
    for name in ("tess", "umar"):
        await sync_world.engine.sync_user(f"{name}@tallgrass.example")
    other = SyncEngine(
        sessions=sync_world.services.sessions,
        providers=sync_world.engine.providers,
        cipher=sync_world.services.cipher,
        clock=sync_world.services.clock,
        notify_incident=sync_world.engine.notify_incident,
    )
    await other.sync_user("vera@tallgrass.example")  # the third: the incident opens in `other`
    await asyncio.gather(sync_world.engine.watch_incidents(), other.watch_incidents())
    (message,) = incident_messages(sync_world.world)
    assert "3 people affected" in message.text
    posts = [
        c for c in sync_world.world.slack_calls("chat.postMessage") if c.params.get("channel") == "C0SUPPORT"
    ]
    assert len(posts) == 1


async def test_a_worker_round_finds_the_incident_before_it_tells_anyone(sync_world: SyncWorld) -> None:
    """`calsync worker`'s round: every due cycle fails at once; detection runs before the DMs, so no
    rep of the organisation is told to reconnect."""
    sync_world.sandbox.load_file(SCENARIOS / "incident-consent-removed.yaml")
    result = await tick(sync_world.engine)
    assert sorted(c.status for c in result.cycles) == ["error"] * 5 + ["ok"]
    (message,) = incident_messages(sync_world.world)
    assert "5 people affected" in message.text
    for name in ("tess", "umar", "vera", "wes", "xia"):
        (dm,) = sync_world.dms_to(slack_id(sync_world, f"{name}@tallgrass.example"))
        assert f'"action_id": "{ACTION_RECONNECT}' not in json.dumps(dm.blocks)
        assert "tallgrass.example" in dm.text


async def test_the_health_sweep_finds_the_incident_before_it_tells_anyone(sync_world: SyncWorld) -> None:
    """The hourly sweep refreshes every grant: the tenant's reps fail in one batch, detection runs
    before their DMs, and the round's announcement posts the one message."""
    sync_world.sandbox.load_file(SCENARIOS / "incident-consent-removed.yaml")
    swept = await sync_world.engine.health_sweep()
    assert (swept.checked, swept.disconnected) == (6, 5)
    for name in ("tess", "umar", "vera", "wes", "xia"):
        (dm,) = sync_world.dms_to(slack_id(sync_world, f"{name}@tallgrass.example"))
        assert f'"action_id": "{ACTION_RECONNECT}' not in json.dumps(dm.blocks)
    await sync_world.engine.watch_incidents()
    (message,) = incident_messages(sync_world.world)
    assert "5 people affected" in message.text
