"""`calsync sync EMAIL` and `calsync worker --once`, run as the real console command in a subprocess
against its own sandbox, on the demo world."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from calsync.db import make_engine
from calsync.sandbox.world import World
from tests.test_cli_answer import DEMO, run


@pytest.fixture
def state(tmp_path: Path) -> Path:
    result = run(tmp_path, "sandbox", "load", str(DEMO))
    assert result.returncode == 0, result.stderr.decode()
    return tmp_path


def diagnosis_codes(state: Path, email: str) -> set[str]:
    result = run(state, "diagnose", email, "--json")
    assert result.returncode == 0, result.stderr.decode()
    return {finding["code"] for finding in json.loads(result.stdout)["findings"]}


def test_sync_pushes_the_pending_booking_and_the_diagnosis_agrees(state: Path) -> None:
    assert "sync.pending" in diagnosis_codes(state, "kate@northwind.example")

    result = run(state, "sync", "kate@northwind.example", "--json")

    assert result.returncode == 0, result.stderr.decode()
    (cycle,) = json.loads(result.stdout)
    assert (cycle["status"], cycle["provider"], cycle["pushed"]) == ("ok", "google", {"created": 1})
    assert "sync.pending" not in diagnosis_codes(state, "kate@northwind.example")


# (rep, exit code, where calsync says it, what it says)
SYNC_LINES = [
    ("omar@northwind.example", 0, "stdout", "calendar edit brought back to SalesPartner"),
    ("carla@northwind.example", 1, "stdout", "authorization no longer works; reconnect it"),
    ("pia@northwind.example", 1, "stdout", "asked us to slow down"),
    ("sam@northwind.example", 1, "stderr", "has no active calendar connection"),  # the agent
]


@pytest.mark.parametrize(("email", "code", "stream", "says"), SYNC_LINES)
def test_sync_says_what_it_did(state: Path, email: str, code: int, stream: str, says: str) -> None:
    result = run(state, "sync", email)
    assert result.returncode == code, result.stderr.decode()
    output: bytes = getattr(result, stream)
    assert says in output.decode("utf-8")


def test_worker_once_syncs_every_due_connection(state: Path) -> None:
    result = run(state, "worker", "--once")
    assert result.returncode == 0, result.stderr.decode()
    note = result.stderr.decode()
    assert "cycles" in note and "grants checked" in note
    again: dict[str, Any] = json.loads(run(state, "sync", "kate@northwind.example", "--json").stdout)[0]
    assert again["pushed"] == {}, "the worker already sent Kate's booking"


# (rep, provider, the event the rep deletes in their calendar, the appointment it cancels)
ACROSS_PROCESSES = [
    pytest.param("ana@northwind.example", "google", "ana-ev-1", "ana-acme", id="google"),
    pytest.param("ben@northwind.example", "microsoft", "ben-ev-1", "ben-initech", id="microsoft"),
]


@pytest.mark.parametrize(("email", "provider", "event", "appointment"), ACROSS_PROCESSES)
def test_the_next_process_reads_incrementally_and_a_deletion_cancels(
    state: Path, email: str, provider: str, event: str, appointment: str
) -> None:
    """Each command starts the emulators on new ports; the cursor the first one stored still works in
    the second, as it would against the real services (before, Graph's was dropped: a full read)."""
    first = json.loads(run(state, "sync", email, "--json").stdout)[0]
    assert first["status"] == "ok" and "full_read" in first["pulled"], first  # no cursor yet
    engine = make_engine(f"sqlite:///{state / 'calsync.db'}")
    try:
        World(engine).edit_event(event, {"status": "cancelled"}, datetime.now(UTC))
        result = run(state, "sync", email, "--json")
        assert result.returncode == 0, result.stderr.decode()
        second = json.loads(result.stdout)[0]
        reads = [
            r
            for r in World(engine).requests(provider)
            if r.method == "GET" and ("/calendarView/delta" in r.path or "syncToken" in r.query)
        ]
    finally:
        engine.dispose()

    assert "full_read" not in second["pulled"] and second["pulled"].get("cancelled") == 1, second
    assert reads and ("deltatoken" in reads[-1].query or "syncToken" in reads[-1].query)
    assert "changes.cancelled_by_delete" in diagnosis_codes(state, email)


def held(state: Path) -> int:
    """A hold on both of Ana's appointments, recorded as the engine records one."""
    from sqlalchemy import select

    from calsync.db import make_session_factory, transaction
    from calsync.syncbackend.holds import record_hold
    from calsync.syncbackend.models import Appointment, CalendarConnection

    engine = make_engine(f"sqlite:///{state / 'calsync.db'}")
    try:
        with transaction(make_session_factory(engine)) as session:
            connection = session.scalars(
                select(CalendarConnection).where(CalendarConnection.account_email == "ana@northwind.example")
            ).one()
            appointments = [a for a in (session.get(Appointment, i) for i in ("ana-acme", "ana-globex")) if a]
            return record_hold(
                session, connection, appointments, upcoming=2, source="full read", now=datetime.now(UTC)
            )
    finally:
        engine.dispose()


# (arguments after `calsync holds`, exit code, stream, what it says) — in order, on one hold
HOLD_COMMANDS = [
    (["--json"], 0, "stdout", '"status": "open"'),
    ([], 0, "stdout", "2 of 2 upcoming: Discovery call with Acme"),
    (["keep", "{id}", "--by", "Sam Support"], 0, "stdout", "2 appointments kept booked"),
    (["cancel", "{id}", "--by", "Sam Support"], 1, "stderr", "already decided (kept) by Sam Support"),
    ([], 0, "stderr", "No held cancellations."),
    (["--all", "--json"], 0, "stdout", '"decided_by": "Sam Support"'),
    (["cancel", "999", "--by", "x"], 1, "stderr", "There is no hold 999"),
]


def test_agents_list_and_decide_holds_on_the_command_line(state: Path) -> None:
    hold_id = held(state)
    for args, code, stream, says in HOLD_COMMANDS:
        result = run(state, "holds", *(arg.replace("{id}", str(hold_id)) for arg in args))
        assert result.returncode == code, (args, result.stderr.decode())
        assert says in getattr(result, stream).decode("utf-8"), (args, result.stdout, result.stderr)
    assert "changes.cancelled_by_delete" not in diagnosis_codes(state, "ana@northwind.example")
