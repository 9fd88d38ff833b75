"""The `connection` check against the real emulators: one small scenario per row -> the codes it
reports. A dead grant is classified by its cause; a flaky provider is never a disconnection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from calsync.db import transaction
from calsync.diagnostics.checks import connection as connection_check
from calsync.diagnostics.checks.calendar import CALENDAR
from calsync.diagnostics.checks.connection import CONNECTION
from calsync.diagnostics.findings import Finding
from calsync.sandbox.world import SandboxRequest
from calsync.syncbackend.models import CalendarConnection
from tests.harness import DISCONNECTIONS, FLAKY_PROVIDER_FAULTS, Sandbox

REPO = Path(__file__).parents[2]
DEMO = REPO / "calsync" / "sandbox" / "scenarios" / "demo.yaml"

# What a flaky provider must never be reported as.
ANA = "ana@acme.example"  # Google
BEN = "ben@acme.example"  # Microsoft
_REPS = {
    "google": (ANA, "ana@acme.example", "Ana Alvarez"),
    "microsoft": (BEN, "AAMk-ben-calendar", "Calendar"),
}


def one_rep(
    provider: str, *, grant: str = "{status: valid}", connection: str = "", faults: str = "[]"
) -> str:
    """A scenario with one rep (ana on Google, ben on Outlook) and one connection to a healthy calendar.

    `connection` is appended to the connection's flow mapping (", status: disconnected"), `faults` is
    the scenario's fault list.
    """
    email, calendar, name = _REPS[provider]
    return f"""
    accounts:
      - provider: {provider}
        email: {email}
        grant: {grant}
        calendars: [{{id: {calendar}, name: {name}, primary: true}}]
    users:
      - email: {email}
        connections:
          - {{provider: {provider}, account: {email}, selected_calendar: {calendar}, last_refreshed: "-10m"{connection}}}
    faults: {faults}
    """


NO_CONNECTION = """
users:
  - email: ana@acme.example
"""

INACTIVE_ONLY = """
accounts:
  - provider: google
    email: ana@acme.example
    calendars: [{id: ana@acme.example, name: Ana Alvarez, primary: true}]
users:
  - email: ana@acme.example
    connections:
      - provider: google
        account: ana@acme.example
        selected_calendar: ana@acme.example
        status: disconnected
        status_code: switched
        status_reason: Disconnected by the user to switch to Outlook.
        active: false
        disconnected: "-7d"
"""

TWO_ACTIVE = """
accounts:
  - provider: google
    email: ana@acme.example
    calendars: [{id: ana@acme.example, name: Ana Alvarez, primary: true}]
  - provider: microsoft
    email: ana.alvarez@acme.example
    calendars: [{id: AAMk-ana-calendar, name: Calendar, primary: true}]
users:
  - email: ana@acme.example
    connections:
      - {provider: google, account: ana@acme.example, selected_calendar: ana@acme.example}
      - {provider: microsoft, account: ana.alvarez@acme.example, selected_calendar: AAMk-ana-calendar}
"""

BACKEND_DOWN = (
    ', status: disconnected, status_code: revoked, status_reason: "invalid_grant", disconnected: "-2d"'
)


def connection_codes(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.code, f.severity.value) for f in findings if f.code.startswith(("connection.", "provider."))]


async def logged(sandbox: Sandbox, match: Callable[[SandboxRequest], bool], wait: float = 1.0) -> bool:
    """Whether the emulators logged a matching request (waiting briefly for one still being logged)."""
    for _ in range(int(wait / 0.05)):
        if any(match(request) for request in sandbox.world.requests()):
            return True
        await asyncio.sleep(0.05)
    return any(match(request) for request in sandbox.world.requests())


def no_secrets(findings: list[Finding]) -> None:
    text = json.dumps([finding.to_json() for finding in findings])
    assert "rt-" not in text  # the sandbox's refresh tokens
    assert "access_token" not in text


# -- one scenario per row ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "email", "expected"),
    [
        (one_rep("google"), ANA, [("connection.ok", "ok")]),
        (one_rep("microsoft"), BEN, [("connection.ok", "ok")]),
        (
            one_rep("google", grant='{status: revoked, description: "Token has been expired or revoked."}'),
            ANA,
            [("connection.revoked", "error")],
        ),
        (
            one_rep("google", grant='{status: revoked, description: "Token has expired."}'),
            ANA,
            [("connection.expired", "error")],
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 50173}"),
            BEN,
            [("connection.revoked", "error")],
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 70008}"),
            BEN,
            [("connection.expired", "error")],
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 700082}"),
            BEN,
            [("connection.expired", "error")],
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 65001, suberror: consent_required}"),
            BEN,
            [("connection.consent_removed", "error")],
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 50076}"),
            BEN,
            [("connection.sign_in_required", "error")],
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 50158}"),
            BEN,
            [("connection.sign_in_required", "error")],
        ),
        # The backend gave up on the connection although the grant still works: still disconnected.
        (one_rep("google", connection=BACKEND_DOWN), ANA, [("connection.disconnected", "error")]),
        (
            one_rep("microsoft", connection=', status: error, status_code: inactive, disconnected: "-1d"'),
            BEN,
            [("connection.disconnected", "error")],
        ),
        # Backend and provider agree: one finding, the live cause.
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 700082}", connection=BACKEND_DOWN),
            BEN,
            [("connection.expired", "error")],
        ),
        (NO_CONNECTION, ANA, [("connection.none", "error")]),
        (INACTIVE_ONLY, ANA, [("connection.none", "error")]),
        (
            TWO_ACTIVE,
            ANA,
            [("connection.multiple_active", "warning"), ("connection.ok", "ok"), ("connection.ok", "ok")],
        ),
    ],
    ids=[
        "google-ok",
        "microsoft-ok",
        "google-revoked",
        "google-expired",
        "microsoft-50173-password-changed",
        "microsoft-70008-expired",
        "microsoft-700082-inactive",
        "microsoft-65001-consent-removed",
        "microsoft-50076-mfa",
        "microsoft-50158-conditional-access",
        "backend-disconnected-grant-valid",
        "backend-error-grant-valid",
        "backend-disconnected-grant-inactive",
        "no-connection",
        "inactive-connection-only",
        "two-active",
    ],
)
async def test_connection_codes(
    sandbox: Sandbox, scenario: str, email: str, expected: list[tuple[str, str]]
) -> None:
    sandbox.load(scenario)
    findings = await sandbox.run([CONNECTION], email)
    assert connection_codes(findings) == expected
    assert all(finding.check == "connection" for finding in findings)
    assert all(finding.summary and "\n" not in finding.summary for finding in findings)
    assert all(finding.hint for finding in findings if finding.is_problem)
    no_secrets(findings)


async def test_ok_is_a_live_refresh_at_the_provider(sandbox: Sandbox) -> None:
    sandbox.load(TWO_ACTIVE)
    findings = await sandbox.run([CONNECTION], ANA)

    token_requests = [r for r in sandbox.world.requests() if r.path.endswith("/token")]
    assert sorted((r.provider, r.method, r.account_email) for r in token_requests) == [
        ("google", "POST", "ana@acme.example"),
        ("microsoft", "POST", "ana.alvarez@acme.example"),
    ]
    ok = [finding for finding in findings if finding.code == "connection.ok"]
    assert {finding.provider for finding in ok} == {"google", "microsoft"}
    google = next(finding for finding in ok if finding.provider == "google")
    assert google.summary == (
        "Your Google Calendar (ana@acme.example) is connected and Google accepted our access just now."
    )
    assert google.evidence["granted_account_email"] == "ana@acme.example"
    assert google.evidence["last_refreshed_at"] is None
    assert google.evidence["checked_at"] == sandbox.clock().isoformat()
    multiple = findings[0]
    assert multiple.code == "connection.multiple_active"
    assert (
        multiple.summary == "You have 2 calendars connected — appointments go to both, so they show up twice."
    )
    assert "only have one active connection" in multiple.hint
    assert multiple.evidence["labels"] == [
        "Google Calendar (ana@acme.example)",
        "Outlook (ana.alvarez@acme.example)",
    ]


@pytest.mark.parametrize(
    ("scenario", "email", "summary", "evidence"),
    [
        (
            one_rep("google", grant='{status: revoked, description: "Token has been expired or revoked."}'),
            ANA,
            "Google says access to your Google Calendar (ana@acme.example) was revoked — this usually "
            "follows a password change or a security-settings change.",
            {
                "cause": "revoked",
                "error": "invalid_grant",
                "description": "Token has been expired or revoked.",
            },
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 50173}"),
            BEN,
            "Microsoft says your password changed or access was revoked, so your Outlook calendar "
            "(ben@acme.example) stopped syncing.",
            {"cause": "password_changed", "error": "invalid_grant", "codes": ["AADSTS50173"]},
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 700082}"),
            BEN,
            "Microsoft sign-in expired after 90 days without use, so your Outlook calendar "
            "(ben@acme.example) stopped syncing.",
            {"cause": "inactive", "codes": ["AADSTS700082"]},
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 65001, suberror: consent_required}"),
            BEN,
            "SalesPartner's permission to your Outlook calendar (ben@acme.example) was removed (often by "
            "IT), so it stopped syncing.",
            {"cause": "consent_removed", "codes": ["AADSTS65001"]},
        ),
        (
            one_rep("microsoft", grant="{status: revoked, aadsts: 50076}"),
            BEN,
            "Microsoft needs you to sign in again (multi-factor or a security policy) before your Outlook "
            "calendar (ben@acme.example) can sync.",
            {"cause": "mfa_required", "error": "interaction_required", "codes": ["AADSTS50076"]},
        ),
    ],
    ids=["google-revoked", "microsoft-50173", "microsoft-700082", "microsoft-65001", "microsoft-50076"],
)
async def test_dead_grant_words_and_evidence(
    sandbox: Sandbox, scenario: str, email: str, summary: str, evidence: dict[str, object]
) -> None:
    sandbox.load(scenario)
    [finding] = await sandbox.run([CONNECTION], email)
    assert finding.summary == summary
    assert "Settings > Calendar Connections > Reconnect" in finding.hint
    assert {key: finding.evidence[key] for key in evidence} == evidence
    if finding.code == "connection.consent_removed":
        assert "IT" in finding.hint and "administrator" in finding.hint
    assert any(r.path.endswith("/token") and r.status >= 400 for r in sandbox.world.requests())


async def test_backend_reason_is_kept_next_to_the_live_cause(sandbox: Sandbox) -> None:
    sandbox.load(one_rep("microsoft", grant="{status: revoked, aadsts: 700082}", connection=BACKEND_DOWN))
    [finding] = await sandbox.run([CONNECTION], BEN)
    assert finding.code == "connection.expired"
    assert finding.evidence["backend_status"] == "disconnected"
    assert finding.evidence["backend_status_code"] == "revoked"
    assert finding.evidence["disconnected_at"] == "2026-11-22T15:00:00+00:00"


async def test_backend_disconnected_says_why_and_since_when(sandbox: Sandbox) -> None:
    sandbox.load(one_rep("google", connection=BACKEND_DOWN))
    [finding] = await sandbox.run([CONNECTION], ANA)
    assert finding.summary.startswith(
        "Your Google Calendar (ana@acme.example) was disconnected 2 days ago: access was revoked "
        "(this usually follows a password change or a security-settings change)."
    )
    assert "Google still accepts our access" in finding.summary
    assert finding.evidence["live_grant"] == "ok"
    assert finding.evidence["backend_status_reason"] == "invalid_grant"


async def test_inactive_connection_is_named(sandbox: Sandbox) -> None:
    sandbox.load(INACTIVE_ONLY)
    [finding] = await sandbox.run([CONNECTION], ANA)
    assert finding.summary == (
        "You don't have a calendar connected, so appointments can't reach a calendar. "
        "Your Google Calendar (ana@acme.example) was disconnected 7 days ago."
    )
    assert "Authorize" in finding.hint
    assert finding.evidence["inactive_connections"][0]["status_code"] == "switched"
    assert sandbox.world.requests() == []  # nothing active, nothing to ask a provider


async def test_active_connection_without_tokens(sandbox: Sandbox) -> None:
    sandbox.load(one_rep("google"))
    with transaction(sandbox.sessions) as session:
        for connection in session.scalars(select(CalendarConnection)):
            connection.clear_tokens()
    findings = await sandbox.run([CONNECTION, CALENDAR], ANA)
    assert [(f.code, f.severity.value) for f in findings] == [("connection.no_tokens", "error")]
    assert sandbox.world.requests() == []


# -- a flaky provider is never a disconnection ---------------------------------------------------------


@pytest.mark.parametrize(("provider", "fault", "expected"), FLAKY_PROVIDER_FAULTS)
async def test_token_endpoint_fault_is_unknown_not_disconnected(
    sandbox: Sandbox, provider: str, fault: str, expected: str
) -> None:
    email = _REPS[provider][0]
    faults = f"[{{provider: {provider}, endpoint: token, {fault}}}]"
    sandbox.load(one_rep(provider, faults=faults))
    findings = await sandbox.run([CONNECTION, CALENDAR], email)

    assert not DISCONNECTIONS & {finding.code for finding in findings}
    assert [(f.code, f.severity.value) for f in findings] == [(expected, "unknown")]
    assert "not a disconnection" in findings[0].summary
    assert findings[0].connection_id is not None
    if expected == "provider.rate_limited":
        assert findings[0].evidence["retry_after_seconds"] == 30
    # The emulator logs a hung request once it sees the client give up, a moment after the timeout.
    assert await logged(sandbox, lambda r: r.path.endswith("/token"))


async def test_backend_disconnected_and_provider_down_reports_both(sandbox: Sandbox) -> None:
    faults = "[{provider: google, endpoint: token, kind: unavailable, params: {status: 503}}]"
    sandbox.load(one_rep("google", connection=BACKEND_DOWN, faults=faults))
    findings = await sandbox.run([CONNECTION, CALENDAR], ANA)
    assert [(f.code, f.severity.value) for f in findings] == [
        ("connection.disconnected", "error"),
        ("provider.unavailable", "unknown"),
    ]
    assert findings[0].evidence["live_grant"] == "unreachable"


async def test_backend_disconnected_and_provider_hanging_reports_both(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Production provider timeouts can exceed the runner's budget; the check bounds its own wait.
    monkeypatch.setattr(connection_check, "BACKEND_DOWN_WAIT", 0.3)
    faults = "[{provider: microsoft, endpoint: token, kind: hang, params: {seconds: 5}}]"
    sandbox.load(one_rep("microsoft", connection=BACKEND_DOWN, faults=faults))
    findings = await sandbox.run([CONNECTION], BEN)
    assert [(f.code, f.severity.value) for f in findings] == [
        ("connection.disconnected", "error"),
        ("provider.timeout", "unknown"),
    ]


# -- the demo scenario ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rep", "expected"),
    [
        ("ana", ["connection.ok"]),
        ("ben", ["connection.ok"]),
        ("carla", ["connection.revoked"]),
        ("dev", ["connection.expired"]),
        ("erin", ["connection.consent_removed"]),
        ("farid", ["connection.ok"]),
        ("iris", ["connection.ok"]),
        ("leo", ["connection.multiple_active", "connection.ok", "connection.ok"]),
        ("maya", ["connection.ok"]),  # the old Google connection is inactive: not a second one
        ("pia", ["provider.rate_limited"]),
        ("quinn", ["provider.unavailable"]),
        ("sam", ["connection.none"]),
    ],
)
async def test_demo_reps(sandbox: Sandbox, rep: str, expected: list[str]) -> None:
    sandbox.load_file(DEMO)
    findings = await sandbox.run([CONNECTION, CALENDAR], f"{rep}@northwind.example")
    assert [code for code, _ in connection_codes(findings)] == expected
    if rep in ("pia", "quinn"):
        assert not DISCONNECTIONS & {finding.code for finding in findings}
        assert all(f.severity.value == "unknown" for f in findings if f.code.startswith("provider."))
    if rep == "dev":
        [finding] = [f for f in findings if f.code == "connection.expired"]
        assert finding.evidence["cause"] == "inactive"
        assert finding.evidence["backend_status"] == "disconnected"
    no_secrets(findings)
