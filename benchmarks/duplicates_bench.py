"""Duplicate-scan benchmark: the `duplicates` check's work after the calendars are fetched.

    .venv/bin/python benchmarks/duplicates_bench.py [--events 10000] [--runs 7]

Prints Markdown table rows (paste them into BENCHMARKS.md). Two workloads of synthetic events over
two active connections (Google Calendar + Outlook, the window -2 d .. +14 d):
- "mixed": 30 % appointments on both calendars, 5 % copies within one calendar, the rest the
  rep's own events with a few title+start collisions — a realistic busy rep;
- "all duplicated": every event has a twin on the other calendar (the most groups to build).

Two figures each, median of `--runs` runs after a warm-up:
- `find_duplicate_groups` alone (the pure one-pass grouping);
- the whole rep check after the fetch (`DUPLICATES.run_rep` with a live view that hands back the
  prepared events): grouping, root cause, words and evidence.
Goal: <= 200 ms for 10 000 events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calsync.diagnostics.check import CheckContext  # noqa: E402
from calsync.diagnostics.checks.duplicates import DUPLICATES, find_duplicate_groups  # noqa: E402
from calsync.diagnostics.findings import Finding  # noqa: E402
from calsync.diagnostics.live import LiveView  # noqa: E402
from calsync.diagnostics.state import ConnectionState, RepState  # noqa: E402
from calsync.syncbackend.providers.base import Authorization, Event  # noqa: E402

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _connection(id: int, provider: str, calendar: str, days_ago: int) -> ConnectionState:
    return ConnectionState(
        id=id,
        provider=provider,
        account_email="rep@northwind.example",
        label=f"{provider} (rep@northwind.example)",
        status="connected",
        status_reason=None,
        status_code=None,
        selected_calendar_id=calendar,
        selected_calendar_name=None,
        active=True,
        authorized_at=NOW - timedelta(days=days_ago),
        last_refreshed_at=NOW,
        disconnected_at=None,
        created_at=NOW - timedelta(days=days_ago),
    )


GOOGLE = _connection(1, "google", "rep@northwind.example", 200)
OUTLOOK = _connection(2, "microsoft", "AAMk-rep", 7)


def _event(id: str, calendar: str, title: str, start: datetime, appointment: str | None) -> Event:
    return Event(
        id=id,
        calendar_id=calendar,
        title=title,
        description="",
        start=start,
        end=start + timedelta(minutes=30),
        appointment_id=appointment,
        updated=NOW - timedelta(days=1),
    )


def _slot(rng: random.Random) -> datetime:
    return NOW - timedelta(days=2) + timedelta(minutes=15 * rng.randrange(16 * 24 * 4))


def mixed(total: int, seed: int = 7) -> dict[ConnectionState, list[Event]]:
    rng = random.Random(seed)
    google: list[Event] = []
    outlook: list[Event] = []
    pairs = int(total * 0.30) // 2
    for i in range(pairs):
        start, title = _slot(rng), f"Demo with Customer {i}"
        google.append(_event(f"g-a{i}", GOOGLE.selected_calendar_id or "", title, start, f"apt-{i}"))
        outlook.append(_event(f"m-a{i}", OUTLOOK.selected_calendar_id or "", title, start, f"apt-{i}"))
    within = int(total * 0.05) // 2
    for i in range(within):
        start, title = _slot(rng), f"Call with Prospect {i}"
        for copy in "xy":
            google.append(_event(f"g-w{i}{copy}", GOOGLE.selected_calendar_id or "", title, start, f"w-{i}"))
    index = 0
    while len(google) + len(outlook) < total:
        start = _slot(rng)
        title = f"Own event {rng.randrange(total // 3)}"  # some share title and start
        target = google if index % 2 else outlook
        calendar = GOOGLE.selected_calendar_id if target is google else OUTLOOK.selected_calendar_id
        target.append(_event(f"own-{index}", calendar or "", title, start, None))
        index += 1
    rng.shuffle(google)
    rng.shuffle(outlook)
    return {GOOGLE: google, OUTLOOK: outlook}


def all_duplicated(total: int, seed: int = 11) -> dict[ConnectionState, list[Event]]:
    rng = random.Random(seed)
    google: list[Event] = []
    outlook: list[Event] = []
    for i in range(total // 2):
        start, title = _slot(rng), f"Demo with Customer {i}"
        google.append(_event(f"g-{i}", GOOGLE.selected_calendar_id or "", title, start, f"apt-{i}"))
        outlook.append(_event(f"m-{i}", OUTLOOK.selected_calendar_id or "", title, start, f"apt-{i}"))
    return {GOOGLE: google, OUTLOOK: outlook}


class PreparedLive(LiveView):
    """A live view whose calendars were already fetched: measures only what comes after."""

    def __init__(self, events: dict[ConnectionState, list[Event]]) -> None:
        super().__init__({}, {c.id: Authorization(refresh_token="-") for c in events}, NOW)
        self._events = {c.id: e for c, e in events.items()}

    async def events(self, connection: ConnectionState, calendar_id: str | None = None) -> list[Event]:
        return self._events[connection.id]


def _context(events: dict[ConnectionState, list[Event]]) -> CheckContext:
    rep = RepState(
        user_id=1,
        email="rep@northwind.example",
        name="Rep",
        role="rep",
        slack_user_id=None,
        connections=tuple(events),
        appointments=(),
        sync_runs=(),
    )
    return CheckContext(rep, NOW, PreparedLive(events))


def median_ms(work: Callable[[], Any], runs: int) -> float:
    work()  # warm-up
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    assert DUPLICATES.run_rep is not None
    run_rep = DUPLICATES.run_rep

    async def check(context: CheckContext) -> list[Finding]:
        assert run_rep is not None
        return list(await run_rep(context))

    print(
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"median of {args.runs} runs after a warm-up.\n"
    )
    print(
        "| workload | events | duplicate groups | `find_duplicate_groups` | whole check after fetch | goal |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, make in (("mixed", mixed), ("all duplicated", all_duplicated)):
        events = make(args.events)
        count = sum(len(e) for e in events.values())
        groups = len(find_duplicate_groups(events))
        scan = median_ms(lambda events=events: find_duplicate_groups(events), args.runs)  # type: ignore[misc]
        context = _context(events)
        whole = median_ms(lambda context=context: asyncio.run(check(context)), args.runs)  # type: ignore[misc]
        findings = asyncio.run(check(context))
        assert findings and findings[0].code == "duplicates.old_provider_still_active", findings
        print(f"| {name} | {count:,} | {groups:,} | {scan:.1f} ms | {whole:.1f} ms | <= 200 ms |")


if __name__ == "__main__":
    main()
