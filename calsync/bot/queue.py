"""Questions answered apart from the acks: recorded before the ack, answered by queue workers.

The serving process only records the question and defers its job — on PostgreSQL the event claim,
the question and the job in one statement (`_RECORD_AND_DEFER`), on SQLite the claim and the
question in one transaction (`store.questions.record`), then the in-memory job; the answer — the diagnosis, the rendering, the
Slack messages — is made by a worker (`calsync answer-worker`, or the one `calsync serve` runs for
you). The queue is procrastinate: on PostgreSQL its jobs live in the same database, workers in any
number of processes take them (LISTEN/NOTIFY, heartbeats), and a job whose worker stopped
heartbeating is handed to another (`retry_stalled`). On SQLite there is no such engine, so the jobs
live in procrastinate's in-memory connector and the worker runs inside `calsync serve`; what makes
an acked question survive a crash there is the recorded question, re-deferred when a worker starts
(`resume`) — the same code path, with the durable part in our table.

Exactly once: a question is taken by one job at a time (`store.questions.take`), a job retried after
its worker died takes it again and replaces the "Checking…" message the first attempt posted, and an
answered question is never taken again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy.orm import Session, sessionmaker

from calsync.store import questions
from calsync.store.claims import claim
from calsync.store.questions import Question

if TYPE_CHECKING:
    from calsync.bot.slackbot import SlackBot

log = logging.getLogger(__name__)

ANSWER_TASK = "calsync.answer"
ANSWER_QUEUE = "answers"
LEASE = timedelta(seconds=60)  # another job may take a question its holder has not answered by then
STALLED_AFTER_SECONDS = 10.0  # a worker silent this long is taken for dead; its jobs go to others
HEARTBEAT_SECONDS = 2.0
MAX_STATEMENTS = 4  # recording statements in flight at once; questions arriving meanwhile share the next
MAX_BATCH = 500  # questions one statement records at most

# The claims, the questions and their procrastinate jobs, for every question in a batch, in one
# statement (autocommit: all or nothing); which event ids it recorded (the others were retries).
# It calls procrastinate's versioned SQL function and row type directly, as its own `defer_jobs`
# query does; a procrastinate upgrade that retires the _v1 pair fails the PostgreSQL queue tests.
_RECORD_AND_DEFER = """
WITH asked AS (
    SELECT * FROM unnest(
        %(event_ids)s::text[], %(team_ids)s::text[], %(channels)s::text[], %(users)s::text[],
        %(texts)s::text[], %(thread_ts)s::text[]
    ) AS asked (event_id, team_id, channel, asker, text, thread_ts)
), claim AS (
    INSERT INTO processed_events (event_id, received_at)
    SELECT event_id, %(now)s AT TIME ZONE 'UTC' FROM asked
    ON CONFLICT DO NOTHING
    RETURNING event_id
), question AS (
    INSERT INTO queued_questions (event_id, team_id, channel, "user", text, thread_ts, enqueued_at, attempts)
    SELECT asked.event_id, team_id, channel, asker, text, thread_ts, %(now)s, 0 FROM asked JOIN claim USING (event_id)
    RETURNING event_id
), job AS (
    SELECT procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW(%(queue)s, %(task)s, 0, NULL, event_id, jsonb_build_object('event_id', event_id), NULL)
            ::procrastinate_job_to_defer_v1
        FROM question
    )) AS ids
)
SELECT ARRAY(SELECT event_id FROM question) AS recorded, (SELECT cardinality(ids) FROM job) AS deferred
"""

# A claim alone (a shed question, a command, a click): one statement, 1 when this delivery won it.
_CLAIM = """
WITH claim AS (
    INSERT INTO processed_events (event_id, received_at)
    VALUES (%(event_id)s, %(now)s AT TIME ZONE 'UTC')
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) AS claimed FROM claim
"""

# What `store.questions.backlog` counts, in one statement.
_BACKLOG = """
SELECT count(*) FILTER (WHERE team_id = %(team_id)s) AS workspace, count(*) AS total, min(enqueued_at) AS oldest
FROM queued_questions WHERE answered_at IS NULL
"""

Answer = Callable[[Question, Callable[[str | None], Awaitable[None]]], Awaitable[None]]


def task_app(conninfo: str | None) -> procrastinate.App:
    """procrastinate over the PostgreSQL database at `conninfo` (its own tables there), or, with None
    (SQLite), over its in-memory store."""
    if conninfo is not None:
        connector: procrastinate.BaseConnector = procrastinate.PsycopgConnector(
            conninfo=conninfo,
            min_size=0,  # opening waits for no connection (the database may be down)
            max_size=32,  # the serving process defers many at once; 8 was a queue of its own (BENCHMARKS.md)
            # A connection not had within this long is an error, not a longer wait: past Slack's 3 s the
            # ack is too late anyway, and with the database down a connection refused must fail fast.
            timeout=5.0,
        )
    else:
        from procrastinate.testing import InMemoryConnector

        connector = InMemoryConnector()
    app = procrastinate.App(connector=connector)
    app.task(name=ANSWER_TASK, queue=ANSWER_QUEUE, pass_context=True)(_answer_job)
    return app


def durable(app: procrastinate.App) -> bool:
    """Whether deferred jobs outlive the process (PostgreSQL), so other processes can work on them."""
    return isinstance(app.connector, procrastinate.PsycopgConnector)


async def _answer_job(context: procrastinate.JobContext, event_id: str) -> None:
    worker: AnswerWorker = context.additional_context["answers"]
    assert context.job.id is not None
    await worker.answer(event_id, f"job-{context.job.id}")


class AnswerQueue:
    """The serving side: record the question, defer its job. Both happen before the ack.

    The backlog limits count the questions waiting in the database, across every process; the
    counts are read at most every `fresh_for` seconds (and counted up locally in between), so the
    check costs the ack almost nothing and a burst overshoots a limit by what arrives in that window.
    """

    def __init__(
        self,
        app: procrastinate.App,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        *,
        per_workspace: int = 100,
        overall: int = 300,
        fresh_for: float = 0.25,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.clock = clock
        self.per_workspace = per_workspace
        self.overall = overall
        self.fresh_for = fresh_for
        self.shed_count = 0
        self._counts: dict[str, tuple[float, int, int]] = {}  # workspace -> (read at, its count, total)
        self._waiting: list[tuple[Question, asyncio.Future[bool]]] = []  # for the next statement
        self._statements: set[asyncio.Task[None]] = set()  # in flight
        self._refreshing: dict[str, asyncio.Task[None]] = {}  # backlog counts being read, per workspace

    async def enqueue(self, question: Question) -> bool:
        """False for a retry of an event already recorded (nothing is queued twice).

        On PostgreSQL the claim, the question and its job are one statement on the queue's own
        async pool (`_RECORD_AND_DEFER`): one round trip, no thread hop, and no acked question without
        its job. On SQLite (jobs in memory) the question is recorded, then its job deferred."""
        if durable(self.app):
            if not await self._record_and_defer(question):
                return False
        elif await asyncio.to_thread(questions.record, self.sessions, self.clock, question):
            await self.defer(question.event_id)
        else:
            return False
        read_at, workspace, total = self._counts.get(question.team_id, (0.0, 0, 0))
        self._counts[question.team_id] = (read_at, workspace + 1, total + 1)
        return True

    async def _record_and_defer(self, question: Question) -> bool:
        """Group commit: a question waits while `MAX_STATEMENTS` statements are in flight, and the next
        statement records every question waiting by then — under load one commit (one WAL flush, one
        round of procrastinate's NOTIFY) serves many acks, at low load each question has its own."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((question, future))
        if len(self._statements) < MAX_STATEMENTS:
            statement = asyncio.create_task(self._record_waiting())
            self._statements.add(statement)
            statement.add_done_callback(self._statements.discard)
        return await future

    async def _record_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            first: dict[str, Question] = {}
            for asked, _ in batch:
                first.setdefault(asked.event_id[:255], asked)
            try:
                recorded = await self._record_batch(list(first.values()))
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for asked, future in batch:
                won = first.get(asked.event_id[:255]) is asked and asked.event_id[:255] in recorded
                if not future.done():
                    future.set_result(won)  # a retry within the batch, or of one claimed before: False

    async def _record_batch(self, batch: list[Question]) -> set[str]:
        row = await self.app.connector.execute_query_one_async(
            _RECORD_AND_DEFER,
            event_ids=[asked.event_id[:255] for asked in batch],
            team_ids=[asked.team_id[:32] for asked in batch],
            channels=[asked.channel for asked in batch],
            users=[asked.user for asked in batch],
            texts=[asked.text.replace("\x00", "") for asked in batch],  # PostgreSQL text holds no NUL
            thread_ts=[asked.thread_ts for asked in batch],
            now=self.clock(),
            queue=ANSWER_QUEUE,
            task=ANSWER_TASK,
        )
        recorded = set(row["recorded"] or ())
        assert (row["deferred"] or 0) == len(recorded), "a recorded question without its job"
        return recorded

    async def defer(self, event_id: str) -> None:
        deferrer = self.app.configure_task(ANSWER_TASK, queueing_lock=event_id)
        with contextlib.suppress(AlreadyEnqueued):  # its job is waiting already
            await deferrer.defer_async(event_id=event_id)

    async def full(self, team_id: str) -> bool:
        """Whether this workspace, or all together, have as many questions waiting as they may.

        A stale count is read again by the question that finds it stale, one query at a time per
        workspace: the questions arriving while it is being read go by the counts held (counted up
        locally) — a burst must not send one count query per question, each waiting for a pool
        connection behind the others."""
        counts = self._counts.get(team_id)
        if counts is None or time.monotonic() - counts[0] > self.fresh_for:
            refresh = self._refreshing.get(team_id)
            if refresh is None:
                refresh = asyncio.ensure_future(self._refresh(team_id))
                self._refreshing[team_id] = refresh
                refresh.add_done_callback(lambda _: self._refreshing.pop(team_id, None))
                await refresh
            elif counts is None:
                await asyncio.shield(refresh)
        _, workspace, total = self._counts.get(team_id, (0.0, 0, 0))
        return workspace >= self.per_workspace or total >= self.overall

    async def _refresh(self, team_id: str) -> None:
        backlog = await self.backlog(team_id)
        if len(self._counts) > 10_000:
            self._counts.clear()
        self._counts[team_id] = (time.monotonic(), backlog.workspace, backlog.total)

    async def shed(self, event_id: str) -> bool:
        """Claim a question that will not be answered (the backlog is full): True when this delivery
        is the one to tell the rep, False for a retry of one already told or answered."""
        claimed = await self.claim(event_id)
        self.shed_count += claimed
        return claimed

    async def claim(self, key: str) -> bool:
        """True the first time `key` is claimed in `processed_events` (`store.claims.claim`), in any
        process sharing the database: on PostgreSQL one statement on the queue's async pool."""
        if not durable(self.app):
            return await asyncio.to_thread(claim, self.sessions, self.clock, key)
        row = await self.app.connector.execute_query_one_async(_CLAIM, event_id=key[:255], now=self.clock())
        return bool(row["claimed"])

    async def backlog(self, team_id: str) -> questions.Backlog:
        if not durable(self.app):
            return await asyncio.to_thread(questions.backlog, self.sessions, team_id)
        row = await self.app.connector.execute_query_one_async(_BACKLOG, team_id=team_id[:32])
        oldest = row["oldest"].astimezone(UTC) if row["oldest"] is not None else None
        return questions.Backlog(workspace=int(row["workspace"]), total=int(row["total"]), oldest=oldest)


@dataclass
class AnswerWorker:
    """The worker side: take the question (once), answer it, close it."""

    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    respond: Answer  # posts "Checking…" (reporting its ts), then the answer in its place
    lease: timedelta = LEASE
    answered: int = 0

    async def answer(self, event_id: str, job: str) -> None:
        question = await asyncio.to_thread(
            questions.take, self.sessions, self.clock, event_id, job, self.lease
        )
        if question is None:
            return  # answered already, or another job holds it

        async def placeholder_posted(ts: str | None) -> None:
            await asyncio.to_thread(questions.placeholder_posted, self.sessions, event_id, ts)

        await self.respond(question, placeholder_posted)
        await asyncio.to_thread(questions.answered, self.sessions, self.clock, event_id)
        self.answered += 1


def answering(
    bot: SlackBot, *, embedded_worker: bool, concurrency: int = 8
) -> Callable[[], AbstractAsyncContextManager[None]]:
    """What the serving process runs around its life: the queue open (the serving side defers into
    it) and, with `embedded_worker`, an answer worker in this process (always so on SQLite)."""

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        queue = bot.questions
        async with queue.app.open_async():
            stop = asyncio.Event()
            worker = None
            if embedded_worker:
                worker = asyncio.create_task(
                    run_answer_worker(queue, answer_worker(bot), stop, concurrency=concurrency, name="serve")
                )
            try:
                yield
            finally:
                stop.set()
                if worker is not None:
                    await worker

    return running


def answer_worker(bot: SlackBot) -> AnswerWorker:
    from calsync.bot.messages import answer

    return AnswerWorker(bot.sessions, bot.clock, respond=functools.partial(answer, bot))


async def resume(queue: AnswerQueue, lease: timedelta = LEASE) -> int:
    """Defer a job again for every recorded question no job holds (never taken though queued longer
    than `lease`, or its lease ran out): after a crash between recording and deferring, or an attempt
    that failed. A question whose job is still waiting is left alone. How many were deferred."""
    waiting = await asyncio.to_thread(questions.unanswered, queue.sessions, queue.clock, lease)
    for event_id in waiting:
        await queue.defer(event_id)
    return len(waiting)


async def retry_stalled(app: procrastinate.App, stalled_after: float = STALLED_AFTER_SECONDS) -> int:
    """Hand the jobs of workers that stopped heartbeating (killed, frozen) to the others."""
    stalled = list(await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after))
    for job in stalled:
        log.warning("answer job %s was left by a dead worker; retrying it", job.id)
        await app.job_manager.retry_job(job)
    return len(stalled)


async def run_answer_worker(
    queue: AnswerQueue,
    worker: AnswerWorker,
    stop: asyncio.Event,
    *,
    concurrency: int = 8,
    name: str | None = None,
    stalled_after: float = STALLED_AFTER_SECONDS,
    restart_after: float = 5.0,
) -> None:
    """Answer questions until `stop` is set; a worker that fails (the database went away) is started
    again `restart_after` seconds later. The app must be open (`queue.app.open_async()`)."""
    while not stop.is_set():
        try:
            await _work(queue, worker, stop, concurrency=concurrency, name=name, stalled_after=stalled_after)
        except Exception:
            log.exception("the answer worker stopped; starting it again in %.0f s", restart_after)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=restart_after)


async def _work(
    queue: AnswerQueue,
    worker: AnswerWorker,
    stop: asyncio.Event,
    *,
    concurrency: int,
    name: str | None,
    stalled_after: float,
) -> None:
    app = queue.app
    options: dict[str, Any] = {
        "queues": [ANSWER_QUEUE],
        "concurrency": concurrency,
        "name": name,
        "additional_context": {"answers": worker},
        "install_signal_handlers": False,
        "update_heartbeat_interval": HEARTBEAT_SECONDS,
        "stalled_worker_timeout": stalled_after,
        "fetch_job_polling_interval": 1.0 if durable(app) else 0.05,
        "listen_notify": durable(app),
        "delete_jobs": "successful",
        "shutdown_graceful_timeout": 10.0,
    }
    if not durable(app):
        # The in-memory queue died with the process that held it, and this is its only worker: what
        # it had taken is no one's now.
        await asyncio.to_thread(questions.release_all, queue.sessions)
    resumed = await resume(queue, timedelta(0) if not durable(app) else worker.lease)
    if resumed:
        log.info("answer worker: %d recorded questions deferred again", resumed)
    running = asyncio.create_task(app.run_worker_async(**options))
    try:
        while not stop.is_set() and not running.done():
            try:
                if durable(app):
                    await retry_stalled(app, stalled_after)
                await resume(queue, worker.lease)
            except Exception:
                log.exception("looking for stalled answer jobs failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=stalled_after / 2)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
