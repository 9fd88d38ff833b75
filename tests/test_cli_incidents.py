"""`calsync ask EMAIL "..." --details` during an incident, run as the real console command against its
own sandbox, on SQLite and PostgreSQL: the terminal's Details agree with the answer (and with Slack's
Details) — no connection's own "Reconnect" hint while the incident says reconnecting won't help;
the agent's `calsync diagnose` names the incident's code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import run_calsync

SCENARIOS = Path(__file__).resolve().parents[1] / "calsync" / "sandbox" / "scenarios"
RECONNECT_HINTS = ("Settings > Calendar Connections > Reconnect", "Reconnect the calendar, then check again")


@dataclass(frozen=True)
class Org:
    scenario: str
    reps: tuple[str, str, str]  # the third failure makes it an incident
    product: str
    code: str
    question: str
    waits: str  # the incident's fix, as the rep reads it


ORGS = [
    pytest.param(
        Org(
            "incident-consent-removed.yaml",
            ("tess@tallgrass.example", "umar@tallgrass.example", "vera@tallgrass.example"),
            "Outlook",
            "incident.org_consent_removed",
            "outlook quit syncing on me, it mumbles smth about admin approval?? hit reconnect twice, nada",
            "Your IT admin must restore access",
        ),
        id="microsoft-consent-removed",
    ),
    pytest.param(
        Org(
            "incident-workspace-revoked.yaml",
            ("bo@brightline.example", "cleo@brightline.example", "dario@brightline.example"),
            "Google Calendar",
            "incident.org_access_revoked",
            "google cal disconnected itself this morning?? whole team too i think. what do i do",
            "Your IT admin must allow SalesPartner again",
        ),
        id="google-workspace-revoked",
    ),
]


def calsync(state: Path, database_url: str, *args: str) -> str:
    result = run_calsync(list(args), {"DATABASE_URL": database_url}, state)
    assert result.returncode in (0, 1), result.stderr  # `sync` exits 1 when the cycle failed
    return result.stdout


@pytest.mark.parametrize("org", ORGS)
def test_details_show_no_reconnect_hint_while_reconnecting_cannot_help(
    tmp_path: Path, database_url: str, org: Org
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    calsync(state, database_url, "sandbox", "load", str(SCENARIOS / org.scenario))
    first, *others = org.reps

    # One rep's grant failing is that rep's own problem: Details say how to reconnect.
    calsync(state, database_url, "sync", first)
    alone = calsync(state, database_url, "ask", first, org.question, "--details")
    assert "Details: what I checked" in alone
    assert RECONNECT_HINTS[0] in alone and f"[Reconnect {org.product}]" in alone

    # The third rep of the organisation: an incident. Reconnecting won't help, and nothing says it would.
    for email in others:
        calsync(state, database_url, "sync", email)
    for email in (first, org.reps[-1]):  # told to reconnect before it was an incident; the one who made it
        details = calsync(state, database_url, "ask", email, org.question, "--details")
        assert "This affects 3 people at" in details
        assert org.waits in details and "reconnecting won't help until then" in details
        checked = details.split("Details: what I checked")[1]
        assert checked.count("❌") >= 3, (
            "every finding is still listed (the connection's, the syncs'), hint or not"
        )
        for hint in RECONNECT_HINTS:
            assert hint not in details
        assert "[Reconnect" not in details
    brief = calsync(state, database_url, "ask", first, org.question)
    assert "Details: what I checked" not in brief and org.waits in brief
    assert not any(hint in brief for hint in RECONNECT_HINTS)

    # The agent's diagnosis names the incident by its code, beside the evidence.
    agent = calsync(state, database_url, "diagnose", first)
    assert f"[{org.code}]" in agent
