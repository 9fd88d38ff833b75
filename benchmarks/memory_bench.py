"""Resident memory of the serving process: at idle after start-up, and at its peak under load.

Goal (issue 9): the serving process stays within 300 MB resident. Each run: a fresh SQLite state
directory with the demo scenario, the app in a child process, its `/proc/<pid>/status` read (VmRSS:
resident now; VmHWM: the highest resident size so far). `separate`: `calsync serve --port 0` itself,
the emulators in their own `calsync sandbox serve` process (a deployment, where Google, Microsoft
and Slack are other machines). `in-process`: the app built by the same factories
(`slackload.serve_app`) with the emulators inside it, as `calsync serve` runs with no provider
settings. Idle is read `--idle` seconds after the app answers; then `--duration` seconds of
ack_bench's request mix at `--rate` per second (DMs and @mentions from the demo reps, each a real
diagnosis; commands, clicks, retries), then up to `--drain` seconds for the work after the acks.
Resident size is sampled every 0.1 s throughout. Loopback only; every wait is bounded.

    .venv/bin/python benchmarks/memory_bench.py [--runs 3] [--rate 40] [--duration 30]
        [--emulators separate in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ack_bench import build_requests, fix_response_urls, prepare_world, send_all
from slackload import (
    CALSYNC,
    START_TIMEOUT,
    App,
    Child,
    child_env,
    load_demo,
    machine,
    read_app,
    slack_call_counts,
    start_app,
    start_emulators,
    wait_for_drain,
)

GOAL_MB = 300.0


def status_mb(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile of a live process, in MB (MiB)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[name] = int(rest.split()[0]) / 1024
    return values


class Sampler:
    """Reads a process's resident size every `every` seconds in a thread; keeps the highest."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every = pid, every
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.peak = max(self.peak, status_mb(self.pid)["VmRSS"])
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def start_cli_app(env: dict[str, str], state: Path, settings: dict[str, str], children: list[Child]) -> App:
    """`calsync serve --port 0`, exactly as an operator runs it; its port from uvicorn's start-up line."""
    server = Child([*CALSYNC, "serve", "--host", "127.0.0.1", "--port", "0"], env, state, state / "app.log")
    children.append(server)
    found = server.wait_for_stderr(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", START_TIMEOUT, "start-up")
    return App(
        url=found.group(1),
        secret=settings["SLACK_SIGNING_SECRET"],
        slack_url=settings["SLACK_API_URL"].removesuffix("/").removesuffix("/api"),
        pid=server.process.pid,
    )


@dataclass
class Run:
    idle_rss: float  # MB resident at idle after start-up
    startup_hwm: float  # MB: the highest resident size while starting
    peak: float  # MB: VmHWM after the load and the drain (the highest ever)
    after_rss: float  # MB resident once the work after the load is done
    answers: int
    drained: float | None
    anon: dict[str, float] = field(default_factory=dict)


def one_run(args: argparse.Namespace, emulators: str, seed: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as directory:
        state = Path(directory)
        env = child_env(state)
        database_url = env["DATABASE_URL"]
        load_demo(env, state)
        children: list[Child] = []
        try:
            if emulators == "separate":
                settings = start_emulators(env, state, children)
                app = start_cli_app(child_env(state, settings), state, settings, children)
            else:
                server = start_app(env, state)
                children.append(server)
                app = read_app(server)
            time.sleep(args.idle)
            idle = status_mb(app.pid)
            count = int(args.rate * args.duration)
            world = prepare_world(database_url, app.slack_url, count)
            requests, owners = build_requests(count, app.secret, world, seed)
            fix_response_urls(database_url, owners)
            with Sampler(app.pid) as sampler:
                asyncio.run(send_all(f"{app.url}/slack/events", requests, args.rate, args.duration + 30))
                drained = wait_for_drain(database_url, args.drain)
            after = status_mb(app.pid)
            calls, _failed = slack_call_counts(database_url)
            if args.keep_logs:
                for log in sorted(state.glob("*.log")):
                    (Path(args.keep_logs) / f"memory-{emulators}-{seed}-{log.name}").write_bytes(
                        log.read_bytes()
                    )
            return Run(
                idle_rss=idle["VmRSS"],
                startup_hwm=idle["VmHWM"],
                peak=max(after["VmHWM"], sampler.peak),
                after_rss=after["VmRSS"],
                answers=sum(calls[m] for m in ("chat.update", "response_url")),
                drained=drained,
                anon={"idle": idle["RssAnon"], "after": after["RssAnon"]},
            )
        finally:
            for child in reversed(children):
                child.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (ack_bench's mix)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds after start-up before reading idle")
    parser.add_argument(
        "--drain", type=float, default=30.0, help="seconds to wait for the work after the acks"
    )
    parser.add_argument(
        "--emulators", nargs="+", choices=["separate", "in-process"], default=["separate", "in-process"]
    )
    parser.add_argument("--keep-logs", help="copy the child processes' logs into this directory")
    args = parser.parse_args()
    if args.duration > 120 or args.rate * args.duration > 20_000 or args.drain > 300:
        parser.error("keep runs bounded: at most 120 s, 20 000 requests and 300 s of drain")
    rows: list[tuple[str, list[Run]]] = []
    for emulators in args.emulators:
        runs = []
        for run in range(args.runs):
            result = one_run(args, emulators, seed=run)
            runs.append(result)
            print(
                f"[{emulators} run {run + 1}] idle {result.idle_rss:.0f} MB (start-up peak "
                f"{result.startup_hwm:.0f} MB), peak {result.peak:.0f} MB, after {result.after_rss:.0f} MB, "
                f"anon {result.anon}, answers {result.answers}, drained {result.drained}",
                file=sys.stderr,
            )
        rows.append((emulators, runs))

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/memory_bench.py', *sys.argv[1:]])}`")
    print(f"Machine: {machine()}")
    print(
        f"Date: {datetime.now(UTC):%Y-%m-%d}; {args.rate:g} requests/s of ack_bench's mix for "
        f"{args.duration:g} s per run, {args.runs} runs per row; each figure is the median over the runs (MB = MiB)"
    )
    print()
    print(
        "| emulators | idle after start-up (VmRSS) | start-up peak (VmHWM) | peak under load (VmHWM) "
        "| after the load (VmRSS) | answers | goal |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    worst = 0.0
    for emulators, runs in rows:
        peak = med([r.peak for r in runs])
        worst = max(worst, max(r.peak for r in runs))
        print(
            f"| {emulators} | {med([r.idle_rss for r in runs]):.0f} MB | {med([r.startup_hwm for r in runs]):.0f} MB "
            f"| **{peak:.0f} MB** | {med([r.after_rss for r in runs]):.0f} MB "
            f"| {med([r.answers for r in runs]):.0f} | {'≤' if peak <= GOAL_MB else '>'} {GOAL_MB:.0f} MB |"
        )
    print()
    print(
        "Per run, peak: " + "; ".join(f"{e} " + " / ".join(f"{r.peak:.0f}" for r in runs) for e, runs in rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
