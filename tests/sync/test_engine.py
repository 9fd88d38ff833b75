"""The sync engine against the sandbox: what the help center promises, end to end.

Each test books, edits or breaks something the way a rep, a calendar or a provider would, runs one
cycle through the real provider clients, and then looks at both sides: the provider's world (what the
calendar holds) and ours (appointments, links, sync runs) — and finally at what the diagnostics say
about the resulting state.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from calsync.syncbackend.engine import DELETED_IN_CALENDAR
from calsync.syncbackend.models import Appointment
from tests.harness import FIXED_NOW
from tests.sync.conftest import SyncWorld

REPS = """
accounts:
  - provider: google
    email: gwen@northwind.example
    calendars:
      - {id: gwen@northwind.example, name: Gwen, primary: true}
  - provider: microsoft
    email: mike@northwind.example
    calendars:
      - {id: AAMkAGI-mike-calendar, name: Calendar, primary: true}
users:
  - email: gwen@northwind.example
    name: Gwen Google
    slack_user_id: U0GWEN
    connections:
      - {provider: google, account: gwen@northwind.example, selected_calendar: gwen@northwind.example}
  - email: mike@northwind.example
    name: Mike Microsoft
    slack_user_id: U0MIKE
    connections:
      - {provider: microsoft, account: mike@northwind.example, selected_calendar: AAMkAGI-mike-calendar}
"""
REP_OF = {"google": "gwen@northwind.example", "microsoft": "mike@northwind.example"}
SLACK_OF = {"google": "U0GWEN", "microsoft": "U0MIKE"}
PROVIDERS = pytest.mark.parametrize("provider", ["google", "microsoft"])
TOMORROW_2PM = FIXED_NOW.replace(hour=14) + timedelta(days=1)


def book(world: SyncWorld, provider: str, title: str = "Discovery call with Acme") -> str:
    return world.appointments.book(
        REP_OF[provider], title=title, start=TOMORROW_2PM, description="Agenda: pricing"
    )


async def cycle(world: SyncWorld, provider: str) -> None:
    (result,) = await world.engine.sync_user(REP_OF[provider])
    assert result.status == "ok", result


@PROVIDERS
async def test_a_booking_reaches_the_calendar_in_one_cycle(sync_world: SyncWorld, provider: str) -> None:
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    assert sync_world.events(appointment_id) == []

    (result,) = await sync_world.engine.sync_user(REP_OF[provider])

    assert result.status == "ok" and result.pushed == {"created": 1}
    (event,) = sync_world.events(appointment_id)
    assert (event.title, event.description, event.start) == (
        "Discovery call with Acme",
        "Agenda: pricing",
        TOMORROW_2PM,
    )
    (link,) = sync_world.links(appointment_id)
    assert (link.state, link.event_id, link.pushed_revision) == ("synced", event.event_id, 1)
    assert [(run.direction, run.status) for run in sync_world.runs()] == [("pull", "ok"), ("push", "ok")]
    # Nothing left to do: a second cycle changes nothing at the provider.
    await cycle(sync_world, provider)
    assert len(sync_world.events(appointment_id)) == 1


# (what the rep does in the calendar, the event's new fields, what the appointment must become)
CALENDAR_EDITS = [
    pytest.param(
        {"start": TOMORROW_2PM + timedelta(hours=2), "end": TOMORROW_2PM + timedelta(hours=2, minutes=30)},
        {"start": TOMORROW_2PM + timedelta(hours=2), "status": "booked"},
        "time_changed",
        id="move",
    ),
    pytest.param(
        {"start": TOMORROW_2PM + timedelta(days=3), "end": TOMORROW_2PM + timedelta(days=3, minutes=30)},
        {"start": TOMORROW_2PM + timedelta(days=3)},
        "time_changed",
        id="another-day",
    ),
    pytest.param(
        {"title": "Discovery call with Acme (CFO joins)"},
        {"title": "Discovery call with Acme (CFO joins)"},
        "title_changed",
        id="rename",
    ),
    pytest.param(
        {"description": "Bring the Q3 numbers"},
        {"description": "Bring the Q3 numbers"},
        "description_changed",
        id="re-describe",
    ),
]


@PROVIDERS
@pytest.mark.parametrize(("edit", "expected", "count"), CALENDAR_EDITS)
async def test_calendar_edits_flow_back(
    sync_world: SyncWorld, provider: str, edit: dict[str, object], expected: dict[str, object], count: str
) -> None:
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)
    (event,) = sync_world.events(appointment_id)
    sync_world.sandbox.clock.now += timedelta(minutes=3)
    sync_world.world.edit_event(event.event_id, edit, sync_world.sandbox.clock())

    (result,) = await sync_world.engine.sync_user(REP_OF[provider])

    assert result.pulled.get(count) == 1 and result.pulled.get("updated") == 1
    assert result.pushed == {}, "a change from the calendar is not pushed back"
    appointment = sync_world.appointment(appointment_id)
    for name, value in expected.items():
        assert getattr(appointment, name) == value
    (after,) = sync_world.events(appointment_id)
    assert after.updated == sync_world.sandbox.clock(), "the calendar's event was left as the rep made it"


@PROVIDERS
async def test_deleting_the_event_cancels_the_appointment(sync_world: SyncWorld, provider: str) -> None:
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)
    (event,) = sync_world.events(appointment_id)
    sync_world.world.edit_event(event.event_id, {"status": "cancelled"}, sync_world.sandbox.clock())

    (result,) = await sync_world.engine.sync_user(REP_OF[provider])

    assert result.pulled == {"cancelled": 1}
    appointment = sync_world.appointment(appointment_id)
    assert (appointment.status, appointment.cancellation_reason) == ("cancelled", DELETED_IN_CALENDAR)
    assert [link.state for link in sync_world.links(appointment_id)] == ["deleted"]
    answer = await sync_world.troubleshooter.answer(
        REP_OF[provider], "my call with Acme tomorrow disappeared"
    )
    assert "changes.cancelled_by_delete" in {finding.code for finding in answer.findings}


@PROVIDERS
async def test_an_event_added_directly_creates_nothing(sync_world: SyncWorld, provider: str) -> None:
    sync_world.sandbox.load(REPS)
    await cycle(sync_world, provider)  # the first read: the calendar is empty
    sync_world.add_direct_event(provider, REP_OF[provider], "Dentist", TOMORROW_2PM)

    (result,) = await sync_world.engine.sync_user(REP_OF[provider])

    assert result.pulled == {"ignored": 1} and result.pushed == {}
    with sync_world.sandbox.sessions() as session:
        assert session.query(Appointment).count() == 0


@PROVIDERS
async def test_changes_and_cancellations_made_in_salespartner_reach_the_calendar(
    sync_world: SyncWorld, provider: str
) -> None:
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)

    sync_world.appointments.change(
        appointment_id, start=TOMORROW_2PM + timedelta(hours=1), title="Acme: pricing"
    )
    (result,) = await sync_world.engine.sync_user(REP_OF[provider])
    assert result.pushed == {"updated": 1}
    (event,) = sync_world.events(appointment_id)
    assert (event.title, event.start) == ("Acme: pricing", TOMORROW_2PM + timedelta(hours=1))

    sync_world.appointments.cancel(appointment_id)
    (result,) = await sync_world.engine.sync_user(REP_OF[provider])
    assert result.pushed == {"deleted": 1}
    assert sync_world.events(appointment_id) == []
    assert sync_world.appointment(appointment_id).cancellation_reason == "cancelled in SalesPartner"
    # Our own deletion, read back by the next pull, is not taken for the rep's.
    (result,) = await sync_world.engine.sync_user(REP_OF[provider])
    assert (
        result.pulled == {}
        and sync_world.appointment(appointment_id).cancellation_reason == "cancelled in SalesPartner"
    )


@PROVIDERS
async def test_a_lost_answer_between_insert_and_commit_never_makes_a_second_event(
    sync_world: SyncWorld, provider: str
) -> None:
    """The provider creates the event but its answer never reaches us (a crash, a dropped connection):
    the next cycle finds the event by our appointment id instead of inserting again."""
    sync_world.sandbox.load(REPS)
    await cycle(sync_world, provider)
    appointment_id = book(sync_world, provider)
    # Lost answers for the insert and for the provider's own retries of it.
    sync_world.world.add_fault(
        provider, "lost_response", endpoint="events", params={"status": 503}, remaining=8
    )

    (first,) = await sync_world.engine.sync_user(REP_OF[provider])
    sync_world.world.clear_faults()
    assert len(sync_world.events(appointment_id)) == 1, "the provider did create it"
    if first.status == "error":
        assert first.error_code == "provider_unavailable"
        (link,) = sync_world.links(appointment_id)
        assert link.event_id is None and link.insert_attempted_at is not None
        second = (await sync_world.engine.sync_user(REP_OF[provider]))[0]
        assert second.status == "ok"
        assert "created" not in second.pushed, second
        assert second.pulled.get("recovered", 0) + second.pushed.get("recovered", 0) == 1, second

    assert len(sync_world.events(appointment_id)) == 1
    (link,) = sync_world.links(appointment_id)
    assert link.state == "synced" and link.event_id == sync_world.events(appointment_id)[0].event_id
    await cycle(sync_world, provider)
    assert len(sync_world.events(appointment_id)) == 1


@PROVIDERS
async def test_two_workers_run_one_cycle(sync_world: SyncWorld, provider: str) -> None:
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    sync_world.world.add_fault(provider, "latency", params={"seconds": 0.3})
    connection_id = sync_world.connection(REP_OF[provider]).id
    other = sync_world.second_engine()

    results = await asyncio.gather(
        sync_world.engine.sync_connection(connection_id), other.sync_connection(connection_id)
    )

    assert sorted(result.status for result in results) == ["busy", "ok"]
    assert len(sync_world.events(appointment_id)) == 1
    assert [run.direction for run in sync_world.runs()] == ["pull", "push"]
    assert sync_world.connection(REP_OF[provider]).lease_owner is None, "the lease is given back"


async def test_two_workers_polling_take_different_connections(sync_world: SyncWorld) -> None:
    sync_world.sandbox.load(REPS)
    sync_world.world.add_fault("*", "latency", params={"seconds": 0.2})
    other = sync_world.second_engine()

    first, second = await asyncio.gather(sync_world.engine.run_due(), other.run_due())

    done = [result.connection_id for result in [*first, *second]]
    assert sorted(done) == sorted({c.id for c in map(sync_world.connection, REP_OF.values())})
    assert len(sync_world.runs()) == 4, "one pull and one push per connection, no more"
    # Both are scheduled for later now: polling again finds nothing due.
    assert await sync_world.engine.run_due() == []


@PROVIDERS
async def test_a_revoked_grant_disconnects_and_tells_the_rep_once(
    sync_world: SyncWorld, provider: str
) -> None:
    sync_world.sandbox.load(REPS)
    book(sync_world, provider)
    sync_world.revoke(REP_OF[provider])

    (result,) = await sync_world.engine.sync_user(REP_OF[provider])

    assert (result.status, result.error_code) == ("error", "invalid_grant")
    connection = sync_world.connection(REP_OF[provider])
    assert connection.status == "disconnected" and connection.status_code and connection.disconnected_at
    (dm,) = sync_world.dms_to(SLACK_OF[provider])
    assert "stopped syncing" in dm.text
    buttons = [e for block in dm.blocks if block.get("type") == "actions" for e in block["elements"]]
    assert any("/connect/" in str(button.get("url")) for button in buttons), "a Reconnect button"
    assert (sync_world.runs()[-1].status, sync_world.runs()[-1].error_code) == ("error", "invalid_grant")

    # Later cycles, sweeps and worker rounds do not tell the rep again.
    sync_world.sandbox.clock.now += timedelta(hours=2)
    assert (await sync_world.engine.sync_user(REP_OF[provider]))[0].status == "skipped"
    await sync_world.engine.health_sweep()
    assert await sync_world.engine.notify_disconnections() == 0
    assert len(sync_world.dms_to(SLACK_OF[provider])) == 1
    answer = await sync_world.troubleshooter.answer(REP_OF[provider], "why isn't my appointment showing")
    assert answer.findings[0].code.startswith("connection.")
    assert any(action.kind == "reconnect" for action in answer.actions)


@PROVIDERS
async def test_a_rate_limit_backs_off_and_never_disconnects(sync_world: SyncWorld, provider: str) -> None:
    sync_world.sandbox.load(REPS)
    sync_world.world.add_fault(provider, "rate_limit", params={"retry_after": 600})

    (result,) = await sync_world.engine.sync_user(REP_OF[provider])

    assert (result.status, result.error_code) == ("error", "rate_limited")
    assert result.next_sync_at is not None and result.next_sync_at >= FIXED_NOW + timedelta(seconds=600)
    assert sync_world.connection(REP_OF[provider]).status == "connected"
    assert sync_world.dms_to(SLACK_OF[provider]) == []


@PROVIDERS
async def test_an_expired_cursor_reads_the_calendar_again(sync_world: SyncWorld, provider: str) -> None:
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)
    (event,) = sync_world.events(appointment_id)
    sync_world.world.edit_event(event.event_id, {"title": "Renamed"}, sync_world.sandbox.clock())
    sync_world.world.add_fault(provider, "sync_token_expired", endpoint="changes", remaining=1)

    (result,) = await sync_world.engine.sync_user(REP_OF[provider])

    assert result.status == "ok" and result.pulled.get("title_changed") == 1
    assert sync_world.appointment(appointment_id).title == "Renamed"


SWITCHED = """
accounts:
  - provider: google
    email: sam@northwind.example
    calendars:
      - id: sam@northwind.example
        name: Sam
        primary: true
        events:
          - {id: sam-old-1, title: Old call with Initech, start: "tomorrow 09:00", appointment: sam-old}
  - provider: microsoft
    email: sam@northwind.example
    calendars:
      - {id: AAMkAGI-sam-calendar, name: Calendar, primary: true}
users:
  - email: sam@northwind.example
    name: Sam Switch
    connections:
      - {provider: google, account: sam@northwind.example, selected_calendar: sam@northwind.example,
         active: false, status: disconnected, status_code: switched, status_reason: switched to Outlook}
      - {provider: microsoft, account: sam@northwind.example, selected_calendar: AAMkAGI-sam-calendar}
    appointments:
      - id: sam-old
        title: Old call with Initech
        start: "tomorrow 09:00"
        booked: "-2d"
        links: [{connection: sam@northwind.example, provider: google, event: sam-old-1}]
"""


async def test_after_a_switch_new_appointments_go_to_the_new_calendar_and_old_ones_stay(
    sync_world: SyncWorld,
) -> None:
    sync_world.sandbox.load(SWITCHED)
    new_id = sync_world.appointments.book(
        "sam@northwind.example", title="New call with Globex", start=TOMORROW_2PM
    )

    (result,) = await sync_world.engine.sync_user("sam@northwind.example")

    assert result.provider == "microsoft" and result.pushed == {"created": 1}
    (new_event,) = sync_world.events(new_id)
    (old_event,) = sync_world.events("sam-old")
    assert new_event.event_id.startswith("AAMkAGI"), "the new one is in Outlook"
    assert old_event.event_id == "sam-old-1", "the old one stays in Google Calendar, not moved or copied"
    assert [link.state for link in sync_world.links("sam-old")] == ["synced"]


@PROVIDERS
async def test_a_worker_dying_between_the_insert_and_its_commit_never_makes_a_second_event(
    sync_world: SyncWorld, provider: str
) -> None:
    """The provider has created the event and is about to answer when the worker dies (its cycle is
    cancelled mid-request): nothing after the insert is committed. The next cycle recovers the event."""
    sync_world.sandbox.load(REPS)
    await cycle(sync_world, provider)
    appointment_id = book(sync_world, provider)
    sync_world.world.add_fault(
        provider, "lost_response", endpoint="events", params={"after_seconds": 30}, remaining=1
    )
    worker = asyncio.create_task(sync_world.engine.sync_user(REP_OF[provider]))
    for _ in range(500):
        if sync_world.events(appointment_id):
            break
        await asyncio.sleep(0.01)
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    (link,) = sync_world.links(appointment_id)
    assert (link.event_id, link.state) == (None, "pending") and link.insert_attempted_at is not None
    assert len(sync_world.events(appointment_id)) == 1

    (result,) = await sync_world.engine.sync_user(REP_OF[provider])

    assert result.status == "ok" and "created" not in result.pushed
    assert result.pulled.get("recovered", 0) + result.pushed.get("recovered", 0) == 1
    (event,) = sync_world.events(appointment_id)
    assert sync_world.links(appointment_id)[0].event_id == event.event_id


async def test_a_dead_workers_lease_expires(sync_world: SyncWorld) -> None:
    """A worker that died mid-cycle never gave its lease back: nobody else runs the connection until
    the lease runs out, then the next worker does."""
    from calsync.db import transaction
    from calsync.syncbackend.schedule import claim

    sync_world.sandbox.load(REPS)
    connection_id = sync_world.connection(REP_OF["google"]).id
    lease = sync_world.engine.policy.lease
    with transaction(sync_world.sandbox.sessions) as session:
        assert claim(session, connection_id, "worker-dead", sync_world.sandbox.clock(), lease)

    assert (await sync_world.engine.sync_connection(connection_id)).status == "busy"
    assert await sync_world.engine.run_due() != []  # the other connection only
    sync_world.sandbox.clock.now += lease + timedelta(seconds=1)
    assert (await sync_world.engine.sync_connection(connection_id)).status == "ok"


async def test_the_health_sweep_finds_dead_grants_before_the_rep_does(sync_world: SyncWorld) -> None:
    sync_world.sandbox.load(REPS)
    sync_world.revoke(REP_OF["microsoft"])

    sweep = await sync_world.engine.health_sweep()

    assert (sweep.checked, sweep.ok, sweep.disconnected, sweep.unreachable) == (2, 1, 1, 0)
    healthy, dead = sync_world.connection(REP_OF["google"]), sync_world.connection(REP_OF["microsoft"])
    assert healthy.status == "connected" and healthy.last_checked_at == sync_world.sandbox.clock()
    assert dead.status == "disconnected" and dead.status_code
    assert len(sync_world.dms_to(SLACK_OF["microsoft"])) == 1 and sync_world.dms_to(SLACK_OF["google"]) == []
    assert [(run.direction, run.error_code) for run in sync_world.runs()] == [("health", "invalid_grant")]
    # Checked within the hour: the next sweep leaves them alone; an hour later it checks again.
    assert (await sync_world.engine.health_sweep()).checked == 0
    sync_world.sandbox.clock.now += timedelta(hours=1, minutes=1)
    assert (await sync_world.engine.health_sweep()).checked == 1


async def test_a_flaky_provider_during_the_sweep_is_not_a_disconnection(sync_world: SyncWorld) -> None:
    sync_world.sandbox.load(REPS)
    sync_world.world.add_fault("google", "unavailable", endpoint="token")

    sweep = await sync_world.engine.health_sweep()

    assert (sweep.ok, sweep.unreachable, sweep.disconnected) == (1, 1, 0)
    assert sync_world.connection(REP_OF["google"]).status == "connected"
    assert sync_world.connection(REP_OF["google"]).last_checked_at is None, "checked again next sweep"


async def test_a_round_reports_its_progress_cycle_by_cycle(sync_world: SyncWorld) -> None:
    """What `calsync worker --once` draws its bar from: (done, total), from 0 to every due cycle."""
    from calsync.syncbackend.engine import tick

    sync_world.sandbox.load(REPS)
    heard: list[tuple[int, int]] = []
    result = await tick(sync_world.engine, progress=lambda done, total: heard.append((done, total)))
    total = len(result.cycles)
    assert total == len(REP_OF) and heard == [(done, total) for done in range(total + 1)]
