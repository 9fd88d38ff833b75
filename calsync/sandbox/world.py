"""The sandbox's provider-side world: accounts, grants, calendars, events and faults.

It lives in tables of its own (prefixed `sandbox_`) in the same database as the sync backend, so
that `calsync sandbox load` in one process and `diagnose` or `serve` in another see one world.
These tables are not part of the product schema: they are created by `World.create_tables()`,
not by Alembic, and Alembic's autogenerate ignores them.

The emulators (`google_emulator.py`, `microsoft_emulator.py`, later Slack) read and write the
world only through `World`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from calsync.db import UTCDateTime, make_session_factory, transaction

Provider = Literal["google", "microsoft"]
FaultKind = Literal[
    "latency",  # params: seconds — added before answering
    "rate_limit",  # params: retry_after (seconds) — HTTP 429 with Retry-After
    "unavailable",  # params: status (default 503)
    "hang",  # params: seconds (default 60) — no answer until the client gives up
    "invalid_grant",  # params: description (Google) or aadsts (int) + suberror (Microsoft)
    "malformed",  # 200 with a body that is not the JSON the client expects
    "sync_token_expired",  # Google 410 Gone / Graph syncStateNotFound on an incremental read
]
# Endpoints a fault can target; "*" matches every one of them.
Endpoint = Literal["*", "token", "calendars", "events", "changes"]


class SandboxBase(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


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


@dataclass(frozen=True)
class FaultHit:
    kind: str
    params: dict[str, Any]


class World:
    """Access to the sandbox world in one database. Thread-safe: every call uses its own session."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_session_factory(engine)

    def create_tables(self) -> None:
        SandboxBase.metadata.create_all(self.engine)

    def reset(self) -> None:
        """Empty every sandbox table (the product tables are left alone)."""
        with transaction(self.sessions) as session:
            for table in reversed(SandboxBase.metadata.sorted_tables):
                session.execute(table.delete())

    # -- accounts, grants and tokens -------------------------------------------------------------

    def add_account(self, provider: Provider, email: str, display_name: str = "") -> SandboxAccount:
        with transaction(self.sessions) as session:
            account = SandboxAccount(provider=provider, email=email.lower(), display_name=display_name)
            session.add(account)
            session.flush()
            return account

    def account(self, provider: Provider, email: str) -> SandboxAccount | None:
        with self.sessions() as session:
            return session.scalars(
                select(SandboxAccount).where(
                    SandboxAccount.provider == provider, SandboxAccount.email == email.lower()
                )
            ).first()

    def issue_grant(self, account_id: int, scopes: str = "", refresh_token: str | None = None) -> SandboxGrant:
        with transaction(self.sessions) as session:
            grant = SandboxGrant(
                account_id=account_id,
                refresh_token=refresh_token or "rt-" + secrets.token_urlsafe(24),
                scopes=scopes,
            )
            session.add(grant)
            session.flush()
            return grant

    def revoke_grant(
        self, refresh_token: str, *, description: str = "", aadsts: int | None = None, suberror: str = ""
    ) -> None:
        with transaction(self.sessions) as session:
            grant = session.scalars(
                select(SandboxGrant).where(SandboxGrant.refresh_token == refresh_token)
            ).one()
            grant.status = "revoked"
            grant.error_description = description
            grant.aadsts = aadsts
            grant.suberror = suberror

    def grant_by_refresh_token(self, refresh_token: str) -> tuple[SandboxGrant, SandboxAccount] | None:
        with self.sessions() as session:
            row = session.execute(
                select(SandboxGrant, SandboxAccount)
                .join(SandboxAccount, SandboxAccount.id == SandboxGrant.account_id)
                .where(SandboxGrant.refresh_token == refresh_token)
            ).first()
            return (row[0], row[1]) if row else None

    def issue_access_token(self, grant_id: int, now: datetime, lifetime: timedelta) -> SandboxAccessToken:
        with transaction(self.sessions) as session:
            token = SandboxAccessToken(
                token="at-" + secrets.token_urlsafe(24), grant_id=grant_id, expires_at=now + lifetime
            )
            session.add(token)
            return token

    def account_for_access_token(self, token: str, now: datetime) -> SandboxAccount | None:
        """The account behind a live access token of a still-valid grant, else None."""
        with self.sessions() as session:
            row = session.execute(
                select(SandboxAccount, SandboxGrant, SandboxAccessToken)
                .join(SandboxGrant, SandboxGrant.account_id == SandboxAccount.id)
                .join(SandboxAccessToken, SandboxAccessToken.grant_id == SandboxGrant.id)
                .where(SandboxAccessToken.token == token)
            ).first()
            if row is None or row[1].status != "valid" or row[2].expires_at <= now:
                return None
            return row[0]

    # -- calendars and events --------------------------------------------------------------------

    def add_calendar(
        self,
        account_id: int,
        calendar_id: str,
        name: str,
        *,
        primary: bool = False,
        access_role: str = "owner",
        owner_email: str = "",
        time_zone: str = "UTC",
    ) -> SandboxCalendar:
        with transaction(self.sessions) as session:
            calendar = SandboxCalendar(
                account_id=account_id,
                calendar_id=calendar_id,
                name=name,
                primary=primary,
                access_role=access_role,
                owner_email=owner_email,
                time_zone=time_zone,
            )
            session.add(calendar)
            session.flush()
            return calendar

    def next_version(self, session: Session) -> int:
        """Bump and return the world's change counter inside the caller's transaction."""
        counter = session.get(SandboxCounter, 1, with_for_update=True)
        if counter is None:
            counter = SandboxCounter(id=1, value=0)
            session.add(counter)
        counter.value += 1
        session.flush()
        return counter.value

    def current_version(self) -> int:
        with self.sessions() as session:
            counter = session.get(SandboxCounter, 1)
            return counter.value if counter else 0

    # -- faults ----------------------------------------------------------------------------------

    def add_fault(
        self,
        provider: str,
        kind: FaultKind,
        *,
        account_email: str | None = None,
        endpoint: Endpoint = "*",
        params: dict[str, Any] | None = None,
        remaining: int | None = None,
    ) -> int:
        with transaction(self.sessions) as session:
            fault = SandboxFault(
                provider=provider,
                account_email=account_email.lower() if account_email else None,
                endpoint=endpoint,
                kind=kind,
                params=params or {},
                remaining=remaining,
            )
            session.add(fault)
            session.flush()
            return fault.id

    def clear_faults(self) -> None:
        with transaction(self.sessions) as session:
            session.execute(SandboxFault.__table__.delete())

    def take_faults(self, provider: str, endpoint: str, account_email: str | None) -> list[FaultHit]:
        """The faults that apply to one request, consuming one use of each counted fault."""
        with transaction(self.sessions) as session:
            faults = session.scalars(
                select(SandboxFault).where(SandboxFault.provider.in_([provider, "*"])).order_by(SandboxFault.id)
            ).all()
            hits: list[FaultHit] = []
            for fault in faults:
                if fault.endpoint not in ("*", endpoint):
                    continue
                if fault.account_email is not None and fault.account_email != (account_email or "").lower():
                    continue
                if fault.remaining is not None:
                    if fault.remaining <= 0:
                        continue
                    fault.remaining -= 1
                hits.append(FaultHit(kind=fault.kind, params=dict(fault.params)))
            return hits

    # -- request log -----------------------------------------------------------------------------

    def record_request(self, request: SandboxRequest) -> None:
        with transaction(self.sessions) as session:
            session.add(request)

    def requests(self, provider: str | None = None) -> list[SandboxRequest]:
        with self.sessions() as session:
            query = select(SandboxRequest).order_by(SandboxRequest.id)
            if provider:
                query = query.where(SandboxRequest.provider == provider)
            return list(session.scalars(query).all())
