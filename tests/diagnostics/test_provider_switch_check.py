"""The `provider_switch` check: database only, so it answers with no provider call at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from calsync.diagnostics.checks.provider_switch import PROVIDER_SWITCH
from calsync.diagnostics.findings import Severity
from tests.harness import Sandbox, codes

REPO_ROOT = Path(__file__).resolve().parents[2]

ACCOUNTS = """
accounts:
  - provider: google
    email: maya@northwind.example
    calendars: [{id: maya@northwind.example, name: Maya, primary: true}]
  - provider: microsoft
    email: maya@northwind.example
    calendars: [{id: AAMk-maya, name: Calendar, primary: true}]
"""
GOOGLE_OLD = """\
      - provider: google
        account: maya@northwind.example
        selected_calendar: maya@northwind.example
        status: disconnected
        status_code: {code}
        active: false
        authorized: "-200d"
        disconnected: "-7d\""""
OUTLOOK_NEW = """\
      - {provider: microsoft, account: maya@northwind.example, selected_calendar: AAMk-maya, authorized: "-7d"}"""
GOOGLE_ACTIVE = """\
      - {provider: google, account: maya@northwind.example, selected_calendar: maya@northwind.example}"""
# Upcoming + synced on Google (2), past, cancelled, never pushed, and one on Outlook: only 2 count.
APPOINTMENTS = """\
    appointments:
      - {id: tyrell, title: Call with Tyrell, start: "+1d", links: [{connection: maya@northwind.example, provider: google, event: g-1}]}
      - {id: vandelay, title: Demo for Vandelay, start: "+4d", links: [{connection: maya@northwind.example, provider: google, event: g-2}]}
      - {id: past, title: Intro with Acme, start: "-3d", booked: "-10d", links: [{connection: maya@northwind.example, provider: google, event: g-3}]}
      - {id: gone, title: Call with Hooli, start: "+2d", status: cancelled, links: [{connection: maya@northwind.example, provider: google, event: g-4, state: deleted}]}
      - {id: never, title: Call with Stark, start: "+2d", links: [{connection: maya@northwind.example, provider: google, state: failed}]}
      - {id: oscorp, title: Walkthrough with Oscorp, start: "+2d", links: [{connection: maya@northwind.example, provider: microsoft, event: m-1}]}"""


def rep(*connections: str, appointments: str = APPOINTMENTS) -> str:
    return (
        ACCOUNTS
        + "users:\n  - email: maya@northwind.example\n    connections:\n"
        + "\n".join(connections)
        + "\n"
        + appointments
        + "\n"
    )


@pytest.mark.parametrize(
    ("scenario", "expected", "summary"),
    [
        pytest.param(
            rep(GOOGLE_OLD.format(code="switched"), OUTLOOK_NEW),
            [("provider_switch.switched", Severity.INFO)],
            "You switched from Google Calendar to Outlook on Nov 17. 2 appointments stay on your Google "
            "Calendar; new ones go to Outlook.",
            id="switched-google-to-outlook",
        ),
        pytest.param(
            rep(GOOGLE_OLD.format(code="null"), OUTLOOK_NEW),
            [("provider_switch.switched", Severity.INFO)],
            "You switched from Google Calendar to Outlook on Nov 17. 2 appointments stay on your Google "
            "Calendar; new ones go to Outlook.",
            id="inactive-other-provider-without-status-code",
        ),
        pytest.param(
            rep(GOOGLE_OLD.format(code="switched"), appointments=APPOINTMENTS.rsplit("\n", 1)[0]),
            [("provider_switch.switched", Severity.INFO)],
            "You disconnected Google Calendar to switch providers on Nov 17, and no new calendar is "
            "connected yet. 2 appointments stay on your Google Calendar.",
            id="switched-but-nothing-connected-yet",
        ),
        pytest.param(
            rep(GOOGLE_ACTIVE, appointments=""),
            [("provider_switch.none", Severity.OK)],
            "You've only used Google Calendar.",
            id="only-google",
        ),
        pytest.param(
            rep(GOOGLE_OLD.format(code="revoked"), appointments=""),
            [("provider_switch.none", Severity.OK)],
            "You've only used Google Calendar.",
            id="disconnected-but-never-switched",
        ),
        pytest.param(
            rep(GOOGLE_ACTIVE, OUTLOOK_NEW, appointments=""),
            [],
            None,
            id="both-active-is-the-duplicates-check-finding",
        ),
    ],
)
async def test_provider_switch(
    sandbox: Sandbox, scenario: str, expected: list[tuple[str, Severity]], summary: str | None
) -> None:
    sandbox.load(scenario)
    findings = await sandbox.run([PROVIDER_SWITCH], "maya@northwind.example")
    assert [(f.code, f.severity) for f in findings] == expected
    if summary is not None:
        assert findings[0].summary == summary
    assert sandbox.world.requests() == []  # database only: not even a token refresh


async def test_switched_evidence_and_hint(sandbox: Sandbox) -> None:
    sandbox.load(rep(GOOGLE_OLD.format(code="switched"), OUTLOOK_NEW))
    (finding,) = await sandbox.run([PROVIDER_SWITCH], "maya@northwind.example")
    assert "Switching providers doesn't move your existing appointments to the new calendar" in finding.hint
    assert finding.provider == "google"
    assert finding.evidence["appointments_on_old_calendar"] == 2
    assert [a["id"] for a in finding.evidence["appointments"]] == ["tyrell", "vandelay"]
    assert finding.evidence["from"]["status_code"] == "switched"
    assert finding.evidence["to"]["provider"] == "microsoft"
    assert finding.evidence["switched_at"] == "2026-11-17T15:00:00+00:00"


async def test_answers_during_an_outage(sandbox: Sandbox) -> None:
    sandbox.load(
        rep(GOOGLE_OLD.format(code="switched"), OUTLOOK_NEW)
        + "faults:\n  - {provider: '*', kind: unavailable, params: {status: 503}}\n"
    )
    assert codes(await sandbox.run([PROVIDER_SWITCH], "maya@northwind.example")) == [
        "provider_switch.switched"
    ]


@pytest.mark.parametrize(
    ("email", "expected", "count"),
    [
        ("maya@northwind.example", ["provider_switch.switched"], 2),
        ("ana@northwind.example", ["provider_switch.none"], None),
        ("leo@northwind.example", [], None),  # both active: duplicates.old_provider_still_active says it
    ],
)
async def test_demo_reps(sandbox: Sandbox, email: str, expected: list[str], count: int | None) -> None:
    sandbox.load_file(REPO_ROOT / "calsync/sandbox/scenarios/demo.yaml")
    findings = await sandbox.run([PROVIDER_SWITCH], email)
    assert codes(findings) == expected
    if count is not None:
        assert findings[0].evidence["appointments_on_old_calendar"] == count
        assert (
            f"{count} appointments stay on your Google Calendar; new ones go to Outlook"
            in findings[0].summary
        )
