"""The backlog of after-the-ack work, as a unit: what is admitted and what is shed, per workspace and
overall; shed work never runs; the figures and the `/metrics` text they make. `Work` is driven with
coroutines the test opens and closes itself (no sleeps, no timing); `once` claims in the database
(SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calsync.bot.backlog import Backlog, Kind, Shed, Ticket
from calsync.bot.metrics import BacklogCollector
from calsync.bot.work import Work
from calsync.db import make_session_factory
from calsync.store.claims import interaction_key
from calsync.syncbackend import migrate
from calsync.syncbackend.models import ProcessedEvent
from tests.conftest import FrozenClock

FIXED = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def outcome(admitted: Ticket | Shed) -> str:
    return admitted.limit if isinstance(admitted, Shed) else "admitted"


@pytest.mark.parametrize(
    ("per_workspace", "overall", "arrivals", "expected"),
    [
        (2, 5, ["T1", "T1", "T2"], ["admitted", "admitted", "admitted"]),
        (2, 5, ["T1", "T1", "T1", "T2"], ["admitted", "admitted", "workspace", "admitted"]),
        (2, 3, ["T1", "T2", "T2", "T3", "T1"], ["admitted", "admitted", "admitted", "overall", "overall"]),
        (1, 1, ["T1", "T1", "T2"], ["admitted", "workspace", "overall"]),
        (5, 2, ["T1", "T1", "T1"], ["admitted", "admitted", "overall"]),
    ],
    ids=["within-limits", "workspace-full", "overall-full", "both-full", "overall-below-workspace"],
)
def test_the_backlog_admits_up_to_each_limit(
    per_workspace: int, overall: int, arrivals: list[str], expected: list[str], clock: FrozenClock
) -> None:
    backlog = Backlog(per_workspace=per_workspace, overall=overall, clock=clock)
    assert [outcome(backlog.admit(workspace, "question")) for workspace in arrivals] == expected
    figures = backlog.figures()
    shed = {(kind, limit): n for (kind, limit), n in figures.shed.items() if n}
    assert shed == {("question", limit): expected.count(limit) for limit in set(expected) - {"admitted"}}
    assert figures.waiting == expected.count("admitted") and figures.running == 0


@pytest.mark.parametrize(
    ("finish_as", "completed", "failed"),
    [("completed", 1, 0), ("failed", 0, 1), ("dropped", 0, 0)],
)
def test_finishing_frees_the_place_and_counts_once(
    finish_as: Any, completed: int, failed: int, clock: FrozenClock
) -> None:
    backlog = Backlog(per_workspace=1, overall=1, clock=clock)
    ticket = backlog.admit("T1", "command")
    assert isinstance(ticket, Ticket)
    assert isinstance(backlog.admit("T1", "command"), Shed)
    backlog.start(ticket)
    backlog.finish(ticket, finish_as)
    backlog.finish(ticket, finish_as)  # a second finish changes nothing
    figures = backlog.figures()
    assert (figures.completed["command"], figures.failed["command"]) == (completed, failed)
    assert figures.depth_by_workspace == {} and figures.waiting == figures.running == 0
    assert isinstance(backlog.admit("T1", "command"), Ticket)


def test_the_oldest_wait_is_the_oldest_piece_not_yet_started(clock: FrozenClock) -> None:
    backlog = Backlog(per_workspace=10, overall=10, clock=clock)
    first = backlog.admit("T1", "question")
    clock.advance(seconds=5)
    second = backlog.admit("T2", "click")
    clock.advance(seconds=10)
    assert isinstance(first, Ticket) and isinstance(second, Ticket)
    ages = [backlog.figures().oldest_wait_seconds]
    backlog.start(first)
    ages.append(backlog.figures().oldest_wait_seconds)
    backlog.finish(second, "dropped")  # given up while waiting
    ages.append(backlog.figures().oldest_wait_seconds)
    assert ages == [15.0, 10.0, 0.0]
    assert backlog.figures().depth_by_workspace == {"T1": 1}


def test_limits_below_one_are_refused(clock: FrozenClock) -> None:
    with pytest.raises(ValueError):
        Backlog(per_workspace=0, overall=5, clock=clock)


# -- Work, with coroutines the test opens -----------------------------------------------------------


@dataclass
class Burst:
    """Pieces of work that start, then wait until the test opens their gate."""

    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    shed: list[str] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    coroutines: dict[str, Coroutine[Any, Any, None]] = field(default_factory=dict)

    def piece(self, name: str) -> Coroutine[Any, Any, None]:
        self.gates[name] = asyncio.Event()

        async def run() -> None:
            self.started.append(name)
            await self.gates[name].wait()
            self.finished.append(name)

        self.coroutines[name] = run()
        return self.coroutines[name]

    async def told(self, name: str) -> None:
        self.shed.append(name)


async def settle() -> None:
    """Let every task run until it waits on something the test controls."""
    for _ in range(20):
        await asyncio.sleep(0)


def work_with(concurrency: int, per_workspace: int, overall: int, clock: FrozenClock) -> Work:
    backlog = Backlog(per_workspace=per_workspace, overall=overall, clock=clock)
    unused: Any = None  # `in_turn` claims nothing: no database here
    return Work(unused, clock, backlog, max_concurrent=concurrency)


@pytest.mark.parametrize(
    ("concurrency", "per_workspace", "overall", "arrivals", "running", "shed", "depth"),
    [
        (2, 3, 5, "a:T1 b:T1 c:T2", "a b", "", {"T1": 2, "T2": 1}),
        (1, 2, 10, "a:T1 b:T1 c:T1 d:T2", "a", "c", {"T1": 2, "T2": 1}),
        (1, 2, 3, "a:T1 b:T2 c:T3 d:T3 e:T1", "a", "d e", {"T1": 1, "T2": 1, "T3": 1}),
        (2, 2, 4, "a:T1 b:T1 c:T1 d:T1 e:T1 f:T2", "a b", "c d e", {"T1": 2, "T2": 1}),
    ],
    ids=["within-limits", "workspace-full", "overall-full", "a-flood-leaves-room-for-another-workspace"],
)
def test_shed_work_is_told_at_once_and_never_runs(
    concurrency: int,
    per_workspace: int,
    overall: int,
    arrivals: str,
    running: str,
    shed: str,
    depth: dict[str, int],
    clock: FrozenClock,
) -> None:
    pieces = [tuple(item.split(":")) for item in arrivals.split()]
    admitted = [name for name, _ in pieces if name not in shed.split()]

    async def scenario() -> None:
        work = work_with(concurrency, per_workspace, overall, clock)
        burst = Burst()
        tasks = [
            asyncio.create_task(
                work.in_turn(
                    burst.piece(name),
                    workspace=workspace,
                    kind="question",
                    shed=functools.partial(burst.told, name),
                )
            )
            for name, workspace in pieces
        ]
        await settle()
        figures = work.backlog.figures()
        assert burst.started == running.split()
        assert burst.shed == shed.split()
        assert dict(figures.depth_by_workspace) == depth
        assert (figures.running, figures.waiting) == (len(burst.started), len(admitted) - len(burst.started))
        for name in admitted:  # first come, first served: each opened gate lets the next one start
            burst.gates[name].set()
            await settle()
        await asyncio.gather(*tasks)
        assert burst.started == burst.finished == admitted
        for name in shed.split():
            assert inspect.getcoroutinestate(burst.coroutines[name]) == inspect.CORO_CLOSED
        figures = work.backlog.figures()
        assert figures.completed["question"] == len(admitted)
        assert dict(figures.depth_by_workspace) == {} and figures.waiting == figures.running == 0
        # The places are free again: the first workspace is admitted once more.
        again = burst.piece("again")
        burst.gates["again"].set()
        await work.in_turn(
            again, workspace=pieces[0][1], kind="question", shed=functools.partial(burst.told, "x")
        )
        assert burst.finished[-1] == "again"

    asyncio.run(scenario())


def test_work_that_fails_or_is_cancelled_frees_its_place(clock: FrozenClock) -> None:
    async def scenario() -> None:
        work = work_with(1, 5, 5, clock)
        burst = Burst()

        async def broken() -> None:
            raise RuntimeError("the diagnosis crashed")

        with pytest.raises(RuntimeError):
            await work.in_turn(
                broken(), workspace="T1", kind="click", shed=functools.partial(burst.told, "b")
            )
        blocked = asyncio.create_task(
            work.in_turn(
                burst.piece("a"), workspace="T1", kind="click", shed=functools.partial(burst.told, "a")
            )
        )
        waiting = asyncio.create_task(
            work.in_turn(
                burst.piece("w"), workspace="T1", kind="click", shed=functools.partial(burst.told, "w")
            )
        )
        await settle()
        waiting.cancel()
        blocked.cancel()
        await asyncio.gather(blocked, waiting, return_exceptions=True)
        figures = work.backlog.figures()
        assert (figures.failed["click"], figures.completed["click"]) == (1, 0)
        assert dict(figures.depth_by_workspace) == {} and figures.waiting == figures.running == 0
        assert burst.started == ["a"] and burst.shed == []

    asyncio.run(scenario())


# -- once: claimed in the database, on SQLite and PostgreSQL ----------------------------------------


@pytest.fixture
def sessions(database_url: str, engine: Engine) -> sessionmaker[Session]:
    migrate.upgrade(database_url)
    return make_session_factory(engine)


def click(trigger: str) -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": "U0DEMOCARLA"}, "trigger_id": trigger, "actions": []}


@pytest.mark.parametrize(
    ("deliveries", "ran", "told"),
    [
        ("x:T1 x:T1", "", "x"),
        ("y:T2 y:T2", "y", ""),
        ("x:T1 y:T2 x:T2 y:T1 z:T1", "y", "x z"),
    ],
    ids=["a-replay-of-a-shed-click-says-nothing-more", "a-replay-of-a-run-click-runs-nothing", "mixed"],
)
def test_whoever_claims_a_delivery_speaks_for_it(
    deliveries: str, ran: str, told: str, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    """T1 is full (one piece held open); T2 has room. A delivery is claimed once: its work or its
    shed reply, and a replay gets neither, whichever workspace it names."""

    async def scenario() -> None:
        work = Work(
            sessions, lambda: FIXED, Backlog(per_workspace=1, overall=5, clock=clock), max_concurrent=5
        )
        burst = Burst()
        holder = asyncio.create_task(
            work.in_turn(
                burst.piece("holder"),
                workspace="T1",
                kind="click",
                shed=functools.partial(burst.told, "holder"),
            )
        )
        await settle()
        for delivery in deliveries.split():
            trigger, workspace = delivery.split(":")
            piece = burst.piece(trigger)
            burst.gates[trigger].set()
            await work.once(
                click(trigger),
                piece,
                workspace=workspace,
                kind="click",
                shed=functools.partial(burst.told, trigger),
            )
        assert burst.started == ["holder", *ran.split()]
        assert burst.shed == told.split()
        assert dict(work.backlog.figures().depth_by_workspace) == {"T1": 1}  # replays gave their place back
        burst.gates["holder"].set()
        await holder

    asyncio.run(scenario())


async def claimed_in_the_database(sessions: sessionmaker[Session], event_id: str) -> None:
    def seen() -> bool:
        with sessions() as session:
            return session.get(ProcessedEvent, event_id) is not None

    for _ in range(10_000):
        if await asyncio.to_thread(seen):
            return
    raise AssertionError(f"{event_id} was never claimed")


@pytest.mark.parametrize(
    ("retries", "workspace_of_retry"),
    [(1, "T1"), (3, "T1"), (2, "T2")],
    ids=["one-retry-shed", "three-retries-shed", "retries-admitted-elsewhere"],
)
def test_a_replay_never_takes_a_waiting_command_from_its_first_delivery(
    retries: int, workspace_of_retry: str, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    """One at a time, 2 per workspace: T1's first piece runs, the command waits its turn; replays of
    it (shed when T1 is full, or admitted in T2) say nothing and run nothing. (Questions go through
    the answer queue: test_answer_queue.py.)"""
    body = {"command": "/calsync", "text": "diagnose", "trigger_id": "1.2.abc", "user_id": "U1"}

    async def scenario() -> None:
        work = Work(
            sessions, lambda: FIXED, Backlog(per_workspace=2, overall=9, clock=clock), max_concurrent=1
        )
        burst = Burst()
        holder = asyncio.create_task(
            work.in_turn(
                burst.piece("holder"), workspace="T1", kind="click", shed=functools.partial(burst.told, "h")
            )
        )
        await settle()
        first = asyncio.create_task(
            work.once(
                body,
                burst.piece("first"),
                workspace="T1",
                kind="command",
                shed=functools.partial(burst.told, "first"),
            )
        )
        await claimed_in_the_database(sessions, interaction_key(body))  # in, and waiting its turn
        for attempt in range(retries):
            name = f"retry{attempt}"
            await work.once(
                body,
                burst.piece(name),
                workspace=workspace_of_retry,
                kind="command",
                shed=functools.partial(burst.told, name),
            )
        assert burst.shed == [] and burst.started == ["holder"]
        burst.gates["holder"].set()
        burst.gates["first"].set()
        await asyncio.gather(holder, first)
        assert burst.started == ["holder", "first"] and burst.shed == []

    asyncio.run(scenario())


# -- the figures as Prometheus text -----------------------------------------------------------------


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_metrics_show_a_scripted_burst(clock: FrozenClock) -> None:
    """Concurrency 1, 2 per workspace, 3 overall: T1 sends three questions and a click, T2 one
    question, T3 one; then 30 s pass; then the first two finish."""

    async def scenario() -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
        work = work_with(1, 2, 3, clock)
        registry = CollectorRegistry()
        registry.register(BacklogCollector(work.backlog.figures))
        burst = Burst()
        arrivals: list[tuple[str, str, Kind]] = [("q1", "T1", "question"), ("q2", "T1", "question")]
        arrivals += [("q3", "T1", "question")]
        arrivals += [("c1", "T1", "click"), ("q4", "T2", "question"), ("q5", "T3", "question")]
        tasks = [
            asyncio.create_task(
                work.in_turn(
                    burst.piece(name), workspace=ws, kind=kind, shed=functools.partial(burst.told, name)
                )
            )
            for name, ws, kind in arrivals
        ]
        await settle()
        clock.advance(seconds=30)
        during = scrape(registry)
        for name in ("q1", "q2"):
            burst.gates[name].set()
            await settle()
        after = scrape(registry)
        burst.gates["q4"].set()
        await asyncio.gather(*tasks)
        return {"during": during, "after": after}

    seen = asyncio.run(scenario())
    expected = {
        "during": {
            ("calsync_backlog_depth", (("workspace", "T1"),)): 2,
            ("calsync_backlog_depth", (("workspace", "T2"),)): 1,
            ("calsync_backlog_waiting", ()): 2,
            ("calsync_backlog_running", ()): 1,
            ("calsync_backlog_oldest_wait_seconds", ()): 30.0,
            ("calsync_backlog_limit", (("scope", "workspace"),)): 2,
            ("calsync_backlog_limit", (("scope", "overall"),)): 3,
            ("calsync_work_completed_total", (("kind", "question"),)): 0,
            ("calsync_work_shed_total", (("kind", "question"), ("limit", "workspace"))): 1,
            ("calsync_work_shed_total", (("kind", "click"), ("limit", "workspace"))): 1,
            ("calsync_work_shed_total", (("kind", "question"), ("limit", "overall"))): 1,
            ("calsync_work_shed_total", (("kind", "command"), ("limit", "overall"))): 0,
        },
        "after": {
            ("calsync_backlog_depth", (("workspace", "T2"),)): 1,
            ("calsync_backlog_waiting", ()): 0,
            ("calsync_backlog_running", ()): 1,
            ("calsync_backlog_oldest_wait_seconds", ()): 0.0,
            ("calsync_work_completed_total", (("kind", "question"),)): 2,
            ("calsync_work_failed_total", (("kind", "question"),)): 0,
        },
    }
    for moment, figures in expected.items():
        assert {key: seen[moment].get(key) for key in figures} == figures, moment
    assert ("calsync_backlog_depth", (("workspace", "T1"),)) not in seen["after"]  # no work: no series
