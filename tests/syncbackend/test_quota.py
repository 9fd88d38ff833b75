"""Provider quotas held in the shared database, on SQLite and PostgreSQL: a sliding window and a
concurrency bound per account, within one process (an injected clock) and across two processes
admitting calls for the same account at once (real time)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from calsync.syncbackend.models import QuotaCall
from calsync.syncbackend.providers.base import Authorization, GrantInfo
from calsync.syncbackend.quota import BUDGETS, FORGET_AT, Budget, DatabaseLimiter, QuotaProvider, quota_key


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def busiest(starts: list[float], window: float) -> int:
    return max(sum(1 for s in starts if t <= s < t + window) for t in starts)


@pytest.mark.parametrize(
    ("budget", "calls", "every"),
    [
        pytest.param(Budget(600, 60.0), 700, 1 / 64, id="google-600-a-minute"),
        pytest.param(Budget(50, 600.0), 120, 1.0, id="a-ten-minute-window"),
        pytest.param(Budget(5, 1.0), 40, 0.0, id="a-burst-all-at-once"),
    ],
)
async def test_no_window_holds_more_than_the_budget(
    sessions: sessionmaker[Session], budget: Budget, calls: int, every: float
) -> None:
    clock = FakeTime()
    limiter = DatabaseLimiter(sessions, now=clock.time, sleep=clock.sleep)
    starts = []
    for _ in range(calls):
        permit = await limiter.acquire("google:ann@x.example", budget)
        await permit.release()
        starts.append(permit.started_at)
        clock.now += every
    assert busiest(starts, budget.window) == budget.limit
    assert clock.slept, "a call over the budget waited instead of being sent"
    with sessions() as session:  # calls that left the window are forgotten
        assert (session.scalar(select(func.count()).select_from(QuotaCall)) or 0) <= budget.limit


@pytest.mark.parametrize(
    ("budget", "calls", "every", "kept"),
    [
        pytest.param(Budget(10_000, 600.0), FORGET_AT * 3, 700.0, FORGET_AT, id="big-budget-few-rows-kept"),
        pytest.param(Budget(5, 1.0), 40, 2.0, 5, id="a-small-budget-bounds-them"),
        pytest.param(
            Budget(10_000, 600.0), FORGET_AT - 1, 700.0, FORGET_AT - 1, id="below-the-bound-all-kept"
        ),
    ],
)
async def test_calls_that_left_the_window_are_dropped_once_the_key_holds_enough(
    sessions: sessionmaker[Session], budget: Budget, calls: int, every: float, kept: int
) -> None:
    clock = FakeTime()
    limiter = DatabaseLimiter(sessions, now=clock.time, sleep=clock.sleep)
    for _ in range(calls):  # each call has left the window when the next one is admitted
        permit = await limiter.acquire("microsoft:mo@x.example", budget)
        await permit.release()
        clock.now += every
    assert clock.slept == []
    with sessions() as session:
        assert (session.scalar(select(func.count()).select_from(QuotaCall)) or 0) == kept


async def test_accounts_have_budgets_of_their_own(sessions: sessionmaker[Session]) -> None:
    clock = FakeTime()
    limiter = DatabaseLimiter(sessions, now=clock.time, sleep=clock.sleep)
    for account in ("ann", "bob"):
        for _ in range(3):
            await limiter.acquire(f"google:{account}@x.example", Budget(3, 60.0))
    assert clock.slept == []


async def test_at_most_concurrent_calls_run_at_once_and_a_lost_one_frees_its_slot(
    sessions: sessionmaker[Session],
) -> None:
    clock = FakeTime()
    limiter = DatabaseLimiter(sessions, now=clock.time, sleep=clock.sleep, busy_ttl=30.0, poll=0.05)
    budget = Budget(100, 60.0, concurrent=2)
    first = await limiter.acquire("microsoft:mo@x.example", budget)
    await limiter.acquire("microsoft:mo@x.example", budget)  # never released: its process died
    third = await limiter.acquire("microsoft:mo@x.example", budget)
    assert third.started_at - first.started_at >= 30.0, "the third waited for a slot"
    await first.release()
    fourth = await limiter.acquire("microsoft:mo@x.example", budget)
    assert fourth.started_at - third.started_at < 0.1, "a released slot is free at once"


@dataclass
class Recorder:
    calls: list[str]

    name = "google"

    async def list_calendars(self, auth: Authorization) -> list[object]:
        self.calls.append(auth.account_email or "")
        return []

    async def check_grant(self, auth: Authorization) -> GrantInfo:
        self.calls.append(f"refresh {auth.account_email}")
        return GrantInfo(account_email=auth.account_email, expires_at=None)


async def test_quota_provider_counts_every_calendar_call_per_account(sessions: sessionmaker[Session]) -> None:
    clock = FakeTime()
    inner = Recorder([])
    limiter = DatabaseLimiter(sessions, now=clock.time, sleep=clock.sleep)
    provider = QuotaProvider(inner, limiter, Budget(2, 60.0))  # type: ignore[arg-type]
    auth = Authorization(refresh_token="rt", account_email="Ann@X.example")
    for _ in range(3):
        await provider.list_calendars(auth)
    assert inner.calls == ["Ann@X.example"] * 3
    assert clock.slept and clock.slept[0] == pytest.approx(60.0)
    assert quota_key("google", auth) == "google:ann@x.example"
    assert BUDGETS["google"] == Budget(600, 60.0) and BUDGETS["microsoft"] == Budget(10_000, 600.0, 4)
    # A token refresh is the identity endpoint's, not the Calendar API's: never counted, never waits.
    slept = len(clock.slept)
    for _ in range(5):
        await provider.check_grant(auth)
    assert len(clock.slept) == slept and inner.calls[-5:] == ["refresh Ann@X.example"] * 5


# -- two processes, one account ---------------------------------------------------------------------

CHILD = """
import asyncio, json, sys, time
from calsync.db import make_engine, make_session_factory
from calsync.syncbackend.quota import Budget, DatabaseLimiter

url, calls = sys.argv[1], int(sys.argv[2])
engine = make_engine(url)
limiter = DatabaseLimiter(make_session_factory(engine), poll=0.01)
budget = Budget(limit=10, window=1.0, concurrent=2)

async def one():
    permit = await limiter.acquire("microsoft:shared@x.example", budget)
    await asyncio.sleep(0.03)  # the provider call
    ended = time.time()
    await permit.release()
    return [permit.started_at, ended]

async def main():
    print("ready", flush=True)
    sys.stdin.readline()  # both children start together
    print(json.dumps(await asyncio.gather(*(one() for _ in range(calls)))), flush=True)

asyncio.run(main())
engine.dispose()
"""


def test_two_processes_together_stay_inside_one_accounts_budget(migrated_url: str) -> None:
    """Each process alone would allow 10 a second and 2 at once; together they must too."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, migrated_url, "15"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=60)[0] for child in children]
    finally:
        for child in children:
            child.kill() if child.poll() is None else None
    assert all(child.returncode == 0 for child in children)
    spans = [tuple(span) for output in outputs for span in json.loads(output.strip().splitlines()[-1])]
    assert len(spans) == 30
    starts = sorted(start for start, _ in spans)
    assert busiest(starts, 1.0) <= 10, "no second held more than 10 starts, across both processes"
    assert starts[-1] - starts[0] >= 2.0, "30 calls at 10 a second take two full windows at least"
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t in starts)
    assert overlap <= 2, "never more than 2 calls running at once, across both processes"
