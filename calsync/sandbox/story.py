"""The demo's sync story: a booking travels to the calendar, a calendar edit travels back.

Everything here happens for real in the sandbox: SalesPartner books through `Appointments`, the sync
engine runs a cycle through the real provider clients, the rep's edit is made at the provider (the
emulator's world, as Google Calendar's own app would), and what each side holds is read back —
the calendar through the provider client, SalesPartner from the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from calsync.diagnostics.humanize import clock_time
from calsync.render import labels
from calsync.render.words import cycle_summary
from calsync.sandbox.world import World
from calsync.syncbackend.appointments import Appointments
from calsync.syncbackend.engine import SyncEngine


@dataclass(frozen=True)
class Step:
    who: str  # "SalesPartner", "sync", "Google Calendar", ...
    text: str


def _when(moment: datetime) -> str:
    return f"{moment:%a %d %b} {clock_time(moment)} UTC"


async def sync_story(
    *,
    engine: SyncEngine,
    appointments: Appointments,
    world: World,
    clock: Callable[[], datetime],
    rep_email: str,
    provider: str,
    title: str,
) -> list[Step]:
    steps: list[Step] = []
    product = labels.product(provider)
    start = (clock() + timedelta(days=1)).replace(hour=16, minute=0, second=0, microsecond=0)
    appointment_id = appointments.book(rep_email, title=title, start=start, description="Booked by the demo")
    steps.append(Step("SalesPartner", f"{rep_email} books “{title}” for {_when(start)}."))
    steps.append(Step(product, _calendar_holds(world, appointment_id)))

    steps.extend(Step("sync", cycle_summary(result)) for result in await engine.sync_user(rep_email))
    steps.append(Step(product, _calendar_holds(world, appointment_id)))

    moved = start + timedelta(hours=1, minutes=30)
    (event, *_) = world.find_events(appointment_id=appointment_id)
    world.edit_event(event.event_id, {"start": moved, "end": moved + (event.end - event.start)}, clock())
    steps.append(Step(product, f"The rep drags it to {_when(moved)} in {product}."))

    steps.extend(Step("sync", cycle_summary(result)) for result in await engine.sync_user(rep_email))
    now_at = appointments.get(appointment_id)
    steps.append(Step("SalesPartner", f"“{now_at.title}” is now at {_when(now_at.start)} ({now_at.status})."))
    return steps


def _calendar_holds(world: World, appointment_id: str) -> str:
    events = world.find_events(appointment_id=appointment_id)
    if not events:
        return "Not in the calendar yet (it syncs on the next cycle)."
    return (
        "; ".join(f"Holds “{e.title}” at {_when(e.start)} (event {e.event_id[:12]}…)" for e in events) + "."
    )


def render(steps: list[Step]) -> Iterator[str]:
    width = max(len(step.who) for step in steps)
    for step in steps:
        yield f"{step.who:>{width}}  {step.text}"
