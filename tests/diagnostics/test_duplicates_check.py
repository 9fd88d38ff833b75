"""The `duplicates` check: the pure grouping, then small scenarios over real HTTP to the emulators."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from calsync.diagnostics.checks.changes import CHANGES
from calsync.diagnostics.checks.duplicates import DUPLICATES, cause_of, find_duplicate_groups
from calsync.diagnostics.findings import Severity
from calsync.diagnostics.state import ConnectionState
from calsync.sandbox.scenario import ScenarioError
from calsync.syncbackend.providers.base import Event
from tests.harness import Sandbox, codes

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


# -- find_duplicate_groups: pure ------------------------------------------------------------------


def _connection(id: int, provider: str, account: str, calendar: str) -> ConnectionState:
    return ConnectionState(
        id=id,
        provider=provider,
        account_email=account,
        label=f"{provider} ({account})",
        status="connected",
        status_reason=None,
        status_code=None,
        selected_calendar_id=calendar,
        selected_calendar_name=None,
        active=True,
        authorized_at=T0 - timedelta(days=30),
        last_refreshed_at=None,
        disconnected_at=None,
        created_at=T0 - timedelta(days=30),
    )


GOOGLE = _connection(1, "google", "leo@x.example", "leo@x.example")
OUTLOOK = _connection(2, "microsoft", "leo@x.example", "AAMk-leo")
GOOGLE_AGAIN = _connection(3, "google", "leo@x.example", "leo@x.example")  # same account, connected twice


def _event(id: str, calendar: str, title: str, start: datetime = T0, appointment: str | None = None) -> Event:
    return Event(
        id=id,
        calendar_id=calendar,
        title=title,
        description="",
        start=start,
        end=start + timedelta(minutes=30),
        appointment_id=appointment,
    )


@pytest.mark.parametrize(
    ("events_by_connection", "expected"),
    [
        pytest.param(
            {
                GOOGLE: [_event("g1", "leo@x.example", "Demo with Soylent", appointment="a1")],
                OUTLOOK: [_event("m1", "AAMk-leo", "Demo with Soylent", appointment="a1")],
            },
            [("a1", {("google", "g1"), ("microsoft", "m1")})],
            id="appointment-id-across-calendars",
        ),
        pytest.param(
            {
                GOOGLE: [
                    _event("g1", "leo@x.example", "Demo with Soylent", appointment="a1"),
                    _event("g2", "leo@x.example", "Demo with Soylent (moved)", T0 + timedelta(hours=1), "a1"),
                    _event("g3", "leo@x.example", "Call with Tyrell", T0 + timedelta(days=1), "a2"),
                ]
            },
            [("a1", {("google", "g1"), ("google", "g2")})],
            id="appointment-id-within-one-calendar",
        ),
        pytest.param(
            {
                GOOGLE: [
                    _event("g1", "leo@x.example", "Team lunch"),
                    _event("g2", "leo@x.example", "  team   LUNCH "),
                    _event("g3", "leo@x.example", "Team lunch", T0 + timedelta(hours=2)),
                ],
                OUTLOOK: [_event("m1", "AAMk-leo", "Team Lunch")],
            },
            [(None, {("google", "g1"), ("google", "g2"), ("microsoft", "m1")})],
            id="title-and-start-for-foreign-events",
        ),
        pytest.param(
            {
                GOOGLE: [_event("g1", "leo@x.example", "Demo with Soylent", appointment="a1")],
                OUTLOOK: [_event("m1", "AAMk-leo", "demo with soylent")],  # a copy that lost our id
            },
            [("a1", {("google", "g1"), ("microsoft", "m1")})],
            id="foreign-copy-joins-its-appointment",
        ),
        pytest.param(
            {
                GOOGLE: [
                    _event("g1", "leo@x.example", "Demo with Soylent", appointment="a1"),
                    _event("g2", "leo@x.example", "Dentist"),
                    Event(
                        id="g3",
                        calendar_id="leo@x.example",
                        title="Demo with Soylent",
                        description="",
                        start=T0,
                        end=T0,
                        status="cancelled",
                        appointment_id="a1",
                    ),
                ],
                OUTLOOK: [_event("m1", "AAMk-leo", "Call with Tyrell", appointment="a2")],
            },
            [],
            id="none-cancelled-copies-dont-count",
        ),
        pytest.param(
            {
                GOOGLE: [_event("g1", "leo@x.example", "Demo with Soylent", appointment="a1")],
                GOOGLE_AGAIN: [_event("g1", "leo@x.example", "Demo with Soylent", appointment="a1")],
            },
            [],
            id="one-event-read-through-two-connections-counts-once",
        ),
    ],
)
def test_find_duplicate_groups(
    events_by_connection: dict[ConnectionState, list[Event]],
    expected: list[tuple[str | None, set[tuple[str, str]]]],
) -> None:
    groups = find_duplicate_groups(events_by_connection)
    assert [(g.appointment_id, {(c.provider, c.event_id) for c in g.copies}) for g in groups] == expected


# -- the check, over HTTP -------------------------------------------------------------------------

LEO_ACCOUNTS = """
accounts:
  - provider: google
    email: leo@northwind.example
    calendars:
      - id: leo@northwind.example
        name: Leo
        primary: true
        events:
          - {id: g-1, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}
          - {id: g-own, title: Dentist, start: "tomorrow 08:00"}
  - provider: microsoft
    email: leo.schmidt@northwind.example
    calendars:
      - id: AAMk-leo
        name: Calendar
        primary: true
        events:
          - {id: m-1, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}
"""
LEO_APPOINTMENT = """
    appointments:
      - id: a-soylent
        title: Demo with Soylent
        start: "tomorrow 13:00"
        links:
          - {connection: leo@northwind.example, event: g-1}
"""

OLD_PROVIDER = (
    LEO_ACCOUNTS
    + """
users:
  - email: leo@northwind.example
    connections:
      - {provider: google, account: leo@northwind.example, selected_calendar: leo@northwind.example, authorized: "-30d"}
      - {provider: microsoft, account: leo.schmidt@northwind.example, selected_calendar: AAMk-leo, authorized: "-5d"}
"""
    + LEO_APPOINTMENT
)

TWO_GOOGLE_ACCOUNTS = """
accounts:
  - provider: google
    email: rep@northwind.example
    calendars:
      - id: rep@northwind.example
        name: Work
        primary: true
        events: [{id: w-1, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}]
  - provider: google
    email: rep.home@gmail.com
    calendars:
      - id: rep.home@gmail.com
        name: Home
        primary: true
        events: [{id: h-1, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}]
users:
  - email: rep@northwind.example
    connections:
      - {provider: google, account: rep@northwind.example, selected_calendar: rep@northwind.example}
      - {provider: google, account: rep.home@gmail.com, selected_calendar: rep.home@gmail.com}
    appointments:
      - {id: a-soylent, title: Demo with Soylent, start: "tomorrow 13:00"}
"""

SAME_ACCOUNT_TWICE = """
accounts:
  - provider: google
    email: rep@northwind.example
    calendars:
      - id: rep@northwind.example
        name: Work
        primary: true
        events:
          - {id: w-1, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}
          - {id: w-2, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}
users:
  - email: rep@northwind.example
    connections:
      - {provider: google, account: rep@northwind.example, selected_calendar: rep@northwind.example, authorized: "-20d"}
      - {provider: google, account: rep@northwind.example, selected_calendar: rep@northwind.example, authorized: "-2d"}
    appointments:
      - {id: a-soylent, title: Demo with Soylent, start: "tomorrow 13:00"}
"""

ONE_CALENDAR = """
accounts:
  - provider: google
    email: rep@northwind.example
    calendars:
      - id: rep@northwind.example
        name: Work
        primary: true
        events:
{events}
users:
  - email: rep@northwind.example
    connections:
      - {{provider: google, account: rep@northwind.example, selected_calendar: rep@northwind.example}}
    appointments:
      - {{id: a-soylent, title: Demo with Soylent, start: "tomorrow 13:00"}}
{faults}
"""
TWO_COPIES = """\
          - {id: w-1, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}
          - {id: w-2, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}"""
FOREIGN_TWICE = """\
          - {id: w-1, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}
          - {id: w-2, title: Team lunch, start: "today 12:00"}
          - {id: w-3, title: Team Lunch, start: "today 12:00"}"""
NO_COPIES = """\
          - {id: w-1, title: Demo with Soylent, start: "tomorrow 13:00", appointment: a-soylent}
          - {id: w-2, title: Team lunch, start: "today 12:00"}
          - {id: w-3, title: Team lunch, start: "tomorrow 12:00"}"""
GOOGLE_DOWN = """\
faults:
  - {provider: google, account: rep@northwind.example, endpoint: events, kind: unavailable, params: {status: 503}}"""


@pytest.mark.parametrize(
    ("scenario", "email", "expected"),
    [
        pytest.param(
            OLD_PROVIDER,
            "leo@northwind.example",
            [("duplicates.old_provider_still_active", Severity.ERROR)],
            id="google-and-outlook-both-active",
        ),
        pytest.param(
            TWO_GOOGLE_ACCOUNTS,
            "rep@northwind.example",
            [("duplicates.two_active_connections", Severity.ERROR)],
            id="two-google-accounts",
        ),
        pytest.param(
            ONE_CALENDAR.format(events=TWO_COPIES, faults=""),
            "rep@northwind.example",
            [("duplicates.found", Severity.WARNING)],
            id="two-copies-on-one-calendar",
        ),
        pytest.param(
            ONE_CALENDAR.format(events=FOREIGN_TWICE, faults=""),
            "rep@northwind.example",
            [("duplicates.found", Severity.WARNING)],
            id="foreign-event-twice",
        ),
        pytest.param(
            ONE_CALENDAR.format(events=NO_COPIES, faults=""),
            "rep@northwind.example",
            [("duplicates.none", Severity.OK)],
            id="none",
        ),
        pytest.param(
            ONE_CALENDAR.format(events=TWO_COPIES, faults=GOOGLE_DOWN),
            "rep@northwind.example",
            [("provider.unavailable", Severity.UNKNOWN)],
            id="google-503-is-unknown-not-none",
        ),
    ],
)
async def test_duplicates(
    sandbox: Sandbox, scenario: str, email: str, expected: list[tuple[str, Severity]]
) -> None:
    sandbox.load(scenario)
    findings = await sandbox.run([DUPLICATES], email)
    assert [(f.code, f.severity) for f in findings] == expected
    for finding in findings:
        if finding.is_problem:
            assert "Don't delete both copies" in finding.summary
            assert "Only delete one copy" in finding.hint


def test_the_same_account_connected_twice_is_its_own_cause() -> None:
    """Since migration 0005 the database holds at most one active connection per account (two
    sign-ins racing made the doubles), so this state is built from connection states here; the
    check still names it if it is handed one."""
    events = {
        GOOGLE: [_event("w-1", "leo@x.example", "Demo with Soylent", appointment="a1")],
        GOOGLE_AGAIN: [_event("w-2", "leo@x.example", "Demo with Soylent", appointment="a1")],
    }
    (group,) = find_duplicate_groups(events)
    assert cause_of(group, [GOOGLE, GOOGLE_AGAIN]) == "duplicates.same_account_twice"
    assert cause_of(group, [GOOGLE]) == "duplicates.found"


def test_a_scenario_with_one_account_active_twice_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ScenarioError, match="one active connection per account"):
        sandbox.load(SAME_ACCOUNT_TWICE)


async def test_old_provider_names_the_old_connection_and_reads_both_calendars(sandbox: Sandbox) -> None:
    sandbox.load(OLD_PROVIDER)
    (finding,) = await sandbox.run([DUPLICATES], "leo@northwind.example")
    assert finding.summary.startswith(
        "Every appointment reaches both Google Calendar and Outlook: the old Google connection"
    )
    assert "'Demo with Soylent' (1:00 PM tomorrow)" in finding.summary
    assert "Settings > Calendar Connections" in finding.hint
    assert finding.provider == "google"
    (group,) = finding.evidence["groups"]
    assert group["appointment_id"] == "a-soylent"
    assert {(c["provider"], c["calendar_id"], c["event_id"]) for c in group["copies"]} == {
        ("google", "leo@northwind.example", "g-1"),
        ("microsoft", "AAMk-leo", "m-1"),
    }
    assert finding.evidence["events_checked"] == 3
    # One read of each selected calendar, over the window around today (-2 d .. +14 d).
    google = [r for r in sandbox.world.requests("google") if r.path.endswith("/events")]
    microsoft = [r for r in sandbox.world.requests("microsoft") if "AAMk-leo" in r.path]
    assert [r.path for r in google] == ["/calendar/v3/calendars/leo@northwind.example/events"]
    assert "timeMin=2026-11-22T15%3A00%3A00Z" in google[0].query
    assert "timeMax=2026-12-08T15%3A00%3A00Z" in google[0].query
    assert len(microsoft) == 1


async def test_evidence_is_capped(sandbox: Sandbox) -> None:
    events = "\n".join(
        f'          - {{id: w-{i}{copy}, title: Call {i}, start: "+{i + 1}h", appointment: a-{i}}}'
        for i in range(12)
        for copy in "ab"
    )
    appointments = "\n".join(f'      - {{id: a-{i}, title: Call {i}, start: "+{i + 1}h"}}' for i in range(12))
    sandbox.load(
        ONE_CALENDAR.format(events=events, faults="").replace(
            '      - {id: a-soylent, title: Demo with Soylent, start: "tomorrow 13:00"}', appointments
        )
    )
    (finding,) = await sandbox.run([DUPLICATES], "rep@northwind.example")
    assert finding.code == "duplicates.found"
    assert finding.summary.startswith("12 appointments show up twice on your Google Calendar")
    assert finding.evidence["groups_total"] == 12
    assert len(finding.evidence["groups"]) == 10


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("leo@northwind.example", "duplicates.old_provider_still_active"),
        ("ana@northwind.example", "duplicates.none"),
        ("maya@northwind.example", "duplicates.none"),  # the old Google connection is not active
    ],
)
async def test_demo_reps(sandbox: Sandbox, email: str, expected: str) -> None:
    sandbox.load_file(REPO_ROOT / "calsync/sandbox/scenarios/demo.yaml")
    findings = await sandbox.run([DUPLICATES], email)
    assert codes(findings) == [expected]
    if expected == "duplicates.none":
        assert "we checked" in findings[0].summary


async def test_an_outage_seen_by_two_checks_is_one_finding(sandbox: Sandbox) -> None:
    sandbox.load(ONE_CALENDAR.format(events=TWO_COPIES, faults=GOOGLE_DOWN))
    findings = await sandbox.run([DUPLICATES, CHANGES], "rep@northwind.example")
    (failure,) = findings
    assert failure.code == "provider.unavailable"
    assert failure.connection_id is not None  # tied to its connection, so the runner merges it


async def test_a_dead_grant_is_no_verdict(sandbox: Sandbox) -> None:
    sandbox.load(
        OLD_PROVIDER.replace(
            "    email: leo@northwind.example\n    calendars:",
            "    email: leo@northwind.example\n    grant: {status: revoked}\n    calendars:",
        )
    )
    # The connection check reports the revoked grant; duplicates says nothing rather than "none".
    assert await sandbox.run([DUPLICATES], "leo@northwind.example") == []
