"""Which state each rep is in, and why: a table of connection and sync-run shapes, on SQLite and
PostgreSQL, counted by the database."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from calsync.store.fleet import Filters, FleetStore
from calsync.syncbackend.incidents import IncidentView
from tests.conftest import FrozenClock
from tests.fleet.conftest import Builder

OK = (5, "ok", None)
FAILED = (3, "error", "provider_unavailable")


@pytest.mark.parametrize(
    ("connections", "state", "cause"),
    [
        ([], "no_connection", None),
        ([{"active": False, "status": "disconnected", "status_code": "switched"}], "no_connection", None),
        ([{"runs": [OK]}], "healthy", None),
        ([{}], "healthy", None),  # connected, no run this week yet: nothing says it is broken
        ([{"runs": [(60 * 24 * 8, "error", "timeout")]}], "healthy", None),  # a failure older than a week
        ([{"runs": [FAILED, (10, "ok", None)]}], "failing", "provider_unavailable"),
        ([{"runs": [(10, "error", "timeout"), (3, "ok", None)]}], "healthy", None),  # it recovered
        ([{"status": "error", "status_code": "rate_limited"}], "failing", "rate_limited"),
        ([{"status": "disconnected", "status_code": "revoked"}], "needs_reconnect", "revoked"),
        ([{"status": "disconnected", "status_code": None}], "needs_reconnect", "disconnected"),
        ([{"no_tokens": True}], "needs_reconnect", "disconnected"),
        (
            [{"status": "disconnected", "status_code": "consent_removed"}, {"provider": "microsoft"}],
            "needs_reconnect",
            "consent_removed",
        ),
        ([{}, {"provider": "microsoft"}], "duplicates", "multiple_active"),
        ([{"runs": [FAILED]}, {"provider": "microsoft"}], "duplicates", "multiple_active"),
    ],
    ids=[
        "none",
        "only-inactive",
        "healthy",
        "never-ran",
        "old-failure",
        "failing",
        "recovered",
        "error-status",
        "revoked",
        "disconnected-no-code",
        "no-tokens",
        "reconnect-beats-duplicates",
        "two-active",
        "duplicates-beat-failing",
    ],
)
def test_each_rep_is_in_one_state_with_its_cause(
    build: Builder,
    sessions: sessionmaker[Session],
    clock: FrozenClock,
    connections: list[dict[str, object]],
    state: str,
    cause: str | None,
) -> None:
    build.rep("dana@tallgrass.example", *connections)
    fleet = FleetStore(sessions, clock).fleet()
    assert [(r.email, r.state, r.cause, r.org) for r in fleet.reps] == [
        ("dana@tallgrass.example", state, cause, "tallgrass.example")
    ]
    assert fleet.counts[state] == 1 and fleet.total == 1  # type: ignore[index]


def test_counts_filters_and_the_order_reps_are_listed_in(
    build: Builder, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    build.rep("ana@northwind.example", {"runs": [OK]})
    build.rep("bo@northwind.example", {"status": "disconnected", "status_code": "revoked"})
    build.rep("cy@tallgrass.example", {"status": "disconnected", "status_code": "consent_removed"})
    build.rep("di@tallgrass.example", {"status": "disconnected", "status_code": "consent_removed"})
    build.rep("ed@tallgrass.example")
    build.rep("sam@northwind.example", role="agent")  # agents are not in the fleet
    store = FleetStore(sessions, clock)

    fleet = store.fleet()
    assert fleet.counts == {
        "no_connection": 1,
        "needs_reconnect": 3,
        "duplicates": 0,
        "failing": 0,
        "healthy": 1,
    }
    assert [r.email for r in fleet.reps] == [
        "ed@tallgrass.example",
        "bo@northwind.example",
        "cy@tallgrass.example",
        "di@tallgrass.example",
        "ana@northwind.example",
    ]
    assert fleet.causes == (("consent_removed", 2), ("revoked", 1))
    assert fleet.orgs == (("tallgrass.example", 3), ("northwind.example", 1))
    assert fleet.all_orgs == ("northwind.example", "tallgrass.example")

    by_org = store.fleet(Filters(org="Tallgrass.example"))
    assert by_org.counts["needs_reconnect"] == 2 and by_org.total == 3
    assert [r.email for r in by_org.reps] == [
        "ed@tallgrass.example",
        "cy@tallgrass.example",
        "di@tallgrass.example",
    ]

    by_cause = store.fleet(Filters(cause="consent_removed"))
    assert [r.email for r in by_cause.reps] == ["cy@tallgrass.example", "di@tallgrass.example"]
    assert by_cause.matching == 2

    by_state = store.fleet(Filters(state="healthy"))
    assert [r.email for r in by_state.reps] == ["ana@northwind.example"]
    assert by_state.counts["needs_reconnect"] == 3  # the state filter lists, the counts stay whole


def test_the_chart_counts_connections_with_a_failed_run_per_bucket_and_the_last_sweep(
    build: Builder, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    from datetime import timedelta

    # Two failures of one connection in the newest bucket count once; a run 2 days ago lands earlier.
    build.rep("fay@northwind.example", {"runs": [(10, "error", "timeout"), (20, "error", "timeout")]})
    build.rep("gil@northwind.example", {"runs": [(60 * 48, "error", "rate_limited"), (5, "ok", None)]})
    build.rep("hal@northwind.example", {"last_checked_at": clock() - timedelta(minutes=7), "runs": [OK]})
    fleet = FleetStore(sessions, clock).fleet()
    assert len(fleet.chart) == 28
    assert fleet.chart[-1][1] == 1
    assert sum(n for _, n in fleet.chart) == 2
    two_days_ago = clock() - timedelta(hours=48)
    [(_start, n)] = [(s, n) for s, n in fleet.chart if s <= two_days_ago < s + timedelta(hours=6)]
    assert n == 1
    assert fleet.last_sweep == clock() - timedelta(minutes=7)


def test_open_incidents_come_from_the_provider_when_one_is_given(
    build: Builder, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    assert FleetStore(sessions, clock).fleet().incidents == ()
    seen = []

    incident = IncidentView(
        id=1,
        kind="org_consent_removed",
        provider="microsoft",
        scope="tallgrass.example",
        cause_code="consent_removed",
        started_at=clock(),
        last_seen_at=clock(),
        affected=3,
        ended_at=None,
    )

    def provider(given: object, now: object) -> list[IncidentView]:
        seen.append((given, now))
        return [incident]

    fleet = FleetStore(sessions, clock, open_incidents=provider).fleet()
    assert fleet.incidents == (incident,)
    assert seen == [(sessions, clock())]
