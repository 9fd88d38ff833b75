"""A health sweep that finds a rep's grant working counts their recent grant-cause answers as fixed
(the stats' "fixed within 24 h"), over the real emulators and the real engine, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from calsync.db import transaction
from calsync.syncbackend.models import AnswerRecord, User
from tests.sync.conftest import SyncWorld, sync_database_url, sync_world, sync_world_session  # noqa: F401
from tests.sync.test_engine import REP_OF, REPS


async def test_the_sweep_marks_grant_answers_of_healthy_reps_fixed(sync_world: SyncWorld) -> None:  # noqa: F811
    sync_world.sandbox.load(REPS)
    now = sync_world.sandbox.clock()
    with transaction(sync_world.sandbox.sessions) as session:
        ids = {u.email: u.id for u in session.scalars(select(User))}
        gwen, mike = ids[REP_OF["google"]], ids[REP_OF["microsoft"]]
        for user, cause, hours in [
            (gwen, "connection.revoked", 2),  # fixed: her grant works now
            (gwen, "connection.none", 3),  # fixed: she has a working connection
            (gwen, "connection.multiple_active", 2),  # a working grant does not fix a second connection
            (gwen, "calendar.not_found", 2),  # nor the calendar
            (gwen, "connection.expired", 25),  # too long ago
            (mike, "connection.revoked", 1),  # still revoked
        ]:
            session.add(
                AnswerRecord(
                    diagnosis_id=f"{user}-{cause}",
                    at=now - timedelta(hours=hours),
                    user_id=user,
                    kind="ask",
                    cause=cause,
                    article="not-connected",
                )
            )
    sync_world.revoke(REP_OF["microsoft"])

    sweep = await sync_world.engine.health_sweep()

    assert (sweep.ok, sweep.disconnected) == (1, 1)
    with sync_world.sandbox.sessions() as session:
        fixed = {(r.user_id, r.cause): r.fixed_at for r in session.scalars(select(AnswerRecord))}
    assert fixed == {
        (gwen, "connection.revoked"): now,
        (gwen, "connection.none"): now,
        (gwen, "connection.multiple_active"): None,
        (gwen, "calendar.not_found"): None,
        (gwen, "connection.expired"): None,
        (mike, "connection.revoked"): None,
    }
