"""The sandbox world's provider-side tables (prefixed `sandbox_`), and the names faults use.

These tables are not part of the product schema: `World.create_tables()` creates them, not Alembic,
and Alembic's autogenerate ignores them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from calsync.db import UTCDateTime

Provider = Literal["google", "microsoft"]
FaultKind = Literal[
    "latency",  # params: seconds — added before answering
    "rate_limit",  # params: retry_after (seconds) — HTTP 429 with Retry-After
    "unavailable",  # params: status (default 503)
    "hang",  # params: seconds (default 60) — no answer until the client gives up
    "hold",  # params: seconds (default 60) — no answer while the fault exists (a test lets go), then as usual
    "invalid_grant",  # params: description (Google) or aadsts (int) + suberror (Microsoft)
    "malformed",  # 200 with a body that is not the JSON the client expects
    "sync_token_expired",  # Google 410 Gone / Graph syncStateNotFound on an incremental read
    "lost_response",  # params: status (503), after_seconds (0) — carried out, its answer lost
    "short_list",  # params: drop (default all) — a list answered without its first items
]
# Endpoints a fault can target; "*" matches every one of them.
Endpoint = Literal["*", "token", "calendars", "events", "changes"]


class SandboxBase(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class SandboxAccount(SandboxBase):
    __tablename__ = "sandbox_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    email: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200), default="")


class SandboxGrant(SandboxBase):
    """A refresh token the identity emulator issued for one account."""

    __tablename__ = "sandbox_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("sandbox_accounts.id", ondelete="CASCADE"))
    refresh_token: Mapped[str] = mapped_column(String(200), unique=True)
    scopes: Mapped[str] = mapped_column(Text, default="")
    # "valid", or "revoked": refreshing then fails with the error below.
    status: Mapped[str] = mapped_column(String(16), default="valid")
    error_description: Mapped[str] = mapped_column(Text, default="")
    aadsts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    suberror: Mapped[str] = mapped_column(String(64), default="")


class SandboxFormerRefreshToken(SandboxBase):
    """A refresh token its grant has since replaced. The Microsoft identity platform does not revoke
    a refresh token when it issues the next one: both refresh until the grant itself is revoked."""

    __tablename__ = "sandbox_former_refresh_tokens"

    token: Mapped[str] = mapped_column(String(200), primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("sandbox_grants.id", ondelete="CASCADE"))


class SandboxAccessToken(SandboxBase):
    __tablename__ = "sandbox_access_tokens"

    token: Mapped[str] = mapped_column(String(200), primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("sandbox_grants.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime]


class SandboxAuthCode(SandboxBase):
    """An authorization code from the consent page, waiting for the token exchange."""

    __tablename__ = "sandbox_auth_codes"

    code: Mapped[str] = mapped_column(String(200), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("sandbox_accounts.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(200))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(Text, default="")
    code_challenge: Mapped[str] = mapped_column(String(200), default="")
    code_challenge_method: Mapped[str] = mapped_column(String(16), default="")
    expires_at: Mapped[datetime]


class SandboxCalendar(SandboxBase):
    """A calendar as one account sees it (its calendar-list entry)."""

    __tablename__ = "sandbox_calendars"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("sandbox_accounts.id", ondelete="CASCADE"))
    calendar_id: Mapped[str] = mapped_column(String(320))  # the provider's id, as clients see it
    name: Mapped[str] = mapped_column(String(200))
    primary: Mapped[bool] = mapped_column(Boolean, default=False)
    access_role: Mapped[str] = mapped_column(String(32), default="owner")
    owner_email: Mapped[str] = mapped_column(String(320), default="")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")


class SandboxEvent(SandboxBase):
    __tablename__ = "sandbox_events"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    calendar_pk: Mapped[int] = mapped_column(ForeignKey("sandbox_calendars.pk", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    start: Mapped[datetime]
    end: Mapped[datetime]
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    status: Mapped[str] = mapped_column(String(16), default="confirmed")  # confirmed | cancelled
    appointment_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    ical_uid: Mapped[str] = mapped_column(String(200), default="")
    transaction_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated: Mapped[datetime]
    # World-wide change counter at the last change: sync tokens and delta links are built on it.
    version: Mapped[int] = mapped_column(Integer, default=0, index=True)


class SandboxFault(SandboxBase):
    __tablename__ = "sandbox_faults"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))  # google | microsoft | slack | *
    account_email: Mapped[str | None] = mapped_column(String(320), nullable=True)  # None: every account
    endpoint: Mapped[str] = mapped_column(String(32), default="*")
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    remaining: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: forever


class SandboxCounter(SandboxBase):
    """Single-row table holding the world's change counter."""

    __tablename__ = "sandbox_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class SandboxRequest(SandboxBase):
    """Every request an emulator answered: tests assert on what the server received."""

    __tablename__ = "sandbox_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    query: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[int] = mapped_column(Integer, default=200)
    account_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    at: Mapped[datetime]
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
