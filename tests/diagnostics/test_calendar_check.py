"""The `calendar` check against the real emulators: which calendar appointments go to, whether
SalesPartner can write to it, and whose account it is. One small scenario per row -> codes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from calsync.diagnostics.checks.calendar import CALENDAR
from calsync.diagnostics.checks.connection import CONNECTION
from calsync.diagnostics.findings import Finding
from tests.harness import DISCONNECTIONS, FLAKY_PROVIDER_FAULTS, Sandbox

REPO = Path(__file__).parents[2]
DEMO = REPO / "calsync" / "sandbox" / "scenarios" / "demo.yaml"

REP = "ana@acme.example"
GOOGLE_OWN = "{id: ana@acme.example, name: Ana Alvarez, primary: true}"
OUTLOOK_OWN = "{id: AAMk-ana-calendar, name: Calendar, primary: true}"


def rep(
    provider: str,
    *,
    calendars: str,
    selected: str | None,
    account: str = REP,
    selected_name: str | None = None,
    grant: str = "{status: valid}",
    faults: str = "[]",
) -> str:
    """One rep (ana@acme.example) with one active connection to `account` on `provider`."""
    connection = f"provider: {provider}, account: {account}"
    if selected is not None:
        connection += f", selected_calendar: {selected}"
    if selected_name is not None:
        connection += f", selected_calendar_name: {selected_name}"
    return f"""
    accounts:
      - provider: {provider}
        email: {account}
        grant: {grant}
        calendars: {calendars}
    users:
      - email: {REP}
        connections: [{{{connection}}}]
    faults: {faults}
    """


GOOGLE_OK = rep("google", calendars=f"[{GOOGLE_OWN}]", selected="ana@acme.example")
OUTLOOK_OK = rep("microsoft", calendars=f"[{OUTLOOK_OWN}]", selected="AAMk-ana-calendar")
SHARED_TEAM = (
    "{id: sales-team@group.calendar.google.com, name: Sales Team, access_role: writer, "
    "owner: sales-team@acme.example}"
)


def calendar_codes(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.code, f.severity.value) for f in findings if f.code.startswith(("calendar.", "provider."))]


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (GOOGLE_OK, [("calendar.ok", "ok")]),
        (OUTLOOK_OK, [("calendar.ok", "ok")]),
        (rep("google", calendars=f"[{GOOGLE_OWN}]", selected=None), [("calendar.none_selected", "error")]),
        (
            rep(
                "google",
                calendars=f"[{GOOGLE_OWN}]",
                selected="q3-pipeline@group.calendar.google.com",
                selected_name="Q3 Pipeline",
            ),
            [("calendar.not_found", "error")],
        ),
        (
            rep("microsoft", calendars=f"[{OUTLOOK_OWN}]", selected="AAMk-gone"),
            [("calendar.not_found", "error")],
        ),
        (
            rep(
                "microsoft",
                calendars=f"[{OUTLOOK_OWN}, {{id: AAMk-shared, name: Regional Sales (shared), "
                "access_role: reader, owner: regional-lead@acme.example}]",
                selected="AAMk-shared",
            ),
            [("calendar.read_only", "error")],
        ),
        (
            rep(
                "google",
                calendars=f"[{GOOGLE_OWN}, {{id: boss@acme.example, name: Boss, access_role: freeBusyReader, "
                "owner: boss@acme.example}]",
                selected="boss@acme.example",
            ),
            [("calendar.read_only", "error")],
        ),
        (
            rep(
                "google",
                calendars=f"[{GOOGLE_OWN}, {SHARED_TEAM}]",
                selected="sales-team@group.calendar.google.com",
            ),
            [("calendar.not_primary", "warning")],
        ),
        (
            rep(
                "microsoft",
                calendars=f"[{OUTLOOK_OWN}, {{id: AAMk-side, name: Side projects, owner: ana@acme.example}}]",
                selected="AAMk-side",
            ),
            [("calendar.not_primary", "warning")],
        ),
        (
            rep(
                "google",
                account="ana.home@gmail.com",
                calendars="[{id: ana.home@gmail.com, name: Ana, primary: true}]",
                selected="ana.home@gmail.com",
            ),
            [("calendar.personal_account", "warning"), ("calendar.ok", "ok")],
        ),
        (
            rep(
                "microsoft",
                account="ana_a@outlook.com",
                calendars=f"[{OUTLOOK_OWN}]",
                selected="AAMk-ana-calendar",
            ),
            [("calendar.personal_account", "warning"), ("calendar.ok", "ok")],
        ),
        (
            rep(
                "google",
                account="ana@partner.example",
                calendars="[{id: ana@partner.example, name: Ana, primary: true}]",
                selected="ana@partner.example",
            ),
            [("calendar.other_account", "info"), ("calendar.ok", "ok")],
        ),
        (
            rep(
                "google",
                account="ana@eu.acme.example",
                calendars="[{id: ana@eu.acme.example, name: Ana, primary: true}]",
                selected="ana@eu.acme.example",
            ),
            [("calendar.ok", "ok")],
        ),
        (
            rep(
                "google",
                calendars=f"[{GOOGLE_OWN}]",
                selected="ana@acme.example",
                grant='{status: revoked, description: "Token has been expired or revoked."}',
            ),
            [("calendar.skipped", "unknown")],
        ),
    ],
    ids=[
        "google-ok",
        "outlook-ok",
        "none-selected",
        "google-deleted-calendar",
        "outlook-deleted-calendar",
        "outlook-shared-reader",
        "google-free-busy-only",
        "google-shared-writer",
        "outlook-own-secondary",
        "personal-gmail",
        "personal-outlook-com",
        "other-organisation",
        "work-subdomain",
        "dead-grant-skips",
    ],
)
async def test_calendar_codes(sandbox: Sandbox, scenario: str, expected: list[tuple[str, str]]) -> None:
    sandbox.load(scenario)
    findings = await sandbox.run([CALENDAR], REP)
    assert calendar_codes(findings) == expected
    assert all(finding.summary and "\n" not in finding.summary for finding in findings)
    assert all(finding.hint for finding in findings if finding.is_problem)
    json.dumps([finding.to_json() for finding in findings])  # evidence is JSON-safe


@pytest.mark.parametrize(
    ("scenario", "summary"),
    [
        (
            GOOGLE_OK,
            "Appointments go to your own calendar 'Ana Alvarez' (primary), which SalesPartner can write to.",
        ),
        (
            rep("google", calendars=f"[{GOOGLE_OWN}]", selected=None),
            "No calendar is selected for SalesPartner in your Google account (ana@acme.example), so "
            "appointments have nowhere to go.",
        ),
        (
            rep(
                "google",
                calendars=f"[{GOOGLE_OWN}]",
                selected="q3-pipeline@group.calendar.google.com",
                selected_name="Q3 Pipeline",
            ),
            "The calendar 'Q3 Pipeline' that SalesPartner writes to no longer exists in your Google account "
            "(ana@acme.example) — it was deleted or is no longer shared with you.",
        ),
        (
            rep(
                "microsoft",
                calendars=f"[{OUTLOOK_OWN}, {{id: AAMk-shared, name: Regional Sales (shared), "
                "access_role: reader, owner: regional-lead@acme.example}]",
                selected="AAMk-shared",
            ),
            "You can only read 'Regional Sales (shared)', so SalesPartner can't add appointments to it.",
        ),
        (
            rep(
                "google",
                calendars=f"[{GOOGLE_OWN}, {SHARED_TEAM}]",
                selected="sales-team@group.calendar.google.com",
            ),
            "Appointments go to the shared calendar 'Sales Team' (owned by sales-team@acme.example), not your "
            "own calendar 'Ana Alvarez'.",
        ),
        (
            rep(
                "microsoft",
                calendars=f"[{OUTLOOK_OWN}, {{id: AAMk-side, name: Side projects, owner: ana@acme.example}}]",
                selected="AAMk-side",
            ),
            "Appointments go to your other calendar 'Side projects', not your own calendar 'Calendar'.",
        ),
        (
            rep(
                "google",
                account="ana.home@gmail.com",
                calendars="[{id: ana.home@gmail.com, name: Ana, primary: true}]",
                selected="ana.home@gmail.com",
            ),
            "Your personal Gmail (ana.home@gmail.com) is connected, not your work account ana@acme.example.",
        ),
    ],
    ids=["ok", "none-selected", "not-found", "read-only", "shared", "own-secondary", "personal"],
)
async def test_calendar_words(sandbox: Sandbox, scenario: str, summary: str) -> None:
    sandbox.load(scenario)
    findings = await sandbox.run([CALENDAR], REP)
    assert findings[0].summary == summary


async def test_not_found_lists_the_calendars_that_exist(sandbox: Sandbox) -> None:
    sandbox.load(
        rep(
            "google",
            calendars=f"[{GOOGLE_OWN}, {SHARED_TEAM}]",
            selected="q3-pipeline@group.calendar.google.com",
            selected_name="Q3 Pipeline",
        )
    )
    [finding] = await sandbox.run([CALENDAR], REP)
    assert finding.code == "calendar.not_found"
    assert finding.evidence["selected_calendar_id"] == "q3-pipeline@group.calendar.google.com"
    assert [c["id"] for c in finding.evidence["calendars"]] == [
        "ana@acme.example",
        "sales-team@group.calendar.google.com",
    ]
    assert "'Ana Alvarez'" in finding.hint
    # What the check asked for: a token refresh, then the calendar list.
    google = [(r.method, r.path) for r in sandbox.world.requests("google")]
    assert google[0] == ("POST", "/token")
    assert any(path.endswith("/users/me/calendarList") for _, path in google[1:])


async def test_read_only_names_the_owner(sandbox: Sandbox) -> None:
    sandbox.load(
        rep(
            "microsoft",
            calendars=f"[{OUTLOOK_OWN}, {{id: AAMk-shared, name: Regional Sales (shared), "
            "access_role: reader, owner: regional-lead@acme.example}]",
            selected="AAMk-shared",
        )
    )
    [finding] = await sandbox.run([CALENDAR], REP)
    assert "regional-lead@acme.example" in finding.hint
    assert finding.evidence["selected_calendar"]["access_role"] == "reader"
    assert finding.evidence["primary_calendar"]["name"] == "Calendar"
    assert any(r.path == "/v1.0/me/calendars" for r in sandbox.world.requests("microsoft"))


async def test_none_selected_needs_no_provider_call(sandbox: Sandbox) -> None:
    sandbox.load(rep("google", calendars=f"[{GOOGLE_OWN}]", selected=None))
    await sandbox.run([CALENDAR], REP)
    assert sandbox.world.requests() == []


# -- a flaky provider is never a disconnection ---------------------------------------------------------


@pytest.mark.parametrize(("provider", "fault", "expected"), FLAKY_PROVIDER_FAULTS)
async def test_calendars_endpoint_fault_is_unknown_not_disconnected(
    sandbox: Sandbox, provider: str, fault: str, expected: str
) -> None:
    scenario = GOOGLE_OK if provider == "google" else OUTLOOK_OK
    faults = f"[{{provider: {provider}, endpoint: calendars, {fault}}}]"
    sandbox.load(scenario.replace("faults: []", f"faults: {faults}"))
    findings = await sandbox.run([CONNECTION, CALENDAR], REP)

    assert not DISCONNECTIONS & {finding.code for finding in findings}
    # The grant is fine (the token endpoint answered); only the calendar list could not be read.
    assert [(f.code, f.severity.value) for f in findings] == [("connection.ok", "ok"), (expected, "unknown")]
    assert findings[1].check == "calendar"
    if expected == "provider.rate_limited":
        assert findings[1].evidence["retry_after_seconds"] == 30
    calendars_path = "/calendar/v3/users/me/calendarList" if provider == "google" else "/v1.0/me/calendars"
    for _ in range(20):  # a hung request is logged a moment after the client gives up
        if any(r.path == calendars_path for r in sandbox.world.requests(provider)):
            break
        await asyncio.sleep(0.05)
    assert any(r.path == calendars_path for r in sandbox.world.requests(provider))


async def test_personal_account_is_reported_even_when_the_provider_is_down(sandbox: Sandbox) -> None:
    faults = "[{provider: google, endpoint: token, kind: unavailable, params: {status: 503}}]"
    sandbox.load(
        rep(
            "google",
            account="ana.home@gmail.com",
            calendars="[{id: ana.home@gmail.com, name: Ana, primary: true}]",
            selected="ana.home@gmail.com",
            faults=faults,
        )
    )
    findings = await sandbox.run([CALENDAR], REP)
    assert [(f.code, f.severity.value) for f in findings] == [
        ("calendar.personal_account", "warning"),
        ("provider.unavailable", "unknown"),
    ]
    assert findings[0].evidence["work_email"] == REP


# -- the demo scenario ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ana", ["calendar.ok"]),
        ("ben", ["calendar.ok"]),
        ("carla", ["calendar.skipped"]),
        ("farid", ["calendar.not_primary"]),
        ("gina", ["calendar.not_found"]),
        ("hugo", ["calendar.read_only"]),
        ("iris", ["calendar.personal_account", "calendar.ok"]),
        ("leo", ["calendar.ok", "calendar.ok"]),
        ("pia", ["provider.rate_limited"]),
        ("quinn", ["provider.unavailable"]),
        ("sam", []),
    ],
)
async def test_demo_reps(sandbox: Sandbox, name: str, expected: list[str]) -> None:
    sandbox.load_file(DEMO)
    findings = await sandbox.run([CALENDAR], f"{name}@northwind.example")
    assert [code for code, _ in calendar_codes(findings)] == expected
    assert not DISCONNECTIONS & {finding.code for finding in findings}
    if name == "farid":
        assert findings[0].summary == (
            "Appointments go to the shared calendar 'Sales Team' (owned by sales-team@northwind.example), "
            "not your own calendar 'Farid Haddad'."
        )
    if name == "iris":
        assert findings[0].summary == (
            "Your personal Gmail (iris.kim.home@gmail.com) is connected, not your work account "
            "iris@northwind.example."
        )
