"""Who works on which connection: the leases a cycle runs under (see `schedule.py`), and the health
sweep, which leases connections in batches and refreshes each one's grant, so that a broken
connection is found (and the rep told) before the rep notices."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from calsync.db import table_of, transaction
from calsync.syncbackend.crypto import TokenDecryptError
from calsync.syncbackend.engine.common import (
    Context,
    SweepResult,
    Target,
    error_code,
    error_message,
    mark_disconnected,
)
from calsync.syncbackend.models import (
    ANSWER_FIXED_WITHIN,
    AnswerRecord,
    CalendarConnection,
    MissingTokenError,
    SyncRun,
    authorization_columns,
)
from calsync.syncbackend.providers.base import GrantError, ProviderError
from calsync.syncbackend.schedule import claim, claim_due, claim_health_batch, release


class Leases:
    """The lease of each connection, taken and given back in short transactions of their own."""

    def __init__(self, context: Context) -> None:
        self.ctx = context

    def claim(self, connection_id: int, now: datetime) -> bool:
        with transaction(self.ctx.sessions) as session:
            return claim(session, connection_id, self.ctx.worker_id, now, self.ctx.policy.lease)

    def claim_due(self, now: datetime, limit: int) -> list[int]:
        with transaction(self.ctx.sessions) as session:
            return claim_due(session, self.ctx.worker_id, now, self.ctx.policy.lease, limit)

    def claim_health(self, now: datetime, batch: int, after: int) -> tuple[list[int], list[int]]:
        with transaction(self.ctx.sessions) as session:
            return claim_health_batch(session, self.ctx.worker_id, now, self.ctx.policy, batch, after)

    def release(self, connection_ids: list[int]) -> None:
        with transaction(self.ctx.sessions) as session:
            release(session, connection_ids, self.ctx.worker_id)


class HealthSweep:
    def __init__(
        self,
        context: Context,
        leases: Leases,
        tell_disconnected: Callable[[list[int]], Awaitable[int]],
    ) -> None:
        self.ctx = context
        self.leases = leases
        self.tell_disconnected = tell_disconnected  # the reps of these connections hear of it

    async def __call__(self, *, concurrency: int = 64, batch: int = 500) -> SweepResult:
        """Refresh the grant of every connected connection not checked within the health interval.

        The table is walked in id order, `batch` connections leased at a time, at most `concurrency`
        grants checked at once. The database work overlaps the checks: the next batch is claimed and
        read while this one's grants are checked, and a batch is written back while the next one's
        are, so no provider call waits for the database and a slow check holds up only its own
        batch's write. At most two batches are leased at a time.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        totals = {"checked": 0, "ok": 0, "disconnected": 0, "unreachable": 0, "busy": 0}
        slots = asyncio.Semaphore(max(1, concurrency))

        async def check(target: Target) -> tuple[Target, BaseException | None]:
            provider = self.ctx.providers.get(target.provider)
            if provider is None:
                return target, None
            async with slots:
                try:
                    await provider.check_grant(target.auth)
                except ProviderError as error:
                    return target, error
            return target, None

        async def sweep_batch(claimed: list[int], targets: list[Target]) -> None:
            outcomes = await asyncio.gather(*(check(t) for t in targets))
            counts, disconnected = await asyncio.to_thread(self._record_health, outcomes, claimed)
            for key, value in counts.items():
                totals[key] += value
            if disconnected:
                await self.tell_disconnected(disconnected)

        running: set[asyncio.Task[None]] = set()
        after = 0
        try:
            while True:
                claimed, candidates = await asyncio.to_thread(
                    self.leases.claim_health, self.ctx.clock(), batch, after
                )
                if not candidates:
                    break
                after = candidates[-1]
                totals["busy"] += len(candidates) - len(claimed)
                targets = await asyncio.to_thread(self._health_targets, claimed)
                running.add(asyncio.create_task(sweep_batch(claimed, targets)))
                while len(running) >= 2:  # claim the next batch once one of these two is done
                    done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
            while running:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        return SweepResult(seconds=loop.time() - started, **totals)

    def _health_targets(self, ids: list[int]) -> list[Target]:
        if not ids:
            return []
        targets: list[Target] = []
        with self.ctx.sessions() as session:
            for connection in session.scalars(
                select(CalendarConnection).where(CalendarConnection.id.in_(ids))
            ):
                try:
                    auth = connection.authorization(self.ctx.cipher)
                except (MissingTokenError, TokenDecryptError):
                    continue
                targets.append(Target.of(connection, auth))
        return targets

    def _record_health(
        self, outcomes: list[tuple[Target, BaseException | None]], claimed: list[int]
    ) -> tuple[dict[str, int], list[int]]:
        """Write one batch's outcomes and release its leases: (counts, ids found disconnected).

        A batch is mostly grants that are fine, so those rows are written with one executemany
        UPDATE per shape of row, their tokens encrypted before the transaction begins: the write
        lock (on SQLite, the whole database's) is held for milliseconds, not for a flush of a few
        hundred objects. The few failures go through the ORM as before."""

        now = self.ctx.clock()
        counts = {"checked": 0, "ok": 0, "disconnected": 0, "unreachable": 0}
        disconnected: list[int] = []
        rows: dict[frozenset[str], list[dict[str, object]]] = {}  # the fine ones, by shape
        failed: dict[int, tuple[Target, BaseException]] = {}
        for target, error in outcomes:
            if error is not None:
                failed[target.connection_id] = (target, error)
                continue
            values: dict[str, object] = {"last_checked_at": now}
            if target.auth.refreshed:
                values.update(authorization_columns(self.ctx.cipher, target.auth), last_refreshed_at=now)
            values["connection_id"] = target.connection_id
            rows.setdefault(frozenset(values), []).append(values)
        table = table_of(CalendarConnection)
        healthy: list[int] = []
        with transaction(self.ctx.sessions) as session:
            ids = [t.connection_id for t, _ in outcomes]
            existing = (
                set(session.scalars(select(CalendarConnection.id).where(CalendarConnection.id.in_(ids))))
                if ids
                else set()
            )
            for shape, params in rows.items():
                params = [p for p in params if p["connection_id"] in existing]
                if not params:
                    continue
                columns = sorted(shape - {"connection_id"})
                session.connection().execute(
                    update(table)
                    .where(table.c.id == bindparam("connection_id"))
                    .values({name: bindparam(name, type_=table.c[name].type) for name in columns}),
                    params,
                )
                counts["checked"] += len(params)
                counts["ok"] += len(params)
                healthy.extend(int(str(p["connection_id"])) for p in params)
            mark_answers_fixed(session, healthy, now)
            for connection in session.scalars(
                select(CalendarConnection).where(CalendarConnection.id.in_(list(failed)))
            ):
                target, error = failed[connection.id]
                counts["checked"] += 1
                if target.auth.refreshed:
                    connection.store_authorization(self.ctx.cipher, target.auth)
                    connection.last_refreshed_at = now
                session.add(
                    SyncRun(
                        connection_id=connection.id,
                        direction="health",
                        started_at=now,
                        finished_at=now,
                        status="error",
                        error_code=error_code(error),
                        error_message=error_message(error)[:1000],
                        counts={},
                    )
                )
                if isinstance(error, GrantError):
                    counts["disconnected"] += 1
                    connection.last_checked_at = now
                    mark_disconnected(connection, error, now)
                    disconnected.append(connection.id)
                else:
                    counts["unreachable"] += 1
            session.flush()
            release(session, claimed, self.ctx.worker_id)
        return counts, disconnected


# The causes of an answer that a working grant fixes (not a second connection, say).
_GRANT_CAUSES = "connection.%"
_NOT_FIXED_BY_A_GRANT = ("connection.multiple_active",)


def mark_answers_fixed(session: Session, connection_ids: list[int], now: datetime) -> None:
    """The sweep found these connections' grants working: the answers of the last 24 hours that blamed
    their reps' grant (or the lack of a connection) count as fixed (the resolution stats)."""
    if not connection_ids:
        return
    session.execute(
        update(AnswerRecord)
        .where(
            AnswerRecord.fixed_at.is_(None),
            AnswerRecord.at >= now - ANSWER_FIXED_WITHIN,
            AnswerRecord.at <= now,
            AnswerRecord.cause.like(_GRANT_CAUSES),
            AnswerRecord.cause.not_in(_NOT_FIXED_BY_A_GRANT),
            AnswerRecord.user_id.in_(
                select(CalendarConnection.user_id).where(CalendarConnection.id.in_(connection_ids))
            ),
        )
        .values(fixed_at=now)
        .execution_options(synchronize_session=False)
    )
