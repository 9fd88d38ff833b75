"""Soak and burst: one answer per question, whatever Slack's retries and the providers do.

A burst of `--questions` DMs from the demo reps, each event delivered up to four times as Slack
retries it (the same body and event id, `X-Slack-Retry-Num` 1..3 and an `X-Slack-Retry-Reason`;
some retries at the same moment as the first delivery, some seconds later), each delivery to one of
TWO app instances at random. The instances are child processes built by calsync's own factories
(`slackload.serve_app`, as `calsync serve`), sharing one PostgreSQL database (a fresh `soak_…`
database, dropped afterwards) with the emulators (`calsync sandbox serve`, another process). While
the answers are worked out, the sandbox injects 429s (Retry-After: 1) and 503s on the Google and
Microsoft emulators: a counted fault every `--fault-every` seconds, each answering the next
`--fault-uses` requests (the demo's standing faults — Pia's 429s, Quinn's outage — are cleared
first, so every 429/503 counted is an injected one).

Each question is a reply in a DM thread of its own (a bot message made beforehand), so its answer
lands in that thread and is counted per question: the bot posts "Checking…" in the thread and
replaces it in place (chat.update) with the answer; a thread whose messages all still say
"Checking…" has lost its answer, a thread with more than one bot message has a double. Counted from
the Slack emulator's record after both instances have stopped, so nothing can arrive afterwards.
Exit status 1 when any answer is lost or doubled, or any question was shed.

The soak proves one answer per question under retries and faults, not shedding: each instance's
backlog (`CALSYNC_BACKLOG_PER_WORKSPACE`, `CALSYNC_BACKLOG_MAX`) is raised to `--backlog` (5000, above
any burst the soak sends), so a question shed ("ask me again in a minute") is a failure here.
`--backlog 0` keeps calsync's own limits, to see how a burst past them is shed (the shed column).

    .venv/bin/python benchmarks/soak.py [--questions 500] [--runs 1] [--postgres-url URL]

Needs PostgreSQL (`--postgres-url`, default `$TEST_POSTGRES_URL`, else the local server with trust
auth). Loopback only; every wait is bounded (a run takes well under 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slackload import (
    BOT_USER,
    QUESTIONS,
    REPS,
    App,
    Child,
    child_env,
    cpu_seconds,
    load_demo,
    machine,
    percentile,
    read_app,
    start_app,
    start_emulators,
    throwaway_database,
)

from calsync.render.replies import TOO_BUSY_TO_ANSWER
from calsync.sandbox.slack_requests import JSON, event_body, signed_headers

if TYPE_CHECKING:
    from calsync.sandbox.world import FaultKind

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CHECKING = "Checking your calendar connection…"  # calsync.render.blocks.checking_message
SOMETHING_WENT_WRONG = "Something went wrong on our side"
EXTRA_QUESTIONS = [
    "why isn't my appointment showing",
    "what happened to my renewal call with massive dynamic?",
    "where did my 3pm with globex go?",
    "my meetings are doubled, help",
    "outlook keeps asking me to sign in again",
    "calendar sync broken??",
    "did my booking with initech make it to my calendar",
    "help",
]
RETRY_REASONS = ["http_timeout", "http_error", "too_many_requests", "unknown_error"]
# Injected faults, in turn: (provider, kind, params).
FAULTS: list[tuple[str, FaultKind, dict[str, Any]]] = [
    ("google", "rate_limit", {"retry_after": 1}),
    ("microsoft", "unavailable", {"status": 503}),
    ("google", "unavailable", {"status": 503}),
    ("microsoft", "rate_limit", {"retry_after": 1}),
]


# -- the questions and their deliveries ------------------------------------------------------------


@dataclass
class Question:
    index: int
    event_id: str
    rep: str
    channel: str
    thread_ts: str  # the DM thread it is asked in: its answer goes there
    body: bytes
    first_sent: float | None = None  # wall clock (time.time()) of its first delivery


@dataclass
class Delivery:
    question: Question
    at: float  # seconds after the burst starts
    retry: int  # 0: the first delivery; 1..3: Slack's retries
    reason: str
    instance: int
    concurrent: bool = False  # a retry sent at the same moment as the first delivery
    status: int | None = None
    latency: float | None = None
    error: str | None = None


def make_questions(database_url: str, count: int, seed: int) -> list[Question]:
    """`count` questions from the demo reps, each in a DM thread of its own (made here, in the world)."""
    from calsync.db import make_engine, transaction
    from calsync.sandbox.demo import DEMO_QUESTIONS
    from calsync.sandbox.world import SandboxSlackMessage, World

    rng = random.Random(seed)
    texts = sorted({*QUESTIONS, *(text for _email, text in DEMO_QUESTIONS), *EXTRA_QUESTIONS})
    run = uuid.uuid4().hex[:8]
    stamp = int(time.time())
    engine = make_engine(database_url)
    try:
        world = World(engine)
        world.clear_faults()  # the demo's standing faults: every 429/503 counted is then an injected one
        now = datetime.now(UTC)
        channels = {rep: world.slack_open_dm(rep, now)[0] for rep in REPS}
        reps = [REPS[index % len(REPS)] for index in range(count)]
        rng.shuffle(reps)
        questions: list[Question] = []
        with transaction(world.sessions) as session:
            for index, rep in enumerate(reps):
                parent = SandboxSlackMessage(
                    channel=channels[rep],
                    ts=world.slack_next_ts(session, now),
                    user=BOT_USER,
                    text="An earlier answer",
                    created_at=now,
                    updated_at=now,
                    version=1,
                )
                session.add(parent)
                event_id = f"EvSoak{run}{index:05d}"
                event = {
                    "type": "message",
                    "channel_type": "im",
                    "user": rep,
                    "channel": channels[rep],
                    "text": rng.choice(texts),
                    "ts": f"{stamp + 1}.{index:06d}",
                    "thread_ts": parent.ts,
                }
                body = event_body(event, event_id, stamp)
                questions.append(Question(index, event_id, rep, channels[rep], parent.ts, body))
        return questions
    finally:
        engine.dispose()


def plan_deliveries(questions: list[Question], args: argparse.Namespace, seed: int) -> list[Delivery]:
    """Each question's first delivery in the burst, then 0..3 retries: some at the same moment (Slack
    retried before the first ack came back), some seconds later; each to a random instance."""
    rng = random.Random(seed + 1)
    deliveries: list[Delivery] = []
    for question in questions:
        first = question.index * args.burst / len(questions)
        deliveries.append(Delivery(question, first, 0, "", rng.randrange(args.instances)))
        for retry in range(1, rng.randint(1, args.max_deliveries)):
            concurrent = rng.random() < args.concurrent_share
            if concurrent:
                at = first + rng.uniform(0.0, 0.02)
            else:
                at = first + rng.uniform(0.3, args.retry_spread / 3) * retry
            reason = rng.choice(RETRY_REASONS)
            deliveries.append(
                Delivery(question, at, retry, reason, rng.randrange(args.instances), concurrent)
            )
    deliveries.sort(key=lambda delivery: delivery.at)
    return deliveries


async def deliver(apps: list[App], deliveries: list[Delivery], hard_stop: float) -> None:
    """Send every delivery at its moment, signed when it leaves (as Slack signs each retry)."""
    import aiohttp

    # Idle connections are dropped after 2 s, before uvicorn closes them (after 5 s): reusing one the
    # server is closing resets the request (ClientOSError), an artefact of the sender, not of calsync.
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=1000, keepalive_timeout=2)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=hard_stop)
    ) as session:

        async def one(delivery: Delivery) -> None:
            app = apps[delivery.instance]
            headers = signed_headers(delivery.question.body, app.secret, JSON)
            if delivery.retry:
                headers["X-Slack-Retry-Num"] = str(delivery.retry)
                headers["X-Slack-Retry-Reason"] = delivery.reason
            if delivery.question.first_sent is None:
                delivery.question.first_sent = time.time()
            started = time.perf_counter()
            try:
                async with session.post(
                    f"{app.url}/slack/events", data=delivery.question.body, headers=headers
                ) as response:
                    await response.read()
                    delivery.status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                delivery.error = type(error).__name__
                return
            delivery.latency = time.perf_counter() - started

        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.1
        for delivery in deliveries:
            delay = start + delivery.at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(delivery)))
        _done, pending = await asyncio.wait(tasks, timeout=hard_stop)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for delivery in deliveries:
            if delivery.status is None and delivery.error is None:
                delivery.error = "hard stop"


# -- faults ---------------------------------------------------------------------------------------


class FaultInjector:
    """Adds a counted fault (429 or 503, for the next `uses` requests) every `every` seconds."""

    def __init__(self, database_url: str, every: float, uses: int) -> None:
        from calsync.db import make_engine
        from calsync.sandbox.world import World

        self.engine = make_engine(database_url)
        self.world = World(self.engine)
        self.every, self.uses = every, uses
        self.added = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            provider, kind, params = FAULTS[self.added % len(FAULTS)]
            self.world.add_fault(provider, kind, params=params, remaining=self.uses)
            self.added += 1

    def __enter__(self) -> FaultInjector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.engine.dispose()


# -- what the Slack emulator recorded --------------------------------------------------------------


@dataclass
class Thread:
    final: list[datetime] = field(default_factory=list)  # when each final answer was given
    placeholders: int = 0  # "Checking…" never replaced
    errors: int = 0  # "Something went wrong" answers
    shed: int = 0  # "ask me again in a minute": the backlog was full, nothing was checked
    messages: list[str] = field(default_factory=list)  # the ts of every bot message in the thread


def threads(database_url: str, questions: list[Question]) -> dict[str, Thread]:
    """The bot's messages in each question's thread, as the emulator holds them now."""
    from sqlalchemy import select

    from calsync.db import make_engine
    from calsync.sandbox.world import SandboxSlackMessage

    found = {question.thread_ts: Thread() for question in questions}
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    SandboxSlackMessage.thread_ts,
                    SandboxSlackMessage.ts,
                    SandboxSlackMessage.text,
                    SandboxSlackMessage.updated_at,
                ).where(
                    SandboxSlackMessage.thread_ts.is_not(None),
                    SandboxSlackMessage.ephemeral_for.is_(None),
                    SandboxSlackMessage.deleted.is_(False),
                )
            ).all()
    finally:
        engine.dispose()
    for thread_ts, ts, text, updated_at in rows:
        thread = found.get(thread_ts or "")
        if thread is None:
            continue
        thread.messages.append(ts)
        if text == CHECKING:
            thread.placeholders += 1
            continue
        if TOO_BUSY_TO_ANSWER in text:
            thread.shed += 1
            continue
        thread.final.append(updated_at if updated_at.tzinfo else updated_at.replace(tzinfo=UTC))
        thread.errors += SOMETHING_WENT_WRONG in text
    return found


def thread_calls(database_url: str, said: dict[str, Thread]) -> tuple[int, int]:
    """From the emulator's call log: (successful chat.postMessage calls into the questions' threads,
    successful chat.update calls on the messages there)."""
    from sqlalchemy import select

    from calsync.db import make_engine
    from calsync.sandbox.world import SandboxSlackCall

    messages = {ts for thread in said.values() for ts in thread.messages}
    posts = updates = 0
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            for method, params in connection.execute(
                select(SandboxSlackCall.method, SandboxSlackCall.params).where(
                    SandboxSlackCall.ok.is_(True),
                    SandboxSlackCall.method.in_(["chat.postMessage", "chat.update"]),
                )
            ):
                if method == "chat.postMessage":
                    posts += params.get("thread_ts") in said
                else:
                    updates += params.get("ts") in messages
    finally:
        engine.dispose()
    return posts, updates


def last_call_id(database_url: str) -> int:
    from sqlalchemy import func, select

    from calsync.db import make_engine
    from calsync.sandbox.world import SandboxSlackCall

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.max(SandboxSlackCall.id))).scalar() or 0)
    finally:
        engine.dispose()


def settle(database_url: str, questions: list[Question], limit: float, quiet: float) -> bool:
    """Wait until every question has an answer (or was shed) and the Slack emulator has had no call
    for `quiet` seconds (a late double would still be on its way), at most `limit` seconds. True if
    it settled."""
    deadline = time.monotonic() + limit
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        calls = last_call_id(database_url)
        if calls != last:
            last, last_change = calls, time.monotonic()
        answered = all(thread.final or thread.shed for thread in threads(database_url, questions).values())
        if answered and time.monotonic() - last_change >= quiet:
            return True
        time.sleep(0.5)
    return False


def provider_faults_served(database_url: str) -> Counter[tuple[str, int]]:
    """(provider, status) -> how many 429/503 answers the Google and Microsoft emulators gave."""
    from sqlalchemy import func, select

    from calsync.db import make_engine
    from calsync.sandbox.world import SandboxRequest

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(SandboxRequest.provider, SandboxRequest.status, func.count())
                .where(SandboxRequest.status.in_([429, 503]), SandboxRequest.provider != "slack")
                .group_by(SandboxRequest.provider, SandboxRequest.status)
            ).all()
    finally:
        engine.dispose()
    return Counter({(provider, status): count for provider, status, count in rows})


def claimed_events(database_url: str, questions: list[Question]) -> int:
    from sqlalchemy import func, select

    from calsync.db import make_engine
    from calsync.syncbackend.models import ProcessedEvent

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count()).where(
                        ProcessedEvent.event_id.in_([question.event_id for question in questions])
                    )
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()


# -- one run --------------------------------------------------------------------------------------


@dataclass
class Result:
    questions: int
    deliveries: int
    retries_concurrent: int
    retries_later: int
    failed_deliveries: int  # not answered 200 (Slack would retry these)
    ack_p99: float
    slow_acks: int  # at or over Slack's 3 s (Slack would retry those)
    claimed: int
    posts: int  # chat.postMessage calls into the questions' threads (the call log)
    updates: int  # chat.update calls on the messages there
    answers: int
    doubles: int  # extra bot messages in a question's thread
    lost: int  # questions without any reply
    shed: int  # questions answered only with "ask me again in a minute"
    stuck_placeholders: int
    error_answers: int
    rate_limited: int  # 429s the Google/Microsoft emulators answered
    unavailable: int  # 503s
    faults_added: int
    settled: bool
    last_answer: float  # seconds from the first delivery to the last answer
    p50: float
    p99: float
    app_cpu: list[float]
    emulators_cpu: float
    load: float = 0.0  # the machine's 1-minute load average when the run started


@contextlib.contextmanager
def soak_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one run, dropped afterwards."""
    with throwaway_database(admin_url, "soak") as url:
        yield url


def one_run(args: argparse.Namespace, seed: int) -> Result:
    with soak_database(args.postgres_url) as database_url, tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        state = Path(tmp)
        env = child_env(state, database_url=database_url)
        load_demo(env, state)
        children: list[Child] = []
        try:
            settings = start_emulators(env, state, children)
            emulators = children[-1].process.pid
            limits = (
                {"CALSYNC_BACKLOG_PER_WORKSPACE": str(args.backlog), "CALSYNC_BACKLOG_MAX": str(args.backlog)}
                if args.backlog
                else {}
            )
            app_env = child_env(state, {**settings, **limits}, database_url=database_url)
            servers = [start_app(app_env, state, f"app{index}") for index in range(args.instances)]
            children.extend(servers)
            apps = [read_app(server) for server in servers]
            questions = make_questions(database_url, args.questions, seed)
            deliveries = plan_deliveries(questions, args, seed)
            cpu_before = [cpu_seconds(app.pid) for app in apps]
            emulators_before = cpu_seconds(emulators)
            with FaultInjector(database_url, args.fault_every, args.fault_uses) as injector:
                asyncio.run(deliver(apps, deliveries, hard_stop=args.burst + args.retry_spread + 30))
                settled = settle(database_url, questions, args.settle, args.quiet)
                injector.stop()
            app_cpu = [cpu_seconds(app.pid) - before for app, before in zip(apps, cpu_before, strict=True)]
            emulators_cpu = cpu_seconds(emulators) - emulators_before
            for server in servers:  # nothing can arrive after this: count what was said
                server.stop()
            if args.keep_logs:
                for log in sorted(state.glob("*.log")):
                    (Path(args.keep_logs) / f"soak-{seed}-{log.name}").write_bytes(log.read_bytes())
            said = threads(database_url, questions)
            posts, updates = thread_calls(database_url, said)
            faults = provider_faults_served(database_url)
            claimed = claimed_events(database_url, questions)
        finally:
            for child in reversed(children):
                child.stop()
    first = min(question.first_sent for question in questions if question.first_sent is not None)
    waits = []
    for question in questions:
        thread = said[question.thread_ts]
        if thread.final and question.first_sent is not None:
            waits.append(min(thread.final).timestamp() - question.first_sent)
    last = max((max(thread.final).timestamp() for thread in said.values() if thread.final), default=first)
    for delivery in deliveries:
        if delivery.status != 200:
            print(
                f"delivery of {delivery.question.event_id} (retry {delivery.retry}) to instance "
                f"{delivery.instance}: {delivery.status or delivery.error}",
                file=sys.stderr,
            )
    acks = [delivery.latency for delivery in deliveries if delivery.latency is not None]
    return Result(
        questions=len(questions),
        deliveries=len(deliveries),
        retries_concurrent=sum(1 for d in deliveries if d.retry and d.concurrent),
        retries_later=sum(1 for d in deliveries if d.retry and not d.concurrent),
        failed_deliveries=sum(1 for d in deliveries if d.status != 200),
        ack_p99=percentile(acks, 0.99),
        slow_acks=sum(1 for ack in acks if ack >= 3.0),
        claimed=claimed,
        posts=posts,
        updates=updates,
        answers=sum(len(thread.final) for thread in said.values()),
        doubles=sum(
            max(0, len(thread.final) + thread.placeholders + thread.shed - 1) for thread in said.values()
        ),
        lost=sum(1 for thread in said.values() if not thread.final and not thread.shed),
        shed=sum(thread.shed for thread in said.values()),
        stuck_placeholders=sum(thread.placeholders for thread in said.values()),
        error_answers=sum(thread.errors for thread in said.values()),
        rate_limited=sum(count for (_provider, status), count in faults.items() if status == 429),
        unavailable=sum(count for (_provider, status), count in faults.items() if status == 503),
        faults_added=injector.added,
        settled=settled,
        last_answer=last - first,
        p50=percentile(waits, 0.50),
        p99=percentile(waits, 0.99),
        app_cpu=app_cpu,
        emulators_cpu=emulators_cpu,
    )


# -- report ----------------------------------------------------------------------------------------

COLUMNS = [
    ("questions", "questions"),
    ("deliveries", "deliveries (retries at once / later)"),
    ("failed_deliveries", "deliveries not acked 200"),
    ("ack_p99", "ack p99 (≥ 3 s)"),
    ("claimed", "events claimed"),
    ("calls", "posts / updates in the threads"),
    ("answers", "answers"),
    ("doubles", "doubles"),
    ("lost", "lost"),
    ("shed", "shed"),
    ("error_answers", "error answers"),
    ("faults", "429s / 503s injected"),
    ("last_answer", "time to last answer"),
    ("p50", "time to answer p50"),
    ("p99", "time to answer p99"),
    ("cpu", "CPU s: apps / emulators"),
    ("load", "load avg before"),
]


def cells(result: Result) -> list[str]:
    r = result
    return [
        f"{r.questions:g}",
        f"{r.deliveries:g} ({r.retries_concurrent:g} / {r.retries_later:g})",
        f"{r.failed_deliveries:g}",
        f"{r.ack_p99 * 1000:.0f} ms ({r.slow_acks:g})",
        f"{r.claimed:g}",
        f"{r.posts:g} / {r.updates:g}",
        f"**{r.answers:g}**",
        f"**{r.doubles:g}**",
        f"**{r.lost:g}**" + ("" if r.settled else " (not settled)"),
        f"{r.shed:g}",
        f"{r.error_answers:g}",
        f"{r.rate_limited:g} / {r.unavailable:g}",
        f"{r.last_answer:.1f} s",
        f"{r.p50:.1f} s",
        f"{r.p99:.1f} s",
        " + ".join(f"{cpu:.0f}" for cpu in r.app_cpu) + f" / {r.emulators_cpu:.0f}",
        f"{r.load:.1f}",
    ]


def median(results: list[Result]) -> Result:
    """Each figure's median over the runs (per instance for the CPU times)."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(Result):
        column = [getattr(result, item.name) for result in results]
        if item.name == "settled":
            values[item.name] = all(column)
        elif item.name == "app_cpu":
            values[item.name] = [statistics.median(cpu) for cpu in zip(*column, strict=True)]
        else:
            values[item.name] = statistics.median(column)
    return Result(**values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--instances", type=int, default=2, help="app processes sharing the database")
    parser.add_argument("--max-deliveries", type=int, default=4, help="deliveries per event, at most")
    parser.add_argument("--burst", type=float, default=1.0, help="seconds over which the questions arrive")
    parser.add_argument("--concurrent-share", type=float, default=0.4, help="share of retries sent at once")
    parser.add_argument(
        "--retry-spread", type=float, default=6.0, help="latest retry, seconds after the first"
    )
    parser.add_argument("--fault-every", type=float, default=0.25, help="seconds between injected faults")
    parser.add_argument("--fault-uses", type=int, default=2, help="requests each injected fault answers")
    parser.add_argument("--settle", type=float, default=90.0, help="seconds to wait for every answer")
    parser.add_argument("--quiet", type=float, default=5.0, help="seconds without a Slack call = settled")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a PostgreSQL server URL whose user may CREATE DATABASE (default: $TEST_POSTGRES_URL)",
    )
    parser.add_argument(
        "--backlog", type=int, default=5000, help="each instance's backlog limits (0: calsync's own)"
    )
    parser.add_argument("--keep-logs", help="copy the child processes' logs into this directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.postgres_url.strip().startswith("postgresql"):
        parser.error("the soak needs PostgreSQL: set TEST_POSTGRES_URL or --postgres-url")
    if not 1 <= args.max_deliveries <= 4 or args.instances < 1 or args.questions < 1:
        parser.error("1..4 deliveries per event, at least one instance and one question")
    if args.questions > 5000 or args.settle > 600 or args.retry_spread > 60:
        parser.error("keep runs bounded: at most 5000 questions, 600 s to settle, 60 s of retries")
    results: list[Result] = []
    for run in range(args.runs):
        started, load = time.monotonic(), os.getloadavg()[0]
        result = one_run(args, seed=args.seed + run)
        result.load = load
        results.append(result)
        print(
            f"[run {run + 1}] {time.monotonic() - started:.0f} s: "
            + ", ".join(
                f"{title} {cell}" for (_key, title), cell in zip(COLUMNS, cells(result), strict=True)
            ),
            file=sys.stderr,
        )
    print(f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/soak.py', *sys.argv[1:]])}`")
    print(f"Machine: {machine()}")
    print(
        f"Date: {datetime.now(UTC):%Y-%m-%d}; {args.questions} questions over {args.burst:g} s, up to "
        f"{args.max_deliveries} deliveries each, {args.instances} instances on one PostgreSQL database"
    )
    print()
    print("| run | " + " | ".join(title for _key, title in COLUMNS) + " |")
    print("| --- | " + " | ".join("---:" for _ in COLUMNS) + " |")
    for run, result in enumerate(results, start=1):
        print(f"| {run} | " + " | ".join(cells(result)) + " |")
    if len(results) > 1:
        print("| median | " + " | ".join(cells(median(results))) + " |")
    bad = [
        run
        for run, result in enumerate(results, start=1)
        if result.lost or result.doubles or result.answers != result.questions
    ]
    if bad:
        print(
            f"\nFAILED: lost, doubled or shed answers in run(s) {', '.join(map(str, bad))}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
