"""Choose the selected calendar from the answer: a menu of the calendars the provider lists as
writable, confirmed, audited old → new, undone by choosing the old one again; the events already
synced stay where they are and no appointment is cancelled. Every refusal changes nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from calsync.flows.fixes import calendar_key
from calsync.render.kit import (
    ACTION_CALENDAR_PICKED,
    ACTION_CALENDAR_UNDO,
    ACTION_CHOOSE_CALENDAR,
)
from calsync.sandbox.world.tables import SandboxCalendar
from calsync.syncbackend.appointments import Appointments
from calsync.syncbackend.fixes import CHOOSE_CALENDAR
from calsync.syncbackend.models import CalendarConnection
from tests.fixes.conftest import FixHarness, Posted, value_of
from tests.fixes.scenarios import CALENDAR_IDS, DEMO, GINA, NORA, OTHER_REP, REP, shared_calendar

PROVIDERS = ["google", "microsoft"]
QUESTION = "why are my appointments going to the sales team calendar and not my own calender"


def _menu(fixes: FixHarness, posted: Posted) -> list[dict[str, str]]:
    """Click *Choose a calendar*; the menu's options (text, value) from the private reply."""
    fixes.click(
        REP, posted.channel, posted.ts, ACTION_CHOOSE_CALENDAR, value_of(posted, ACTION_CHOOSE_CALENDAR)
    )
    reply = fixes.reply(REP, posted.channel, "Which")
    (menu,) = [e for b in reply.blocks if b["type"] == "actions" for e in b["elements"]]
    assert menu["type"] == "static_select" and menu["confirm"], "the choice is confirmed before it is sent"
    return [{"text": o["text"]["text"], "value": o["value"]} for o in menu["options"]]


def _selected(fixes: FixHarness) -> tuple[str | None, str | None]:
    (connection,) = fixes.connections(NORA)
    return connection.selected_calendar_id, connection.selected_calendar_name


@pytest.mark.parametrize("provider", PROVIDERS)
def test_choose_then_undo(fixes: FixHarness, provider: str) -> None:
    own, shared, _ = CALENDAR_IDS[provider]
    fixes.load(shared_calendar(provider))
    posted = fixes.post_answer(NORA, REP, QUESTION)
    assert ACTION_CHOOSE_CALENDAR in posted.buttons, (
        "the answer offers the menu for its choose_calendar cause"
    )

    options = _menu(fixes, posted)
    assert [o["text"] for o in options] == ["Nora Quinn (your own)"], (
        "only writable calendars, not the current"
    )
    assert all(len(o["value"]) <= 150 for o in options)

    fixes.click(
        REP, posted.channel, posted.ts, ACTION_CALENDAR_PICKED, options[0]["value"], menu=True, ephemeral=True
    )
    done = fixes.reply(REP, posted.channel, "new appointments now go to")
    assert _selected(fixes) == (own, "Nora Quinn")
    (entry,) = fixes.audit(CHOOSE_CALENDAR)
    assert (entry.actor, entry.result) == (REP, "chosen")
    assert entry.detail["from"] == {"id": shared, "name": "Sales Team"}
    assert entry.detail["to"] == {"id": own, "name": "Nora Quinn"}
    # Kept where it was: the event on the team calendar is still there, the appointment booked.
    assert [e.event_id for e in fixes.live_events("nora-vandelay")] == ["nora-ev-1"]
    assert fixes.appointment_statuses()["nora-vandelay"] == "booked"

    undo = next(e for b in done.blocks if b["type"] == "actions" for e in b["elements"])
    assert undo["action_id"] == ACTION_CALENDAR_UNDO
    fixes.click(REP, posted.channel, posted.ts, ACTION_CALENDAR_UNDO, undo["value"], ephemeral=True)
    fixes.reply(REP, posted.channel, "Back to")
    assert _selected(fixes) == (shared, "Sales Team")
    assert [e.result for e in fixes.audit(CHOOSE_CALENDAR)] == ["chosen", "undone"]

    # A further sync cycle on the team calendar cancels nothing and doubles nothing.
    asyncio.run(fixes.engine.sync_user(NORA))
    assert fixes.appointment_statuses()["nora-vandelay"] == "booked"
    assert len(fixes.live_events("nora-vandelay")) == 1


def _pick(fixes: FixHarness, posted: Posted, value: dict[str, object], user: str = REP) -> None:
    fixes.click(
        user, posted.channel, posted.ts, ACTION_CALENDAR_PICKED, json.dumps(value), menu=True, ephemeral=True
    )


# (what is wrong, how the pick is made, the refusal's words, the audited reason)
REFUSALS = [
    pytest.param("holidays", "read-only", id="not-writable"),
    pytest.param("unlisted", "not in the list", id="not-listed"),
    pytest.param("gone", "connection gone", id="connection-gone"),
    pytest.param("inactive", "connection off", id="connection-inactive"),
    pytest.param("other_rep", "someone else's answer", id="not-the-owner"),
]
EXPECTED = {
    "holidays": ("can't add appointments to that calendar", "not_writable"),
    "unlisted": ("can't add appointments to that calendar", "not_writable"),
    "gone": ("no longer exists", "gone"),
    "inactive": ("isn't active any more", "inactive"),
    "other_rep": ("belongs to someone else", "not_owner"),
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("case", "why"), REFUSALS)
def test_refusals_change_nothing(fixes: FixHarness, provider: str, case: str, why: str) -> None:
    own, shared, holidays = CALENDAR_IDS[provider]
    fixes.load(shared_calendar(provider))
    posted = fixes.post_answer(NORA, REP, QUESTION)
    base = json.loads(value_of(posted, ACTION_CHOOSE_CALENDAR))
    user = REP
    value = {**base, "calendar": calendar_key(own)}
    if case == "holidays":
        value["calendar"] = calendar_key(holidays)
    elif case == "unlisted":
        value["calendar"] = calendar_key("someone-else@group.calendar.google.com")
    elif case == "gone":
        value["connection"] = 987654
    elif case == "inactive":
        with fixes.sandbox.sessions.begin() as session:
            connection = session.get(CalendarConnection, base["connection"])
            assert connection is not None
            connection.active = False
    elif case == "other_rep":
        user = OTHER_REP
    _pick(fixes, posted, value, user)

    words, reason = EXPECTED[case]
    fixes.reply(user, posted.channel, words)
    assert _selected(fixes) == (shared, "Sales Team"), "nothing changed"
    (entry,) = fixes.audit(CHOOSE_CALENDAR)
    assert entry.result == f"refused: {reason}"
    assert entry.actor == user
    assert fixes.appointment_statuses() == {"nora-vandelay": "booked"}
    assert [e.event_id for e in fixes.live_events("nora-vandelay")] == ["nora-ev-1"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_after_the_switch_old_events_are_edited_where_they_are_and_new_ones_go_to_the_choice(
    fixes: FixHarness, provider: str
) -> None:
    """The help center: switching calendar keeps old events where they were. An edit of such an
    appointment reaches its event on the old calendar (a 404 on the new one would have read as
    "deleted in calendar" and cancelled it); a new booking goes to the chosen calendar."""
    own, _, _ = CALENDAR_IDS[provider]
    fixes.load(shared_calendar(provider))
    posted = fixes.post_answer(NORA, REP, QUESTION)
    options = _menu(fixes, posted)
    fixes.click(
        REP, posted.channel, posted.ts, ACTION_CALENDAR_PICKED, options[0]["value"], menu=True, ephemeral=True
    )
    fixes.reply(REP, posted.channel, "new appointments now go to")

    sandbox = fixes.sandbox
    booking = Appointments(sandbox.sessions, sandbox.clock)
    booking.change("nora-vandelay", title="Call with Vandelay (moved to Zoom)")
    new = booking.book(NORA, title="Kickoff with Kramerica", start=sandbox.clock() + timedelta(days=3))
    asyncio.run(fixes.engine.sync_user(NORA))

    (old_event,) = fixes.live_events("nora-vandelay")
    assert (old_event.event_id, old_event.title) == ("nora-ev-1", "Call with Vandelay (moved to Zoom)")
    assert fixes.appointment_statuses() == {"nora-vandelay": "booked", new: "booked"}
    (new_event,) = fixes.live_events(new)
    calendars = {c.pk: c.calendar_id for c in _calendars(fixes, provider)}
    assert calendars[new_event.calendar_pk] == own


def _calendars(fixes: FixHarness, provider: str) -> list[SandboxCalendar]:
    world = fixes.sandbox.world
    account = world.account(provider, NORA)  # type: ignore[arg-type]
    assert account is not None
    return list(
        world.google_calendars(account.id) if provider == "google" else world.ms_calendars(account.id)
    )


def test_a_deleted_calendar_replaced_from_the_menu_gets_the_waiting_appointment(fixes: FixHarness) -> None:
    """Gina's selected calendar was deleted: she picks her own from the menu, the sync that runs at
    once puts the waiting appointment there, and there is no Undo back to a calendar that is gone."""
    fixes.sandbox.load_file(DEMO)
    gina = "gina@northwind.example"
    posted = fixes.post_answer(gina, GINA, "my q3 pipeline calendar vanished and nothing syncs")
    fixes.click(
        GINA, posted.channel, posted.ts, ACTION_CHOOSE_CALENDAR, value_of(posted, ACTION_CHOOSE_CALENDAR)
    )
    reply = fixes.reply(GINA, posted.channel, "Which")
    (menu,) = [e for b in reply.blocks if b["type"] == "actions" for e in b["elements"]]
    own = next(o for o in menu["options"] if "(your own)" in o["text"]["text"])

    fixes.click(
        GINA, posted.channel, posted.ts, ACTION_CALENDAR_PICKED, own["value"], menu=True, ephemeral=True
    )
    done = fixes.reply(GINA, posted.channel, "new appointments now go to")
    assert "1 appointment sent to the calendar" in done.text + json.dumps(done.blocks)
    assert not [b for b in done.blocks if b["type"] == "actions"], "no Undo to a deleted calendar"
    assert len(fixes.live_events("gina-duff")) == 1
    assert fixes.appointment_statuses()["gina-duff"] == "booked"
