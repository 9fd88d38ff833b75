"""The answer queue on a real database (SQLite, and PostgreSQL with procrastinate's own tables):
a question is recorded before `enqueue` returns (so before the ack), queued once whatever Slack
retries, answered once whatever the workers do, and a job whose worker died is answered by another
attempt that replaces the placeholder the first one posted.

The answering itself is a plain coroutine here (what the worker does with the question is tested
through Slack in test_slack_app.py); these tests are about who answers, and how often.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from procrastinate.exceptions import ConnectorException
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from calsync.bot.queue import AnswerQueue, AnswerWorker, durable, resume, run_answer_worker, task_app
from calsync.db import libpq_conninfo, make_session_factory
from calsync.store import questions
from calsync.store.claims import claim
from calsync.store.questions import Question
from calsync.syncbackend import migrate
from calsync.syncbackend.models import ProcessedEvent, QueuedQuestion

pytestmark = pytest.mark.postgres


def utcnow() -> datetime:
    return datetime.now(UTC)


def fixed_clock(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def question(n: int, team: str = "T1") -> Question:
    return Question(
        event_id=f"Ev{n:04d}", team_id=team, channel=f"D{n:04d}", user=f"U{n:04d}", text="where is my demo"
    )


class Replies:
    """What the answering coroutine did, per event: placeholders posted and answers given."""

    def __init__(self) -> None:
        self.placeholders: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.replaced: dict[str, str | None] = {}

    async def respond(
        self, asked: Question, placeholder_posted: Callable[[str | None], Awaitable[None]]
    ) -> None:
        placeholder = asked.placeholder_ts
        if placeholder is None:
            placeholder = f"ts-{asked.event_id}-{self.placeholders[asked.event_id]}"
            self.placeholders[asked.event_id] += 1
            await placeholder_posted(placeholder)
        self.answers[asked.event_id] += 1
        self.replaced[asked.event_id] = placeholder


@pytest.fixture
def sessions(database_url: str, engine: Engine) -> sessionmaker[Session]:
    migrate.upgrade(database_url)
    return make_session_factory(engine)


@pytest.fixture
async def queue(sessions: sessionmaker[Session], engine: Engine) -> AsyncIterator[AnswerQueue]:
    answer_queue = AnswerQueue(task_app(libpq_conninfo(engine)), sessions, utcnow)
    async with answer_queue.app.open_async():
        yield answer_queue


async def waiting_jobs(queue: AnswerQueue) -> int:
    return sum(
        1
        for job in await queue.app.job_manager.list_jobs_async(queue="answers")
        if job.status in ("todo", "doing")
    )


async def work_until_answered(
    queue: AnswerQueue, worker: AnswerWorker, events: int, timeout: float = 20.0
) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(run_answer_worker(queue, worker, stop, concurrency=4, stalled_after=2.0))
    try:
        async with asyncio.timeout(timeout):
            while await asyncio.to_thread(questions.backlog, queue.sessions, "T1") != questions.Backlog(
                0, 0, None
            ):
                await asyncio.sleep(0.05)
        assert worker.answered <= events
    finally:
        stop.set()
        await running


async def test_a_question_is_recorded_before_enqueue_returns_and_a_retry_queues_nothing(
    queue: AnswerQueue, sessions: sessionmaker[Session]
) -> None:
    assert await queue.enqueue(question(1)) is True
    with sessions() as session:  # committed: another connection sees it at once
        row = session.get(QueuedQuestion, "Ev0001")
        assert row is not None and row.answered_at is None and row.channel == "D0001"
    for _ in range(3):  # Slack's retries of the same event
        assert await queue.enqueue(question(1)) is False
    assert await waiting_jobs(queue) == 1
    assert (await queue.backlog("T1")).workspace == 1
    assert (await queue.backlog("T2")) == questions.Backlog(
        workspace=0, total=1, oldest=(await queue.backlog("T1")).oldest
    )


async def test_every_question_is_answered_once_by_two_workers(
    queue: AnswerQueue, sessions: sessionmaker[Session]
) -> None:
    for n in range(30):
        await queue.enqueue(question(n))
    replies = Replies()
    first = AnswerWorker(sessions, utcnow, replies.respond)
    second = AnswerWorker(sessions, utcnow, replies.respond)
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(run_answer_worker(queue, worker, stop, concurrency=3, name=name))
        for worker, name in ((first, "one"), (second, "two"))
    ]
    try:
        async with asyncio.timeout(30):
            while (await queue.backlog("T1")).total:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert set(replies.answers) == {f"Ev{n:04d}" for n in range(30)}
    assert set(replies.answers.values()) == {1}
    assert set(replies.placeholders.values()) == {1}
    assert first.answered + second.answered == 30


@pytest.mark.parametrize(
    ("holder", "taken_ago", "job", "taken"),
    [
        (None, None, "job-2", True),  # never taken: any job
        ("job-1", timedelta(seconds=5), "job-1", True),  # the same job, retried after its worker died
        ("job-1", timedelta(seconds=5), "job-2", False),  # another job (a re-deferral) while the lease holds
        ("job-1", timedelta(minutes=5), "job-2", True),  # the lease ran out
    ],
)
async def test_a_question_is_taken_by_one_job_at_a_time(
    queue: AnswerQueue,
    sessions: sessionmaker[Session],
    holder: str | None,
    taken_ago: timedelta | None,
    job: str,
    taken: bool,
) -> None:
    await queue.enqueue(question(1))
    now = utcnow()
    if holder is not None and taken_ago is not None:
        assert questions.take(sessions, lambda: now - taken_ago, "Ev0001", holder, timedelta(seconds=60))
    got = questions.take(sessions, lambda: now, "Ev0001", job, timedelta(seconds=60))
    assert (got is not None) is taken


async def test_an_answered_question_is_never_taken_again(
    queue: AnswerQueue, sessions: sessionmaker[Session]
) -> None:
    await queue.enqueue(question(1))
    assert questions.take(sessions, utcnow, "Ev0001", "job-1", timedelta(seconds=60)) is not None
    questions.answered(sessions, utcnow, "Ev0001")
    assert questions.take(sessions, utcnow, "Ev0001", "job-1", timedelta(0)) is None
    assert questions.unanswered(sessions, utcnow, timedelta(0)) == []


async def test_an_attempt_that_died_after_its_placeholder_is_finished_in_place(
    queue: AnswerQueue, sessions: sessionmaker[Session]
) -> None:
    """The first attempt posts "Checking…" and dies before answering; the next attempt of that job
    answers by replacing that very message — no second placeholder, one answer."""
    await queue.enqueue(question(1))
    replies = Replies()
    dying = AnswerWorker(sessions, utcnow, replies.respond)

    async def post_then_die(
        asked: Question, placeholder_posted: Callable[[str | None], Awaitable[None]]
    ) -> None:
        replies.placeholders[asked.event_id] += 1
        await placeholder_posted("ts-first")
        raise RuntimeError("the worker died here")

    dying.respond = post_then_die
    with pytest.raises(RuntimeError):
        await dying.answer("Ev0001", "job-7")
    worker = AnswerWorker(sessions, utcnow, replies.respond)
    await worker.answer("Ev0001", "job-7")  # procrastinate retries a stalled job under its own id
    assert replies.placeholders["Ev0001"] == 1
    assert replies.answers["Ev0001"] == 1
    assert replies.replaced["Ev0001"] == "ts-first"


async def test_questions_recorded_but_not_queued_are_queued_again_when_a_worker_starts(
    queue: AnswerQueue, sessions: sessionmaker[Session], engine: Engine
) -> None:
    """A crash between recording and deferring, or an in-memory queue lost with its process: the
    record is what counts, and a worker starting defers every question no job holds."""
    for n in range(5):
        assert questions.record(sessions, utcnow, question(n))  # recorded, never deferred
    assert await waiting_jobs(queue) == 0
    assert await resume(queue) == 0  # just recorded: their jobs may be on the way
    assert await resume(queue, timedelta(0)) == 5
    assert await resume(queue, timedelta(0)) == 5  # deferring again while they wait queues nothing twice
    assert await waiting_jobs(queue) == 5
    replies = Replies()
    await work_until_answered(queue, AnswerWorker(sessions, utcnow, replies.respond), 5)
    assert set(replies.answers.values()) == {1}


def test_the_queue_is_durable_exactly_on_postgresql(engine: Engine) -> None:
    app = task_app(libpq_conninfo(engine))
    assert durable(app) is (engine.url.get_backend_name() == "postgresql")


async def test_recorded_questions_are_ordered_oldest_first(
    queue: AnswerQueue, sessions: sessionmaker[Session]
) -> None:
    base = utcnow()
    for n, minutes in ((1, 3), (2, 1), (3, 2)):
        questions.record(sessions, fixed_clock(base - timedelta(minutes=minutes)), question(n))
    assert questions.unanswered(sessions, utcnow, timedelta(0)) == ["Ev0001", "Ev0003", "Ev0002"]
    with sessions() as session:
        assert session.scalars(select(QueuedQuestion.event_id).order_by(QueuedQuestion.event_id)).all() == [
            "Ev0001",
            "Ev0002",
            "Ev0003",
        ]


async def test_on_postgresql_the_claim_the_question_and_its_job_stand_or_fall_together(
    queue: AnswerQueue, sessions: sessionmaker[Session]
) -> None:
    if not durable(queue.app):
        pytest.skip("one statement on PostgreSQL; SQLite records, then defers in memory")
    # A job already waiting under this event's queueing lock makes the job insert fail: the claim
    # and the question written by the same statement must be gone with it.
    await queue.defer("Ev0007")
    with pytest.raises(ConnectorException):
        await queue.enqueue(question(7))
    with sessions() as session:
        assert session.get(QueuedQuestion, "Ev0007") is None
        assert session.get(ProcessedEvent, "Ev0007") is None
    assert await waiting_jobs(queue) == 1
    # After a shed (claimed, never queued) a redelivery records nothing and defers nothing.
    assert await queue.shed("Ev0008") is True
    assert await queue.enqueue(question(8)) is False
    with sessions() as session:
        assert session.get(QueuedQuestion, "Ev0008") is None
    assert await waiting_jobs(queue) == 1


async def test_the_recorded_times_are_the_clocks(sessions: sessionmaker[Session], engine: Engine) -> None:
    at = datetime(2026, 12, 4, 9, 30, 15, tzinfo=UTC)
    answer_queue = AnswerQueue(task_app(libpq_conninfo(engine)), sessions, fixed_clock(at))
    async with answer_queue.app.open_async():
        assert await answer_queue.enqueue(question(9)) is True
    with sessions() as session:
        row = session.get(QueuedQuestion, "Ev0009")
        claim = session.get(ProcessedEvent, "Ev0009")
        assert (
            row is not None and row.enqueued_at == at and row.attempts == 0 and row.text == "where is my demo"
        )
        assert claim is not None and claim.received_at.replace(tzinfo=UTC) == at


async def test_claims_and_backlog_counts_from_the_event_loop_agree_with_the_stores(
    queue: AnswerQueue, sessions: sessionmaker[Session]
) -> None:
    """On PostgreSQL `claim` and `backlog` are statements on the queue's async pool, elsewhere the
    store's functions in a thread: the same answers either way."""
    assert [await queue.claim("interaction:abc") for _ in range(3)] == [True, False, False]
    assert claim(sessions, utcnow, "interaction:abc") is False
    for n, team in [(11, "T1"), (12, "T1"), (13, "T2")]:
        await queue.enqueue(question(n, team))
    for team in ("T1", "T2", "T3"):
        assert await queue.backlog(team) == questions.backlog(sessions, team)
    assert (await queue.backlog("T1")).workspace == 2 and (await queue.backlog("T3")).total == 3


async def test_questions_arriving_together_are_each_recorded_once_with_one_job(
    queue: AnswerQueue, sessions: sessionmaker[Session]
) -> None:
    """On PostgreSQL questions arriving while statements are in flight share the next one (group
    commit); whatever the batching, every event is queued once — a retry in the same batch, or of an
    event recorded before, is not — and every recorded question has its job."""
    assert await queue.enqueue(question(100)) is True
    arrivals = [question(n) for n in range(100, 160)] + [question(n) for n in range(120, 130)]
    results = await asyncio.gather(*(queue.enqueue(asked) for asked in arrivals))
    won = Counter(asked.event_id for asked, queued in zip(arrivals, results, strict=True) if queued)
    assert won == Counter({f"Ev{n:04d}": 1 for n in range(101, 160)})
    with sessions() as session:
        assert len(session.scalars(select(QueuedQuestion.event_id)).all()) == 60
    assert await waiting_jobs(queue) == 60


class CountingQueue(AnswerQueue):
    """The queue, counting how often it reads the backlog from the database."""

    reads = 0

    async def backlog(self, team_id: str) -> questions.Backlog:
        self.reads += 1
        return await super().backlog(team_id)


async def test_a_burst_on_a_stale_count_reads_the_backlog_once(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    counting = CountingQueue(
        task_app(libpq_conninfo(engine)), sessions, utcnow, per_workspace=2, fresh_for=0.0
    )
    async with counting.app.open_async():
        assert await asyncio.gather(*(counting.full("T1") for _ in range(50))) == [False] * 50
        assert counting.reads == 1  # the first waited for it; the rest went by it
        await counting.enqueue(question(1))
        await counting.enqueue(question(2))
        assert await counting.full("T1") is True  # a later question reads again, and sees it full
        assert counting.reads == 2
