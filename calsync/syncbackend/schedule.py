"""When each connection syncs next, and the lease that lets only one worker work on it at a time.

The schedule: a cycle every 15 minutes, every 5 during business hours (both settings), each
connection's next time jittered so 10 000 connections do not all wake at once. After a failure the
wait grows (doubling, capped), and a provider's Retry-After is never cut short.

The lease: a connection is worked on only by the worker holding its lease (`lease_owner`,
`lease_until` on the row). Claiming is one conditional UPDATE ("... WHERE lease is free"), atomic on
SQLite and PostgreSQL alike; on PostgreSQL the due rows are first picked with
`SELECT ... FOR UPDATE SKIP LOCKED`, so two workers polling together take different rows instead of
queueing on the same ones. A lease expires on its own, so a worker that dies frees its connections
once `lease_until` passes; no transaction stays open across provider calls.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from calsync.syncbackend.models import CalendarConnection

if TYPE_CHECKING:
    from calsync.settings import Settings

BUSINESS_DAYS = frozenset(range(5))  # Monday to Friday


@dataclass(frozen=True)
class SyncPolicy:
    interval: timedelta = timedelta(minutes=15)
    business_interval: timedelta = timedelta(minutes=5)
    business_start: time = time(8)
    business_end: time = time(18)
    business_days: frozenset[int] = BUSINESS_DAYS
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    jitter: float = 0.2  # each wait is the interval ± 20 %
    max_backoff: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(minutes=10)
    health_interval: timedelta = timedelta(hours=1)
    # One read that would cancel at least this many of a rep's upcoming appointments, and at least
    # this share of them, cancels none: an agent is asked first (a wiped or swapped calendar, a
    # provider glitch and a rep's clean-up all look alike from here).
    mass_cancel_count: int = 3
    mass_cancel_share: float = 0.2

    def holds_cancellations(self, cancelling: int, upcoming: int) -> bool:
        """Whether cancelling `cancelling` of a rep's `upcoming` appointments at once needs an agent."""
        return cancelling >= self.mass_cancel_count and cancelling >= self.mass_cancel_share * upcoming

    @property
    def cycle_timeout(self) -> float:
        """Seconds a cycle may take: well inside the lease, so no one else starts while it runs."""
        return self.lease.total_seconds() * 0.8

    def in_business_hours(self, moment: datetime) -> bool:
        local = moment.astimezone(self.time_zone)
        return (
            local.weekday() in self.business_days and self.business_start <= local.time() < self.business_end
        )

    def interval_at(self, moment: datetime) -> timedelta:
        return self.business_interval if self.in_business_hours(moment) else self.interval

    def next_run(self, now: datetime, rng: random.Random) -> datetime:
        """After a good cycle: the interval for this time of day, jittered."""
        return now + self.interval_at(now) * rng.uniform(1 - self.jitter, 1 + self.jitter)

    def retry_at(
        self, now: datetime, failures: int, retry_after: float | None, rng: random.Random
    ) -> datetime:
        """After the `failures`-th failure in a row: back off (1, 2, 4 ... minutes, capped), never
        sooner than the provider asked."""
        backoff = min(timedelta(minutes=2 ** max(failures - 1, 0)), self.max_backoff)
        wait = backoff * rng.uniform(1, 1 + self.jitter)
        if retry_after is not None:
            wait = max(wait, timedelta(seconds=retry_after))
        return now + wait


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def policy_from_settings(settings: Settings) -> SyncPolicy:
    """The schedule from settings (`CALSYNC_SYNC_*`, `CALSYNC_BUSINESS_*`, ...). A malformed business
    hours, days or time zone is a ValueError naming the settings and an example."""
    try:
        start_text, end_text = settings.business_hours.split("-")
        start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
        business_days = frozenset(
            WEEKDAYS.index(day.strip().lower()[:3])
            for day in settings.business_days.split(",")
            if day.strip()
        )
        zone = ZoneInfo(settings.business_time_zone)
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"CALSYNC_BUSINESS_HOURS / _DAYS / _TIME_ZONE: {error} (e.g. 08:00-18:00, mon,tue,wed,thu,fri, "
            "Europe/Berlin)"
        ) from None
    return SyncPolicy(
        interval=timedelta(minutes=settings.sync_interval_minutes),
        business_interval=timedelta(minutes=settings.sync_business_interval_minutes),
        business_start=start,
        business_end=end,
        business_days=business_days,
        time_zone=zone,
        jitter=settings.sync_jitter,
        health_interval=timedelta(minutes=settings.health_interval_minutes),
        mass_cancel_count=settings.mass_cancel_count,
        mass_cancel_share=settings.mass_cancel_share,
    )


def new_worker_id() -> str:
    return f"worker-{uuid.uuid4().hex[:12]}"


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(CalendarConnection.lease_until.is_(None), CalendarConnection.lease_until < now)


def claim(session: Session, connection_id: int, owner: str, now: datetime, lease: timedelta) -> bool:
    """Take the lease on one connection if nobody holds it; True when this caller now holds it."""
    result = session.execute(
        update(CalendarConnection)
        .where(CalendarConnection.id == connection_id, _lease_free(now))
        .values(lease_owner=owner, lease_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def claim_many(
    session: Session, connection_ids: Iterable[int], owner: str, now: datetime, lease: timedelta
) -> list[int]:
    return [cid for cid in connection_ids if claim(session, cid, owner, now, lease)]


def release(session: Session, connection_ids: Sequence[int], owner: str) -> None:
    if not connection_ids:
        return
    session.execute(
        update(CalendarConnection)
        .where(CalendarConnection.id.in_(connection_ids), CalendarConnection.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


def _syncable() -> tuple[ColumnElement[bool], ...]:
    return (
        CalendarConnection.active.is_(True),
        CalendarConnection.status == "connected",
        CalendarConnection.selected_calendar_id.is_not(None),
    )


def claim_due(session: Session, owner: str, now: datetime, lease: timedelta, limit: int) -> list[int]:
    """Take the leases of up to `limit` connections whose next cycle is due, the most overdue first."""
    candidates = session.scalars(
        select(CalendarConnection.id)
        .where(
            *_syncable(),
            or_(CalendarConnection.next_sync_at.is_(None), CalendarConnection.next_sync_at <= now),
            _lease_free(now),
        )
        .order_by(CalendarConnection.next_sync_at.asc().nulls_first(), CalendarConnection.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return claim_many(session, candidates, owner, now, lease)


def claim_health_batch(
    session: Session, owner: str, now: datetime, policy: SyncPolicy, limit: int, after_id: int = 0
) -> tuple[list[int], list[int]]:
    """Take the leases of up to `limit` connected connections not checked within the health interval,
    in id order after `after_id` (a sweep walks the table once); (claimed ids, ids looked at). A
    connection leased by a running cycle is passed over: the cycle checks its grant itself."""
    stale = now - policy.health_interval
    candidates = session.scalars(
        select(CalendarConnection.id)
        .where(
            CalendarConnection.active.is_(True),
            CalendarConnection.status == "connected",
            CalendarConnection.id > after_id,
            or_(CalendarConnection.last_checked_at.is_(None), CalendarConnection.last_checked_at < stale),
            _lease_free(now),
        )
        .order_by(CalendarConnection.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not candidates:
        return [], []
    # One conditional UPDATE for the whole batch, as atomic as `claim` row by row ("... WHERE the
    # lease is free"; RETURNING says which rows it took) but one statement instead of hundreds: on
    # SQLite the database's write lock is held meanwhile, and everyone else's writes wait for it.
    claimed = session.scalars(
        update(CalendarConnection)
        .where(CalendarConnection.id.in_(candidates), _lease_free(now))
        .values(lease_owner=owner, lease_until=now + policy.lease)
        .returning(CalendarConnection.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(claimed), list(candidates)
