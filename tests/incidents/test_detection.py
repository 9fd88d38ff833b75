"""Detection and the support message's claim, on SQLite and PostgreSQL: which failures are one incident
(the thresholds, with the cases just below them), and that two workers, or a worker after a restart,
never post a second message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import make_session_factory, transaction
from calsync.syncbackend import migrate
from calsync.syncbackend.incidents import IncidentPolicy, IncidentStore, open_incidents
from calsync.syncbackend.models import CalendarConnection, SyncRun, User

NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


@pytest.fixture
def sessions(database_url: str, engine: Engine) -> sessionmaker[Session]:
    migrate.upgrade(database_url)
    return make_session_factory(engine)


@dataclass(frozen=True)
class Rep:
    email: str
    provider: str = "microsoft"
    cause: str | None = None  # disconnected with this GrantCause value ...
    minutes_ago: float = 5  # ... this long ago
    failed: str | None = None  # or: a sync run failed with this error code, this long ago


def seed(sessions: sessionmaker[Session], reps: list[Rep]) -> None:
    with transaction(sessions) as session:
        for rep in reps:
            user = User(email=rep.email, name=rep.email.split("@")[0].title())
            session.add(user)
            session.flush()
            at = NOW - timedelta(minutes=rep.minutes_ago)
            connection = CalendarConnection(
                user_id=user.id,
                provider=rep.provider,
                account_email=rep.email,
                status="disconnected" if rep.cause else "connected",
                status_code=rep.cause,
                disconnected_at=at if rep.cause else None,
            )
            session.add(connection)
            session.flush()
            if rep.failed:
                session.add(
                    SyncRun(
                        connection_id=connection.id,
                        direction="pull",
                        started_at=at,
                        finished_at=at,
                        status="error",
                        error_code=rep.failed,
                    )
                )


def consent(email: str, minutes_ago: float = 5) -> Rep:
    return Rep(email, cause="consent_removed", minutes_ago=minutes_ago)


def down(email: str, code: str = "provider_unavailable") -> Rep:
    return Rep(email, provider="google", failed=code)


DETECTIONS = [
    pytest.param(
        [consent(f"{n}@tallgrass.example") for n in ("ann", "bob", "cy")],
        [("org_consent_removed", "tallgrass.example", 3)],
        id="three-of-one-tenant",
    ),
    pytest.param([consent(f"{n}@tallgrass.example") for n in ("ann", "bob")], [], id="two-is-not-yet"),
    pytest.param(
        [
            consent("ann@tallgrass.example", 5),
            consent("bob@tallgrass.example", 50),
            consent("cy@tallgrass.example", 95),
        ],
        [],
        id="spread-over-hours",
    ),
    pytest.param(
        [consent(f"{n}@outlook.com") for n in ("ann", "bob", "cy", "dee")], [], id="personal-accounts-no-org"
    ),
    pytest.param(
        [
            consent("ann@tallgrass.example"),
            consent("bob@tallgrass.example"),
            consent("cy@brightline.example"),
        ],
        [],
        id="two-orgs",
    ),
    pytest.param(
        [
            consent("ann@tallgrass.example"),
            consent("bob@tallgrass.example"),
            Rep("cy@tallgrass.example", cause="password_changed"),
        ],
        [],
        id="other-cause",
    ),
    pytest.param(
        [Rep(f"{n}@brightline.example", provider="google", cause="revoked") for n in ("bo", "cleo", "dario")],
        [("org_access_revoked", "brightline.example", 3)],
        id="workspace-revoked",
    ),
    pytest.param(
        [
            down(f"{n}@{org}.example")
            for n, org in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("e", "z")]
        ],
        [("provider_outage", "google", 5)],
        id="outage",
    ),
    pytest.param([down(f"{n}@x.example") for n in "abcdef"], [], id="outage-one-org-only"),
    pytest.param([down(f"{n}@{n}.example") for n in "abcd"], [], id="outage-four-reps"),
    pytest.param(
        [down(f"{n}@{n}.example", "rate_limited") for n in "abcdef"], [], id="rate-limits-no-outage"
    ),
]


@pytest.mark.parametrize(("reps", "expected"), DETECTIONS)
def test_which_failures_are_one_incident(
    sessions: sessionmaker[Session], reps: list[Rep], expected: list[tuple[str, str, int]]
) -> None:
    seed(sessions, reps)
    store = IncidentStore(sessions, IncidentPolicy(), "w1")

    store.detect(NOW)
    store.detect(NOW + timedelta(seconds=5))  # again: nothing doubles

    found = open_incidents(sessions, NOW + timedelta(seconds=5))
    assert [(i.kind, i.scope, i.affected) for i in found] == expected
    for incident in found:  # the one line a list (the fleet page) shows
        assert str(incident).startswith(incident.kind) and f"{incident.affected} affected" in str(incident)


def test_one_message_across_two_workers_and_a_restart(sessions: sessionmaker[Session]) -> None:
    seed(sessions, [consent(f"{n}@tallgrass.example") for n in ("ann", "bob", "cy")])
    first, second = (IncidentStore(sessions, IncidentPolicy(), worker) for worker in ("w1", "w2"))
    first.detect(NOW)
    second.detect(NOW)

    (claimed,) = first.claim_notices(NOW)
    assert claimed.support_ts is None and claimed.incident.affected == 3
    assert second.claim_notices(NOW) == [], "claimed by the first worker"
    first.posted(claimed, "1764000000.000100")
    assert second.claim_notices(NOW) == [], "nothing new to say"

    # A fourth rep: the update is claimed once, and carries the stored ts (a restarted worker's too).
    seed(sessions, [consent("dee@tallgrass.example", 1)])
    restarted = IncidentStore(sessions, IncidentPolicy(), "w3")
    restarted.detect(NOW + timedelta(minutes=1))
    (update,) = restarted.claim_notices(NOW + timedelta(minutes=1))
    assert (update.support_ts, update.incident.affected) == ("1764000000.000100", 4)
    assert first.claim_notices(NOW + timedelta(minutes=1)) == []

    # The worker holding the claim dies: after the claim's time, another takes it over.
    later = NOW + timedelta(minutes=1) + IncidentPolicy().claim + timedelta(seconds=1)
    (again,) = second.claim_notices(later)
    assert again.support_ts == "1764000000.000100"
    second.release(again)
    (retried,) = first.claim_notices(later)
    first.posted(retried, "1764000000.000100")
    assert second.claim_notices(later) == []


def test_an_incident_that_ended_before_anyone_posted_is_not_posted(sessions: sessionmaker[Session]) -> None:
    seed(
        sessions,
        [
            down(f"{n}@{org}.example")
            for n, org in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("e", "z")]
        ],
    )
    store = IncidentStore(sessions, IncidentPolicy(), "w1")
    store.detect(NOW)
    store.detect(NOW + timedelta(minutes=20))  # no failure within the window since: over
    assert open_incidents(sessions, NOW + timedelta(minutes=20)) == []
    assert store.claim_notices(NOW + timedelta(minutes=20)) == []


def test_an_outage_with_no_failure_within_the_window_ends_and_its_message_says_so(
    sessions: sessionmaker[Session],
) -> None:
    seed(
        sessions,
        [
            down(f"{n}@{org}.example")
            for n, org in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("e", "z")]
        ],
    )
    store = IncidentStore(sessions, IncidentPolicy(), "w1")
    store.detect(NOW)
    (opened,) = store.claim_notices(NOW)
    store.posted(opened, "1764000000.000100")

    later = NOW + IncidentPolicy().outage_window + timedelta(minutes=1)
    store.detect(later)
    (over,) = store.claim_notices(later)
    assert (over.support_ts, over.incident.ended_at, over.incident.affected, over.recovered) == (
        "1764000000.000100",
        later,
        0,
        5,
    )
    assert open_incidents(sessions, later) == []
