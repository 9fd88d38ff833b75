"""Acked questions until they are answered (`queued_questions`), beside the event claim.

`record` claims the event id and stores the question in one transaction before Slack gets its ack:
a Slack retry of the same event finds the claim; a crash after the ack finds the question. A queue
job answers it: `take` hands it to one job at a time (the same job again after its worker died, any
other job only once the lease has run out), `answered` closes it for good.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.syncbackend.models import ProcessedEvent, QueuedQuestion

Clock = Callable[[], datetime]
MAX_ATTEMPTS = 5  # a question whose answering failed this often is given up (and logged), not retried forever


@dataclass(frozen=True)
class Question:
    """What a worker needs to answer a DM or an @mention (no Bolt context survives the queue)."""

    event_id: str
    team_id: str
    channel: str
    user: str
    text: str
    thread_ts: str | None = None
    placeholder_ts: str | None = None
    attempts: int = 0  # this one included, once taken


@dataclass(frozen=True)
class Backlog:
    """Questions acked and not yet answered: in one workspace, in all, and the oldest one's time."""

    workspace: int
    total: int
    oldest: datetime | None


def record(sessions: sessionmaker[Session], clock: Clock, question: Question) -> bool:
    """Claim the event and keep the question; False when the event was claimed before (a retry)."""
    now = clock()
    try:
        with transaction(sessions) as session:
            session.add(ProcessedEvent(event_id=question.event_id[:255], received_at=now))
            session.flush()
            session.add(
                QueuedQuestion(
                    event_id=question.event_id[:255],
                    team_id=question.team_id[:32],
                    channel=question.channel,
                    user=question.user,
                    text=question.text,
                    thread_ts=question.thread_ts,
                    enqueued_at=now,
                    attempts=0,
                )
            )
    except IntegrityError:
        return False
    return True


def take(
    sessions: sessionmaker[Session], clock: Clock, event_id: str, job: str, lease: timedelta
) -> Question | None:
    """The question for `job` to answer, or None: answered already, or another job holds it."""
    now = clock()
    with transaction(sessions) as session:
        result = session.execute(
            update(QueuedQuestion)
            .where(
                QueuedQuestion.event_id == event_id,
                QueuedQuestion.answered_at.is_(None),
                QueuedQuestion.attempts < MAX_ATTEMPTS,
                or_(
                    QueuedQuestion.taken_by.is_(None),
                    QueuedQuestion.taken_by == job,
                    QueuedQuestion.taken_at < now - lease,
                ),
            )
            .values(taken_by=job, taken_at=now, attempts=QueuedQuestion.attempts + 1)
        )
        if getattr(result, "rowcount", 0) != 1:
            return None
        row = session.get(QueuedQuestion, event_id)
        assert row is not None
        return Question(
            event_id=row.event_id,
            team_id=row.team_id,
            channel=row.channel,
            user=row.user,
            text=row.text,
            thread_ts=row.thread_ts,
            placeholder_ts=row.placeholder_ts,
            attempts=row.attempts,
        )


def placeholder_posted(sessions: sessionmaker[Session], event_id: str, ts: str | None) -> None:
    """Remember the "Checking…" message, so whoever answers after a crash replaces it."""
    with transaction(sessions) as session:
        session.execute(
            update(QueuedQuestion).where(QueuedQuestion.event_id == event_id).values(placeholder_ts=ts)
        )


def placeholders_in_use(sessions: sessionmaker[Session], channel: str) -> set[str]:
    """The "Checking…" messages of the questions still waiting in a channel."""
    with sessions() as session:
        return set(
            session.scalars(
                select(QueuedQuestion.placeholder_ts).where(
                    QueuedQuestion.channel == channel,
                    QueuedQuestion.answered_at.is_(None),
                    QueuedQuestion.placeholder_ts.is_not(None),
                )
            )
        )


def answered(sessions: sessionmaker[Session], clock: Clock, event_id: str) -> None:
    with transaction(sessions) as session:
        session.execute(
            update(QueuedQuestion)
            .where(QueuedQuestion.event_id == event_id, QueuedQuestion.answered_at.is_(None))
            .values(answered_at=clock())
        )


def unanswered(
    sessions: sessionmaker[Session], clock: Clock, lease: timedelta, limit: int = 10_000
) -> list[str]:
    """Event ids waiting for an answer that no job holds — never taken though queued longer than
    `lease` (its job was lost), or taken by a job whose lease ran out — oldest first. With a lease of
    0: every unanswered one."""
    now = clock()
    with sessions() as session:
        return list(
            session.scalars(
                select(QueuedQuestion.event_id)
                .where(
                    QueuedQuestion.answered_at.is_(None),
                    QueuedQuestion.attempts < MAX_ATTEMPTS,
                    or_(
                        and_(QueuedQuestion.taken_by.is_(None), QueuedQuestion.enqueued_at <= now - lease),
                        QueuedQuestion.taken_at < now - lease,
                    ),
                )
                .order_by(QueuedQuestion.enqueued_at)
                .limit(limit)
            )
        )


def release_all(sessions: sessionmaker[Session]) -> int:
    """Free every unanswered question from the job holding it: for a queue that lived in memory and
    died with its process (SQLite), whose jobs can no longer answer anything. How many were held."""
    with transaction(sessions) as session:
        result = session.execute(
            update(QueuedQuestion)
            .where(QueuedQuestion.answered_at.is_(None), QueuedQuestion.taken_by.is_not(None))
            .values(taken_by=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def backlog(sessions: sessionmaker[Session], team_id: str) -> Backlog:
    with sessions() as session:
        waiting = QueuedQuestion.answered_at.is_(None)
        total, oldest = session.execute(
            select(func.count(), func.min(QueuedQuestion.enqueued_at)).where(waiting)
        ).one()
        workspace = session.scalar(
            select(func.count()).where(waiting, QueuedQuestion.team_id == team_id[:32])
        )
        return Backlog(workspace=int(workspace or 0), total=int(total or 0), oldest=oldest)


@dataclass(frozen=True)
class QueueFigures:
    """The question queue as `/metrics` shows it, across every process sharing the database."""

    waiting_by_workspace: dict[str, int]
    oldest_wait_seconds: float
    answered_last_minute: int
    given_up: int


def figures(sessions: sessionmaker[Session], clock: Clock) -> QueueFigures:
    now = clock()
    waiting = QueuedQuestion.answered_at.is_(None)
    with sessions() as session:
        by_workspace = {
            str(team): int(count)
            for team, count in session.execute(
                select(QueuedQuestion.team_id, func.count())
                .where(waiting, QueuedQuestion.attempts < MAX_ATTEMPTS)
                .group_by(QueuedQuestion.team_id)
            )
        }
        oldest = session.scalar(
            select(func.min(QueuedQuestion.enqueued_at)).where(
                waiting, QueuedQuestion.attempts < MAX_ATTEMPTS
            )
        )
        answered = session.scalar(
            select(func.count()).where(QueuedQuestion.answered_at >= now - timedelta(minutes=1))
        )
        given_up = session.scalar(
            select(func.count()).where(waiting, QueuedQuestion.attempts >= MAX_ATTEMPTS)
        )
    return QueueFigures(
        waiting_by_workspace=by_workspace,
        oldest_wait_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        answered_last_minute=int(answered or 0),
        given_up=int(given_up or 0),
    )
