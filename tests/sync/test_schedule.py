"""The schedule (intervals, business hours, jitter, backoff) and the per-user quota, as tables."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from calsync.syncbackend.quota import SlidingWindow
from calsync.syncbackend.schedule import SyncPolicy

BERLIN = ZoneInfo("Europe/Berlin")
TUESDAY_UTC = datetime(2026, 11, 24, tzinfo=UTC)  # a Tuesday


# (time of day in UTC on a Tuesday or Saturday, the zone, the interval expected)
INTERVALS = [
    pytest.param(TUESDAY_UTC.replace(hour=9), "UTC", timedelta(minutes=5), id="tuesday-9am"),
    pytest.param(TUESDAY_UTC.replace(hour=7, minute=59), "UTC", timedelta(minutes=15), id="before-8"),
    pytest.param(TUESDAY_UTC.replace(hour=18), "UTC", timedelta(minutes=15), id="at-6pm"),
    pytest.param(
        TUESDAY_UTC.replace(hour=7, minute=30), "Europe/Berlin", timedelta(minutes=5), id="berlin-8:30"
    ),
    pytest.param(
        TUESDAY_UTC.replace(hour=17, minute=30), "Europe/Berlin", timedelta(minutes=15), id="berlin-6:30pm"
    ),
    pytest.param(TUESDAY_UTC.replace(day=28, hour=11), "UTC", timedelta(minutes=15), id="saturday"),
]


@pytest.mark.parametrize(("moment", "zone", "interval"), INTERVALS)
def test_more_often_in_business_hours(moment: datetime, zone: str, interval: timedelta) -> None:
    assert SyncPolicy(time_zone=ZoneInfo(zone)).interval_at(moment) == interval


def test_each_connection_is_jittered_within_bounds() -> None:
    policy = SyncPolicy(jitter=0.2)
    now = TUESDAY_UTC.replace(hour=3)  # off hours: 15 minutes
    rng = random.Random(7)
    waits = [policy.next_run(now, rng) - now for _ in range(500)]
    assert min(waits) >= timedelta(minutes=12) and max(waits) <= timedelta(minutes=18)
    assert len({wait.seconds for wait in waits}) > 100, "spread out, not all at once"


# (failures in a row, Retry-After, the least and most wait)
BACKOFF = [
    (1, None, timedelta(minutes=1), timedelta(minutes=1.2)),
    (3, None, timedelta(minutes=4), timedelta(minutes=4.8)),
    (12, None, timedelta(hours=1), timedelta(hours=1.2)),  # capped
    (1, 900.0, timedelta(seconds=900), timedelta(seconds=900)),  # the provider's word is kept
]


@pytest.mark.parametrize(("failures", "retry_after", "least", "most"), BACKOFF)
def test_backoff(failures: int, retry_after: float | None, least: timedelta, most: timedelta) -> None:
    now = TUESDAY_UTC
    wait = SyncPolicy().retry_at(now, failures, retry_after, random.Random(1)) - now
    assert least <= wait <= most


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_a_user_never_gets_more_than_the_quota_in_a_minute() -> None:
    time = FakeTime()
    window = SlidingWindow(600, monotonic=time.monotonic, sleep=time.sleep)
    starts = []
    for _ in range(1500):
        await window.acquire()
        starts.append(time.now)
        time.now += 1 / 64  # each call takes ~16 ms (exact in binary): unthrottled, 3840 a minute
    busiest = max(sum(1 for s in starts if t <= s < t + 60) for t in starts)
    assert busiest == 600
    assert time.slept, "the 601st call waited instead of being refused by the provider"
