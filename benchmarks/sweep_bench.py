"""Health sweep: every connected grant refreshed once, against the sandbox with a round-trip time R.

The goal (issue 8): 10 000 connections checked in at most 60 s with every provider request delayed
by R = 50 ms, within the providers' quotas (Google: 600 requests per user per minute; Graph: 4
concurrent requests per mailbox). Each run: a fresh database (a SQLite file in a temporary
directory, or a database created for the run on the PostgreSQL server of `--database-url` and
dropped afterwards), migrated, with N reps each holding one connected connection whose refresh
token is valid at the sandbox (`--google-share` Google, the rest Microsoft), and a few
(`--revoked-share`) whose grants the provider has revoked. The rows are bulk-inserted, the tokens
encrypted as the product stores them (`CalendarConnection.set_tokens`).

The emulators add a latency fault of R to every request. `--emulators separate` (the default) runs
them in their own process (`calsync sandbox serve` on the same database), as Google and Microsoft
are other machines in production; `in-process` starts them inside the sweeping process, as the
self-contained sandbox does. The sweep is `SyncEngine.health_sweep(concurrency=C, batch=B)` of the
engine `calsync.app.build_sync_engine` builds. Afterwards the benchmark checks that every revoked
grant was found disconnected, that no healthy connection was, that Microsoft's rotated refresh
tokens were stored, and reads the emulators' request log (`sandbox_requests`) for the quotas.
"Other processes' CPU" is what the rest of the machine used while the sweep ran, in cores (median;
with PostgreSQL its server is among them): on a 2-core machine shared with other work the wall time
depends on it. Loopback only; every wait is bounded.

    .venv/bin/python benchmarks/sweep_bench.py [--connections 10000] [--rtt 0.05] [--runs 3]
        [--concurrency 64] [--batch 500] [--emulators separate|in-process] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slackload import Child, machine, throwaway_database

from calsync.app import build_sync_engine, open_services
from calsync.db import make_engine, make_session_factory, transaction
from calsync.settings import Settings

CALSYNC = [sys.executable, "-m", "calsync"]
START_TIMEOUT = 120.0
GOAL_SECONDS = 60.0
GOAL_CONNECTIONS = 10_000
GOOGLE_PER_USER_PER_MINUTE = 600
GRAPH_CONCURRENT_PER_MAILBOX = 4
GOOGLE_SCOPES = "openid email https://www.googleapis.com/auth/calendar"
MICROSOFT_SCOPES = "Calendars.ReadWrite User.Read offline_access openid profile"
GOOGLE_REVOKED = "Token has been expired or revoked."


# -- the database ------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(state: Path, server_url: str | None) -> Iterator[str]:
    """A SQLite file in `state`, or a new database on the PostgreSQL server of `server_url`,
    dropped when the block ends."""
    if server_url is None:
        yield f"sqlite:///{state}/bench.db"
        return
    with throwaway_database(server_url, "calsync_sweep_bench") as url:
        yield url


@dataclass
class Population:
    google: int = 0
    microsoft: int = 0
    revoked: set[int] = field(default_factory=set)  # connection ids whose grant is revoked
    microsoft_ids: set[int] = field(default_factory=set)
    seconds: float = 0.0


def populate(database_url: str, cipher: Any, args: argparse.Namespace, seed: int) -> Population:
    """N reps with one connected connection each, and the provider side (account, grant, primary
    calendar) for each, in a few bulk INSERTs."""
    from sqlalchemy import insert

    from calsync.sandbox.world import SandboxAccount, SandboxCalendar, SandboxGrant, World
    from calsync.syncbackend.models import CalendarConnection, User

    started = time.perf_counter()
    rng = random.Random(seed)
    count = args.connections
    providers = ["google" if rng.random() < args.google_share else "microsoft" for _ in range(count)]
    revoked_count = max(1, round(count * args.revoked_share)) if args.revoked_share > 0 else 0
    revoked_at = set(rng.sample(range(count), revoked_count))
    emails = [f"rep{index:05d}@bench{index % 50:02d}.example" for index in range(count)]
    tokens = ["rt-" + secrets.token_urlsafe(24) for _ in range(count)]
    now = datetime.now(UTC)
    engine = make_engine(database_url)
    try:
        World(engine).create_tables()
        with transaction(make_session_factory(engine)) as session:
            account_ids = session.scalars(
                insert(SandboxAccount).returning(SandboxAccount.id, sort_by_parameter_order=True),
                [
                    {"provider": provider, "email": email, "display_name": email.split("@")[0]}
                    for provider, email in zip(providers, emails, strict=True)
                ],
            ).all()
            grants = []
            calendars = []
            for index, (provider, account_id) in enumerate(zip(providers, account_ids, strict=True)):
                revoked = index in revoked_at
                grants.append(
                    {
                        "account_id": account_id,
                        "refresh_token": tokens[index],
                        "scopes": GOOGLE_SCOPES if provider == "google" else MICROSOFT_SCOPES,
                        "status": "revoked" if revoked else "valid",
                        "error_description": GOOGLE_REVOKED if revoked and provider == "google" else "",
                        "aadsts": 50173 if revoked and provider == "microsoft" else None,
                        "suberror": "",
                    }
                )
                calendars.append(
                    {
                        "account_id": account_id,
                        "calendar_id": emails[index] if provider == "google" else f"AAMkCal{index:05d}",
                        "name": "Calendar",
                        "primary": True,
                        "access_role": "owner",
                        "owner_email": emails[index],
                        "time_zone": "UTC",
                    }
                )
            session.execute(insert(SandboxGrant), grants)
            session.execute(insert(SandboxCalendar), calendars)
            user_ids = session.scalars(
                insert(User).returning(User.id, sort_by_parameter_order=True),
                [
                    {"email": email, "name": f"Rep {index}", "role": "rep", "created_at": now}
                    for index, email in enumerate(emails)
                ],
            ).all()
            rows = []
            for index, (provider, user_id) in enumerate(zip(providers, user_ids, strict=True)):
                connection = CalendarConnection(provider=provider, account_email=emails[index])
                connection.set_tokens(cipher, refresh_token=tokens[index])
                rows.append(
                    {
                        "user_id": user_id,
                        "provider": provider,
                        "account_email": emails[index],
                        "status": "connected",
                        "selected_calendar_id": calendars[index]["calendar_id"],
                        "selected_calendar_name": "Calendar",
                        "refresh_token_encrypted": connection.refresh_token_encrypted,
                        "access_token_encrypted": None,
                        "access_token_expires_at": None,
                        "scopes": grants[index]["scopes"],
                        "authorized_at": now,
                        "active": True,
                        "created_at": now,
                        "sync_failures": 0,
                    }
                )
            connection_ids = session.scalars(
                insert(CalendarConnection).returning(CalendarConnection.id, sort_by_parameter_order=True),
                rows,
            ).all()
    finally:
        engine.dispose()
    population = Population(seconds=time.perf_counter() - started)
    for index, (provider, connection_id) in enumerate(zip(providers, connection_ids, strict=True)):
        if provider == "google":
            population.google += 1
        else:
            population.microsoft += 1
            population.microsoft_ids.add(connection_id)
        if index in revoked_at:
            population.revoked.add(connection_id)
    return population


def machine_busy() -> float:
    """CPU seconds every process on the machine has used so far (Linux /proc/stat, all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# -- the emulators -----------------------------------------------------------------------------------


def start_emulators(env: dict[str, str], state: Path) -> tuple[Child, dict[str, Any]]:
    """`calsync sandbox serve` in its own process; the provider settings it prints."""
    import shlex

    child = Child([*CALSYNC, "sandbox", "serve"], env, state, state / "sandbox.log")
    settings: dict[str, str] = {}
    try:
        while "MICROSOFT_CA_BUNDLE" not in settings or "SLACK_SIGNING_SECRET" not in settings:
            line = child.read_line(START_TIMEOUT, "sandbox settings").strip()
            if line.startswith("export ") and "$(" not in line:
                name, _, value = line.removeprefix("export ").partition("=")
                settings[name] = shlex.split(value)[0] if value else ""
    except BaseException:
        child.stop()
        raise
    return child, {k: v for k, v in settings.items() if k.startswith(("GOOGLE_", "MICROSOFT_"))}


def child_env(state: Path, database_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "GOOGLE_", "MICROSOFT_", "CALSYNC_", "DATABASE_URL"))
    }
    env.update({"CALSYNC_STATE_DIR": str(state), "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"})
    return env


def py_spy(pid: int, out: Path, seconds: int, gil: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "100",
            "--format",
            "raw",
            "-o",
            str(out),
            "--threads",
            "--nonblocking",
            *(["--gil"] if gil else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- one run -----------------------------------------------------------------------------------------


@dataclass
class RunResult:
    connections: int
    google: int
    microsoft: int
    microsoft_healthy: int
    revoked: int
    concurrency: int
    wall: float
    checked: int
    ok: int
    disconnected: int
    unreachable: int
    busy: int
    revoked_found: int  # revoked grants now marked disconnected
    healthy_marked: int  # healthy connections marked disconnected (must be 0)
    unchecked: int  # connected connections without last_checked_at after the sweep
    rotated_stored: int  # Microsoft connections whose stored refresh token is the sandbox's current one
    requests: int
    peak_per_user_minute: int
    peak_mailbox_concurrency: int
    request_rate_peak: int  # most requests answered in one wall-clock second
    sweep_cpu: tuple[float, float]  # (user, system) CPU seconds of the sweeping process during the sweep
    emulator_cpu: tuple[float, float] | None  # the same of the emulator process (separate only)
    others: float  # cores' worth of CPU the machine's other processes used during the sweep
    setup: float


def one_run(args: argparse.Namespace, concurrency: int, seed: int, run: int) -> RunResult:
    from calsync.sandbox.world import World
    from calsync.syncbackend import migrate
    from calsync.syncbackend.crypto import TokenCipher, generate_key

    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as directory:
        state = Path(directory)
        with fresh_database(state, args.database_url) as database_url:
            migrate.upgrade(database_url)
            key = generate_key()
            cipher = TokenCipher.from_setting(key)
            population = populate(database_url, cipher, args, seed)
            engine = make_engine(database_url)
            world = World(engine)
            world.clear_faults()
            world.add_fault("*", "latency", params={"seconds": args.rtt})
            base: dict[str, Any] = {
                "CALSYNC_STATE_DIR": state,
                "DATABASE_URL": database_url,
                "CALSYNC_ENCRYPTION_KEY": key,
            }
            emulator: Child | None = None
            try:
                if args.emulators == "separate":
                    emulator, provider_settings = start_emulators(child_env(state, database_url), state)
                    settings = Settings(**base, **provider_settings)
                else:  # no provider settings (whatever the environment says): the sandbox starts here
                    settings = Settings(**base, GOOGLE_CLIENT_ID=None, MICROSOFT_CLIENT_ID=None)
                with open_services(settings) as services:
                    sync = build_sync_engine(services)
                    spies = []
                    if args.py_spy:
                        spy_dir = Path(args.py_spy)
                        spy_dir.mkdir(parents=True, exist_ok=True)
                        seconds = int(args.py_spy_seconds)
                        spies.append(
                            py_spy(os.getpid(), spy_dir / f"sweep-{run}.txt", seconds, args.py_spy_gil)
                        )
                        if emulator is not None:
                            pid = emulator.process.pid
                            spies.append(
                                py_spy(pid, spy_dir / f"emulators-{run}.txt", seconds, args.py_spy_gil)
                            )
                        time.sleep(1.0)  # let py-spy attach
                    busy_before = machine_busy()
                    emulator_before = cpu_times(emulator.process.pid) if emulator else None
                    cpu_before = cpu_times(os.getpid())
                    log_since = datetime.now(UTC)
                    sweep_started = time.perf_counter()

                    async def sweep() -> Any:
                        try:
                            async with asyncio.timeout(args.time_limit):
                                return await sync.health_sweep(concurrency=concurrency, batch=args.batch)
                        finally:
                            for provider in services.providers.values():
                                close = getattr(provider, "aclose", None)
                                if close is not None:
                                    await close()

                    result = asyncio.run(sweep())
                    wall = time.perf_counter() - sweep_started
                    cpu_after = cpu_times(os.getpid())
                    sweep_cpu = (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])
                    emulator_cpu = None
                    if emulator is not None and emulator_before is not None:
                        emulator_after = cpu_times(emulator.process.pid)
                        emulator_cpu = (
                            emulator_after[0] - emulator_before[0],
                            emulator_after[1] - emulator_before[1],
                        )
                    others = machine_busy() - busy_before - sum(sweep_cpu) - sum(emulator_cpu or (0.0, 0.0))
                    for spy in spies:
                        spy.wait(args.py_spy_seconds + 30)
                    checks = verify(database_url, cipher, population, log_since)
            finally:
                if emulator is not None:
                    emulator.stop()
                engine.dispose()
    return RunResult(
        connections=args.connections,
        google=population.google,
        microsoft=population.microsoft,
        microsoft_healthy=len(population.microsoft_ids - population.revoked),
        revoked=len(population.revoked),
        concurrency=concurrency,
        wall=wall,
        checked=result.checked,
        ok=result.ok,
        disconnected=result.disconnected,
        unreachable=result.unreachable,
        busy=result.busy,
        sweep_cpu=sweep_cpu,
        emulator_cpu=emulator_cpu,
        others=max(0.0, others) / wall,
        setup=population.seconds,
        **checks,
    )


def verify(database_url: str, cipher: Any, population: Population, since: datetime) -> dict[str, int]:
    """What the database says after the sweep, and what the emulators' request log says."""
    from sqlalchemy import select

    from calsync.sandbox.world import SandboxAccount, SandboxGrant, SandboxRequest
    from calsync.syncbackend.models import CalendarConnection

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    CalendarConnection.id,
                    CalendarConnection.status,
                    CalendarConnection.last_checked_at,
                    CalendarConnection.account_email,
                    CalendarConnection.refresh_token_encrypted,
                )
            ).all()
            current_tokens = dict(
                connection.execute(
                    select(SandboxAccount.email, SandboxGrant.refresh_token)
                    .join(SandboxGrant, SandboxGrant.account_id == SandboxAccount.id)
                    .where(SandboxAccount.provider == "microsoft")
                ).all()
            )
            log = connection.execute(
                select(
                    SandboxRequest.provider,
                    SandboxRequest.account_email,
                    SandboxRequest.at,
                    SandboxRequest.duration_ms,
                ).where(SandboxRequest.at >= since)
            ).all()
    finally:
        engine.dispose()
    revoked_found = healthy_marked = unchecked = rotated = 0
    for cid, status, checked_at, email, encrypted in rows:
        if cid in population.revoked:
            revoked_found += status == "disconnected"
            continue
        healthy_marked += status == "disconnected"
        unchecked += checked_at is None
        if cid in population.microsoft_ids and encrypted is not None:
            rotated += cipher.decrypt(encrypted) == current_tokens.get(email)
    return {
        "revoked_found": revoked_found,
        "healthy_marked": healthy_marked,
        "unchecked": unchecked,
        "rotated_stored": rotated,
        "requests": len(log),
        **quota_figures(log),
    }


def quota_figures(log: Sequence[Any]) -> dict[str, int]:
    """Peak requests per user in any 60 s, peak concurrent requests per Microsoft mailbox, and the
    most requests answered in one second, from the request log (`at` is when the answer went out)."""
    by_user: dict[str, list[float]] = defaultdict(list)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    per_second: dict[int, int] = defaultdict(int)
    for provider, email, at, duration_ms in log:
        end = at.timestamp()
        per_second[int(end)] += 1
        if not email:
            continue
        by_user[f"{provider}:{email}"].append(end)
        if provider == "microsoft":
            spans[email].append((end - duration_ms / 1000.0, end))
    peak_minute = 0
    for times in by_user.values():
        times.sort()
        first = 0
        for last, moment in enumerate(times):
            while moment - times[first] >= 60.0:
                first += 1
            peak_minute = max(peak_minute, last - first + 1)
    peak_concurrent = 0
    for intervals in spans.values():
        edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
        running = 0
        for _, step in edges:
            running += step
            peak_concurrent = max(peak_concurrent, running)
    return {
        "peak_per_user_minute": peak_minute,
        "peak_mailbox_concurrency": peak_concurrent,
        "request_rate_peak": max(per_second.values(), default=0),
    }


# -- report ------------------------------------------------------------------------------------------


def problems(result: RunResult) -> list[str]:
    found = []
    if result.revoked_found != result.revoked:
        found.append(f"only {result.revoked_found}/{result.revoked} revoked grants found disconnected")
    if result.healthy_marked:
        found.append(f"{result.healthy_marked} healthy connections marked disconnected")
    if result.unchecked:
        found.append(f"{result.unchecked} healthy connections not checked")
    if result.rotated_stored != result.microsoft_healthy:
        found.append(
            f"Microsoft's rotated refresh token stored for {result.rotated_stored}/{result.microsoft_healthy}"
        )
    if result.peak_per_user_minute > GOOGLE_PER_USER_PER_MINUTE:
        found.append(f"{result.peak_per_user_minute} requests per user per minute")
    if result.peak_mailbox_concurrency > GRAPH_CONCURRENT_PER_MAILBOX:
        found.append(f"{result.peak_mailbox_concurrency} concurrent requests for one mailbox")
    return found


def goal_text(connections: int, wall: float) -> str:
    """The goal is for 10 000 connections; for another N, the time 10 000 would take at this rate."""
    if connections == GOAL_CONNECTIONS:
        return "met" if wall <= GOAL_SECONDS else "missed"
    return f"≈ {wall * GOAL_CONNECTIONS / connections:.0f} s for 10 000"


def cpu_text(cpu: tuple[float, float] | None) -> str:
    return "–" if cpu is None else f"{sum(cpu):.1f} s (user {cpu[0]:.1f} + system {cpu[1]:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rtt", type=float, default=0.05, help="seconds added to every emulator request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64], help="health_sweep concurrency")
    parser.add_argument("--batch", type=int, default=500, help="health_sweep batch")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--google-share", type=float, default=0.8)
    parser.add_argument("--revoked-share", type=float, default=0.01)
    parser.add_argument("--emulators", choices=["separate", "in-process"], default="separate")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server URL (postgresql+psycopg://...); each run creates and drops its own database",
    )
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds a sweep may take")
    parser.add_argument("--py-spy", help="record both processes with py-spy into this directory")
    parser.add_argument("--py-spy-seconds", type=float, default=30.0)
    parser.add_argument("--py-spy-gil", action="store_true", help="sample only the thread holding the GIL")
    args = parser.parse_args()
    if not 1 <= args.connections <= 50_000 or not 0 <= args.rtt <= 1.0 or args.runs > 10:
        parser.error("keep runs bounded: 1..50 000 connections, R at most 1 s, at most 10 runs")
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url takes a PostgreSQL server URL (the default is a SQLite file)")

    rows = []
    failures: list[str] = []
    for concurrency in args.concurrency:
        results = []
        for run in range(args.runs):
            result = one_run(args, concurrency, seed=run, run=run)
            results.append(result)
            trouble = problems(result)
            failures.extend(f"C={concurrency} run {run + 1}: {p}" for p in trouble)
            print(
                f"[C={concurrency} run {run + 1}] {result.wall:.1f} s, {result.checked / result.wall:.0f} checks/s, "
                f"ok={result.ok} disconnected={result.disconnected} unreachable={result.unreachable} "
                f"busy={result.busy}; revoked found {result.revoked_found}/{result.revoked}, healthy marked "
                f"{result.healthy_marked}, unchecked {result.unchecked}, MS rotated stored "
                f"{result.rotated_stored}/{result.microsoft_healthy}; requests "
                f"{result.requests}, peak/user/min {result.peak_per_user_minute}, peak/mailbox "
                f"{result.peak_mailbox_concurrency}, peak {result.request_rate_peak} req/s; CPU sweep "
                f"{cpu_text(result.sweep_cpu)}, emulators {cpu_text(result.emulator_cpu)}; setup {result.setup:.1f} s; "
                f"other processes {result.others:.2f} cores" + (f"; PROBLEMS: {trouble}" if trouble else ""),
                file=sys.stderr,
            )
        rows.append(results)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    database = "PostgreSQL" if args.database_url else "SQLite"
    print(f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/sweep_bench.py', *sys.argv[1:]])}`")
    print(f"Machine: {machine()}")
    print(
        f"Date: {datetime.now(UTC):%Y-%m-%d}; {args.connections} connections "
        f"({args.google_share:.0%} Google), {args.revoked_share:.0%} revoked; R = {args.rtt * 1000:.0f} ms; "
        f"emulators {args.emulators}; {database}; batch {args.batch}; median of {args.runs} runs"
    )
    print()
    print(
        "| concurrency | connections | wall time | checks/s | ok | disconnected | unreachable | revoked found "
        "| healthy marked disconnected | peak requests/user/min | peak concurrent/mailbox | sweep CPU "
        "| emulator CPU | other processes' CPU | runs (wall) | goal: 10 000 in ≤ 60 s |"
    )
    print(
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- | --- |"
    )
    for results in rows:
        wall = med([r.wall for r in results])
        emulator_cpu = [sum(r.emulator_cpu) for r in results if r.emulator_cpu is not None]
        first = results[0]
        print(
            f"| {first.concurrency} | {first.connections} | {wall:.1f} s "
            f"| {med([r.checked / r.wall for r in results]):.0f} | {med([r.ok for r in results]):.0f} "
            f"| {med([r.disconnected for r in results]):.0f} | {med([r.unreachable for r in results]):.0f} "
            f"| {med([r.revoked_found for r in results]):.0f}/{first.revoked} "
            f"| {max(r.healthy_marked for r in results)} | {max(r.peak_per_user_minute for r in results)} "
            f"| {max(r.peak_mailbox_concurrency for r in results)} | {med([sum(r.sweep_cpu) for r in results]):.1f} s "
            f"| {f'{med(emulator_cpu):.1f} s' if emulator_cpu else '–'} "
            f"| {med([r.others for r in results]):.2f} cores "
            f"| {', '.join(f'{r.wall:.1f}' for r in results)} "
            f"| {goal_text(first.connections, wall)} |"
        )
    if failures:
        print()
        print("Problems:")
        for failure in failures:
            print(f"- {failure}")
        sys.exit(1)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
