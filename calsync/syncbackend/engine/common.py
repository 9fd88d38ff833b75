"""What the parts of the engine share: what a cycle reports, the error codes of a failure, the
snapshot of one connection read under its lease, and the engine's fixed dependencies."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy.orm import Session, sessionmaker

from calsync.syncbackend import holds
from calsync.syncbackend.crypto import TokenCipher, TokenDecryptError
from calsync.syncbackend.incidents import IncidentFollowUp, IncidentNotice, IncidentView
from calsync.syncbackend.models import CalendarConnection, MissingTokenError
from calsync.syncbackend.providers.base import (
    Authorization,
    CalendarProvider,
    GrantError,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from calsync.syncbackend.schedule import SyncPolicy

CycleStatus = Literal["ok", "error", "busy", "skipped", "held"]

# -- what a cycle reports ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleResult:
    connection_id: int
    provider: str
    account_email: str
    status: CycleStatus
    pulled: dict[str, int] = field(default_factory=dict)
    pushed: dict[str, int] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    next_sync_at: datetime | None = None
    pushed_titles: tuple[str, ...] = ()  # appointments this cycle put on the calendar

    def as_dict(self) -> dict[str, object]:
        return {
            "connection_id": self.connection_id,
            "provider": self.provider,
            "account": self.account_email,
            "status": self.status,
            "pulled": dict(self.pulled),
            "pushed": dict(self.pushed),
            "error_code": self.error_code,
            "error_message": self.error_message,
            "next_sync_at": self.next_sync_at.isoformat() if self.next_sync_at else None,
        }


@dataclass(frozen=True)
class SweepResult:
    checked: int = 0
    ok: int = 0
    disconnected: int = 0
    unreachable: int = 0  # rate limited, down or timed out: checked again next sweep
    busy: int = 0  # leased by a running cycle, which checks the grant itself
    seconds: float = 0.0


@dataclass(frozen=True)
class Disconnection:
    """A grant that just stopped working: what the rep is told."""

    connection_id: int
    user_email: str
    user_name: str
    slack_user_id: str | None
    provider: str
    account_email: str
    cause: str
    reason: str
    # The open incident this connection is part of: then reconnecting cannot work yet, and the rep
    # hears that instead of a Reconnect button.
    incident: IncidentView | None = None


@dataclass(frozen=True)
class SentDM:
    """Where a message to a rep went: its conversation and ts (a later follow-up goes in its thread)."""

    channel: str
    ts: str


class DisconnectNotifier(Protocol):
    async def __call__(self, disconnection: Disconnection) -> SentDM | None:
        """Tell the rep; where the message went, None when it did not go out."""
        ...


class FollowUpNotifier(Protocol):
    async def __call__(self, follow_up: IncidentFollowUp) -> bool:
        """Tell the rep, in their disconnection DM's thread, what the incident means for them now;
        True when the message went out."""
        ...


class HoldNotifier(Protocol):
    async def __call__(self, hold: holds.Hold) -> bool:
        """Ask the support agents to decide on held cancellations; True when the message went out."""
        ...


class IncidentNotifier(Protocol):
    async def __call__(self, notice: IncidentNotice) -> str | None:
        """Post the incident's one support message (`notice.support_ts` None) or update it in place;
        the message's ts once it is in the channel, None when Slack refused."""
        ...


def error_code(error: BaseException) -> str:
    """The `SyncRun.error_code` of a failure: the codes the diagnostics explain."""
    if isinstance(error, GrantError | MissingTokenError):
        return "invalid_grant"
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, ProviderTimeout | TimeoutError):
        return "timeout"
    if isinstance(error, ProviderUnavailable):
        return "provider_unavailable"
    if isinstance(error, MalformedResponse):
        return "malformed_response"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, PermissionDenied):
        return "permission_denied"
    if isinstance(error, TokenDecryptError):
        return "token_unreadable"
    return "internal_error"


def error_message(error: BaseException) -> str:
    if isinstance(error, ProviderError):
        return error.message
    if isinstance(error, TimeoutError):
        return "the cycle ran out of time"
    if isinstance(error, MissingTokenError):
        return "no stored authorization: the calendar was never authorized or was disconnected"
    if isinstance(error, TokenDecryptError):
        return "the stored authorization cannot be decrypted with the configured key"
    return f"{type(error).__name__}"  # never str(error): it could carry anything


def mark_disconnected(connection: CalendarConnection, error: BaseException, now: datetime) -> None:
    if connection.status == "disconnected":
        return
    connection.status = "disconnected"
    connection.status_code = str(error.cause) if isinstance(error, GrantError) else "no_token"
    connection.status_reason = error_message(error)[:500]
    connection.disconnected_at = now
    connection.disconnect_notified_at = None  # a new disconnection: the rep hears of it once
    connection.disconnect_dm_channel = connection.disconnect_dm_ts = None
    connection.disconnect_dm_incident_id = None


# -- what every part works with ---------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """The engine's dependencies, fixed when it is built and shared by its parts."""

    sessions: sessionmaker[Session]
    providers: Mapping[str, CalendarProvider]
    cipher: TokenCipher
    clock: Callable[[], datetime]
    policy: SyncPolicy
    worker_id: str
    rng: random.Random


# -- a snapshot of one connection, read under its lease ---------------------------------------------


@dataclass
class Target:
    connection_id: int
    user_id: int
    provider: str
    account_email: str
    calendar_id: str
    cursor: str | None
    auth: Authorization

    @classmethod
    def of(cls, connection: CalendarConnection, auth: Authorization) -> Target:
        return cls(
            connection_id=connection.id,
            user_id=connection.user_id,
            provider=connection.provider,
            account_email=connection.account_email,
            calendar_id=connection.selected_calendar_id or "",
            cursor=connection.sync_cursor,
            auth=auth,
        )


@dataclass
class Run:
    """A sync run in progress; written once finished."""

    direction: Literal["push", "pull"]
    started_at: datetime
    counts: dict[str, int] = field(default_factory=dict)
    titles: list[str] = field(default_factory=list)  # appointments put on the calendar

    def add(self, key: str, amount: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + amount


class StopCycle(Exception):
    """A provider failure that ends the cycle (grant, rate limit, outage, calendar gone)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error
