"""The sandbox world's own bookkeeping under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Engine

from calsync.sandbox.world import World
from tests.harness import FIXED_NOW


def test_concurrent_first_writes_to_an_empty_world_each_get_their_own_version(engine: Engine) -> None:
    """Before, the first writes raced to create the counter row (UNIQUE constraint failed) and a
    Google insert answered 500. The row exists with the tables; each write bumps it atomically."""
    world = World(engine)
    world.create_tables()
    account = world.add_account("google", "gwen@northwind.example")
    calendar = world.add_calendar(account.id, "gwen@northwind.example", "Gwen", primary=True)
    assert world.current_version() == 0

    def insert(n: int) -> int:
        event = world.google_add_event(
            calendar.pk,
            title=f"Call {n}",
            start=FIXED_NOW + timedelta(hours=n),
            end=FIXED_NOW + timedelta(hours=n, minutes=30),
            now=FIXED_NOW,
        )
        return event.version

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(insert, range(24)))

    assert sorted(versions) == list(range(1, 25)), "no two writes got the same version, none failed"
    assert world.current_version() == 24


def test_a_reset_keeps_counting(engine: Engine) -> None:
    """A cursor from before a reset must never match a state after it."""
    world = World(engine)
    world.create_tables()
    account = world.add_account("microsoft", "mike@northwind.example")
    calendar = world.add_calendar(account.id, "AAMk-mike", "Calendar", primary=True)
    world.ms_insert_event(
        calendar.pk, title="x", description="", start=FIXED_NOW, end=FIXED_NOW, now=FIXED_NOW
    )
    before = world.current_version()

    world.reset()

    assert world.current_version() == before
    account = world.add_account("microsoft", "mike@northwind.example")
    calendar = world.add_calendar(account.id, "AAMk-mike", "Calendar", primary=True)
    event, _ = world.ms_insert_event(
        calendar.pk, title="y", description="", start=FIXED_NOW, end=FIXED_NOW, now=FIXED_NOW
    )
    assert event.version == before + 1
