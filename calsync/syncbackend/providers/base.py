"""The `CalendarProvider` protocol, its normalized types and the classified errors.

Diagnostics and the sync engine use only what is here. One implementation per provider lives
beside this module (`google.py`, `microsoft.py`); each one maps its wire format and its errors
onto these types, so a caller never sees an httplib2, msal or httpx detail.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

ProviderName = Literal["google", "microsoft"]
AccessRole = Literal["owner", "writer", "reader", "freeBusyReader"]
EventStatus = Literal["confirmed", "tentative", "cancelled"]

# The start and end of an event the provider reports only as deleted (no times left to tell).
NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Calendar:
    id: str
    name: str
    primary: bool
    access_role: AccessRole
    owner: str | None = None

    @property
    def writable(self) -> bool:
        return self.access_role in ("owner", "writer")


@dataclass(frozen=True)
class Event:
    id: str
    calendar_id: str
    title: str
    description: str
    start: datetime
    end: datetime
    status: EventStatus = "confirmed"
    appointment_id: str | None = None  # our private extended property, when the event is ours
    ical_uid: str | None = None
    updated: datetime | None = None

    @classmethod
    def removed(cls, event_id: str, calendar_id: str) -> Event:
        """An event the provider says is deleted (Graph's `@removed`, a 404 on look-up)."""
        return cls(
            id=event_id,
            calendar_id=calendar_id,
            title="",
            description="",
            start=NO_TIME,
            end=NO_TIME,
            status="cancelled",
        )


@dataclass(frozen=True)
class EventDraft:
    """What we write to a calendar for one appointment."""

    title: str
    description: str
    start: datetime
    end: datetime
    appointment_id: str
    time_zone: str = "UTC"


@dataclass(frozen=True)
class Changes:
    """One read of a calendar: changed events (cancelled ones included) and the next cursor.

    An incremental read reports deletions. A full read (no cursor, or one that had expired) lists
    the events that exist, so a deletion shows only as an absence: `full_read` says which it was,
    and `window` the span of event times a full read covered (None: the whole calendar)."""

    events: Sequence[Event]
    cursor: str
    full_resync: bool = False  # the old cursor had expired (Google 410, Graph syncStateNotFound)
    full_read: bool = False
    window: tuple[datetime, datetime] | None = None


@dataclass
class Authorization:
    """The tokens of one connection. Providers refresh it in place; callers persist it when `refreshed`.

    `repr` never shows a token.
    """

    refresh_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    account_email: str | None = None
    scopes: tuple[str, ...] = ()
    refreshed: bool = False
    # The Microsoft tenant the account belongs to (the id token's `tid`); None when not known.
    tenant_id: str | None = None


@dataclass(frozen=True)
class GrantInfo:
    """A grant that just refreshed successfully."""

    account_email: str | None
    expires_at: datetime | None
    scopes: tuple[str, ...] = ()


class GrantCause(enum.StrEnum):
    """Why a grant no longer works, as precisely as the provider says."""

    REVOKED = "revoked"  # access revoked by the user or an admin (Google invalid_grant "revoked")
    PASSWORD_CHANGED = "password_changed"  # AADSTS50173
    EXPIRED = "expired"  # refresh token past its lifetime (AADSTS70008, Google "expired")
    INACTIVE = "inactive"  # unused for too long (AADSTS700082, 90 days)
    CONSENT_REMOVED = "consent_removed"  # AADSTS65001: the app's permission was removed (often by IT)
    MFA_REQUIRED = "mfa_required"  # AADSTS50076 / 50158: MFA or Conditional Access needs the user
    INTERACTION_REQUIRED = "interaction_required"  # the user must sign in again, no finer cause given
    ACCOUNT_DELETED = "account_deleted"
    UNKNOWN = "unknown"


class ProviderError(Exception):
    """A classified provider failure. Messages never carry a token."""

    transient: bool = False

    def __init__(self, provider: ProviderName, message: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message


class GrantError(ProviderError):
    """The grant is revoked or expired: only the user signing in again fixes it."""

    def __init__(
        self,
        provider: ProviderName,
        cause: GrantCause,
        message: str,
        *,
        error: str = "invalid_grant",
        codes: tuple[int, ...] = (),
        description: str = "",
    ) -> None:
        super().__init__(provider, message)
        self.cause = cause
        self.error = error
        self.codes = codes
        self.description = description


class RateLimited(ProviderError):
    transient = True

    def __init__(self, provider: ProviderName, message: str, retry_after: float | None = None) -> None:
        super().__init__(provider, message)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    transient = True

    def __init__(self, provider: ProviderName, message: str, status: int | None = None) -> None:
        super().__init__(provider, message)
        self.status = status


class ProviderTimeout(ProviderError):
    transient = True


class MalformedResponse(ProviderError):
    transient = True


class NotFound(ProviderError):
    """The calendar or event does not exist (any more) for this account."""


class PermissionDenied(ProviderError):
    """The account may read but not write this calendar (or may not see it at all)."""


@runtime_checkable
class CalendarProvider(Protocol):
    """One calendar service. Every method may refresh `auth` in place and raises only `ProviderError`s."""

    name: ProviderName

    async def check_grant(self, auth: Authorization) -> GrantInfo:
        """Refresh the access token now (a live check that the grant still works)."""
        ...

    async def list_calendars(self, auth: Authorization) -> list[Calendar]: ...

    async def list_events(
        self,
        auth: Authorization,
        calendar_id: str,
        start: datetime,
        end: datetime,
        *,
        appointment_id: str | None = None,
    ) -> list[Event]:
        """Events overlapping [start, end), single instances, optionally only those carrying our id."""
        ...

    async def get_event(self, auth: Authorization, calendar_id: str, event_id: str) -> Event: ...

    async def insert_event(self, auth: Authorization, calendar_id: str, draft: EventDraft) -> Event: ...

    async def update_event(
        self, auth: Authorization, calendar_id: str, event_id: str, draft: EventDraft
    ) -> Event: ...

    async def delete_event(self, auth: Authorization, calendar_id: str, event_id: str) -> None: ...

    async def changes(self, auth: Authorization, calendar_id: str, cursor: str | None) -> Changes:
        """Events changed since `cursor` (all of them when None); follows every page."""
        ...
