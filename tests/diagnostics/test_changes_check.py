"""The `changes` check: small scenarios over real HTTP to the emulators, and the question test."""

from __future__ import annotations

from pathlib import Path

import pytest

from calsync.diagnostics.checks.changes import CHANGES, is_about_direct_events
from calsync.diagnostics.findings import Severity
from tests.harness import Sandbox, codes

REPO_ROOT = Path(__file__).resolve().parents[2]

# One Outlook rep; `{events}` go on the selected calendar, `{appointments}` are SalesPartner's.
OUTLOOK_REP = """
accounts:
  - provider: microsoft
    email: omar@northwind.example
    calendars:
      - id: AAMk-omar
        name: Calendar
        primary: true
        events:
{events}
users:
  - email: omar@northwind.example
    connections:
      - {{provider: microsoft, account: omar@northwind.example, selected_calendar: AAMk-omar}}
    appointments:
{appointments}
    sync_runs:
      - {{connection: omar@northwind.example, direction: pull, started: "-14m"}}
"""
APERTURE = """\
      - id: omar-aperture
        title: Demo with Aperture
        description: Agenda
        start: "tomorrow 10:00"
        booked: "-1d"
        links: [{{connection: omar@northwind.example, event: ev-1, last_pushed: "-1d", last_pulled: "{pulled}"}}]"""
UNCHANGED = '          - {id: ev-1, title: Demo with Aperture, description: Agenda, start: "tomorrow 10:00", appointment: omar-aperture, updated: "-1d"}'
MOVED = '          - {{id: ev-1, title: Demo with Aperture, description: Agenda, start: "tomorrow 15:00", appointment: omar-aperture, updated: "{updated}"}}'
RENAMED = '          - {id: ev-1, title: Aperture kickoff, description: Agenda, start: "tomorrow 10:00", appointment: omar-aperture, updated: "-3m"}'
REDESCRIBED = '          - {id: ev-1, title: Demo with Aperture, description: New agenda, start: "tomorrow 10:00", appointment: omar-aperture, updated: "-3m"}'
OWN_EVENT = '          - {id: own-1, title: Dentist, start: "tomorrow 08:00"}'


def outlook_rep(events: list[str], pulled: str = "-14m", appointments: str | None = None) -> str:
    return OUTLOOK_REP.format(
        events="\n".join(events) or "          []",
        appointments=appointments if appointments is not None else APERTURE.format(pulled=pulled),
    )


CANCELLED_BY_DELETE = """
accounts:
  - provider: google
    email: nora@northwind.example
    calendars:
      - id: nora@northwind.example
        name: Nora
        primary: true
        events:
          - {id: ev-1, title: Renewal call with Massive Dynamic, start: "tomorrow 16:00", appointment: nora-massive, status: cancelled, updated: "-3h"}
users:
  - email: nora@northwind.example
    connections:
      - {provider: google, account: nora@northwind.example, selected_calendar: nora@northwind.example}
    appointments:
      - id: nora-massive
        title: Renewal call with Massive Dynamic
        start: "tomorrow 16:00"
        status: cancelled
        cancellation_reason: deleted in calendar
        updated: "-2h"
        links: [{connection: nora@northwind.example, event: ev-1, state: deleted, last_pulled: "-2h"}]
      - id: nora-old
        title: Intro with Hooli
        start: "-20d"
        booked: "-25d"
        status: cancelled
        cancellation_reason: deleted in calendar
        updated: "-20d"
      - id: nora-other
        title: Call with Initech
        start: "+3d"
        status: cancelled
        cancellation_reason: cancelled by the customer
        updated: "-1h"
"""
GOOGLE_DOWN = """
faults:
  - {provider: google, account: nora@northwind.example, endpoint: events, kind: unavailable, params: {status: 503}}
"""


@pytest.mark.parametrize(
    ("scenario", "question", "expected"),
    [
        pytest.param(
            CANCELLED_BY_DELETE,
            None,
            [("changes.cancelled_by_delete", Severity.WARNING), ("changes.picked_up", Severity.OK)],
            id="cancelled-by-delete",
        ),
        pytest.param(
            outlook_rep([MOVED.format(updated="-4m")]),
            None,
            [("changes.pending", Severity.INFO)],
            id="moved-4-minutes-ago",
        ),
        pytest.param(
            outlook_rep([MOVED.format(updated="-50m")], pulled="-60m"),
            None,
            [("changes.not_picked_up", Severity.WARNING)],
            id="moved-50-minutes-ago-not-picked-up",
        ),
        pytest.param(outlook_rep([RENAMED]), None, [("changes.pending", Severity.INFO)], id="renamed"),
        pytest.param(
            outlook_rep([REDESCRIBED]), None, [("changes.pending", Severity.INFO)], id="description-edited"
        ),
        pytest.param(
            outlook_rep([UNCHANGED, OWN_EVENT]),
            None,
            [("changes.picked_up", Severity.OK)],
            id="nothing-pending",
        ),
        pytest.param(
            # Edited before the last pickup: SalesPartner has read it (what it did with it is the sync
            # check's business), so it is not waiting.
            outlook_rep([MOVED.format(updated="-20m")], pulled="-10m"),
            None,
            [("changes.picked_up", Severity.OK)],
            id="edited-before-last-pickup",
        ),
        pytest.param(
            # Changed in SalesPartner after the event was last written: a push still to come.
            outlook_rep(
                [UNCHANGED.replace("tomorrow 10:00", "tomorrow 09:00")],
                appointments=APERTURE.format(pulled="-14m") + '\n        updated: "-2m"',
            ),
            None,
            [("changes.picked_up", Severity.OK)],
            id="salespartner-side-change-is-not-a-calendar-edit",
        ),
        pytest.param(
            outlook_rep([UNCHANGED, OWN_EVENT]),
            "I added a meeting in my calendar but it's not in SalesPartner",
            [("changes.picked_up", Severity.OK), ("changes.direct_event_ignored", Severity.INFO)],
            id="direct-event-question",
        ),
        pytest.param(
            outlook_rep([UNCHANGED]),
            "created an event in outlook, not showing in salespartner",
            [("changes.picked_up", Severity.OK), ("changes.direct_event_ignored", Severity.INFO)],
            id="direct-event-question-without-such-events",
        ),
        pytest.param(
            outlook_rep([UNCHANGED, OWN_EVENT]),
            "I moved a meeting in Outlook but SalesPartner still shows the old time",
            [("changes.picked_up", Severity.OK)],
            id="other-question",
        ),
        pytest.param(
            CANCELLED_BY_DELETE + GOOGLE_DOWN,
            None,
            [("changes.cancelled_by_delete", Severity.WARNING), ("provider.unavailable", Severity.UNKNOWN)],
            id="google-503-keeps-the-database-fact",
        ),
    ],
)
async def test_changes(
    sandbox: Sandbox, scenario: str, question: str | None, expected: list[tuple[str, Severity]]
) -> None:
    sandbox.load(scenario)
    email = "nora@northwind.example" if "nora@" in scenario else "omar@northwind.example"
    findings = await sandbox.run([CHANGES], email, question)
    assert [(f.code, f.severity) for f in findings] == expected


async def test_cancelled_by_delete_words(sandbox: Sandbox) -> None:
    sandbox.load(CANCELLED_BY_DELETE)
    finding = (await sandbox.run([CHANGES], "nora@northwind.example"))[0]
    assert finding.summary == (
        "'Renewal call with Massive Dynamic' was cancelled 2 hours ago because its event was deleted in "
        "your Google Calendar."
    )
    assert "cancels the appointment" in finding.hint and "book it again in SalesPartner" in finding.hint
    assert [a["id"] for a in finding.evidence["appointments"]] == ["nora-massive"]
    assert finding.evidence["appointments"][0]["event_id"] == "ev-1"


@pytest.mark.parametrize(
    ("events", "pulled", "summary"),
    [
        (
            [MOVED.format(updated="-5m")],
            "-14m",
            "You moved 'Demo with Aperture' to 3:00 PM tomorrow 5 minutes ago; SalesPartner picks up "
            "calendar edits within 15–30 minutes.",
        ),
        (
            [RENAMED],
            "-14m",
            "You renamed 'Demo with Aperture' to 'Aperture kickoff' 3 minutes ago; SalesPartner picks up "
            "calendar edits within 15–30 minutes.",
        ),
        (
            [REDESCRIBED],
            "-14m",
            "You edited the description of 'Demo with Aperture' 3 minutes ago; SalesPartner picks up "
            "calendar edits within 15–30 minutes.",
        ),
        (
            [MOVED.format(updated="-50m")],
            "-60m",
            "You moved 'Demo with Aperture' to 3:00 PM tomorrow 50 minutes ago, and SalesPartner still shows "
            "the old version: it should have been picked up by now (calendar edits sync within 15–30 minutes).",
        ),
    ],
    ids=["moved", "renamed", "description", "overdue"],
)
async def test_edit_words(sandbox: Sandbox, events: list[str], pulled: str, summary: str) -> None:
    sandbox.load(outlook_rep(events, pulled=pulled))
    (finding,) = await sandbox.run([CHANGES], "omar@northwind.example")
    assert finding.summary == summary
    (edit,) = finding.evidence["edits"]
    assert edit["appointment_id"] == "omar-aperture" and edit["event_id"] == "ev-1"


async def test_direct_events_are_listed_and_the_selected_calendar_is_read(sandbox: Sandbox) -> None:
    sandbox.load(outlook_rep([UNCHANGED, OWN_EVENT]))
    findings = await sandbox.run([CHANGES], "omar@northwind.example", "added a call straight into outlook")
    direct = next(f for f in findings if f.code == "changes.direct_event_ignored")
    assert direct.summary.startswith(
        "Events you add directly in your calendar don't create appointments in SalesPartner — "
        "appointments must be booked through conversations."
    )
    assert "'Dentist' (8:00 AM tomorrow) on your Outlook calendar" in direct.summary
    assert [e["title"] for e in direct.evidence["events"]] == ["Dentist"]
    reads = [r for r in sandbox.world.requests("microsoft") if r.path.endswith("/calendarView")]
    assert len(reads) == 1  # one read of the window serves every part of the check
    assert "/calendars/AAMk-omar/" in reads[0].path
    assert "startDateTime=2026-11-22T15%3A00%3A00Z" in reads[0].query


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("I added a meeting in my calendar but it's not in SalesPartner", True),
        ("created an event in outlook, not showing in salespartner", True),
        ("added an appointment straight into outlook, not in salespartner", True),
        ("I put a call on my google calendar, why isn't it in SP", True),
        ("new meeting in my gcal doesn't show up", True),
        ("I moved a meeting in Google Calendar but SalesPartner still shows the old time", False),
        ("the appointment I added to salespartner isn't showing in google", False),
        ("appointments created in SalesPartner don't show in my calendar", False),
        ("every meeting shows up twice", False),
        ("", False),
    ],
)
def test_is_about_direct_events(question: str, expected: bool) -> None:
    assert is_about_direct_events(question) is expected


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("nora@northwind.example", ["changes.cancelled_by_delete", "changes.picked_up"]),
        ("omar@northwind.example", ["changes.pending"]),
        ("ana@northwind.example", ["changes.picked_up"]),
        ("quinn@northwind.example", ["provider.unavailable"]),  # Google outage: unknown, never "picked up"
    ],
)
async def test_demo_reps(sandbox: Sandbox, email: str, expected: list[str]) -> None:
    sandbox.load_file(REPO_ROOT / "calsync/sandbox/scenarios/demo.yaml")
    assert codes(await sandbox.run([CHANGES], email)) == expected
