"""Slack ack latency: the real app in its own process, signed requests at a fixed rate (open loop).

The goal (the issue): ack p99 <= 50 ms at 200 requests/s of mixed events and commands; none >= 3 s
(Slack's limit). Each run: a fresh SQLite state directory with the demo scenario loaded (`calsync
sandbox load`), the app served by uvicorn in a child process built by the composition root's own
factories (`open_services` + `build_*`, the same uvicorn settings as `calsync serve`), then
`--duration` seconds of requests sent at `--rate` per second whatever the answers do: DMs from demo
reps (each one a real diagnosis after the ack), @mentions, `/calsync help`, `/calsync diagnose`,
"Check again" and feedback clicks, and Slack retries (an event id already sent, `X-Slack-Retry-Num`).
The time to each HTTP response is the ack latency. Afterwards the background work is given up to
`--drain` seconds to finish, and the Slack emulator's recorded calls are counted.

`--emulators in-process`: the app starts the Google, Microsoft and Slack emulators itself, as
`calsync serve` does with no provider settings (they share its process and GIL). `separate`: they
run in their own process (`calsync sandbox serve`) and the app gets the settings it prints, as a
deployment with real Google/Microsoft/Slack would. Loopback only; every wait is bounded.

    .venv/bin/python benchmarks/ack_bench.py [--rate 200] [--duration 15] [--runs 3]
        [--emulators in-process separate] [--drain 90]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slackload import (
    AGENT,
    BOT_USER,
    HELP_CHANNEL,
    QUESTIONS,
    REPS,
    Child,
    child_env,
    cpu_seconds,
    load_demo,
    machine,
    ms,
    percentile,
    read_app,
    slack_call_counts,
    start_app,
    start_emulators,
    wait_for_drain,
)

from calsync.sandbox.slack_requests import (
    FORM,
    JSON,
    button_click_body,
    command_body,
    event_body,
    signed_headers,
)

# The mix, by weight: kind -> share of requests.
MIX = {
    "dm": 35,
    "mention": 15,
    "help": 10,
    "diagnose": 10,
    "check_again": 10,
    "feedback": 12,
    "retry": 8,
}
SLACK_LIMIT = 3.0


# -- the requests ----------------------------------------------------------------------------------


@dataclass
class Prepared:
    kind: str
    body: bytes
    headers: dict[str, str]


@dataclass
class World:
    """What the requests refer to, made in the shared database before the load starts."""

    dm_channels: dict[str, str]
    dm_messages: dict[str, str]  # rep -> ts of a bot message in their DM ("Check again" clicks on it)
    response_urls: Iterator[str]


def prepare_world(database_url: str, slack_url: str, needed_urls: int) -> World:
    from sqlalchemy import insert

    from calsync.db import make_engine, make_session_factory, transaction
    from calsync.sandbox.world import SandboxSlackResponseUrl
    from calsync.sandbox.world import World as SandboxWorld

    engine = make_engine(database_url)
    try:
        world = SandboxWorld(engine)
        now = datetime.now(UTC)
        channels = {rep: world.slack_open_dm(rep, now)[0] for rep in REPS}
        messages = {
            rep: world.slack_post_message(
                channel=channel, user=BOT_USER, text="Earlier answer", blocks=None, attachments=None, now=now
            ).ts
            for rep, channel in channels.items()
        }
        # One response URL per command or click, minted in one transaction (as Slack would mint them).
        tokens = [f"bench{index:06d}{os.urandom(6).hex()}" for index in range(needed_urls)]
        with transaction(make_session_factory(engine)) as session:
            session.execute(
                insert(SandboxSlackResponseUrl),
                [
                    {"token": token, "channel": "", "user_id": "", "message_ts": None, "uses": 0}
                    for token in tokens
                ],
            )
        urls = iter(f"{slack_url.rstrip('/')}/response/{token}" for token in tokens)
        return World(channels, messages, urls)
    finally:
        engine.dispose()


def fix_response_urls(database_url: str, owners: dict[str, tuple[str, str, str | None]]) -> None:
    """Give each minted response URL its channel, user and message, as Slack would."""
    from sqlalchemy import update

    from calsync.db import make_engine, make_session_factory, transaction
    from calsync.sandbox.world import SandboxSlackResponseUrl

    engine = make_engine(database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            session.execute(
                update(SandboxSlackResponseUrl),
                [
                    {"token": token, "channel": channel, "user_id": user, "message_ts": ts}
                    for token, (channel, user, ts) in owners.items()
                ],
            )
    finally:
        engine.dispose()


def build_requests(count: int, secret: str, world: World, seed: int) -> tuple[list[Prepared], dict[str, Any]]:
    rng = random.Random(seed)
    kinds = list(MIX)
    weights = [MIX[kind] for kind in kinds]
    ids = itertools.count(1)
    sent_events: list[tuple[bytes, str]] = []
    owners: dict[str, tuple[str, str, str | None]] = {}
    prepared: list[Prepared] = []
    stamp = int(time.time())

    def token_of(url: str) -> str:
        return url.rsplit("/", 1)[1]

    def event(payload: dict[str, Any]) -> Prepared:
        event_id = f"EvBench{next(ids):07d}"
        body = event_body(payload, event_id, stamp)
        sent_events.append((body, event_id))
        return Prepared(payload["type"], body, {})

    def form(body: bytes, kind: str) -> Prepared:
        return Prepared(kind, body, {})

    for _ in range(count):
        kind = rng.choices(kinds, weights)[0]
        if kind == "retry" and not sent_events:
            kind = "dm"
        rep = rng.choice(REPS)
        ts = f"{stamp}.{next(ids):06d}"
        if kind == "dm":
            item = event(
                {
                    "type": "message",
                    "channel_type": "im",
                    "user": rep,
                    "channel": world.dm_channels[rep],
                    "text": rng.choice(QUESTIONS),
                    "ts": ts,
                }
            )
        elif kind == "mention":
            item = event(
                {
                    "type": "app_mention",
                    "user": rep,
                    "channel": HELP_CHANNEL,
                    "text": f"<@{BOT_USER}> {rng.choice(QUESTIONS)}",
                    "ts": ts,
                }
            )
        elif kind == "retry":
            body, _event_id = rng.choice(sent_events[-200:])
            item = Prepared(
                "retry",
                body,
                {
                    "X-Slack-Retry-Num": str(rng.randint(1, 2)),
                    "X-Slack-Retry-Reason": "http_timeout",
                },
            )
        elif kind in ("help", "diagnose"):
            user = AGENT if kind == "diagnose" and rng.random() < 0.3 else rep
            text = "help" if kind == "help" else ("diagnose" if user != AGENT else f"diagnose <@{rep}>")
            url = next(world.response_urls)
            owners[token_of(url)] = (HELP_CHANNEL, user, None)
            item = form(
                command_body(
                    user=user,
                    channel=HELP_CHANNEL,
                    text=text,
                    response_url=url,
                    trigger_id=f"trig{next(ids)}",
                ),
                kind,
            )
        else:  # check_again or feedback: a click on the bot message in the rep's DM
            channel, message_ts = world.dm_channels[rep], world.dm_messages[rep]
            url = next(world.response_urls)
            owners[token_of(url)] = (channel, rep, message_ts)
            if kind == "check_again":
                action_id, value = "check_again", {"article": None, "question": rng.choice(QUESTIONS)}
            else:
                action_id = rng.choice(["feedback_helped", "feedback_not_helped"])
                value = {"diagnosis": "bench", "article": "not-showing"}
            body = button_click_body(
                user=rep,
                channel=channel,
                message_ts=message_ts,
                action_id=action_id,
                value=json.dumps(value),
                response_url=url,
                trigger_id=f"trig{next(ids)}",
            )
            item = form(body, kind)
        content_type = JSON if item.body.startswith(b"{") else FORM
        item.headers.update(signed_headers(item.body, secret, content_type, stamp))
        prepared.append(item)
    return prepared, owners


# -- the load --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str
    lag: float  # how late the generator sent it (seconds after its slot)
    latency: float | None  # seconds to the HTTP response; None: no response
    status: int | None = None
    error: str | None = None
    at: float = 0.0  # the request's slot, seconds after the first one


@dataclass
class RunResult:
    outcomes: list[Outcome]
    elapsed: float  # seconds from the first slot to the last send
    server_cpu: float  # app CPU seconds per second while the load and its acks lasted
    drained_in: float | None  # seconds after the last ack until the emulator calls stopped growing
    slack_calls: Counter[str] = field(default_factory=Counter)
    slack_failed: int = 0


async def send_all(
    url: str, requests: list[Prepared], rate: float, hard_stop: float
) -> tuple[list[Outcome], float]:
    """Send each request in its slot (`rate` per second) whatever the earlier ones are doing.

    aiohttp, not httpx, on the sending side: at a few hundred requests in flight httpx's connection
    pool spent more CPU than the app did, and the measured latency was the sender's own queueing.
    """
    import aiohttp

    outcomes: list[Outcome] = []
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=1000)
    timeout = aiohttp.ClientTimeout(total=hard_stop)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(item: Prepared, slot: float) -> None:
            started = time.perf_counter()
            try:
                async with session.post(url, data=item.body, headers=item.headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                outcomes.append(
                    Outcome(item.kind, started - slot, None, error=type(error).__name__, at=slot - first)
                )
                return
            latency = time.perf_counter() - started
            outcomes.append(Outcome(item.kind, started - slot, latency, status, at=slot - first))

        tasks: list[asyncio.Task[None]] = []
        first = time.perf_counter() + 0.2
        for index, item in enumerate(requests):
            slot = first + index / rate
            delay = slot - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(item, slot)))
        elapsed = time.perf_counter() - first
        _done, pending = await asyncio.wait(tasks, timeout=hard_stop)
        for task in pending:
            task.cancel()
        if pending:
            outcomes.extend(Outcome("unfinished", 0.0, None, error="hard stop") for _ in pending)
    return outcomes, elapsed


def one_run(args: argparse.Namespace, emulators: str, seed: int) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="ack-bench-") as directory:
        state = Path(directory)
        env = child_env(state)
        database_url = env["DATABASE_URL"]
        load_demo(env, state)
        children: list[Child] = []
        try:
            if emulators == "separate":
                env = child_env(state, start_emulators(env, state, children))
            server = start_app(env, state)
            children.append(server)
            app = read_app(server)
            count = int(args.rate * args.duration)
            needed = count  # at most one response URL per request
            world = prepare_world(database_url, app.slack_url, needed)
            requests, owners = build_requests(count, app.secret, world, seed)
            fix_response_urls(database_url, owners)
            cpu_before = cpu_seconds(app.pid)
            if args.py_spy:
                spy = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--pid",
                        str(app.pid),
                        "--duration",
                        str(int(args.duration)),
                        "--rate",
                        "250",
                        "--format",
                        "speedscope",
                        "-o",
                        args.py_spy,
                        "--idle",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            load_started = time.perf_counter()
            outcomes, elapsed = asyncio.run(
                send_all(f"{app.url}/slack/events", requests, args.rate, args.duration + 30)
            )
            # CPU seconds per wall second until the last ack (1.0 = one core busy).
            server_cpu = (cpu_seconds(app.pid) - cpu_before) / (time.perf_counter() - load_started)
            if args.py_spy:
                spy.wait(60)
            drained = wait_for_drain(database_url, args.drain)
            calls, failed = slack_call_counts(database_url)
            if args.keep_logs:
                for name in ("app.log", "app.out", "sandbox.log", "sandbox.out"):
                    if (state / name).exists():
                        (Path(args.keep_logs) / f"{emulators}-{seed}-{name}").write_bytes(
                            (state / name).read_bytes()
                        )
            return RunResult(outcomes, elapsed, server_cpu, drained, calls, failed)
        finally:
            for child in reversed(children):
                child.stop()


# -- report ----------------------------------------------------------------------------------------


@dataclass
class Summary:
    count: int
    p50: float
    p90: float
    p99: float
    max: float
    slow: int  # acks at or over Slack's 3 s, and requests never answered
    errors: int  # non-200 answers and transport errors
    rate: float
    lag_p99: float
    server_cpu: float
    drained: float | None
    answers: int
    failed_calls: int
    by_kind: dict[str, float]


def summarise(result: RunResult) -> Summary:
    outcomes = result.outcomes
    latencies = [o.latency for o in outcomes if o.latency is not None]
    by_kind: dict[str, list[float]] = {}
    for outcome in outcomes:
        if outcome.latency is not None:
            by_kind.setdefault(outcome.kind, []).append(outcome.latency)
    return Summary(
        count=len(outcomes),
        p50=percentile(latencies, 0.50),
        p90=percentile(latencies, 0.90),
        p99=percentile(latencies, 0.99),
        max=max(latencies, default=float("nan")),
        slow=sum(1 for o in outcomes if o.latency is None or o.latency >= SLACK_LIMIT),
        errors=sum(1 for o in outcomes if o.latency is None or o.status != 200),
        rate=(len(outcomes) - 1) / result.elapsed if result.elapsed > 0 else float("nan"),
        lag_p99=percentile([o.lag for o in outcomes], 0.99),
        server_cpu=result.server_cpu,
        drained=result.drained_in,
        answers=sum(result.slack_calls[m] for m in ("chat.postMessage", "chat.update", "response_url")),
        failed_calls=result.slack_failed,
        by_kind={kind: percentile(values, 0.99) for kind, values in sorted(by_kind.items())},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--drain", type=float, default=90.0, help="seconds to wait for background work")
    parser.add_argument(
        "--emulators", nargs="+", choices=["in-process", "separate"], default=["in-process", "separate"]
    )
    parser.add_argument("--py-spy", help="record the app with py-spy during each run into this file")
    parser.add_argument("--dump", help="write every request's slot, kind and latency (CSV) into this file")
    parser.add_argument("--keep-logs", help="copy the child processes' logs into this directory")
    args = parser.parse_args()
    if args.duration * args.rate > 20_000 or args.duration > 120:
        parser.error("keep runs bounded: at most 120 s and 20 000 requests")
    tables = []
    for emulators in args.emulators:
        summaries = []
        for run in range(args.runs):
            result = one_run(args, emulators, seed=run)
            if args.dump:
                with open(f"{args.dump}.{emulators}.{run}.csv", "w") as sink:
                    sink.write("at,kind,latency_ms,status,error\n")
                    for o in result.outcomes:
                        latency = "" if o.latency is None else f"{o.latency * 1000:.2f}"
                        sink.write(f"{o.at:.3f},{o.kind},{latency},{o.status},{o.error or ''}\n")
            summary = summarise(result)
            summaries.append(summary)
            print(
                f"[{emulators} run {run + 1}] n={summary.count} p50={ms(summary.p50)} p99={ms(summary.p99)} "
                f"max={ms(summary.max)} >=3s={summary.slow} errors={summary.errors} rate={summary.rate:.1f}/s "
                f"lag p99={ms(summary.lag_p99)} server CPU={summary.server_cpu:.0%} "
                f"answers={summary.answers} drained={summary.drained} p99 by kind="
                + ", ".join(f"{k} {ms(v)}" for k, v in summary.by_kind.items()),
                file=sys.stderr,
            )
        tables.append((emulators, summaries))

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/ack_bench.py', *sys.argv[1:]])}`")
    print(f"Machine: {machine()}")
    print(
        f"Date: {datetime.now(UTC):%Y-%m-%d}; {args.rate:.0f} requests/s for {args.duration:.0f} s per run, "
        f"{args.runs} runs per row; each figure is the median over the runs"
    )
    print()
    print(
        "| emulators | requests | p50 | p90 | p99 | max | ≥ 3 s | errors | send rate | sender lag p99 "
        "| app CPU | Slack answers recorded | drained after |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for emulators, summaries in tables:
        drained = [s.drained for s in summaries]
        drain_text = (
            f"{med([d for d in drained if d is not None]):.0f} s"
            if all(d is not None for d in drained)
            else "not within limit"
        )
        print(
            f"| {emulators} | {med([s.count for s in summaries]):.0f} | {ms(med([s.p50 for s in summaries]))} "
            f"| {ms(med([s.p90 for s in summaries]))} | {ms(med([s.p99 for s in summaries]))} "
            f"| {ms(med([s.max for s in summaries]))} | {med([s.slow for s in summaries]):.0f} "
            f"| {med([s.errors for s in summaries]):.0f} | {med([s.rate for s in summaries]):.1f}/s "
            f"| {ms(med([s.lag_p99 for s in summaries]))} | {med([s.server_cpu for s in summaries]):.0%} "
            f"| {med([s.answers for s in summaries]):.0f} | {drain_text} |"
        )
    print()
    kinds = sorted({kind for _e, summaries in tables for s in summaries for kind in s.by_kind})
    print("p99 by request kind (median over runs):")
    print()
    print("| emulators | " + " | ".join(kinds) + " |")
    print("| --- | " + " | ".join("---:" for _ in kinds) + " |")
    for emulators, summaries in tables:
        cells = [
            ms(med([s.by_kind[kind] for s in summaries if kind in s.by_kind]))
            if any(kind in s.by_kind for s in summaries)
            else "–"
            for kind in kinds
        ]
        print(f"| {emulators} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
