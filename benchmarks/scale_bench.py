"""Answers apart from acks (issue 17): throughput with 1, 2, 4 answer workers, and the ack latency of
the serving process while they answer, beside a bare Bolt app's.

Per run: a fresh PostgreSQL database (`soak.soak_database`, dropped afterwards) with the demo
scenario; the emulators in their own process (`calsync sandbox serve`); calsync's web process
(`slackload.serve_app`, as `calsync serve` builds it) with `CALSYNC_SERVE_ANSWERS=false`, so it only
acks, records and defers; and the bare Bolt app (`bare_bolt.py`: the same signing secret, FastAPI +
uvicorn with `calsync.app.make_http_server`'s settings, listeners that do nothing). Then:

1. Throughput, for each K in `--workers` (the order turned round from run to run): K `calsync
   answer-worker` processes (`--concurrency` questions at once each) on the database; a few warm-up
   questions; then `--questions` signed DMs from the demo reps, each in a DM thread of its own
   (`soak.make_questions`), sent by `--senders` closed-loop senders as fast as the acks come back.
   Answers/s = questions / (first ack → last answer, the Slack emulator's record); each worker's
   CPU seconds (`/proc`) from the first send until every question has its answer, per answer; the
   web process's, the emulators', PostgreSQL's and the whole machine's over the same stretch. Once
   the emulator has had no Slack call for `--quiet` s, every question must have exactly one answer
   and no "Checking…" left (its thread in the emulator, cross-checked with the call log and
   `queued_questions`). The workers are stopped before the next K.
2. Ack latency: `--ack-workers` answer workers, kept busy by a backlog of `--backlog` DMs; then, for
   each rate in `--rate`, `--duration` s of signed requests at that rate, open loop (ack_bench's
   sender), to calsync's web process and, in the same run, as long again to the bare app (which one
   first alternates from run to run; each starts once both apps are idle again): DMs 70 %,
   @mentions 15 %, `/calsync help` 15 %, each event id new. p50 / p99 / max of the time to each HTTP
   response; each app's CPU seconds per request (until it is idle again, so a reply after the ack
   counts); how many questions the workers answered meanwhile (the answers flowed during both).

`--profile` starts the web process as `serve_timed_app` instead: the same app, with the queue work
each DM or @mention does before its ack timed in it (the backlog check, the one statement that
claims, records and defers, and how many were waiting for one of the procrastinate pool's
connections), reported per rate. Always, the backlog limits are raised to `--backlog-limit` for the web
process, so the ack phases measure questions queued, not shed (the defaults, 100 per workspace, are
full after the backlog of `--backlog` DMs: every question would be shed). `--py-spy DIR` samples both apps during their
ack phases (collapsed stacks). `--latency S` makes every Google and Microsoft request S seconds slow.

Each figure is also given as the median over `--runs`. Loopback only; every wait is bounded; every
child process is ended. The 1-minute load average at the start of each run is printed (other jobs
on the machine stretch the figures). A default run took 13–14 minutes on 2 cores shared with
other jobs (load average 5–14); about 4 minutes per run.

    .venv/bin/python benchmarks/scale_bench.py [--runs 3] [--questions 300] [--workers 1 2 4]
        [--rate 500 ...] [--duration 10] [--phases throughput acks] [--profile] [--postgres-url URL]

Needs PostgreSQL (`--postgres-url`, default `$TEST_POSTGRES_URL`, else the local server with trust
auth): answer workers in processes of their own need its queue.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ack_bench import Prepared as Request
from ack_bench import World, fix_response_urls, prepare_world, send_all
from bare_bolt import start_bare
from slackload import (
    BOT_USER,
    CALSYNC,
    HELP_CHANNEL,
    QUESTIONS,
    REPS,
    App,
    Child,
    child_env,
    cpu_seconds,
    load_demo,
    machine,
    ms,
    percentile,
    read_app,
    start_app,
    start_emulators,
)
from soak import DEFAULT_POSTGRES, Question, make_questions, settle, soak_database, thread_calls, threads

from calsync.sandbox.slack_requests import FORM, JSON, command_body, event_body, signed_headers

ACK_MIX = {"dm": 70, "mention": 15, "help": 15}
WORKER_START = 180.0  # seconds a worker may take to start (several start at once on 2 cores)


# -- CPU time ------------------------------------------------------------------------------------


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores; /proc/stat, not idle or iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds of the PostgreSQL backends serving `database`, by pid (a backend's title names its
    database; the server's shared processes — WAL writer, checkpointer — are left out)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
            if database in title:
                found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


@dataclass
class Meter:
    """CPU seconds of the processes that matter, and of the machine, from `start()` to `stop()`."""

    pids: dict[str, list[int]]  # role -> pids
    database: str  # whose PostgreSQL backends count
    started: float = 0.0
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds (summed over its pids)
    each: dict[str, list[float]] = field(default_factory=dict)  # role -> CPU seconds per pid
    _before: dict[int, float] = field(default_factory=dict)
    _postgres: dict[int, float] = field(default_factory=dict)
    _machine: float = 0.0

    def start(self) -> None:
        self._before = {pid: cpu_seconds(pid) for pids in self.pids.values() for pid in pids}
        self._before[os.getpid()] = cpu_seconds(os.getpid())
        self._postgres = postgres_cpu(self.database)
        self._machine = machine_busy()
        self.started = time.monotonic()

    def stop(self) -> None:
        self.wall = time.monotonic() - self.started
        for role, pids in self.pids.items():
            self.each[role] = [cpu_seconds(pid) - self._before[pid] for pid in pids]
            self.cpu[role] = sum(self.each[role])
        self.cpu["sender"] = cpu_seconds(os.getpid()) - self._before[os.getpid()]
        # Backends that ended meanwhile are lost (the pools the processes keep are not); new ones count whole.
        self.cpu["postgres"] = sum(
            cpu - self._postgres.get(pid, 0.0) for pid, cpu in postgres_cpu(self.database).items()
        )
        self.cpu["machine"] = machine_busy() - self._machine
        self.cpu["other"] = self.cpu["machine"] - sum(
            cpu for role, cpu in self.cpu.items() if role not in ("machine", "other")
        )


# -- the ack path, timed (--profile) --------------------------------------------------------------


def serve_timed_app(port: int, out: Path) -> None:
    """Child process: `slackload.serve_app`, with the queue work each DM or @mention does before its
    ack timed: the backlog check (`AnswerQueue.full`, a count at most every 0.25 s) and the one
    statement that claims, records and defers (`AnswerQueue._record_and_defer`), with how many others
    were waiting for one of the procrastinate pool's connections as it started. One JSON line per
    question (wall-clock start and the parts, in seconds) is written to `out` when the server stops."""
    import contextvars
    import json

    from slackload import serve_app

    from calsync.bot.queue import AnswerQueue
    from calsync.store.questions import Question as Asked

    marks: contextvars.ContextVar[dict[str, float]] = contextvars.ContextVar("marks")
    rows: list[dict[str, float]] = []
    full, statement = AnswerQueue.full, AnswerQueue._record_and_defer

    async def timed_full(self: AnswerQueue, team_id: str) -> bool:
        mine = {"wall": time.time(), "start": time.perf_counter()}
        marks.set(mine)
        try:
            return await full(self, team_id)
        finally:
            mine["checked"] = time.perf_counter()
            rows.append(mine)

    async def timed_statement(self: AnswerQueue, question: Asked) -> bool:
        mine = marks.get(None)
        if mine is not None:
            stats = self.app.connector.pool.get_stats()  # type: ignore[attr-defined]
            mine["waiting"] = stats.get("requests_waiting", 0)
            mine["in use"] = stats.get("pool_size", 0) - stats.get("pool_available", 0)
            mine["statement"] = time.perf_counter()
        try:
            return await statement(self, question)
        finally:
            if mine is not None:
                mine["recorded"] = time.perf_counter()

    AnswerQueue.full = timed_full  # type: ignore[method-assign]
    AnswerQueue._record_and_defer = timed_statement  # type: ignore[method-assign]
    # uvicorn raises the SIGTERM it caught again once it has shut down: let that end us through `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve_app(port)
    finally:
        with out.open("w") as sink:
            for row in rows:
                if {"checked", "statement", "recorded"} <= row.keys():
                    parts = {
                        "wall": row["wall"],
                        "backlog check": row["checked"] - row["start"],
                        "claim + record + defer (one statement)": row["recorded"] - row["statement"],
                        "enqueue": row["recorded"] - row["start"],
                        "pool: others waiting": row["waiting"],
                        "pool: connections in use": row["in use"],
                    }
                    sink.write(json.dumps(parts) + "\n")


def ack_path(path: Path, windows: list[tuple[float, float]]) -> dict[str, list[float]]:
    """The timed app's parts (`serve_timed_app`) for the questions that arrived within `windows`."""
    import json

    parts: dict[str, list[float]] = {}
    if not path.exists():
        return parts
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if any(start <= row["wall"] <= end for start, end in windows):
            for name, value in row.items():
                if name != "wall":
                    parts.setdefault(name, []).append(value)
    return parts


# -- the processes -------------------------------------------------------------------------------


@dataclass
class Stage:
    """One run's database, emulators, calsync web process and bare Bolt app."""

    database_url: str
    state: Path
    app_env: dict[str, str]
    app: App
    bare: App
    emulators: int  # pid
    children: list[Child]
    seeds: Iterator[int]

    @property
    def database(self) -> str:
        from sqlalchemy import make_url

        return str(make_url(self.database_url).database)


@contextlib.contextmanager
def stage(args: argparse.Namespace, seed: int) -> Iterator[Stage]:
    with (
        soak_database(args.postgres_url) as database_url,
        tempfile.TemporaryDirectory(prefix="scale-") as tmp,
    ):
        state = Path(tmp)
        env = child_env(state, database_url=database_url)
        load_demo(env, state)
        children: list[Child] = []
        try:
            settings = start_emulators(env, state, children)
            emulators = children[-1].process.pid
            app_env = child_env(
                state,
                {
                    **settings,
                    "CALSYNC_SERVE_ANSWERS": "false",
                    "CALSYNC_ANSWER_CONCURRENCY": str(args.concurrency),
                    "CALSYNC_BACKLOG_PER_WORKSPACE": str(args.backlog_limit),
                    "CALSYNC_BACKLOG_MAX": str(args.backlog_limit),
                },
                database_url=database_url,
            )
            if args.profile:
                timings = Path(args.profile_dir) / f"ack-path-{seed}.jsonl"
                web = Child(
                    [sys.executable, str(Path(__file__).resolve()), "--serve-timed-app", "0", str(timings)],
                    app_env,
                    state,
                    state / "web.log",
                )
            else:
                web = start_app(app_env, state, "web")
            children.append(web)
            bare = start_bare(app_env, state)
            children.append(bare)
            yield Stage(
                database_url,
                state,
                app_env,
                read_app(web),
                read_app(bare),
                emulators,
                children,
                itertools.count(seed * 1000),
            )
        finally:
            for child in reversed(children):
                child.stop()
            if args.keep_logs:
                for log in sorted(state.glob("*.log")):
                    (Path(args.keep_logs) / f"scale-{seed}-{log.name}").write_bytes(log.read_bytes())


@contextlib.contextmanager
def answer_workers(where: Stage, count: int, name: str) -> Iterator[list[Child]]:
    """`count` `calsync answer-worker` processes, started at once, each waited for; always ended."""
    workers: list[Child] = []
    try:
        for index in range(count):
            log = where.state / f"{name}-worker{index}.log"
            workers.append(Child([*CALSYNC, "answer-worker"], where.app_env, where.state, log))
        for index, worker in enumerate(workers):
            worker.wait_for_stderr(
                "answer worker .* started", WORKER_START, f"{name} worker {index} start-up"
            )
        yield workers
    finally:
        for worker in workers:  # all told at once, so they wind down side by side
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in workers:
            worker.stop()


def new_questions(args: argparse.Namespace, where: Stage, count: int) -> list[Question]:
    """`soak.make_questions` (which clears the world's faults), then `--latency` on every Google and
    Microsoft request again."""
    made = make_questions(where.database_url, count, next(where.seeds))
    if args.latency > 0:
        from calsync.db import make_engine
        from calsync.sandbox.world import World as SandboxWorld

        engine = make_engine(where.database_url)
        try:
            for provider in ("google", "microsoft"):
                SandboxWorld(engine).add_fault(provider, "latency", params={"seconds": args.latency})
        finally:
            engine.dispose()
    return made


# -- sending -------------------------------------------------------------------------------------


@dataclass
class Acked:
    sent: float  # wall clock (time.time())
    acked: float | None = None
    status: int | None = None


async def send_closed_loop(
    app: App, questions: list[Question], senders: int, hard_stop: float
) -> list[Acked]:
    """Each question's DM, signed as it leaves, `senders` at a time: the next as soon as an ack comes
    back. A delivery not acked 200 is sent again half a second later as Slack's retry."""
    import aiohttp

    acks = [Acked(0.0) for _ in questions]
    pending = iter(enumerate(questions))
    deadline = time.monotonic() + hard_stop
    connector = aiohttp.TCPConnector(limit=senders, keepalive_timeout=2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def sender() -> None:
            for index, question in pending:
                retry = 0
                while time.monotonic() < deadline:
                    headers = signed_headers(question.body, app.secret, JSON)
                    if retry:
                        headers["X-Slack-Retry-Num"] = str(retry)
                        headers["X-Slack-Retry-Reason"] = "http_error"
                    acks[index].sent = acks[index].sent or time.time()
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.post(
                            f"{app.url}/slack/events", data=question.body, headers=headers
                        ) as response:
                            await response.read()
                            acks[index].status = response.status
                            if response.status == 200:
                                acks[index].acked = time.time()
                                break
                    retry += 1
                    await asyncio.sleep(0.5)

        await asyncio.gather(*(sender() for _ in range(senders)))
    return acks


def wait_answered(database_url: str, questions: list[Question], limit: float) -> bool:
    """Until every question's thread has an answer (at most `limit` s)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(thread.final for thread in threads(database_url, questions).values()):
            return True
        time.sleep(0.25)
    return False


def queue_rows(database_url: str, event_ids: list[str]) -> tuple[int, int, int]:
    """From `queued_questions`, for these events: (rows, answered, rows taken more than once)."""
    from sqlalchemy import func, select

    from calsync.db import make_engine
    from calsync.syncbackend.models import QueuedQuestion

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows, answered, again = connection.execute(
                select(
                    func.count(),
                    func.count(QueuedQuestion.answered_at),
                    func.count().filter(QueuedQuestion.attempts > 1),
                ).where(QueuedQuestion.event_id.in_(event_ids))
            ).one()
    finally:
        engine.dispose()
    return int(rows), int(answered), int(again)


def database_counters(database_url: str) -> tuple[int, int]:
    """(transactions committed, rows procrastinate_jobs was asked to take — attempts, failed ones
    included) in the run's database so far, from PostgreSQL's statistics (refreshed about once a second)."""
    from sqlalchemy import text

    from calsync.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            commits, inserts = connection.execute(
                text(
                    "SELECT d.xact_commit, t.n_tup_ins FROM pg_stat_database d, pg_stat_user_tables t "
                    "WHERE d.datname = current_database() AND t.relname = 'procrastinate_jobs'"
                )
            ).one()
    finally:
        engine.dispose()
    return int(commits), int(inserts)


def answered_total(database_url: str) -> int:
    from sqlalchemy import func, select

    from calsync.db import make_engine
    from calsync.syncbackend.models import QueuedQuestion

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count(QueuedQuestion.answered_at))).scalar() or 0)
    finally:
        engine.dispose()


# -- 1. throughput -------------------------------------------------------------------------------


@dataclass
class Step:
    workers: int
    questions: int
    acked: int
    ack_span: float  # first ack -> last ack
    span: float  # first ack -> last answer
    wait_p50: float  # ack -> answer, per question
    wait_p99: float
    answers: int  # final answers in the questions' threads
    doubles: int
    lost: int
    placeholders: int
    posts: int
    updates: int
    recorded: int  # queued_questions rows, answered ones, taken more than once
    recorded_answered: int
    retaken: int
    settled: bool
    meter: Meter
    load: float
    commits: int  # the database's committed transactions from the first send to the last answer
    defers: int  # job inserts tried meanwhile: one per question, the rest re-defers that failed

    @property
    def rate(self) -> float:
        return self.answers / self.span if self.span > 0 else float("nan")

    @property
    def worker_cpu_per_answer(self) -> float:
        return self.meter.cpu["workers"] / self.questions

    @property
    def ok(self) -> bool:
        return (
            self.settled
            and self.acked == self.questions
            and self.answers == self.questions
            and not (self.doubles or self.lost or self.placeholders)
            and self.recorded == self.recorded_answered == self.questions
        )


def throughput_step(args: argparse.Namespace, where: Stage, count: int) -> Step:
    load = os.getloadavg()[0]
    with answer_workers(where, count, f"k{count}") as workers:
        warm = new_questions(args, where, args.warmup * count)
        asyncio.run(send_closed_loop(where.app, warm, args.senders, hard_stop=60))
        if not wait_answered(where.database_url, warm, args.settle):
            raise RuntimeError(f"{count} workers: the warm-up questions were not answered")
        questions = new_questions(args, where, args.questions)
        meter = Meter(
            {
                "workers": [worker.process.pid for worker in workers],
                "web": [where.app.pid],
                "emulators": [where.emulators],
            },
            where.database,
        )
        commits, defers = database_counters(where.database_url)
        meter.start()
        acks = asyncio.run(send_closed_loop(where.app, questions, args.senders, hard_stop=args.settle))
        wait_answered(where.database_url, questions, args.settle)
        meter.stop()
        time.sleep(1.5)  # pg_stat_database is refreshed about once a second
        commits_after, defers_after = database_counters(where.database_url)
        settled = settle(where.database_url, questions, args.settle, args.quiet)
    # The workers have stopped: nothing can arrive after this.
    said = threads(where.database_url, questions)
    posts, updates = thread_calls(where.database_url, said)
    recorded, recorded_answered, retaken = queue_rows(where.database_url, [q.event_id for q in questions])
    acked = [ack.acked for ack in acks if ack.acked is not None]
    first_ack = min(acked, default=float("nan"))
    finals = [max(thread.final).timestamp() for thread in said.values() if thread.final]
    waits = [
        min(said[question.thread_ts].final).timestamp() - ack.acked
        for question, ack in zip(questions, acks, strict=True)
        if ack.acked is not None and said[question.thread_ts].final
    ]
    return Step(
        workers=count,
        questions=len(questions),
        acked=len(acked),
        ack_span=max(acked, default=first_ack) - first_ack,
        span=max(finals, default=first_ack) - first_ack,
        wait_p50=percentile(waits, 0.5),
        wait_p99=percentile(waits, 0.99),
        answers=sum(len(thread.final) for thread in said.values()),
        doubles=sum(max(0, len(thread.final) - 1) for thread in said.values()),
        lost=sum(1 for thread in said.values() if not thread.final),
        placeholders=sum(thread.placeholders for thread in said.values()),
        posts=posts,
        updates=updates,
        recorded=recorded,
        recorded_answered=recorded_answered,
        retaken=retaken,
        settled=settled,
        meter=meter,
        load=load,
        commits=commits_after - commits,
        defers=defers_after - defers,
    )


# -- 2. ack latency ------------------------------------------------------------------------------


@dataclass
class Phase:
    target: str  # "calsync" or "bare"
    rate: float  # requests/s asked for
    run: int
    order: int  # 0: measured first in its run
    count: int
    p50: float
    p90: float
    p99: float
    max: float
    errors: int  # non-200, or no answer within `--duration` + 10 s (the sender gives up)
    slow: int  # >= 3 s
    lag_p99: float  # how late the sender sent, p99
    send_rate: float
    server_cpu: float  # the measured app's CPU seconds per wall second
    cpu_per_request: float  # its CPU seconds from the first request until it was idle again, per request
    defers: int  # job inserts tried in the database meanwhile (the web's, and the workers' re-defers)
    answered: int  # questions the workers answered during the phase
    wall: float
    by_kind: dict[str, float]
    machine_cpu: float  # the whole machine's busy CPU seconds per wall second
    window: tuple[float, float] = (0.0, 0.0)  # wall clock, first send -> last ack

    @property
    def answer_rate(self) -> float:
        return self.answered / self.wall if self.wall > 0 else float("nan")


def mixed_requests(
    count: int, secret: str, world: World, seed: int, tag: str
) -> tuple[list[Request], dict[str, tuple[str, str, str | None]]]:
    """`count` requests of ACK_MIX, each event id and ts new, signed now."""
    rng = random.Random(seed)
    kinds, weights = list(ACK_MIX), list(ACK_MIX.values())
    stamp = int(time.time())
    owners: dict[str, tuple[str, str, str | None]] = {}
    prepared: list[Request] = []
    for index in range(count):
        kind = rng.choices(kinds, weights)[0]
        rep = rng.choice(REPS)
        ts = f"{stamp}.{index:06d}"
        if kind == "help":
            url = next(world.response_urls)
            owners[url.rsplit("/", 1)[1]] = (HELP_CHANNEL, rep, None)
            body = command_body(
                user=rep, channel=HELP_CHANNEL, text="help", response_url=url, trigger_id=f"trig{tag}{index}"
            )
            content_type = FORM
        else:
            if kind == "dm":
                event = {
                    "type": "message",
                    "channel_type": "im",
                    "user": rep,
                    "channel": world.dm_channels[rep],
                    "text": rng.choice(QUESTIONS),
                    "ts": ts,
                }
            else:
                event = {
                    "type": "app_mention",
                    "user": rep,
                    "channel": HELP_CHANNEL,
                    "text": f"<@{BOT_USER}> {rng.choice(QUESTIONS)}",
                    "ts": ts,
                }
            body = event_body(event, f"EvScale{tag}{index:06d}", stamp)
            content_type = JSON
        prepared.append(Request(kind, body, signed_headers(body, secret, content_type, stamp)))
    return prepared, owners


def wait_idle(pid: int, limit: float, below: float = 0.1) -> float:
    """Until the process uses less than `below` of a core over two half seconds in a row (at most
    `limit` s): what it still had to do for the previous phase is done. Seconds waited."""
    started = time.monotonic()
    calm = 0
    while time.monotonic() - started < limit and calm < 2:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        calm = calm + 1 if cpu_seconds(pid) - before < below * 0.5 else 0
    return time.monotonic() - started


def py_spy(args: argparse.Namespace, pid: int, name: str) -> subprocess.Popen[bytes] | None:
    """`--py-spy DIR`: sample the app's stacks (not pausing it) for the phase, collapsed, into DIR/name.txt."""
    if not args.py_spy:
        return None
    command = [
        str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--duration", str(int(args.duration)), "--rate", "200",
        "--nonblocking", "--format", "raw", "-o", str(Path(args.py_spy) / f"{name}.txt"),
    ] + (["--idle", "--threads"] if args.py_spy_idle else [])  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure_acks(
    args: argparse.Namespace, where: Stage, target: str, rate: float, run: int, order: int
) -> Phase:
    app = where.app if target == "calsync" else where.bare
    count = int(rate * args.duration)
    world = prepare_world(where.database_url, where.app.slack_url, count)
    tag = f"{target[0]}{run}r{rate:g}x"
    requests, owners = mixed_requests(count, app.secret, world, next(where.seeds), tag)
    fix_response_urls(where.database_url, owners)
    before = answered_total(where.database_url)
    _commits, defers_before = database_counters(where.database_url)
    meter = Meter({"server": [app.pid]}, where.database)
    cpu_before = cpu_seconds(app.pid)
    spy = py_spy(args, app.pid, f"{target}-run{run + 1}-{rate:g}")
    meter.start()
    window_start = time.time()
    outcomes, elapsed = asyncio.run(
        send_all(f"{app.url}/slack/events", requests, rate, hard_stop=args.duration + 10)
    )
    meter.stop()
    if spy is not None:
        spy.wait(60)
    wait_idle(app.pid, 30)  # the work after the acks (/calsync help's reply) is the app's too
    cpu_after = cpu_seconds(app.pid)
    _commits, defers_after = database_counters(where.database_url)
    answered = answered_total(where.database_url) - before
    latencies = [o.latency for o in outcomes if o.latency is not None]
    by_kind: dict[str, list[float]] = {}
    for outcome in outcomes:
        if outcome.latency is not None:
            by_kind.setdefault(outcome.kind, []).append(outcome.latency)
    return Phase(
        target=target,
        rate=rate,
        run=run,
        order=order,
        count=len(outcomes),
        p50=percentile(latencies, 0.5),
        p90=percentile(latencies, 0.9),
        p99=percentile(latencies, 0.99),
        max=max(latencies, default=float("nan")),
        errors=sum(1 for o in outcomes if o.latency is None or o.status != 200),
        slow=sum(1 for o in outcomes if o.latency is None or o.latency >= 3.0),
        lag_p99=percentile([o.lag for o in outcomes], 0.99),
        send_rate=(len(outcomes) - 1) / elapsed if elapsed > 0 else float("nan"),
        server_cpu=meter.cpu["server"] / meter.wall,
        cpu_per_request=(cpu_after - cpu_before) / max(1, len(outcomes)),
        defers=defers_after - defers_before,
        answered=answered,
        wall=meter.wall,
        by_kind={kind: percentile(values, 0.99) for kind, values in sorted(by_kind.items())},
        machine_cpu=meter.cpu["machine"] / meter.wall,
        window=(window_start, time.time()),
    )


def ack_phases(args: argparse.Namespace, where: Stage, run: int) -> list[Phase]:
    with answer_workers(where, args.ack_workers, "acks"):
        # Busy workers: a backlog first (and the calsync phase adds to it).
        backlog = new_questions(args, where, args.backlog)
        asyncio.run(send_closed_loop(where.app, backlog, args.senders, hard_stop=60))
        # Warm both apps (Bolt's first request makes its auth.test call).
        for target in ("calsync", "bare"):
            app = where.app if target == "calsync" else where.bare
            world = prepare_world(where.database_url, where.app.slack_url, 20)
            warm, owners = mixed_requests(20, app.secret, world, next(where.seeds), f"w{target[0]}{run}x")
            fix_response_urls(where.database_url, owners)
            asyncio.run(send_all(f"{app.url}/slack/events", warm, 20.0, hard_stop=30))
        order = ["calsync", "bare"] if run % 2 == 0 else ["bare", "calsync"]
        phases: list[Phase] = []
        for rate in args.rate:
            for index, target in enumerate(order):
                # What the last phase left (requests still queued in an app) is not this one's load.
                wait_idle(where.app.pid, 20)
                wait_idle(where.bare.pid, 20)
                phase = measure_acks(args, where, target, rate, run, index)
                phases.append(phase)
                print(
                    f"[run {run + 1}, acks at {rate:g}/s, {phase.target}] n={phase.count} p50={ms(phase.p50)} "
                    f"p99={ms(phase.p99)} max={ms(phase.max)} errors={phase.errors} "
                    f"lag p99={ms(phase.lag_p99)} app CPU={phase.server_cpu:.0%} "
                    f"({ms(phase.cpu_per_request)} per request) job inserts tried {phase.defers} "
                    f"machine={phase.machine_cpu:.2f} answers={phase.answered} ({phase.answer_rate:.1f}/s)",
                    file=sys.stderr,
                )
        return phases


# -- report --------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def step_row(label: str, steps: list[Step], base: float | None) -> str:
    rate = med([s.rate for s in steps])
    cpu = med([s.worker_cpu_per_answer for s in steps])
    m = {
        role: med([s.meter.cpu[role] / s.meter.wall for s in steps])
        for role in ("workers", "web", "emulators", "postgres", "sender", "other", "machine")
    }
    per_worker = med([max(s.meter.each["workers"]) / s.meter.wall for s in steps])
    ratio = f"{rate / base:.2f}×" if base else "1.00×"
    counts = (
        f"{sum(s.answers for s in steps)} / {sum(s.doubles for s in steps)} / {sum(s.lost for s in steps)} / "
        f"{sum(s.placeholders for s in steps)}"
    )
    return (
        f"| {label} | {med([s.questions for s in steps]):.0f} | {med([s.span for s in steps]):.1f} s "
        f"| **{rate:.1f}/s** | {ratio} | {med([s.wait_p50 for s in steps]):.1f} / {med([s.wait_p99 for s in steps]):.1f} s "
        f"| **{cpu * 1000:.0f} ms** | {m['workers']:.2f} (busiest {per_worker:.2f}) | {m['web']:.2f} "
        f"| {m['emulators']:.2f} | {m['postgres']:.2f} | {m['sender']:.2f} | {m['other']:.2f} "
        f"| {m['machine']:.2f} of {os.cpu_count()} | {counts} | {med([s.load for s in steps]):.1f} |"
    )


STEP_HEADER = (
    "| answer workers | questions | first ack → last answer | answers/s | vs 1 worker | ack → answer p50 / p99 "
    "| worker CPU per answer | CPU/s: workers | web | emulators | PostgreSQL | sender | other | machine "
    "| answers / doubles / lost / placeholders (all runs) | load avg before |\n"
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def phase_row(label: str, phases: list[Phase]) -> str:
    return (
        f"| {label} | {med([p.count for p in phases]):.0f} | {ms(med([p.p50 for p in phases]))} "
        f"| {ms(med([p.p90 for p in phases]))} | **{ms(med([p.p99 for p in phases]))}** "
        f"| {ms(med([p.max for p in phases]))} | {med([p.errors for p in phases]):.0f} | {med([p.slow for p in phases]):.0f} "
        f"| {med([p.send_rate for p in phases]):.0f}/s | {ms(med([p.lag_p99 for p in phases]))} "
        f"| {med([p.server_cpu for p in phases]):.0%} | {ms(med([p.cpu_per_request for p in phases]))} "
        f"| {med([p.machine_cpu for p in phases]):.2f} "
        f"| {med([p.answer_rate for p in phases]):.1f}/s |"
    )


PHASE_HEADER = (
    "| app | requests | p50 | p90 | p99 | max | errors | ≥ 3 s | send rate | sender lag p99 | app CPU "
    "| app CPU per request | machine CPU/s | answers/s meanwhile |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def report(args: argparse.Namespace, steps: list[Step], phases: list[Phase], loads: list[float]) -> None:
    print(f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/scale_bench.py', *sys.argv[1:]])}`")
    print(f"Machine: {machine()} (nproc {len(os.sched_getaffinity(0))})")
    print(
        f"Date: {datetime.now(UTC):%Y-%m-%d}; {args.runs} run(s); load average (1 min) at the start of each "
        f"run: {', '.join(f'{load:.1f}' for load in loads)}"
    )
    if steps:
        print()
        print(
            f"Throughput: {args.questions} DMs per step, {args.senders} closed-loop senders, answer workers with "
            f"concurrency {args.concurrency} each, "
            + (
                f"every Google/Microsoft request {args.latency:g} s slow"
                if args.latency
                else "providers at once"
            )
            + "; median over the runs (CPU/s: CPU seconds per wall second "
            "from the first send to the last answer; 1.00 = one core)."
        )
        print()
        print(STEP_HEADER)
        base = None
        for count in args.workers:
            mine = [s for s in steps if s.workers == count]
            if not mine:
                continue
            print(step_row(str(count), mine, base))
            if base is None and count == args.workers[0]:
                base = med([s.rate for s in mine])
        print()
        print("Per run (answers/s; worker CPU ms per answer):")
        print()
        for count in args.workers:
            mine = [s for s in steps if s.workers == count]
            print(
                f"- {count} worker(s): "
                + ", ".join(f"{s.rate:.1f}/s {s.worker_cpu_per_answer * 1000:.0f} ms" for s in mine)
            )
    for rate in args.rate if phases else []:
        calsync = [p for p in phases if p.target == "calsync" and p.rate == rate]
        bare = [p for p in phases if p.target == "bare" and p.rate == rate]
        print()
        print(
            f"Ack latency at {rate:g} requests/s, open loop for {args.duration:g} s per app per run "
            f"({', '.join(f'{kind} {share} %' for kind, share in ACK_MIX.items())}), {args.ack_workers} answer "
            "workers answering a backlog meanwhile; median over the runs."
        )
        print()
        print(PHASE_HEADER)
        print(phase_row("calsync (web process, CALSYNC_SERVE_ANSWERS=false)", calsync))
        print(phase_row("bare Bolt app", bare))
        ratios = [c.p99 / b.p99 for c in calsync for b in bare if c.run == b.run and b.p99 > 0]
        print()
        print(
            f"p99 ratio calsync / bare at {rate:g}/s: {med([p.p99 for p in calsync]) / med([p.p99 for p in bare]):.2f}× "
            f"(medians); per run: {', '.join(f'{r:.2f}×' for r in ratios)}; target ≤ 1.5×"
        )
        print()
        print("Per run (p50 / p99 / max; first = measured first in its run):")
        print()
        for phase in sorted(calsync + bare, key=lambda p: (p.run, p.order)):
            print(
                f"- run {phase.run + 1} {phase.target}{' (first)' if phase.order == 0 else ''}: "
                f"{ms(phase.p50)} / {ms(phase.p99)} / {ms(phase.max)}, errors {phase.errors}, "
                f"lag p99 {ms(phase.lag_p99)}, app CPU {phase.server_cpu:.0%}, answers {phase.answer_rate:.1f}/s, "
                f"job inserts tried {phase.defers}; "
                f"p99 by kind: " + ", ".join(f"{kind} {ms(value)}" for kind, value in phase.by_kind.items())
            )


def report_ack_path(args: argparse.Namespace, phases: list[Phase]) -> None:
    for rate in args.rate:
        parts: dict[str, list[float]] = {}
        for run in range(args.runs):
            windows = [p.window for p in phases if p.run == run and p.target == "calsync" and p.rate == rate]
            timings = Path(args.profile_dir) / f"ack-path-{args.seed + run}.jsonl"
            for name, values in ack_path(timings, windows).items():
                parts.setdefault(name, []).extend(values)
        if not parts:
            continue
        print()
        print(
            f"The queue work before each DM's or @mention's ack at {rate:g} requests/s (`AnswerQueue`, "
            f"timed inside the web process; {len(parts['enqueue'])} questions, all runs together):"
        )
        print()
        print("| part | p50 | p90 | p99 | max | mean |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, values in parts.items():
            show = (lambda value: f"{value:.1f}") if name.startswith("pool") else ms
            print(
                f"| {name} | {show(percentile(values, 0.5))} | {show(percentile(values, 0.9))} "
                f"| {show(percentile(values, 0.99))} | {show(max(values))} | {show(statistics.fmean(values))} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--phases", nargs="+", choices=["throughput", "acks"], default=["throughput", "acks"])
    parser.add_argument("--questions", type=int, default=300, help="DMs per throughput step")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="answer worker counts")
    parser.add_argument("--concurrency", type=int, default=8, help="questions each worker answers at once")
    parser.add_argument("--senders", type=int, default=8, help="closed-loop senders (throughput, backlog)")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds each Google and Microsoft request takes (0: at once)",
    )
    parser.add_argument("--warmup", type=int, default=4, help="warm-up questions per worker")
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[500.0],
        help="requests/s in the ack phase (open loop), each in turn",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of requests per app")
    parser.add_argument("--ack-workers", type=int, default=2, help="answer workers during the ack phase")
    parser.add_argument("--backlog", type=int, default=400, help="DMs queued before the ack phase")
    parser.add_argument(
        "--backlog-limit",
        type=int,
        default=1_000_000,
        help="the web process's backlog limits (queue, do not shed)",
    )
    parser.add_argument("--settle", type=float, default=180.0, help="seconds a step may take to answer")
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds without a Slack call = settled")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES,
        help="a PostgreSQL server URL whose user may CREATE DATABASE (default: $TEST_POSTGRES_URL)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="time the web process's queue work before each ack (record, defer) and report it",
    )
    parser.add_argument(
        "--py-spy", help="sample each app with py-spy during its ack phases into this directory"
    )
    parser.add_argument(
        "--py-spy-idle",
        action="store_true",
        help="with --py-spy: sample waiting threads too, one stack per thread",
    )
    parser.add_argument("--keep-logs", help="copy the child processes' logs into this directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.postgres_url.strip().startswith("postgresql"):
        parser.error("answer workers apart need PostgreSQL: set TEST_POSTGRES_URL or --postgres-url")
    if (
        args.runs < 1
        or args.questions < 1
        or args.questions > 5000
        or not all(1 <= count <= 16 for count in args.workers)
        or max(args.rate) * args.duration > 20_000
        or args.duration > 60
        or args.settle > 600
    ):
        parser.error(
            "keep runs bounded: 1..5000 questions, 1..16 workers, ≤ 60 s and 20 000 requests per phase"
        )
    with tempfile.TemporaryDirectory(prefix="scale-profile-") as profile_dir:
        args.profile_dir = profile_dir
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    steps: list[Step] = []
    phases: list[Phase] = []
    loads: list[float] = []
    for run in range(args.runs):
        started = time.monotonic()
        loads.append(os.getloadavg()[0])
        with stage(args, args.seed + run) as where:
            if "throughput" in args.phases:
                shift = run % len(args.workers)
                for count in args.workers[shift:] + args.workers[:shift]:
                    step_started = time.monotonic()
                    step = throughput_step(args, where, count)
                    steps.append(step)
                    m = step.meter
                    print(
                        f"[run {run + 1}, {count} worker(s), {time.monotonic() - step_started:.0f} s] {step.rate:.1f} answers/s ({step.answers} in "
                        f"{step.span:.1f} s from the first ack; acks took {step.ack_span:.1f} s), worker CPU "
                        f"{step.worker_cpu_per_answer * 1000:.0f} ms/answer, per worker "
                        + " ".join(f"{cpu:.1f}" for cpu in m.each["workers"])
                        + f" s; web {m.cpu['web']:.1f}, emulators {m.cpu['emulators']:.1f}, PostgreSQL "
                        f"{m.cpu['postgres']:.1f}, machine {m.cpu['machine']:.1f} CPU s in {m.wall:.1f} s; "
                        f"doubles {step.doubles}, lost {step.lost}, placeholders {step.placeholders}, posts "
                        f"{step.posts}, updates {step.updates}, recorded {step.recorded} ({step.recorded_answered} "
                        f"answered, {step.retaken} taken again); database commits {step.commits}, job inserts tried "
                        f"{step.defers}; settled {step.settled}; load {step.load:.1f}",
                        file=sys.stderr,
                    )
            if "acks" in args.phases:
                acks_started = time.monotonic()
                phases.extend(ack_phases(args, where, run))
                print(f"[run {run + 1}] ack phases: {time.monotonic() - acks_started:.0f} s", file=sys.stderr)
        print(f"[run {run + 1}] {time.monotonic() - started:.0f} s", file=sys.stderr)
    report(args, steps, phases, loads)
    if args.profile:
        report_ack_path(args, phases)
    bad = [step for step in steps if not step.ok]
    for step in bad:
        print(
            f"FAILED: {step.workers} worker(s): {step.answers} answers for {step.questions} questions, "
            f"{step.doubles} doubles, {step.lost} lost, {step.placeholders} placeholders, settled {step.settled}",
            file=sys.stderr,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-timed-app":
        serve_timed_app(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(main())
