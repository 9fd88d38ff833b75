"""The demo world: its scenario file, the questions its reps ask, and its sync story.

Used by `calsync demo`, by `calsync serve` in sandbox mode (an empty database gets the demo world)
and by the playground (its example questions and each rep's one-line problem). Light to import:
what it needs beyond the standard library is imported where it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from calsync.sandbox.world import World
    from calsync.syncbackend.crypto import TokenCipher
    from calsync.syncbackend.engine import SyncEngine

DEMO_SCENARIO = Path(__file__).parent / "scenarios" / "demo.yaml"
# (rep, their calendar provider, what SalesPartner books for them) for the demo's sync story.
DEMO_SYNC_STORIES: tuple[tuple[str, str, str], ...] = (
    ("ana@northwind.example", "google", "Renewal call with Hooli"),
    ("ben@northwind.example", "microsoft", "Onboarding with Vandelay"),
)
# (rep, question): each rep asks about their own problem; the last one is off-topic.
DEMO_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("carla@northwind.example", "why isnt my apointment showing in my calender??"),
    ("dev@northwind.example", "my o365 calendar says not connected"),
    ("kate@northwind.example", "just booked a demo with pied piper, where is it?"),
    ("leo@northwind.example", "every appt shows up twice"),
    ("farid@northwind.example", "my appointments aren't in my calendar"),
    ("quinn@northwind.example", "why isn't my appointment showing"),
    ("nora@northwind.example", "what happened to my renewal call with massive dynamic?"),
    ("maya@northwind.example", "switched to outlook, why are my old meetings still in google?"),
    ("ana@northwind.example", "how do i reset my salespartner password"),
)


def demo_problems() -> dict[str, str]:
    """Each demo rep's one-line problem, from the demo scenario (for the playground's rep list)."""
    import yaml

    try:
        users = (yaml.safe_load(DEMO_SCENARIO.read_text(encoding="utf-8")) or {}).get("users") or []
    except (OSError, yaml.YAMLError):
        return {}
    return {
        str(user["email"]).lower(): str(user["problem"])
        for user in users
        if isinstance(user, dict) and user.get("email") and user.get("problem")
    }


def load_demo_if_empty(
    *,
    sessions: sessionmaker[Session],
    world: World | None,
    cipher: TokenCipher,
    clock: Callable[[], datetime],
) -> bool:
    """In sandbox mode (a `world`), give an empty database the demo world so the playground has reps
    to try. Whether it did."""
    from sqlalchemy import func, select

    from calsync.sandbox.scenario import load_scenario
    from calsync.syncbackend.models import User

    if world is None:
        return False
    with sessions() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return False
    load_scenario(DEMO_SCENARIO, sessions=sessions, world=world, cipher=cipher, clock=clock)
    return True


async def demo_sync_story(
    *,
    engine: SyncEngine,
    sessions: sessionmaker[Session],
    world: World,
    clock: Callable[[], datetime],
) -> list[str]:
    """The demo's sync story for each of `DEMO_SYNC_STORIES`, as printable lines."""
    from calsync.sandbox.story import render, sync_story
    from calsync.syncbackend.appointments import Appointments

    appointments = Appointments(sessions, clock)
    lines: list[str] = []
    for rep, provider, title in DEMO_SYNC_STORIES:
        steps = await sync_story(
            engine=engine,
            appointments=appointments,
            world=world,
            clock=clock,
            rep_email=rep,
            provider=provider,
            title=title,
        )
        lines.extend([*render(steps), ""])
    return lines
