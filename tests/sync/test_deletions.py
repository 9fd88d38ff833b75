"""Deleting an event in the calendar cancels its appointment — whichever way the cycle reads the
calendar — and nothing else ever does: not a short list, not a deleted calendar, not many
deletions at once (those wait for an agent).

An incremental read reports a deletion; a full read (no cursor, an expired one) lists only the
events that exist, so the engine looks up every linked event the read did not list. Each row runs
the real providers against the emulators and looks at both sides afterwards, and at what the
emulators received.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Literal

import pytest
from sqlalchemy import select

from calsync.app import quota_providers
from calsync.db import transaction
from calsync.render.blocks import ACTION_HOLD_CANCEL, ACTION_HOLD_KEEP
from calsync.sandbox.world import Endpoint
from calsync.syncbackend.engine import DELETED_IN_CALENDAR, CycleResult
from calsync.syncbackend.holds import Holds
from calsync.syncbackend.models import (
    AuditEntry,
    CalendarConnection,
    CancellationHold,
    EventLink,
)
from tests.harness import FIXED_NOW
from tests.sync.conftest import SyncWorld
from tests.sync.test_engine import REP_OF, REPS, TOMORROW_2PM, book, cycle

PROVIDERS = pytest.mark.parametrize("provider", ["google", "microsoft"])
SUPPORT_CHANNEL = "C0SUPPORT"
REPS_WITH_SUPPORT = (
    REPS
    + """
slack:
  channels:
    - {id: C0SUPPORT, name: calendar-support}
"""
)
# Where each provider's full read goes (the fault endpoints of the emulators).
FULL_READ_ENDPOINT: dict[str, Endpoint] = {"google": "events", "microsoft": "changes"}


def clear_cursor(world: SyncWorld, provider: str) -> None:
    """The stored cursor is gone (reset, a changed Graph URL): the next read is a full one."""
    with transaction(world.sandbox.sessions) as session:
        connection = session.scalars(
            select(CalendarConnection).where(CalendarConnection.account_email == REP_OF[provider])
        ).one()
        connection.sync_cursor = None


def expire_cursor(world: SyncWorld, provider: str) -> None:
    """Google answers 410 to the sync token, Graph syncStateNotFound to the delta link: read in full."""
    world.world.add_fault(provider, "sync_token_expired", endpoint="changes", remaining=1)


# How the next cycle reads the calendar.
READS: dict[str, Callable[[SyncWorld, str], None] | None] = {
    "incremental": None,
    "expired-cursor": expire_cursor,
    "no-cursor": clear_cursor,
}


def delete_in_calendar(world: SyncWorld, event_id: str) -> None:
    world.world.edit_event(event_id, {"status": "cancelled"}, world.sandbox.clock())


def delete_long_ago(world: SyncWorld, event_id: str) -> None:
    """Deleted so long ago that the provider keeps no tombstone: a full read cannot list it at all."""
    delete_in_calendar(world, event_id)
    world.world.forget_event(event_id)


def lookups_of(world: SyncWorld, provider: str, event_id: str) -> int:
    """GET requests for this one event that the emulator answered."""
    return sum(
        request.method == "GET" and request.path.endswith(f"/events/{event_id}")
        for request in world.world.requests(provider)
    )


async def one_cycle(world: SyncWorld, provider: str) -> CycleResult:
    (result,) = await world.engine.sync_user(REP_OF[provider])
    return result


# (how the cycle reads, how the rep deleted it, whether the engine must look the event up by id)
DELETIONS = [
    pytest.param(read, how, looked_up, id=f"{read}-{how.__name__}")
    for read, how, looked_up in (
        ("incremental", delete_in_calendar, False),
        ("expired-cursor", delete_in_calendar, "microsoft"),  # Google still lists its tombstone
        ("no-cursor", delete_in_calendar, "microsoft"),
        ("expired-cursor", delete_long_ago, "both"),
        ("no-cursor", delete_long_ago, "both"),
    )
]


@PROVIDERS
@pytest.mark.parametrize(("read", "how", "looked_up"), DELETIONS)
async def test_a_deletion_cancels_the_appointment_on_every_read(
    sync_world: SyncWorld,
    provider: str,
    read: str,
    how: Callable[[SyncWorld, str], None],
    looked_up: str | bool,
) -> None:
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)
    (event,) = sync_world.events(appointment_id)
    how(sync_world, event.event_id)
    prepare = READS[read]
    if prepare is not None:
        prepare(sync_world, provider)

    result = await one_cycle(sync_world, provider)

    assert result.status == "ok", result
    assert result.pulled.get("cancelled") == 1 and ("full_read" in result.pulled) == (read != "incremental")
    appointment = sync_world.appointment(appointment_id)
    (link,) = sync_world.links(appointment_id)
    # The same record on every path: the incremental read's deletion is the reference.
    assert (appointment.status, appointment.cancellation_reason, appointment.revision) == (
        "cancelled",
        DELETED_IN_CALENDAR,
        2,
    )
    assert (link.state, link.pushed_revision) == ("deleted", 2)
    expected_lookups = 1 if looked_up in ("both", provider) else 0
    assert lookups_of(sync_world, provider, event.event_id) == expected_lookups
    # Nothing more happens next time, on any read.
    clear_cursor(sync_world, provider)
    assert (await one_cycle(sync_world, provider)).pulled.get("cancelled") is None


@PROVIDERS
async def test_a_short_full_read_cancels_nothing(sync_world: SyncWorld, provider: str) -> None:
    """The full read comes back without the rep's events (a lagging replica, a lost page): each one is
    looked up, found, and left alone."""
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)
    (event,) = sync_world.events(appointment_id)
    sync_world.world.add_fault(provider, "short_list", endpoint=FULL_READ_ENDPOINT[provider], remaining=1)
    clear_cursor(sync_world, provider)

    result = await one_cycle(sync_world, provider)

    assert result.status == "ok" and "cancelled" not in result.pulled, result
    assert sync_world.appointment(appointment_id).status == "booked"
    assert [link.state for link in sync_world.links(appointment_id)] == ["synced"]
    assert lookups_of(sync_world, provider, event.event_id) == 1


async def test_a_failed_lookup_after_a_short_read_cancels_nothing_and_keeps_the_cursor(
    sync_world: SyncWorld,
) -> None:
    """Graph lists nothing, then cannot answer the look-ups: nothing is applied, and the next cycle
    reads in full again (the cursor is not advanced past what was never checked)."""
    provider = "microsoft"
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)
    sync_world.world.add_fault(provider, "short_list", endpoint="changes", remaining=1)
    sync_world.world.add_fault(provider, "unavailable", endpoint="events", params={"status": 503})
    clear_cursor(sync_world, provider)

    result = await one_cycle(sync_world, provider)

    assert (result.status, result.error_code) == ("error", "provider_unavailable")
    assert sync_world.appointment(appointment_id).status == "booked"
    assert sync_world.connection(REP_OF[provider]).sync_cursor is None
    sync_world.world.clear_faults()
    sync_world.sandbox.clock.now += timedelta(minutes=10)
    again = await one_cycle(sync_world, provider)
    assert again.status == "ok" and "full_read" in again.pulled and "cancelled" not in again.pulled


@PROVIDERS
async def test_an_event_moved_far_out_is_found_not_cancelled(sync_world: SyncWorld, provider: str) -> None:
    """Moved two years ahead (past Graph's read window): absent from a full read, found by id, and
    its new time flows back like any edit."""
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)
    (event,) = sync_world.events(appointment_id)
    far = TOMORROW_2PM + timedelta(days=730)
    sync_world.world.edit_event(
        event.event_id, {"start": far, "end": far + timedelta(minutes=30)}, sync_world.sandbox.clock()
    )
    clear_cursor(sync_world, provider)

    result = await one_cycle(sync_world, provider)

    assert result.status == "ok" and result.pulled.get("time_changed") == 1, result
    appointment = sync_world.appointment(appointment_id)
    assert (appointment.status, appointment.start) == ("booked", far)


@PROVIDERS
@pytest.mark.parametrize("read", ["incremental", "no-cursor"])
async def test_a_deleted_calendar_cancels_nothing_and_says_so(
    sync_world: SyncWorld, provider: str, read: str
) -> None:
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)
    connection = sync_world.connection(REP_OF[provider])
    assert connection.selected_calendar_id is not None
    sync_world.world.delete_calendar(provider, REP_OF[provider], connection.selected_calendar_id)  # type: ignore[arg-type]
    prepare = READS[read]
    if prepare is not None:
        prepare(sync_world, provider)

    result = await one_cycle(sync_world, provider)

    assert (result.status, result.error_code) == ("error", "not_found")
    assert sync_world.appointment(appointment_id).status == "booked"
    answer = await sync_world.troubleshooter.answer(REP_OF[provider], "where is my call with acme")
    codes = {finding.code for finding in answer.findings}
    assert "calendar.not_found" in codes and "changes.cancelled_by_delete" not in codes


class CalendarListWithout:
    """The provider, except that its calendar list no longer shows one calendar (unshared, or deleted
    between the read and the look-ups): the engine's check before it trusts a 404."""

    def __init__(self, inner: object, calendar_id: str) -> None:
        self._inner, self._calendar_id = inner, calendar_id

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def list_calendars(self, auth: object) -> list[object]:
        calendars = await self._inner.list_calendars(auth)  # type: ignore[attr-defined]
        return [calendar for calendar in calendars if calendar.id != self._calendar_id]


@PROVIDERS
async def test_look_ups_are_not_trusted_when_the_calendar_itself_is_gone(
    sync_world: SyncWorld, provider: str
) -> None:
    sync_world.sandbox.load(REPS)
    appointment_id = book(sync_world, provider)
    await cycle(sync_world, provider)
    (event,) = sync_world.events(appointment_id)
    delete_in_calendar(sync_world, event.event_id)
    sync_world.world.forget_event(event.event_id)
    clear_cursor(sync_world, provider)
    calendar_id = sync_world.connection(REP_OF[provider]).selected_calendar_id
    providers = quota_providers(sync_world.services)
    engine = sync_world.second_engine(
        {
            **providers,
            provider: CalendarListWithout(providers[provider], str(calendar_id)),  # type: ignore[dict-item]
        }
    )

    (result,) = await engine.sync_user(REP_OF[provider])

    assert (result.status, result.error_code) == ("error", "not_found")
    assert sync_world.appointment(appointment_id).status == "booked"
    assert lookups_of(sync_world, provider, event.event_id) == 0, "no look-up was even tried"


# -- many at once: an agent decides ----------------------------------------------------------------


def book_several(world: SyncWorld, provider: str, count: int) -> list[str]:
    return [
        world.appointments.book(
            REP_OF[provider], title=f"Demo {n} with Acme", start=TOMORROW_2PM + timedelta(hours=n)
        )
        for n in range(count)
    ]


def support_messages(world: SyncWorld) -> list[object]:
    return list(world.world.slack_messages(SUPPORT_CHANNEL))


def buttons_of(message: object) -> dict[str, str]:
    return {
        element["action_id"]: element.get("value", "")
        for block in getattr(message, "blocks", None) or []
        if block["type"] == "actions"
        for element in block["elements"]
    }


async def hold_three_of_five(world: SyncWorld, provider: str, read: str) -> list[str]:
    world.sandbox.load(REPS_WITH_SUPPORT)
    booked = book_several(world, provider, 5)
    await cycle(world, provider)
    for appointment_id in booked[:3]:
        (event,) = world.events(appointment_id)
        delete_in_calendar(world, event.event_id)
    prepare = READS[read]
    if prepare is not None:
        prepare(world, provider)
    result = await one_cycle(world, provider)
    assert (result.status, result.error_code, result.pulled.get("held")) == ("held", "cancellations_held", 3)
    return booked


@PROVIDERS
@pytest.mark.parametrize("read", ["incremental", "no-cursor"])
async def test_many_deletions_at_once_are_held_for_an_agent(
    sync_world: SyncWorld, provider: str, read: str
) -> None:
    booked = await hold_three_of_five(sync_world, provider, read)

    assert [sync_world.appointment(a).status for a in booked] == ["booked"] * 5, "none cancelled"
    (hold,) = Holds(sync_world.sandbox.sessions, sync_world.sandbox.clock).find()
    assert (set(a.id for a in hold.appointments), hold.upcoming, hold.status) == (set(booked[:3]), 5, "open")
    assert (sync_world.runs()[-1].status, sync_world.runs()[-1].error_code) == ("held", "cancellations_held")
    with sync_world.sandbox.sessions() as session:
        (audit,) = session.scalars(select(AuditEntry).where(AuditEntry.action == "cancellations_held")).all()
        assert (audit.actor, audit.detail["hold"]) == ("system", hold.id)
    (asked,) = support_messages(sync_world)
    assert set(buttons_of(asked)) == {ACTION_HOLD_CANCEL, ACTION_HOLD_KEEP}
    answer = await sync_world.troubleshooter.diagnose(REP_OF[provider])
    assert "sync.cancellations_held" in {finding.code for finding in answer.findings}

    # Later cycles, incremental or full, leave the held ones alone and ask nobody again.
    for later in ("incremental", "no-cursor"):
        prepare = READS[later]
        if prepare is not None:
            prepare(sync_world, provider)
        sync_world.sandbox.clock.now += timedelta(minutes=10)
        result = await one_cycle(sync_world, provider)
        assert result.status == "ok" and "cancelled" not in result.pulled and "held" not in result.pulled
    assert len(Holds(sync_world.sandbox.sessions, sync_world.sandbox.clock).find()) == 1
    assert len(support_messages(sync_world)) == 1
    assert [sync_world.appointment(a).status for a in booked] == ["booked"] * 5


@PROVIDERS
async def test_an_agent_cancelling_a_hold_cancels_each_by_the_rule(
    sync_world: SyncWorld, provider: str
) -> None:
    booked = await hold_three_of_five(sync_world, provider, "incremental")
    holds = Holds(sync_world.sandbox.sessions, sync_world.sandbox.clock)
    (hold,) = holds.find()

    decided = holds.decide(hold.id, "cancel", actor="U0AGENT")

    assert (decided.changed, decided.already, decided.hold.status) == (3, False, "cancelled")
    for appointment_id in booked[:3]:
        appointment = sync_world.appointment(appointment_id)
        assert (appointment.status, appointment.cancellation_reason) == ("cancelled", DELETED_IN_CALENDAR)
    assert [sync_world.appointment(a).status for a in booked[3:]] == ["booked", "booked"]
    again = holds.decide(hold.id, "keep", actor="U0OTHER")
    assert (again.already, again.changed, again.hold.decided_by) == (True, 0, "U0AGENT")
    result = await one_cycle(sync_world, provider)
    assert result.status == "ok" and result.pushed == {}, "nothing to push back"


@PROVIDERS
async def test_an_agent_keeping_a_hold_puts_the_events_back(sync_world: SyncWorld, provider: str) -> None:
    booked = await hold_three_of_five(sync_world, provider, "incremental")
    holds = Holds(sync_world.sandbox.sessions, sync_world.sandbox.clock)
    (hold,) = holds.find()

    decided = holds.decide(hold.id, "keep", actor="U0AGENT")
    result = await one_cycle(sync_world, provider)

    assert decided.changed == 3 and result.status == "ok" and result.pushed == {"created": 3}, result
    for appointment_id in booked:
        assert sync_world.appointment(appointment_id).status == "booked"
        assert len(sync_world.events(appointment_id)) == 1, "one event each, none doubled"
        assert [link.state for link in sync_world.links(appointment_id)] == ["synced"]
    with sync_world.sandbox.sessions() as session:
        row = session.get(CancellationHold, hold.id)
        assert row is not None and (row.status, row.decided_by) == ("kept", "U0AGENT")


# (appointments booked, deleted at once, held?) — the threshold: at least 3, and 20 % of the upcoming
THRESHOLD = [
    pytest.param(2, 2, False, id="two-of-two"),
    pytest.param(3, 3, True, id="three-of-three"),
    pytest.param(16, 3, False, id="three-of-sixteen"),
    pytest.param(15, 3, True, id="three-of-fifteen"),
]


@pytest.mark.parametrize(("count", "deleted", "held"), THRESHOLD)
async def test_the_threshold(sync_world: SyncWorld, count: int, deleted: int, held: bool) -> None:
    provider = "google"
    sync_world.sandbox.load(REPS)
    booked = book_several(sync_world, provider, count)
    await cycle(sync_world, provider)
    for appointment_id in booked[:deleted]:
        (event,) = sync_world.events(appointment_id)
        delete_in_calendar(sync_world, event.event_id)

    result = await one_cycle(sync_world, provider)

    cancelled = [sync_world.appointment(a).status for a in booked].count("cancelled")
    assert (result.status, cancelled) == (("held", 0) if held else ("ok", deleted))


async def test_past_appointments_are_not_counted_as_upcoming(sync_world: SyncWorld) -> None:
    """Deleting old events of meetings already over cancels them as usual: only upcoming ones count."""
    provider: Literal["microsoft"] = "microsoft"
    sync_world.sandbox.load(REPS)
    past = [
        sync_world.appointments.book(
            REP_OF[provider], title=f"Old call {n}", start=FIXED_NOW - timedelta(days=2, hours=n)
        )
        for n in range(3)
    ]
    # Pushed while they were still ahead: each has its event and a synced link.
    account = sync_world.world.account(provider, REP_OF[provider])
    assert account is not None
    (calendar, *_) = sync_world.world.ms_calendars(account.id)
    connection_id = sync_world.connection(REP_OF[provider]).id
    for appointment_id in past:
        appointment = sync_world.appointment(appointment_id)
        event, _ = sync_world.world.ms_insert_event(
            calendar.pk,
            title=appointment.title,
            description="",
            start=appointment.start,
            end=appointment.end,
            now=FIXED_NOW,
            appointment_id=appointment_id,
        )
        with transaction(sync_world.sandbox.sessions) as session:
            session.add(
                EventLink(
                    appointment_id=appointment_id,
                    connection_id=connection_id,
                    calendar_id=calendar.calendar_id,
                    event_id=event.event_id,
                    state="synced",
                    pushed_revision=1,
                )
            )
    await cycle(sync_world, provider)
    for appointment_id in past:
        (found,) = sync_world.events(appointment_id)
        delete_in_calendar(sync_world, found.event_id)

    result = await one_cycle(sync_world, provider)

    assert result.status == "ok" and result.pulled.get("cancelled") == 3
