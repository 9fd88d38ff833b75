"""Incident detection over 10 000 reps and their last week of sync runs, on PostgreSQL.

The goal (issue 19, item 5): detection answers in ≤ 500 ms p95 on PostgreSQL (indexed queries, no
Python loop over every row). A database is created for the run on the server of `--database-url`,
migrated, seeded in SQL (`generate_series`, no Python loop over rows either) and dropped afterwards:

- `--reps` reps (10 000) in organisations of 20 (`orgN.example`), one active connection each, 80 %
  Google and 20 % Microsoft;
- a week of sync runs: a pull and a push every `--every-minutes` (60) per connection, 1 % of them
  failed (rate limited, provider unavailable, timeout) at random moments — 3.4 M rows by default;
- 150 connections disconnected (revoked) at random moments of the week, one here and there;
- now: one organisation's Microsoft admin has removed consent — 12 of its reps disconnected with
  `consent_removed` in the last 20 minutes; and Google is failing — 300 reps of many organisations
  with a `provider_unavailable` run in the last 10 minutes.

Timed: `IncidentStore.detect(now)` (what every worker round runs, in its own transaction) `--calls`
times per round, `--rounds` rounds: the first call of the first round opens the two incidents and
fills their rep lists; the others are the steady state (refreshing two open incidents). Also timed:
`open_incidents` (the fleet page's list) and `incidents_of_rep` (what each answer's snapshot adds).
The moment moves 1 s per call, so no call sees the same `now`. Every statement has a 30 s timeout.

    .venv/bin/python benchmarks/incidents_bench.py [--database-url URL] [--reps 10000]
        [--every-minutes 60] [--rounds 3] [--calls 30] [--explain]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from slackload import machine, ms, percentile, throwaway_database
from sqlalchemy import event, text

from calsync.db import make_engine, make_session_factory
from calsync.syncbackend import migrate
from calsync.syncbackend.incidents import (
    IncidentPolicy,
    IncidentStore,
    incidents_of_rep,
    open_incidents,
)

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
GOAL_P95 = 0.5


SEED = [
    """INSERT INTO users (id, email, name, role, created_at)
       SELECT i, 'rep' || i || '@org' || (i / 20) || '.example', 'Rep ' || i, 'rep', :now - interval '90 days'
       FROM generate_series(1, :reps) AS i""",
    """INSERT INTO calendar_connections (id, user_id, provider, account_email, status, scopes, active,
         created_at, sync_failures, selected_calendar_id)
       SELECT u.id, u.id, CASE WHEN u.id % 5 = 0 THEN 'microsoft' ELSE 'google' END, u.email, 'connected',
         '', true, :now - interval '90 days', 0, u.email
       FROM users u""",
    # A week of pulls and pushes, 1 % failed at random moments.
    """INSERT INTO sync_runs (connection_id, direction, started_at, finished_at, status, error_code, counts)
       SELECT c.id, d.direction, t.at, t.at + interval '2 seconds',
         CASE WHEN t.r < 0.01 THEN 'error' ELSE 'ok' END,
         CASE WHEN t.r < 0.004 THEN 'rate_limited' WHEN t.r < 0.007 THEN 'provider_unavailable'
              WHEN t.r < 0.01 THEN 'timeout' END,
         '{}'
       FROM calendar_connections c
       CROSS JOIN (VALUES ('pull'), ('push')) AS d(direction)
       CROSS JOIN LATERAL (
         SELECT :now - (k * :every * interval '1 minute') - ((c.id % :every) * interval '1 minute')
                  - interval '30 minutes' AS at,
                random() AS r
         FROM generate_series(0, (7 * 24 * 60) / :every) AS k
       ) AS t""",
    # One here and there: revoked at random moments of the week.
    """UPDATE calendar_connections SET status = 'disconnected', status_code = 'revoked',
         disconnected_at = :now - (random() * interval '7 days')
       WHERE id IN (SELECT id FROM calendar_connections WHERE id % 67 = 3 LIMIT 150)""",
    # Now: org 7's Microsoft admin removed consent (its Microsoft reps, and more moved to Microsoft).
    """UPDATE calendar_connections SET provider = 'microsoft', status = 'disconnected',
         status_code = 'consent_removed', disconnected_at = :now - ((id % 20) * interval '1 minute')
       WHERE user_id BETWEEN 140 AND 151""",
    # Now: Google failing for 300 reps of many organisations in the last 10 minutes.
    """INSERT INTO sync_runs (connection_id, direction, started_at, finished_at, status, error_code, counts)
       SELECT c.id, 'pull', :now - ((c.id % 10) * interval '1 minute'), :now, 'error',
              'provider_unavailable', '{}'
       FROM calendar_connections c
       WHERE c.provider = 'google' AND c.status = 'connected' AND c.id % 27 = 1
       LIMIT 300""",
    "SELECT setval('users_id_seq', (SELECT max(id) FROM users))",
    "SELECT setval('calendar_connections_id_seq', (SELECT max(id) FROM calendar_connections))",
]


def seed(url: str, args: argparse.Namespace) -> tuple[float, int]:
    engine = make_engine(url)
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text("SET statement_timeout = '600s'"))
        for statement in SEED:
            connection.execute(text(statement), {"now": NOW, "reps": args.reps, "every": args.every_minutes})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))
        runs = int(connection.execute(text("SELECT count(*) FROM sync_runs")).scalar_one())
    engine.dispose()
    return time.perf_counter() - started, runs


def explain(url: str) -> None:
    """The plans of the two candidate queries, to see the indexes used."""
    from calsync.syncbackend import incidents

    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        captured: list[str] = []

        def capture(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "GROUP BY" in statement:
                import psycopg

                client = psycopg.ClientCursor(cursor.connection)
                captured.append(client.mogrify(statement, params))

        event.listen(engine, "before_cursor_execute", capture)
        incidents.detect(session, NOW, IncidentPolicy())
        session.rollback()
        event.remove(engine, "before_cursor_execute", capture)
        for statement in captured[:2]:
            plan = session.execute(text("EXPLAIN ANALYZE " + statement)).scalars().all()
            print("\n".join(plan), "\n", file=sys.stderr)
    engine.dispose()


def watch_statements(engine: Any) -> list[tuple[float, str]]:
    """Every statement's time, filled in as they run (for `--statements`)."""
    times: list[tuple[float, str]] = []

    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        conn.info["started"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        times.append((time.perf_counter() - conn.info.pop("started", time.perf_counter()), statement))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    return times


def timed(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--reps", type=int, default=10_000)
    parser.add_argument("--every-minutes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--statements", action="store_true", help="the slowest statements of detect")
    args = parser.parse_args()
    print(f"machine: {machine()}", file=sys.stderr)
    with throwaway_database(args.database_url, "calsync_incidents_bench") as url:
        migrate.upgrade(url)
        seconds, runs = seed(url, args)
        print(f"seeded {args.reps} reps, {runs} sync runs in {seconds:.1f} s", file=sys.stderr)
        if args.explain:
            explain(url)
        engine = make_engine(url)
        slowest = watch_statements(engine) if args.statements else None
        sessions = make_session_factory(engine)
        store = IncidentStore(sessions, IncidentPolicy(), "bench")
        now = NOW
        first = timed(lambda: store.detect(NOW))
        found = open_incidents(sessions, NOW)
        print(f"opened: {[(i.kind, i.scope, i.affected) for i in found]}", file=sys.stderr)
        p50s, p95s, lists, reps = [], [], [], []
        for _ in range(args.rounds):
            calls = []
            for _ in range(args.calls):
                now += timedelta(seconds=1)
                calls.append(timed(lambda at=now: store.detect(at)))
                lists.append(timed(lambda at=now: open_incidents(sessions, at)))
                with sessions() as session:
                    reps.append(timed(lambda: incidents_of_rep(session, 145)))
            p50s.append(statistics.median(calls))
            p95s.append(percentile(calls, 0.95))
            print(f"round: p50 {ms(p50s[-1])}, p95 {ms(p95s[-1])}", file=sys.stderr)
        engine.dispose()
    if slowest is not None:
        for seconds, statement in sorted(slowest, reverse=True)[:8]:
            print(f"{ms(seconds)}  {' '.join(statement.split())[:160]}", file=sys.stderr)
    p95 = statistics.median(p95s)
    print(
        f"detect, first call (opens 2 incidents): {ms(first)}\n"
        f"detect, steady state: p50 {ms(statistics.median(p50s))}, p95 {ms(p95)} "
        f"(median over {args.rounds} rounds of {args.calls} calls)\n"
        f"open_incidents: p50 {ms(statistics.median(lists))}, p95 {ms(percentile(lists, 0.95))}\n"
        f"incidents_of_rep: p50 {ms(statistics.median(reps))}, p95 {ms(percentile(reps, 0.95))}\n"
        f"goal p95 ≤ 500 ms: {'met' if max(p95, first) <= GOAL_P95 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
