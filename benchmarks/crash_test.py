"""Crash test: kill -9 the serving process and an answer worker during a burst; every acked question
is answered once, none twice, no "Checking…" left behind.

A burst of `--questions` DMs from the demo reps, each in a DM thread of its own (soak.py's
questions), sent over `--burst` seconds to the serving process. Every delivery that is not acked 200
is sent again a second later with `X-Slack-Retry-Num`, as Slack retries it, until it is acked. The
providers answer slowly (a latency fault of `--latency` s on every Google and Microsoft request), so
answers are in flight when, `--kill-at` seconds into the burst, SIGKILL hits the serving process
and (PostgreSQL) one of the two answer workers. Both are started again at once, on the same database.

PostgreSQL (default): `calsync serve`'s app (`slackload.serve_app`) with `CALSYNC_SERVE_ANSWERS=false`
and two `calsync answer-worker` processes; the emulators in `calsync sandbox serve`. `--database
sqlite`: the serving process answers itself (its queue lives in memory), so the kill takes the
queue with it and the restarted process re-defers what it had recorded.

Counted from the Slack emulator's record once everything has settled: per question thread, the
bot's final answers and any placeholder left. Exit status 1 when an acked question is lost or
answered twice.

    .venv/bin/python benchmarks/crash_test.py [--questions 150] [--database postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from slackload import CALSYNC, App, Child, child_env, load_demo, read_app, start_app, start_emulators
from soak import DEFAULT_POSTGRES, make_questions, settle, soak_database, thread_calls, threads

from calsync.sandbox.slack_requests import JSON, signed_headers


@dataclass
class Outcome:
    questions: int
    acked: int
    deliveries: int
    answered: int
    doubles: int
    lost: int
    stuck: int
    posts: int
    updates: int
    settled: bool
    killed: list[str]

    @property
    def ok(self) -> bool:
        return self.settled and self.lost == 0 and self.doubles == 0 and self.stuck == 0


class Serving:
    """The serving process, restartable; deliveries go to whichever one is up."""

    def __init__(self, env: dict[str, str], state: Path) -> None:
        self.env, self.state = env, state
        self.started = 0
        self.child = self._start()

    def _start(self) -> Child:
        self.started += 1
        child = start_app(self.env, self.state, f"app{self.started}")
        self.app: App = read_app(child)
        return child

    def kill_and_restart(self) -> None:
        os.kill(self.app.pid, signal.SIGKILL)
        self.child.process.wait(10)
        self.child = self._start()


def start_worker(env: dict[str, str], state: Path, name: str) -> Child:
    worker = Child([*CALSYNC, "answer-worker"], env, state, state / f"{name}.log")
    worker.wait_for_stderr("answer worker .* started", 120, f"{name} start-up")
    return worker


async def deliver_until_acked(
    serving: Serving, bodies: list[bytes], burst: float, hard_stop: float
) -> tuple[int, int]:
    """Each body first at its moment in the burst, then every second until a 200: (acked, deliveries)."""
    import aiohttp

    acked = deliveries = 0
    deadline = time.monotonic() + hard_stop
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def one(index: int, body: bytes) -> None:
            nonlocal acked, deliveries
            await asyncio.sleep(index * burst / len(bodies))
            retry = 0
            while time.monotonic() < deadline:
                app = serving.app
                headers = signed_headers(body, app.secret, JSON)
                if retry:
                    headers["X-Slack-Retry-Num"] = str(retry)
                    headers["X-Slack-Retry-Reason"] = "http_error"
                deliveries += 1
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.post(
                        f"{app.url}/slack/events", data=body, headers=headers
                    ) as response:
                        await response.read()
                        if response.status == 200:
                            acked += 1
                            return
                retry += 1
                await asyncio.sleep(1.0)

        await asyncio.gather(*(one(index, body) for index, body in enumerate(bodies)))
    return acked, deliveries


def run(args: argparse.Namespace, database_url: str, state: Path) -> Outcome:
    env = child_env(state, database_url=database_url)
    load_demo(env, state)
    children: list[Child] = []
    workers: list[Child] = []
    serving: Serving | None = None
    try:
        settings = start_emulators(env, state, children)
        postgres = args.database == "postgresql"
        app_env = child_env(
            state,
            {**settings, "CALSYNC_SERVE_ANSWERS": "false" if postgres else "true"},
            database_url=database_url,
        )
        serving = Serving(app_env, state)
        if postgres:
            workers = [start_worker(app_env, state, f"worker{n}") for n in range(2)]
        questions = make_questions(database_url, args.questions, seed=17)
        from calsync.db import make_engine
        from calsync.sandbox.world import World

        engine = make_engine(database_url)
        world = World(engine)
        for provider in ("google", "microsoft"):
            world.add_fault(provider, "latency", params={"seconds": args.latency})
        engine.dispose()
        killed: list[str] = []

        async def burst_and_kill() -> tuple[int, int]:
            assert serving is not None
            sending = asyncio.create_task(
                deliver_until_acked(
                    serving, [q.body for q in questions], args.burst, hard_stop=args.burst + 120
                )
            )
            await asyncio.sleep(args.kill_at)
            if postgres:
                os.kill(workers[0].process.pid, signal.SIGKILL)
                killed.append("answer worker 0")
            await asyncio.to_thread(serving.kill_and_restart)
            killed.append("serving process")
            if postgres:
                workers[0] = await asyncio.to_thread(start_worker, app_env, state, "worker0-again")
            return await sending

        acked, deliveries = asyncio.run(burst_and_kill())
        settled = settle(database_url, questions, args.settle, quiet=5.0)
        for child in [serving.child, *workers]:  # nothing can arrive after this
            child.stop()
        said = threads(database_url, questions)
        posts, updates = thread_calls(database_url, said)
    finally:
        for child in [*workers, *([serving.child] if serving else []), *reversed(children)]:
            child.stop()
    return Outcome(
        questions=len(questions),
        acked=acked,
        deliveries=deliveries,
        answered=sum(1 for thread in said.values() if thread.final),
        doubles=sum(max(0, len(thread.final) - 1) for thread in said.values()),
        lost=sum(1 for thread in said.values() if not thread.final),
        stuck=sum(thread.placeholders for thread in said.values()),
        posts=posts,
        updates=updates,
        settled=settled,
        killed=killed,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=150)
    parser.add_argument("--burst", type=float, default=3.0, help="seconds over which the questions are sent")
    parser.add_argument("--kill-at", type=float, default=1.5, help="seconds into the burst")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds each provider request takes")
    parser.add_argument("--settle", type=float, default=180.0)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        state = Path(tmp)
        if args.database == "postgresql":
            with soak_database(args.postgres_url) as database_url:
                outcome = run(args, database_url, state)
        else:
            outcome = run(args, f"sqlite:///{state}/crash.db", state)
    print(
        f"{args.database}: {outcome.questions} questions, {outcome.acked} acked in {outcome.deliveries} deliveries; "
        f"killed: {', '.join(outcome.killed)}; answered {outcome.answered}, lost {outcome.lost}, "
        f"doubled {outcome.doubles}, placeholders left {outcome.stuck}; "
        f"posts {outcome.posts}, updates {outcome.updates}; settled {outcome.settled}"
    )
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
