"""The `sync` check against the sandbox: real emulators, real provider clients, the clock fixed at
2026-11-24 15:00 UTC. Each row is a small scenario and the findings it must produce."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml

from calsync.diagnostics.checks.sync import SYNC
from calsync.diagnostics.findings import Finding, Severity
from tests.harness import Sandbox, codes

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "calsync/sandbox/scenarios/demo.yaml"
EMAIL = "rep@acme.example"
CALENDARS = {"google": "rep@acme.example", "microsoft": "AAMk-rep-calendar"}

Expected = list[tuple[str, Severity, str]]  # code, severity, a phrase its summary contains


def run(direction: str, started: str, error: str | None = None, message: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"connection": EMAIL, "direction": direction, "started": started}
    if error:
        spec.update(status="error", error_code=error, error_message=message or error)
    return spec


def appointment(
    id: str,
    title: str,
    *,
    start: str = "tomorrow 14:00",
    booked: str = "-1d",
    link: str | None = "synced",
    event: str | None = None,
    error: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": id, "title": title, "start": start, "booked": booked, **extra}
    if link is not None:
        link_spec: dict[str, Any] = {"connection": EMAIL, "state": link}
        if link == "synced":
            link_spec.update(event=event or f"ev-{id}", last_pushed=booked)
        if error:
            link_spec["error"] = error
        spec["links"] = [link_spec]
    return spec


def event(appointment_id: str, title: str, start: str = "tomorrow 14:00", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"ev-{appointment_id}",
        "title": title,
        "start": start,
        "appointment": appointment_id,
        **extra,
    }


HEALTHY = [run("push", "-6m"), run("pull", "-9m")]


def world(
    *,
    runs: list[dict[str, Any]] = HEALTHY,
    appointments: tuple[dict[str, Any], ...] = (),
    events: tuple[dict[str, Any], ...] = (),
    provider: str = "google",
    authorized: str = "-30d",
    faults: tuple[dict[str, Any], ...] = (),
) -> str:
    calendar = CALENDARS[provider]
    return yaml.safe_dump(
        {
            "accounts": [
                {
                    "provider": provider,
                    "email": EMAIL,
                    "calendars": [
                        {"id": calendar, "name": "Rep Work", "primary": True, "events": list(events)}
                    ],
                }
            ],
            "users": [
                {
                    "email": EMAIL,
                    "name": "Rep",
                    "connections": [
                        {
                            "provider": provider,
                            "account": EMAIL,
                            "selected_calendar": calendar,
                            "authorized": authorized,
                        }
                    ],
                    "appointments": list(appointments),
                    "sync_runs": runs,
                }
            ],
            "faults": list(faults),
        },
        sort_keys=False,
    )


def assert_findings(findings: list[Finding], expected: Expected) -> None:
    assert [(f.code, f.severity) for f in findings] == [(code, severity) for code, severity, _ in expected], [
        f.summary for f in findings
    ]
    for finding, (_, _, phrase) in zip(findings, expected, strict=True):
        assert phrase in finding.summary
        assert finding.check == "sync"


def trace_requests(sandbox: Sandbox) -> list[dict[str, str]]:
    """The query parameters of every event list that asked for one appointment by our property."""
    queries = [dict(parse_qsl(request.query)) for request in sandbox.world.requests()]
    return [query for query in queries if "privateExtendedProperty" in query or "$filter" in query]


# -- timings and failed runs -----------------------------------------------------------------------------

E, W, INFO, OK = Severity.ERROR, Severity.WARNING, Severity.INFO, Severity.OK

TIMINGS: list[tuple[str, list[dict[str, Any]], str, Expected]] = [
    (
        "healthy",
        HEALTHY,
        "-30d",
        [("sync.ok", OK, "Last synced 6 minutes ago (to your calendar) and 9 minutes ago (from it).")],
    ),
    ("within-grace", [run("push", "-19m"), run("pull", "-34m")], "-30d", [("sync.ok", OK, "19 minutes ago")]),
    (
        "no-pull-on-record",
        [run("push", "-6m")],
        "-30d",
        [("sync.ok", OK, "Last synced 6 minutes ago (to your calendar).")],
    ),
    (
        "push-late",
        [run("push", "-40m"), run("pull", "-9m")],
        "-30d",
        [("sync.push_late", W, "The last successful sync to your calendar was 40 minutes ago")],
    ),
    (
        "push-very-late",
        [run("push", "-6h"), run("pull", "-9m")],
        "-30d",
        [("sync.push_late", E, "was 6 hours ago; new appointments normally arrive within 15 minutes")],
    ),
    ("push-never", [], "-30d", [("sync.push_late", E, "no record of a successful sync to your calendar")]),
    ("push-never-new-connection", [], "-5m", []),
    (
        "pull-late",
        [run("push", "-6m"), run("pull", "-50m")],
        "-30d",
        [("sync.pull_late", W, "picked up within 15–30 minutes; the last pickup was 50 minutes ago")],
    ),
    (
        "pull-very-late",
        [run("push", "-6m"), run("pull", "-3h")],
        "-30d",
        [("sync.pull_late", E, "3 hours ago")],
    ),
    (
        "failures-in-a-row",
        [
            run("push", "-3h"),
            run("pull", "-9m"),
            run("push", "-2h", "backend_error", "worker crashed"),
            run("push", "-1h", "backend_error", "worker crashed"),
            run("push", "-10m", "backend_error", "worker crashed"),
        ],
        "-30d",
        [
            ("sync.push_late", E, "3 hours ago"),
            (
                "sync.last_run_failed",
                E,
                "That's 3 failed attempts in a row since the last success 3 hours ago.",
            ),
        ],
    ),
    (
        "failed-then-recovered",
        [run("push", "-30m", "rate_limited"), run("push", "-6m"), run("pull", "-9m")],
        "-30d",
        [("sync.ok", OK, "Last synced 6 minutes ago")],
    ),
    (
        "pull-failed-provider-down-is-a-warning",
        [run("push", "-6m"), run("pull", "-30m"), run("pull", "-9m", "provider_unavailable", "503")],
        "-30d",
        [
            (
                "sync.last_run_failed",
                W,
                "The last sync from your calendar failed 9 minutes ago: Google was down.",
            )
        ],
    ),
    (
        "provider-down-four-cycles-is-an-error",
        [
            run("push", "-6m"),
            run("pull", "-70m"),
            run("pull", "-54m", "provider_unavailable", "503"),
            run("pull", "-39m", "provider_unavailable", "503"),
            run("pull", "-24m", "provider_unavailable", "503"),
            run("pull", "-9m", "provider_unavailable", "503"),
        ],
        "-30d",
        [
            ("sync.pull_late", W, "the last pickup was 1 hour ago"),
            ("sync.last_run_failed", E, "That's 4 failed attempts in a row"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("runs", "authorized", "expected"), [row[1:] for row in TIMINGS], ids=[row[0] for row in TIMINGS]
)
async def test_timings(
    sandbox: Sandbox, runs: list[dict[str, Any]], authorized: str, expected: Expected
) -> None:
    sandbox.load(world(runs=runs, authorized=authorized))
    assert_findings(await sandbox.run([SYNC], EMAIL), expected)


@pytest.mark.parametrize(
    ("error_code", "message", "words", "hint"),
    [
        (
            "invalid_grant",
            "Token has been expired or revoked.",
            "your calendar access was refused",
            "Reconnect",
        ),
        ("rate_limited", "Rate Limit Exceeded", "Google was rate limiting us", "clears up by itself"),
        ("not_found", "Not Found", "the selected calendar was not found", "Select the calendar"),
        (
            "permission_denied",
            "Forbidden",
            "we aren't allowed to write to the selected calendar",
            "Select the calendar",
        ),
        ("provider_unavailable", "503 Backend Error", "Google was down", "clears up by itself"),
        (
            "backend_error",
            "Calendar push worker crashed",
            "the error was \u201cCalendar push worker crashed\u201d",
            "contact support",
        ),
    ],
)
async def test_last_run_failed_names_the_error(
    sandbox: Sandbox, error_code: str, message: str, words: str, hint: str
) -> None:
    sandbox.load(
        world(runs=[run("push", "-8m"), run("pull", "-9m"), run("push", "-4m", error_code, message)])
    )
    [finding] = await sandbox.run([SYNC], EMAIL)
    assert finding.code == "sync.last_run_failed"
    assert finding.summary == f"The last sync to your calendar failed 4 minutes ago: {words}."
    assert hint in finding.hint
    assert finding.evidence["code"] == error_code
    assert finding.evidence["message"] == message
    assert finding.evidence["direction"] == "push"
    assert finding.evidence["started_at"] == (sandbox.clock() - timedelta(minutes=4)).isoformat()
    assert finding.provider == "google"


# -- appointments on their way, and late ones ------------------------------------------------------------

PENDING: list[tuple[str, tuple[dict[str, Any], ...], Expected]] = [
    (
        "pending",
        (appointment("pp", "Demo with Pied Piper", booked="-4m", link="pending"),),
        [
            ("sync.ok", OK, "Last synced"),
            (
                "sync.pending",
                INFO,
                "'Demo with Pied Piper' was booked 4 minutes ago — expect it on your calendar within the next "
                "11 minutes.",
            ),
        ],
    ),
    (
        "pending-no-link-yet",
        (
            appointment("a", "Intro with Hooli", booked="-2m", link=None),
            appointment("b", "Demo with Pied Piper", booked="-1m", link=None),
        ),
        [("sync.ok", OK, ""), ("sync.pending", INFO, "'Demo with Pied Piper' was booked 1 minute ago")],
    ),
    (
        "overdue",
        (appointment("stark", "Renewal with Stark", booked="-3h", link="pending"),),
        [
            ("sync.ok", OK, ""),
            (
                "sync.overdue",
                E,
                "'Renewal with Stark', booked 3 hours ago, hasn't reached your calendar yet "
                "(it should have within 15 minutes).",
            ),
        ],
    ),
    (
        "failed-link-is-overdue-at-once",
        (appointment("duff", "Demo with Duff", booked="-2m", link="failed", error="Not Found"),),
        [("sync.ok", OK, ""), ("sync.overdue", E, "couldn't be added to your calendar (Not Found)")],
    ),
    (
        "pending-and-overdue",
        (
            appointment("new", "Demo with Pied Piper", booked="-4m", link="pending"),
            appointment("old", "Renewal with Stark", booked="-3h", link="pending"),
        ),
        [("sync.ok", OK, ""), ("sync.pending", INFO, "Pied Piper"), ("sync.overdue", E, "Stark")],
    ),
    ("synced", (appointment("ok", "Call with Acme", booked="-2h"),), [("sync.ok", OK, "")]),
    (
        "cancelled-past-or-before-the-connection",
        (
            appointment("cx", "Call with Acme", booked="-1h", link="pending", status="cancelled"),
            appointment("past", "Call with Wayne", start="-2h", booked="-3h", link="pending"),
            appointment("older", "Call with Tyrell", booked="-40d", link=None),  # connected 30 days ago
        ),
        [("sync.ok", OK, "")],
    ),
]


@pytest.mark.parametrize(
    ("appointments", "expected"), [row[1:] for row in PENDING], ids=[row[0] for row in PENDING]
)
async def test_pending_and_overdue(
    sandbox: Sandbox, appointments: tuple[dict[str, Any], ...], expected: Expected
) -> None:
    sandbox.load(world(appointments=appointments))
    assert_findings(await sandbox.run([SYNC], EMAIL), expected)


@pytest.mark.parametrize(
    ("minutes", "code", "phrase"),
    [
        (14, "sync.pending", "booked 14 minutes ago — expect it on your calendar within a minute"),
        (15, "sync.overdue", "booked 15 minutes ago, hasn't reached your calendar yet"),
        (16, "sync.overdue", "booked 16 minutes ago, hasn't reached your calendar yet"),
    ],
)
async def test_the_15_minute_boundary(sandbox: Sandbox, minutes: int, code: str, phrase: str) -> None:
    sandbox.load(
        world(appointments=(appointment("pp", "Demo with Pied Piper", booked="now", link="pending"),))
    )
    sandbox.clock.now += timedelta(minutes=minutes)  # time passes; no sync ran
    findings = await sandbox.run([SYNC], EMAIL)
    [finding] = [f for f in findings if f.code in ("sync.pending", "sync.overdue")]
    assert finding.code == code
    assert phrase in finding.summary
    assert finding.evidence["appointments"][0]["id"] == "pp"


# -- tracing the appointment the rep names ---------------------------------------------------------------

ACME = appointment("acme", "Discovery call with Acme", booked="-2h")
ACME_EVENT = event("acme", "Discovery call with Acme")
GLOBEX = appointment("globex", "Demo for Globex", start="2026-11-26T11:00:00Z", booked="-1d")


@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_found_looks_the_event_up_by_our_property(sandbox: Sandbox, provider: str) -> None:
    sandbox.load(world(provider=provider, appointments=(ACME, GLOBEX), events=(ACME_EVENT,)))
    findings = await sandbox.run([SYNC], EMAIL, "where is my 2pm with Acme tomorrow")
    found = findings[-1]
    product = "Google Calendar" if provider == "google" else "Outlook"
    assert found.code == "sync.appointment_found"
    assert found.severity is OK
    assert found.summary == (
        f"Your 2:00 PM tomorrow 'Discovery call with Acme' is on your calendar 'Rep Work' ({product})."
    )
    assert found.evidence["appointment"]["id"] == "acme"
    assert found.evidence["events"][0]["id"] == "ev-acme"
    [query] = trace_requests(sandbox)
    if provider == "google":
        assert query["privateExtendedProperty"] == "calsyncAppointmentId=acme"
    else:
        assert query["$filter"].startswith("singleValueExtendedProperties/Any(ep: ep/id eq 'String {")
        assert query["$filter"].endswith("Name calsyncAppointmentId' and ep/value eq 'acme')")


async def test_found_at_another_time_means_an_edit_not_picked_up_yet(sandbox: Sandbox) -> None:
    moved = event("acme", "Discovery call with Acme", start="tomorrow 16:00", updated="-5m")
    sandbox.load(world(appointments=(ACME,), events=(moved,)))
    found = (await sandbox.run([SYNC], EMAIL, "the acme call"))[-1]
    assert found.code == "sync.appointment_found"
    assert "at 4:00 PM tomorrow, changed 5 minutes ago, while SalesPartner still has 2:00 PM tomorrow" in (
        found.summary
    )
    assert "15–30 minutes (last pickup 9 minutes ago)" in found.summary
    assert found.evidence["time_differs"] is True


async def test_missing_from_the_calendar(sandbox: Sandbox) -> None:
    sandbox.load(world(appointments=(ACME,)))  # synced once, the event is gone
    findings = await sandbox.run([SYNC], EMAIL, "I can't find my Acme call")
    assert codes(findings) == ["sync.ok", "sync.appointment_missing"]
    missing = findings[-1]
    assert missing.severity is E
    assert missing.summary == (
        "'Discovery call with Acme' (2:00 PM tomorrow) was added to your calendar 'Rep Work' "
        "(Google Calendar) 2 hours ago but isn't there any more."
    )
    assert missing.evidence["calendar_checked"] is True
    assert len(trace_requests(sandbox)) == 1


@pytest.mark.parametrize(
    ("booked", "link", "severity", "phrase"),
    [
        (
            "-4m",
            "pending",
            INFO,
            "isn't on your calendar yet: it was booked 4 minutes ago and should arrive within the next 11",
        ),
        ("-3h", "pending", E, "it was booked 3 hours ago and should have arrived within 15 minutes"),
        ("-1h", "failed", E, "adding it failed (Not Found)"),
    ],
)
async def test_missing_by_our_records_needs_no_live_call(
    sandbox: Sandbox, booked: str, link: str, severity: Severity, phrase: str
) -> None:
    stark = appointment("stark", "Renewal with Stark", booked=booked, link=link, error="Not Found")
    sandbox.load(world(appointments=(stark,)))
    missing = (await sandbox.run([SYNC], EMAIL, "where is the renewal with Stark?"))[-1]
    assert (missing.code, missing.severity) == ("sync.appointment_missing", severity)
    assert phrase in missing.summary
    assert missing.evidence["calendar_checked"] is False
    assert trace_requests(sandbox) == []


async def test_cancelled_in_salespartner(sandbox: Sandbox) -> None:
    cancelled = appointment(
        "md",
        "Renewal call with Massive Dynamic",
        status="cancelled",
        cancellation_reason="deleted in calendar",
        updated="-150m",
    )
    sandbox.load(world(appointments=(cancelled,)))
    findings = await sandbox.run([SYNC], EMAIL, "what happened to the massive dynamic renewal call")
    assert codes(findings) == ["sync.ok", "sync.appointment_cancelled"]
    assert findings[-1].severity is W
    assert findings[-1].summary == (
        "'Renewal call with Massive Dynamic' was cancelled 2 hours ago because its event was deleted in "
        "your calendar."
    )
    assert trace_requests(sandbox) == []


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("my 3pm with Hooli", ["sync.ok", "sync.appointment_not_identified"]),
        ("the Initech demo tomorrow", ["sync.ok", "sync.appointment_not_identified"]),
        ("why isn't my appointment showing up?", ["sync.ok"]),  # names none: nothing to trace
        ("wonka?", ["sync.ok"]),  # a bare word that matches nothing: not worth a finding
    ],
)
async def test_not_identified(sandbox: Sandbox, question: str, expected: list[str]) -> None:
    sandbox.load(world(appointments=(ACME, GLOBEX), events=(ACME_EVENT,)))
    findings = await sandbox.run([SYNC], EMAIL, question)
    assert codes(findings) == expected
    if len(expected) > 1:
        assert findings[-1].severity is INFO
        assert "your next one is 'Discovery call with Acme' at 2:00 PM tomorrow" in findings[-1].summary
        assert [item["id"] for item in findings[-1].evidence["upcoming"]] == ["acme", "globex"]
    assert trace_requests(sandbox) == []


@pytest.mark.parametrize(
    ("fault", "unknown"),
    [
        ({"kind": "unavailable", "endpoint": "events", "params": {"status": 503}}, "provider.unavailable"),
        ({"kind": "unavailable", "params": {"status": 503}}, "provider.unavailable"),
        ({"kind": "rate_limit", "params": {"retry_after": 30}}, "provider.rate_limited"),
    ],
    ids=["events-503", "everything-503", "429"],
)
async def test_a_provider_outage_is_unknown_never_missing(
    sandbox: Sandbox, fault: dict[str, Any], unknown: str
) -> None:
    stark = appointment("stark", "Renewal with Stark", booked="-3h", link="pending")
    sandbox.load(
        world(
            runs=[run("push", "-40m"), run("pull", "-9m"), run("push", "-5m", "provider_unavailable", "503")],
            appointments=(ACME, stark),
            events=(ACME_EVENT,),
            faults=({"provider": "google", "account": EMAIL, **fault},),
        )
    )
    findings = await sandbox.run([SYNC], EMAIL, "where is my 2pm with Acme tomorrow")
    # What the database knows is all there; the live look-up is `unknown`, not "missing".
    assert codes(findings) == ["sync.push_late", "sync.last_run_failed", "sync.overdue", unknown]
    assert findings[-1].severity is Severity.UNKNOWN
    assert findings[-1].check == "sync"
    assert "This is not a disconnection" in findings[-1].summary


# -- the demo reps ---------------------------------------------------------------------------------------

DEMO_CASES: list[tuple[str, str | None, Expected]] = [
    (
        "jack",
        None,
        [
            ("sync.push_late", E, "The last successful sync to your calendar was 6 hours ago"),
            ("sync.pull_late", E, "the last pickup was 6 hours ago"),
            (
                "sync.last_run_failed",
                E,
                "That's 2 failed attempts in a row since the last success 6 hours ago.",
            ),
            ("sync.overdue", E, "'Renewal with Stark', booked 3 hours ago, hasn't reached your calendar yet"),
        ],
    ),
    (
        "kate",
        None,
        [
            ("sync.ok", OK, "Last synced 8 minutes ago (to your calendar) and 10 minutes ago (from it)."),
            ("sync.pending", INFO, "expect it on your calendar within the next 11 minutes"),
        ],
    ),
    (
        "ana",
        None,
        [("sync.ok", OK, "Last synced 6 minutes ago (to your calendar) and 9 minutes ago (from it).")],
    ),
    (
        "ana",
        "where is my 2pm with Acme tomorrow",
        [
            ("sync.ok", OK, ""),
            (
                "sync.appointment_found",
                OK,
                "Your 2:00 PM tomorrow 'Discovery call with Acme' is on your calendar 'Ana Alvarez' "
                "(Google Calendar).",
            ),
        ],
    ),
    (
        "nora",
        "what happened to the massive dynamic renewal call",
        [
            ("sync.ok", OK, ""),
            (
                "sync.appointment_cancelled",
                W,
                "'Renewal call with Massive Dynamic' was cancelled 2 hours ago because its event was deleted "
                "in your calendar.",
            ),
        ],
    ),
    (
        "carla",
        "I can't see tomorrow's Wonka demo",
        [
            ("sync.push_late", E, "3 hours ago"),
            ("sync.last_run_failed", E, "failed 40 minutes ago: your calendar access was refused."),
            ("sync.overdue", E, "'Tasting demo for Wonka', booked 50 minutes ago"),
            (
                "sync.appointment_missing",
                E,
                "'Tasting demo for Wonka' (11:00 AM tomorrow) isn't on your calendar",
            ),
        ],
    ),
    (
        "omar",
        "where is my demo with aperture",
        [("sync.ok", OK, ""), ("sync.appointment_found", OK, "at 3:00 PM tomorrow, changed 5 minutes ago")],
    ),
    (
        "leo",  # two active connections: each line says which calendar it is about
        None,
        [
            ("sync.ok", OK, "Google Calendar (leo@northwind.example): Last synced 6 minutes ago"),
            ("sync.ok", OK, "Outlook (leo.schmidt@northwind.example): Last synced 6 minutes ago"),
        ],
    ),
    (
        "maya",  # switched providers: old appointments stay where they were synced
        "where is my call with Tyrell",
        [
            ("sync.ok", OK, ""),
            (
                "sync.appointment_missing",
                INFO,
                "'Call with Tyrell' was synced to your previous calendar, Google Calendar "
                "(maya@northwind.example), before you switched",
            ),
        ],
    ),
]


@pytest.fixture
def demo(sandbox: Sandbox) -> Sandbox:
    sandbox.load_file(DEMO)
    return sandbox


@pytest.mark.parametrize(
    ("rep", "question", "expected"),
    DEMO_CASES,
    ids=[f"{rep}-{'asks' if question else 'diagnose'}" for rep, question, _ in DEMO_CASES],
)
async def test_demo_reps(demo: Sandbox, rep: str, question: str | None, expected: Expected) -> None:
    findings = await demo.run([SYNC], f"{rep}@northwind.example", question)
    assert_findings(findings, expected)


async def test_demo_outage_keeps_the_records_and_never_says_missing(demo: Sandbox) -> None:
    findings = await demo.run([SYNC], "quinn@northwind.example", "my workshop with monarch")
    by_code = {finding.code: finding for finding in findings}
    assert "Google was down" in by_code["sync.last_run_failed"].summary  # from the database
    assert by_code["provider.unavailable"].severity is Severity.UNKNOWN  # the live look-up
    assert not {"sync.appointment_missing", "sync.appointment_found"} & set(by_code)


async def test_demo_trace_asks_google_for_that_appointment_only(demo: Sandbox) -> None:
    await demo.run([SYNC], "ana@northwind.example", "where is my 2pm with Acme tomorrow")
    [query] = trace_requests(demo)
    assert query["privateExtendedProperty"] == "calsyncAppointmentId=ana-acme"


async def test_demo_evidence_is_json_safe_and_tokenless(demo: Sandbox) -> None:
    import json

    for rep in ("jack", "carla", "gina", "ana"):
        for finding in await demo.run(
            [SYNC], f"{rep}@northwind.example", "where is my 2pm with Acme tomorrow"
        ):
            text = json.dumps(finding.to_json())
            assert "rt-" not in text and "token" not in text.lower().replace("token has been", "")
