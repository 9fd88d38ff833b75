"""The answers the troubleshooter gives are recorded with their cause and article (what the stats
count), over the real emulators; a later healthy diagnosis within 24 hours marks them fixed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from calsync.db import transaction
from calsync.knowledge.loader import load_articles
from calsync.knowledge.matcher import Matcher
from calsync.store.fleet import FleetStore, StatsRow
from calsync.syncbackend.models import AnswerRecord, CalendarConnection, SyncRun
from tests.diagnostics.test_troubleshooter import troubleshooter
from tests.harness import Sandbox

SCENARIO = """
    accounts:
      - provider: google
        email: rosa@tallgrass.example
        grant: {status: valid}
        calendars:
          - {id: rosa@tallgrass.example, name: Rosa Ruiz, primary: true, access_role: owner}
    users:
      - email: rosa@tallgrass.example
        name: Rosa Ruiz
        connections:
          - provider: google
            account: rosa@tallgrass.example
            selected_calendar: rosa@tallgrass.example
            status: disconnected
            status_code: revoked
            status_reason: "invalid_grant: Token has been expired or revoked."
            disconnected: "-1h"
        sync_runs:
          - {connection: rosa@tallgrass.example, direction: push, started: "-5m", status: ok}
          - {connection: rosa@tallgrass.example, direction: pull, started: "-5m", status: ok}
"""


def reconnect_and_sync(sandbox: Sandbox, later: timedelta) -> None:
    """The rep reconnects (what the callback stores) and, `later`, the engine has just synced."""
    sandbox.clock.now += later
    with transaction(sandbox.sessions) as session:
        session.execute(update(CalendarConnection).values(status="connected", status_code=None))
        connection_id = session.scalars(select(CalendarConnection.id)).one()
        for direction in ("push", "pull"):
            at = sandbox.clock() - timedelta(minutes=2)
            session.add(
                SyncRun(
                    connection_id=connection_id,
                    direction=direction,
                    started_at=at,
                    finished_at=at,
                    status="ok",
                )
            )


def records(sandbox: Sandbox) -> list[tuple[str, str | None, str, bool]]:
    with sandbox.sessions() as session:
        rows = session.scalars(select(AnswerRecord).order_by(AnswerRecord.id)).all()
        return [(r.kind, r.article, r.cause, r.fixed_at is not None) for r in rows]


def test_answers_are_recorded_and_a_later_healthy_diagnosis_marks_them_fixed(sandbox: Sandbox) -> None:
    sandbox.load(SCENARIO)
    knowledge = load_articles()
    doctor = troubleshooter(sandbox, knowledge, Matcher.build(knowledge))
    first = asyncio.run(doctor.answer("rosa@tallgrass.example", "calender wont sync since this morning??"))
    assert first.causes[0].code == "connection.disconnected"
    assert records(sandbox) == [("ask", "not-connected", "connection.disconnected", False)]

    reconnect_and_sync(sandbox, timedelta(hours=3))
    second = asyncio.run(doctor.diagnose("rosa@tallgrass.example"))
    assert second.worst.value in ("ok", "info"), [f.code for f in second.findings]
    assert records(sandbox) == [
        ("ask", "not-connected", "connection.disconnected", True),
        ("diagnose", None, "none", False),
    ]
    stats = FleetStore(sandbox.sessions, sandbox.clock).stats()
    assert StatsRow("connection.disconnected", "not-connected", 1, 0, 0, 0, 0, 1) in stats


def test_a_healthy_diagnosis_a_day_later_fixes_nothing(sandbox: Sandbox) -> None:
    sandbox.load(SCENARIO)
    knowledge = load_articles()
    doctor = troubleshooter(sandbox, knowledge, Matcher.build(knowledge))
    asyncio.run(doctor.diagnose("rosa@tallgrass.example"))
    reconnect_and_sync(sandbox, timedelta(hours=25))
    assert asyncio.run(doctor.diagnose("rosa@tallgrass.example")).worst.value in ("ok", "info")
    assert [fixed for *_, fixed in records(sandbox)] == [False, False]
