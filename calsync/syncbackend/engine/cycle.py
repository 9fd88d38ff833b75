"""One connection's cycle, which ties the parts together, and the engine's entry points.

A cycle runs under the connection's lease (`leases.py`): the pull (`pull.py`), then the push
(`push.py`). Both write a `SyncRun` with counts and, on failure, the error code the diagnostics
explain. A revoked or expired grant marks the connection disconnected with its cause and tells the
rep once (`notify.py`). A rate limit, outage or timeout ends the cycle early and moves the next one
back (never sooner than Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.syncbackend.crypto import TokenCipher, TokenDecryptError
from calsync.syncbackend.engine.common import (
    Context,
    CycleResult,
    CycleStatus,
    DisconnectNotifier,
    FollowUpNotifier,
    HoldNotifier,
    IncidentNotifier,
    Run,
    StopCycle,
    SweepResult,
    Target,
    error_code,
    error_message,
    mark_disconnected,
)
from calsync.syncbackend.engine.leases import HealthSweep, Leases
from calsync.syncbackend.engine.notify import Notifications
from calsync.syncbackend.engine.pull import Pull
from calsync.syncbackend.engine.push import Push
from calsync.syncbackend.incidents import Detected, IncidentPolicy, IncidentStore
from calsync.syncbackend.models import CalendarConnection, MissingTokenError, SyncRun, User
from calsync.syncbackend.providers.base import CalendarProvider, GrantError, RateLimited
from calsync.syncbackend.schedule import SyncPolicy, new_worker_id

log = logging.getLogger(__name__)


class SyncEngine:
    """The sync engine. Its dependencies are fixed when it is built (`providers`, `policy`, ... are
    read-only); the notifiers are the constructor's `notify`, `notify_hold`, `notify_incident` and
    `notify_follow_up`, read when a message is due."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        providers: Mapping[str, CalendarProvider],
        cipher: TokenCipher,
        clock: Callable[[], datetime],
        policy: SyncPolicy | None = None,
        notify: DisconnectNotifier | None = None,
        notify_hold: HoldNotifier | None = None,
        notify_incident: IncidentNotifier | None = None,
        notify_follow_up: FollowUpNotifier | None = None,
        incident_policy: IncidentPolicy | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        max_concurrent_cycles: int = 16,
    ) -> None:
        self.ctx = Context(
            sessions=sessions,
            providers=providers,
            cipher=cipher,
            clock=clock,
            policy=policy or SyncPolicy(),
            worker_id=worker_id or new_worker_id(),
            rng=rng or random.Random(),
        )
        self.notify = notify
        self.notify_hold = notify_hold
        self.notify_incident = notify_incident
        self.notify_follow_up = notify_follow_up
        self.incidents = IncidentStore(sessions, incident_policy or IncidentPolicy(), self.ctx.worker_id)
        self.max_concurrent_cycles = max(1, max_concurrent_cycles)
        self._leases = Leases(self.ctx)
        self._pull = Pull(self.ctx)
        self._push = Push(self.ctx)
        self._notifications = Notifications(self.ctx)
        self._sweep = HealthSweep(self.ctx, self._leases, self._after_sweep_disconnections)

    @property
    def providers(self) -> Mapping[str, CalendarProvider]:
        return self.ctx.providers

    @property
    def policy(self) -> SyncPolicy:
        return self.ctx.policy

    @property
    def worker_id(self) -> str:
        return self.ctx.worker_id

    # -- entry points -------------------------------------------------------------------------------

    async def sync_user(self, email: str) -> list[CycleResult]:
        """One cycle now for each of the rep's active connections ("Sync now", `calsync sync`)."""
        ids = await asyncio.to_thread(self._active_connection_ids, email)
        return list(await asyncio.gather(*(self.sync_connection(cid) for cid in ids)))

    async def sync_connection(self, connection_id: int) -> CycleResult:
        """One cycle of one connection, unless another worker is running one (then status "busy")."""
        now = self.ctx.clock()
        claimed = await asyncio.to_thread(self._leases.claim, connection_id, now)
        if not claimed:
            return await asyncio.to_thread(self._describe, connection_id, "busy")
        try:
            result = await self._cycle_under_lease(connection_id)
        finally:
            await asyncio.to_thread(self._leases.release, [connection_id])
        if result.status == "error":
            await self._after_failures([connection_id])
        return result

    async def run_due(
        self, limit: int = 100, progress: Callable[[int, int], None] | None = None
    ) -> list[CycleResult]:
        """Every connection whose next cycle is due (up to `limit`), a bounded number at a time;
        `progress` hears `(done, total)` as cycles finish."""
        now = self.ctx.clock()
        ids = await asyncio.to_thread(self._leases.claim_due, now, limit)
        slots = asyncio.Semaphore(self.max_concurrent_cycles)
        finished = 0
        if progress is not None:
            progress(0, len(ids))

        async def one(connection_id: int) -> CycleResult:
            nonlocal finished
            async with slots:
                try:
                    return await self._cycle_under_lease(connection_id)
                finally:
                    await asyncio.to_thread(self._leases.release, [connection_id])
                    finished += 1
                    if progress is not None:
                        progress(finished, len(ids))

        results = list(await asyncio.gather(*(one(cid) for cid in ids)))
        failed = [result.connection_id for result in results if result.status == "error"]
        if failed:
            await self._after_failures(failed)  # once for the whole batch, not once per failure
        return results

    async def _after_failures(self, connection_ids: list[int]) -> None:
        """After cycles failed: recognise incidents first, then DM the reps found disconnected — so a
        rep whose organisation's admin is the cause hears that, not "reconnect"."""
        await self._watch_safely()
        await self.notify_disconnections(connection_ids)

    async def _cycle_under_lease(self, connection_id: int) -> CycleResult:
        try:
            async with asyncio.timeout(self.policy.cycle_timeout):
                return await self._cycle(connection_id)
        except TimeoutError as error:
            return await asyncio.to_thread(self._after_failure, connection_id, error)

    # -- one cycle ------------------------------------------------------------------------------------

    async def _cycle(self, connection_id: int) -> CycleResult:
        target = await asyncio.to_thread(self._load_target, connection_id)
        if isinstance(target, CycleResult):
            return target
        provider = self.providers.get(target.provider)
        if provider is None:
            return await asyncio.to_thread(
                self._describe, connection_id, "skipped", "provider_not_configured"
            )
        pull = Run("pull", self.ctx.clock())
        push = Run("push", self.ctx.clock())
        current = pull
        try:
            held = await self._pull(provider, target, pull)
            if held is not None:
                # Many cancellations at once: none made, an agent asked; the push waits a cycle.
                await asyncio.to_thread(self._finish_run, target, pull, None, held)
                return await self._held(target, pull, held)
            await asyncio.to_thread(self._finish_run, target, pull, None)
            current = push
            await self._push(provider, target, push)
            await asyncio.to_thread(self._finish_run, target, push, None)
        except StopCycle as stop:
            await asyncio.to_thread(self._finish_run, target, current, stop.error)
            return await self._failed(target, stop.error)
        finally:
            await asyncio.to_thread(self._store_tokens, target)
        return await asyncio.to_thread(self._schedule_next, target, pull, push)

    def _active_connection_ids(self, email: str) -> list[int]:
        with self.ctx.sessions() as session:
            return list(
                session.scalars(
                    select(CalendarConnection.id)
                    .join(User)
                    .where(User.email == email.strip().lower(), CalendarConnection.active.is_(True))
                    .order_by(CalendarConnection.id)
                )
            )

    def _describe(self, connection_id: int, status: CycleStatus, code: str | None = None) -> CycleResult:
        with self.ctx.sessions() as session:
            connection = session.get(CalendarConnection, connection_id)
            if connection is None:
                return CycleResult(connection_id, "", "", "skipped", error_code="no_such_connection")
            return CycleResult(
                connection_id,
                connection.provider,
                connection.account_email,
                status,
                error_code=code,
                next_sync_at=connection.next_sync_at,
            )

    def _load_target(self, connection_id: int) -> Target | CycleResult:
        with self.ctx.sessions() as session:
            connection = session.get(CalendarConnection, connection_id)
            if connection is None:
                return CycleResult(connection_id, "", "", "skipped", error_code="no_such_connection")
            skip: str | None = None
            if not connection.active:
                skip = "inactive"
            elif connection.status != "connected":
                skip = "disconnected"
            elif not connection.selected_calendar_id:
                skip = "no_calendar_selected"
            if skip is not None:
                return CycleResult(
                    connection_id, connection.provider, connection.account_email, "skipped", error_code=skip
                )
            try:
                auth = connection.authorization(self.ctx.cipher)
            except (MissingTokenError, TokenDecryptError) as error:
                return self._write_failure_now(connection_id, error)
            return Target.of(connection, auth)

    def _write_failure_now(self, connection_id: int, error: BaseException) -> CycleResult:
        now = self.ctx.clock()
        with transaction(self.ctx.sessions) as session:
            session.add(
                SyncRun(
                    connection_id=connection_id,
                    direction="pull",
                    started_at=now,
                    finished_at=now,
                    status="error",
                    error_code=error_code(error),
                    error_message=error_message(error),
                    counts={},
                )
            )
        return self._after_failure(connection_id, error)

    def _finish_run(
        self, target: Target, run: Run, error: BaseException | None, hold_id: int | None = None
    ) -> None:
        now = self.ctx.clock()
        status: Literal["ok", "error", "held"] = "ok"
        code = message = None
        if error is not None:
            status, code, message = "error", error_code(error), error_message(error)[:1000]
        elif hold_id is not None:
            held = run.counts.get("held", 0)
            status, code = "held", "cancellations_held"
            message = (
                f"{held} appointment{'s' if held != 1 else ''} deleted in the calendar at once: none "
                f"cancelled, a support agent was asked (hold {hold_id})"
            )
        with transaction(self.ctx.sessions) as session:
            session.add(
                SyncRun(
                    connection_id=target.connection_id,
                    direction=run.direction,
                    started_at=run.started_at,
                    finished_at=now,
                    status=status,
                    error_code=code,
                    error_message=message,
                    counts=dict(run.counts),
                )
            )

    def _store_tokens(self, target: Target) -> None:
        """Persist a refreshed grant (Microsoft rotates refresh tokens) whatever the cycle's outcome."""
        if not target.auth.refreshed:
            return
        with transaction(self.ctx.sessions) as session:
            connection = session.get(CalendarConnection, target.connection_id)
            if connection is not None:
                connection.store_authorization(self.ctx.cipher, target.auth)
                connection.last_refreshed_at = self.ctx.clock()
        target.auth.refreshed = False

    def _schedule_next(self, target: Target, pull: Run, push: Run | None) -> CycleResult:
        """The next cycle at the usual time. After a success the failures are forgotten; after a hold
        (`push` None) nothing is: a hold is not a failure (no backoff), the next cycle runs as usual
        and leaves the held ones alone."""
        with transaction(self.ctx.sessions) as session:
            connection = session.get(CalendarConnection, target.connection_id)
            assert connection is not None
            if push is not None:
                connection.sync_failures = 0
            connection.next_sync_at = self.policy.next_run(self.ctx.clock(), self.ctx.rng)
            return CycleResult(
                target.connection_id,
                target.provider,
                target.account_email,
                "ok" if push is not None else "held",
                pulled=dict(pull.counts),
                pushed=dict(push.counts) if push is not None else {},
                error_code=None if push is not None else "cancellations_held",
                next_sync_at=connection.next_sync_at,
                pushed_titles=tuple(push.titles) if push is not None else (),
            )

    async def _failed(self, target: Target, error: BaseException) -> CycleResult:
        # The rep is told by the caller, once incidents are recognised (`_after_failures`).
        return await asyncio.to_thread(self._after_failure, target.connection_id, error)

    async def _held(self, target: Target, pull: Run, hold_id: int) -> CycleResult:
        result = await asyncio.to_thread(self._schedule_next, target, pull, None)
        await self.notify_holds([hold_id])
        return result

    def _after_failure(self, connection_id: int, error: BaseException) -> CycleResult:
        now = self.ctx.clock()
        with transaction(self.ctx.sessions) as session:
            connection = session.get(CalendarConnection, connection_id)
            if connection is None:
                return CycleResult(connection_id, "", "", "skipped", error_code="no_such_connection")
            connection.sync_failures += 1
            retry_after = error.retry_after if isinstance(error, RateLimited) else None
            connection.next_sync_at = self.policy.retry_at(
                now, connection.sync_failures, retry_after, self.ctx.rng
            )
            if isinstance(error, GrantError | MissingTokenError):
                mark_disconnected(connection, error, now)
            return CycleResult(
                connection_id,
                connection.provider,
                connection.account_email,
                "error",
                error_code=error_code(error),
                error_message=error_message(error),
                next_sync_at=connection.next_sync_at,
            )

    # -- telling the rep -----------------------------------------------------------------------------

    async def notify_disconnections(self, connection_ids: Iterable[int] | None = None) -> int:
        """DM each rep whose connection was found disconnected and not told yet; how many were told."""
        if self.notify is None:
            return 0
        return await self._notifications.tell_disconnected(self.notify, connection_ids)

    async def notify_holds(self, hold_ids: Iterable[int] | None = None) -> int:
        """Ask the support agents about each open hold not asked about yet; how many were asked."""
        if self.notify_hold is None:
            return 0
        return await self._notifications.ask_about_holds(self.notify_hold, hold_ids)

    async def _after_sweep_disconnections(self, connection_ids: list[int]) -> int:
        try:
            await asyncio.to_thread(self.incidents.detect, self.ctx.clock())
        except Exception:
            log.exception("incident detection failed; the reps are told as usual")
        return await self.notify_disconnections(connection_ids)

    async def _watch_safely(self) -> None:
        """`watch_incidents`, where its failure must not cost the cycle's result or the rep's DM."""
        try:
            await self.watch_incidents()
        except Exception:
            log.exception("incident detection failed; the reps are told as usual")

    async def watch_incidents(self) -> Detected:
        """Recognise shared causes (`calsync.syncbackend.incidents`): open, grow and end incidents,
        then bring each one's support message up to date, and follow up with the reps whose DM
        no longer says what is true (told to reconnect before it was recognised; told to wait, and
        access is back)."""
        detected = await asyncio.to_thread(self.incidents.detect, self.ctx.clock())
        if self.notify_incident is not None:
            await self._notifications.announce_incidents(self.notify_incident, self.incidents)
        if self.notify_follow_up is not None:
            await self._notifications.follow_up_incidents(self.notify_follow_up, self.incidents)
        return detected

    # -- the health sweep -------------------------------------------------------------------------

    async def health_sweep(self, *, concurrency: int = 64, batch: int = 500) -> SweepResult:
        """Refresh the grant of every connected connection not checked within the health interval
        (see `HealthSweep`)."""
        return await self._sweep(concurrency=concurrency, batch=batch)


# -- the worker loop ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickResult:
    cycles: list[CycleResult]
    sweep: SweepResult
    told: int


async def tick(
    engine: SyncEngine, *, batch: int = 100, progress: Callable[[int, int], None] | None = None
) -> TickResult:
    """One round of a worker: the due cycles, the health checks that are due, and the reps to tell;
    `progress` hears `(done, total)` of the cycles."""
    cycles = await engine.run_due(limit=batch, progress=progress)
    sweep = await engine.health_sweep()
    await engine.watch_incidents()  # the sweep's disconnections, and incidents that are over
    told = await engine.notify_disconnections()
    await engine.notify_holds()  # one a failed message left unasked
    return TickResult(cycles=cycles, sweep=sweep, told=told)


async def run_worker(
    engine: SyncEngine,
    stop: asyncio.Event,
    *,
    every: float = 5.0,
    batch: int = 100,
    report: Callable[[TickResult], None] | None = None,
) -> None:
    """Tick until `stop` is set; a failing tick is logged and the next one comes as usual."""
    while not stop.is_set():
        try:
            result = await tick(engine, batch=batch)
            if report is not None:
                report(result)
        except Exception:
            log.exception("sync worker tick failed; trying again in %.0f s", every)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
