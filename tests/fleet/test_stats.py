"""Resolution stats per cause and per article, counted by the database (SQLite and PostgreSQL): answers,
👍/👎, reconnects started and completed within 24 hours after, and answers fixed within 24 hours."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.store.fleet import FleetStore, StatsRow
from calsync.syncbackend.models import AnswerRecord
from tests.conftest import FrozenClock
from tests.fleet.conftest import Builder


def answer(
    sessions: sessionmaker[Session],
    diagnosis: str,
    user_id: int,
    at: object,
    cause: str,
    article: str | None,
    *,
    fixed: bool = False,
) -> None:
    with transaction(sessions) as session:
        session.add(
            AnswerRecord(
                diagnosis_id=diagnosis,
                at=at,
                user_id=user_id,
                kind="ask",
                cause=cause,
                article=article,
                fixed_at=at + timedelta(hours=2) if fixed else None,  # type: ignore[operator]
            )
        )


def test_stats_per_cause_and_per_article(
    build: Builder, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    now = clock()
    carla = build.rep("carla@northwind.example")
    dan = build.rep("dan@tallgrass.example")
    eve = build.rep("eve@tallgrass.example")
    # Carla: revoked, reconnected an hour later (started and completed), a later check found her fixed.
    answer(sessions, "11", carla, now - timedelta(hours=5), "connection.revoked", "not-connected", fixed=True)
    build.audit(carla, "reconnect_started", now - timedelta(hours=4))
    build.audit(carla, "reconnect_completed", now - timedelta(hours=4) + timedelta(minutes=2))
    build.feedback("11", True, now - timedelta(hours=5))
    # Dan: consent removed, started a reconnect 30 hours later (too late to count), 👎.
    answer(sessions, "12", dan, now - timedelta(hours=40), "connection.consent_removed", "not-connected")
    build.audit(dan, "reconnect_started", now - timedelta(hours=10))
    build.feedback("12", False, now - timedelta(hours=39))
    # Eve: revoked and duplicates in one answer; a reconnect started before the answer does not count.
    build.audit(eve, "reconnect_started", now - timedelta(hours=3))
    answer(sessions, "13", eve, now - timedelta(hours=2), "connection.revoked", "not-connected")
    answer(sessions, "13", eve, now - timedelta(hours=2), "duplicates.found", "duplicates")
    build.feedback("13", False, now - timedelta(hours=1))
    # Healthy answers count too (cause "none", the matched article).
    answer(sessions, "14", carla, now - timedelta(hours=1), "none", "not-showing")
    # Older than the window: left out.
    answer(sessions, "15", dan, now - timedelta(days=40), "connection.revoked", "not-connected")

    store = FleetStore(sessions, clock)
    assert store.stats() == [
        StatsRow("connection.revoked", "not-connected", 2, 1, 1, 1, 1, 1),
        StatsRow("connection.consent_removed", "not-connected", 1, 0, 1, 0, 0, 0),
        StatsRow("duplicates.found", "duplicates", 1, 0, 1, 0, 0, 0),
        StatsRow("none", "not-showing", 1, 0, 0, 0, 0, 0),
    ]
    assert store.stats(by="article") == [
        StatsRow(None, "not-connected", 3, 1, 2, 1, 1, 1),
        StatsRow(None, "duplicates", 1, 0, 1, 0, 0, 0),
        StatsRow(None, "not-showing", 1, 0, 0, 0, 0, 0),
    ]
    assert store.stats(days=60)[0] == StatsRow("connection.revoked", "not-connected", 3, 1, 1, 1, 1, 1)


def test_no_answers_no_rows(build: Builder, sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    assert FleetStore(sessions, clock).stats() == []
