"""Fleet view at scale: the fleet page's queries, `/calsync status` and the resolution stats over
10 000 reps and a week of their sync runs, on PostgreSQL.

The goal (issue 19, item 5): each answers in ≤ 500 ms p95, counted by the database (indexed
aggregations, GROUP BY in SQL, no Python loop over every row). Each invocation creates a database on
the PostgreSQL server of `--database-url`, migrates it (`calsync db upgrade`'s migrations), seeds it
with COPY and drops it at the end, whatever happens:

- `--reps` reps (10 000) in `--orgs` organisations (email domains); 6 % have no connection, 3 % two
  active ones (duplicates), 6 % one disconnected (revoked, consent removed, expired), 5 % one whose
  newest runs failed, the rest healthy; every connection swept within the last hour;
- a week of sync runs per connection: a push and a pull every `--run-every` minutes (120: 168 runs a
  connection, ~1.7 M rows), 1 % of them failed at random, and the failing and disconnected
  connections' last runs failed;
- 30 days of answers (`--answers`, 20 000 answer records), 10 % with 👍/👎, and reconnects audited
  (started and completed) after 5 % of them.

Then, after VACUUM (ANALYZE) (what autovacuum keeps up on a live database) and a warm-up, each query is timed `--calls` times in each of `--runs` rounds on
one connection pool (`FleetStore`, as the page and the command call it): the median and p95 per
round and over all calls. `EXPLAIN (ANALYZE, BUFFERS)` of each statement shows the indexes used.
Loopback only; every step is bounded (statement_timeout: 10 minutes while seeding, 30 s per query).

    .venv/bin/python benchmarks/fleet_bench.py [--database-url URL] [--reps 10000] [--runs 3]
        [--calls 30] [--run-every 120] [--answers 20000] [--explain]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from slackload import throwaway_database
from sqlalchemy import Engine, text

from calsync.db import make_engine, make_session_factory
from calsync.store.fleet import (
    RUN_WINDOW,
    Filters,
    FleetStore,
    chart_edges,
    chart_statement,
    fleet_statement,
    rep_states,
    stats_statement,
)
from calsync.syncbackend import migrate

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
GOAL_MS = 500.0
CAUSES = [
    ("connection.revoked", "not-connected"),
    ("connection.consent_removed", "not-connected"),
    ("connection.expired", "not-connected"),
    ("duplicates.old_provider_still_active", "duplicates"),
    ("calendar.not_found", "not-showing"),
    ("sync.last_run_failed", "changes-not-syncing"),
    ("none", "not-showing"),
]


def copy_rows(engine: Engine, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    raw = engine.raw_connection()
    count = 0
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        raw.commit()
    finally:
        raw.close()
    return count


def seed(engine: Engine, args: argparse.Namespace) -> dict[str, int]:
    rng = random.Random(19)
    reps = args.reps
    kinds: list[str] = []
    for _ in range(reps):
        roll = rng.random()
        kinds.append(
            "none"
            if roll < 0.06
            else "duplicates"
            if roll < 0.09
            else "disconnected"
            if roll < 0.15
            else "failing"
            if roll < 0.20
            else "healthy"
        )
    emails = [f"rep{i:05d}@org{i % args.orgs:03d}.example" for i in range(reps)]
    counts: dict[str, int] = {}
    counts["users"] = copy_rows(
        engine,
        "users",
        ["id", "email", "name", "role", "created_at"],
        ((i + 1, emails[i], f"Rep {i}", "rep", NOW - timedelta(days=90)) for i in range(reps)),
    )
    connections: list[tuple[int, int, str]] = []  # (connection id, user id, kind)

    def connection_rows() -> Iterator[tuple[Any, ...]]:
        next_id = 1
        for i, kind in enumerate(kinds):
            if kind == "none":
                continue
            for extra in range(2 if kind == "duplicates" else 1):
                status, code = ("connected", None)
                if kind == "disconnected":
                    status, code = "disconnected", rng.choice(["revoked", "consent_removed", "expired"])
                provider = "google" if (i + extra) % 5 else "microsoft"
                connections.append((next_id, i + 1, kind))
                checked = NOW - timedelta(minutes=rng.uniform(0, 60))
                yield (
                    next_id, i + 1, provider, emails[i] if not extra else f"x{emails[i]}", status, code,
                    b"ciphertext", "", True, NOW - timedelta(days=60), 0, checked,
                )  # fmt: skip
                next_id += 1

    counts["connections"] = copy_rows(
        engine,
        "calendar_connections",
        [
            "id", "user_id", "provider", "account_email", "status", "status_code",
            "refresh_token_encrypted", "scopes", "active", "created_at", "sync_failures", "last_checked_at",
        ],
        connection_rows(),
    )  # fmt: skip
    every = timedelta(minutes=args.run_every)
    steps = int(RUN_WINDOW / every)

    def run_rows() -> Iterator[tuple[Any, ...]]:
        for connection_id, _user, kind in connections:
            offset = timedelta(minutes=rng.uniform(0, args.run_every))
            for step in range(steps):
                at = NOW - RUN_WINDOW + every * step + offset
                recent = step >= steps - 3
                for direction, later in (("push", timedelta(0)), ("pull", timedelta(minutes=1))):
                    failed = (kind in ("failing", "disconnected") and recent) or rng.random() < 0.01
                    code = (
                        ("invalid_grant" if kind == "disconnected" else "provider_unavailable")
                        if failed
                        else None
                    )
                    moment = at + later
                    yield (connection_id, direction, moment, moment, "error" if failed else "ok", code, "{}")

    counts["sync_runs"] = copy_rows(
        engine,
        "sync_runs",
        ["connection_id", "direction", "started_at", "finished_at", "status", "error_code", "counts"],
        run_rows(),
    )
    answers: list[tuple[int, int, datetime]] = []

    def answer_rows() -> Iterator[tuple[Any, ...]]:
        for n in range(args.answers):
            user = rng.randrange(reps) + 1
            at = NOW - timedelta(minutes=rng.uniform(0, 30 * 24 * 60))
            cause, article = rng.choice(CAUSES)
            fixed = at + timedelta(hours=2) if cause != "none" and rng.random() < 0.4 else None
            answers.append((n + 1, user, at))
            yield (str(n + 1), at, user, "ask", cause, article, fixed)

    counts["answer_records"] = copy_rows(
        engine,
        "answer_records",
        ["diagnosis_id", "at", "user_id", "kind", "cause", "article", "fixed_at"],
        answer_rows(),
    )

    def feedback_rows() -> Iterator[tuple[Any, ...]]:
        for diagnosis, user, at in answers:
            if rng.random() < 0.1:
                yield (at + timedelta(minutes=1), user, str(diagnosis), rng.random() < 0.6)

    counts["feedback"] = copy_rows(
        engine, "feedback", ["at", "user_id", "diagnosis_id", "helpful"], feedback_rows()
    )

    def audit_rows() -> Iterator[tuple[Any, ...]]:
        for _diagnosis, user, at in answers:
            yield (at, "system", "ask", user, "{}", "error")
            if rng.random() < 0.05:
                yield (at + timedelta(minutes=5), "rep", "reconnect_started", user, "{}", "started")
                yield (at + timedelta(minutes=7), "rep", "reconnect_completed", user, "{}", "connected")

    counts["audit_log"] = copy_rows(
        engine, "audit_log", ["at", "actor", "action", "subject_user_id", "detail", "result"], audit_rows()
    )
    with engine.begin() as connection:
        for table in (
            "users",
            "calendar_connections",
            "sync_runs",
            "answer_records",
            "feedback",
            "audit_log",
        ):
            connection.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            )
    # What autovacuum does to a live database in its own time: statistics and the visibility map (so
    # the covering indexes are read without the table).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (ANALYZE)"))
    return counts


def time_calls(call: Callable[[], Any], calls: int) -> list[float]:
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def explain(engine: Engine, name: str, statement: Any) -> None:
    compiled = statement.compile(dialect=engine.dialect)
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params
        ).all()
    lines = [row[0] for row in plan]
    print(f"\n-- EXPLAIN (ANALYZE, BUFFERS): {name}")
    shown = [line for line in lines if "Index" in line or "Scan" in line or "Execution Time" in line]
    for line in shown:
        print("   " + line.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default=DEFAULT_URL, help="a PostgreSQL server (a database is made on it)"
    )
    parser.add_argument("--reps", type=int, default=10_000)
    parser.add_argument("--orgs", type=int, default=250)
    parser.add_argument("--run-every", type=int, default=120, help="minutes between a connection's runs")
    parser.add_argument("--answers", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--explain", action="store_true", help="print the plans' scan lines")
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with throwaway_database(args.database_url, "calsync_fleet_bench") as url:
        migrate.upgrade(url)
        loader = make_engine(url, connect_args={"options": "-c statement_timeout=600000"})
        started = time.perf_counter()
        counts = seed(loader, args)
        loader.dispose()
        engine = make_engine(url, connect_args={"options": "-c statement_timeout=30000"})
        print(
            f"seeded in {time.perf_counter() - started:.1f} s: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
        )
        with engine.connect() as connection:
            server = connection.execute(text("SHOW server_version")).scalar()
        print(f"PostgreSQL {server}")
        store = FleetStore(make_session_factory(engine), lambda: NOW)
        queries: dict[str, Callable[[], Any]] = {
            "fleet page (counts, 200 reps, sweep, chart)": lambda: store.fleet(),
            "fleet page filtered by organisation": lambda: store.fleet(Filters(org="org007.example")),
            "fleet page filtered by cause": lambda: store.fleet(Filters(cause="consent_removed")),
            "/calsync status": lambda: store.fleet(limit=0, chart=False),
            "stats by cause": lambda: store.stats(by="cause"),
            "stats by article": lambda: store.stats(by="article"),
        }
        fleet = store.fleet()
        print("states: " + ", ".join(f"{state} {n}" for state, n in fleet.counts.items()))
        for call in queries.values():  # warm-up
            call()
        results: dict[str, list[list[float]]] = {name: [] for name in queries}
        loads = []
        for _ in range(args.runs):
            for name, call in queries.items():
                results[name].append(time_calls(call, args.calls))
            loads.append(os.getloadavg()[0])
        print(
            f"\n{args.runs} rounds × {args.calls} calls each (ms); 1-minute load average after each round: "
            + ", ".join(f"{load:.1f}" for load in loads)
            + f" on {os.cpu_count()} cores"
        )
        print(f"| query | median | p95 | per-round median / p95 | goal p95 ≤ {GOAL_MS:.0f} ms |")
        print("| --- | ---: | ---: | --- | --- |")
        for name, rounds in results.items():
            every = [t for r in rounds for t in r]
            per = "; ".join(f"{statistics.median(r):.0f} / {p95(r):.0f}" for r in rounds)
            verdict = "met" if p95(every) <= GOAL_MS else "NOT met"
            print(f"| {name} | {statistics.median(every):.0f} | {p95(every):.0f} | {per} | {verdict} |")
        if args.explain:
            reps = rep_states(NOW - RUN_WINDOW)
            explain(engine, "rep states: counts and the reps shown", fleet_statement(reps, Filters(), 200))
            explain(engine, "chart", chart_statement(chart_edges(NOW)))
            explain(engine, "stats by cause", stats_statement(NOW - timedelta(days=30), "cause"))
        engine.dispose()


if __name__ == "__main__":
    main()
