"""The sync backend's tables: users, calendar connections, appointments and how they reached a calendar.

Every datetime column is aware UTC on SQLite and PostgreSQL alike (`calsync.db.UTCDateTime`). Small
closed vocabularies (role, provider, status, ...) are strings with a CHECK constraint, so adding a
value is a one-line migration and PostgreSQL needs no ENUM types. OAuth tokens are stored only as
Fernet ciphertext (`calsync.syncbackend.crypto.TokenCipher`) and never appear in a `repr`.

The schema is owned by Alembic (`calsync/syncbackend/migrations`); the constraint names come from the
naming convention below, so migrations name them the same way on every database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from calsync.db import AnyRow, UTCDateTime
from calsync.syncbackend.providers.base import Authorization, ProviderName

if TYPE_CHECKING:
    from calsync.syncbackend.crypto import TokenCipher

Role = Literal["rep", "agent"]
ConnectionStatus = Literal["connected", "disconnected", "error"]
AppointmentStatus = Literal["booked", "cancelled"]
LinkState = Literal["pending", "synced", "deleted", "failed"]
SyncDirection = Literal["push", "pull", "health"]
# "held": the cycle stopped before cancelling many appointments at once (see CancellationHold).
SyncStatus = Literal["running", "ok", "error", "held"]
HoldStatus = Literal["open", "cancelled", "kept"]
# What one shared cause is (see `calsync/syncbackend/incidents.py`).
IncidentKind = Literal["org_consent_removed", "org_access_revoked", "provider_outage"]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EMAIL = String(320)
PROVIDER_ID = String(512)  # provider calendar / event ids (Microsoft's are long base64 strings)


def utcnow() -> datetime:
    """Default for timestamp columns; services pass their injected clock's time explicitly."""
    return datetime.now(UTC)


def new_appointment_id() -> str:
    return uuid.uuid4().hex


def one_of(column: str, vocabulary: Any) -> CheckConstraint:
    """CHECK (column IN (...)) for a Literal vocabulary, named `ck_<table>_<column>`."""
    values = ", ".join(f"'{value}'" for value in get_args(vocabulary))
    return CheckConstraint(f"{column} IN ({values})", name=column)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}

    # Columns shown by `repr`, in order. Token columns are never listed.
    __repr_fields__: ClassVar[tuple[str, ...]] = ("id",)

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={getattr(self, name, None)!r}" for name in self.__repr_fields__)
        return f"{type(self).__name__}({parts})"


class MissingTokenError(LookupError):
    """The connection holds no refresh token (never authorized, or cleared on disconnect)."""


class User(Base):
    """A SalesPartner user: a rep whose appointments sync, or a support agent."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("email"),
        UniqueConstraint("slack_user_id"),
        one_of("role", Role),
        CheckConstraint("email = lower(email)", name="email_lowercase"),
    )
    __repr_fields__ = ("id", "email", "role", "slack_user_id")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(EMAIL)
    name: Mapped[str] = mapped_column(String(200), default="")
    slack_user_id: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[Role] = mapped_column(String(16), default="rep")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    connections: Mapped[list[CalendarConnection]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="CalendarConnection.id",
    )
    appointments: Mapped[list[Appointment]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Appointment.start",
    )

    @validates("email")
    def _lowercase_email(self, _key: str, value: str) -> str:
        return value.strip().lower()

    @property
    def is_agent(self) -> bool:
        return self.role == "agent"

    @property
    def active_connections(self) -> list[CalendarConnection]:
        return [connection for connection in self.connections if connection.active]


class CalendarConnection(Base):
    """One OAuth grant from a user to Google Calendar or Outlook, and the calendar appointments go to.

    The product allows one active connection per user; more than one (two providers, or two accounts
    of one provider) is a state the diagnostics report (every meeting shows up twice), so the schema
    does not forbid it. One account connected twice, though, is never right and only ever came from
    two sign-ins racing: a partial unique index allows one active connection per user, provider and
    account (migration 0005).
    """

    __tablename__ = "calendar_connections"
    __table_args__ = (
        Index("ix_calendar_connections_user_active", "user_id", "active"),
        Index(
            "uq_calendar_connections_active_account",
            "user_id",
            "provider",
            "account_email",
            unique=True,
            postgresql_where=text("active"),
            sqlite_where=text("active"),
        ),
        Index("ix_calendar_connections_due", "status", "active", "next_sync_at"),
        # Incident detection reads the connections disconnected lately (migration 0009).
        Index("ix_calendar_connections_status_disconnected", "status", "disconnected_at"),
        one_of("provider", ProviderName),
        one_of("status", ConnectionStatus),
    )
    __repr_fields__ = ("id", "user_id", "provider", "account_email", "status", "status_code", "active")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[ProviderName] = mapped_column(String(16))
    account_email: Mapped[str] = mapped_column(EMAIL)
    status: Mapped[ConnectionStatus] = mapped_column(String(16), default="connected")
    # What the provider said, for people: "invalid_grant: Token has been expired or revoked."
    status_reason: Mapped[str | None] = mapped_column(Text)
    # The same as a short machine code (a `GrantCause` value such as "revoked" or "inactive").
    status_code: Mapped[str | None] = mapped_column(String(32))
    selected_calendar_id: Mapped[str | None] = mapped_column(PROVIDER_ID)
    selected_calendar_name: Mapped[str | None] = mapped_column(String(200))
    # Fernet ciphertext (see TokenCipher); use set_tokens()/authorization(), never these directly.
    refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[datetime | None]
    scopes: Mapped[str] = mapped_column(Text, default="")  # space-separated, as OAuth sends them
    # Microsoft: the tenant of the account (the id token's `tid`, read at sign-in and refresh).
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    # The incremental-read cursor (Google sync token / Graph delta link) of the selected calendar.
    sync_cursor: Mapped[str | None] = mapped_column(Text)
    authorized_at: Mapped[datetime | None]
    last_refreshed_at: Mapped[datetime | None]
    disconnected_at: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The sync engine's schedule and its lease: one cycle per connection at a time, across workers.
    next_sync_at: Mapped[datetime | None]  # None: due now
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    sync_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # in a row
    last_checked_at: Mapped[datetime | None]  # the last health sweep that reached the provider
    # When the rep was told (by DM) that this grant stopped working; once per disconnection.
    disconnect_notified_at: Mapped[datetime | None]
    # Where that DM is (its conversation and ts: an incident's follow-up goes in its thread) and the
    # incident it was about; None: it offered the usual Reconnect (migration 0011).
    disconnect_dm_channel: Mapped[str | None] = mapped_column(String(32))
    disconnect_dm_ts: Mapped[str | None] = mapped_column(String(32))
    disconnect_dm_incident_id: Mapped[int | None] = mapped_column(Integer)

    user: Mapped[User] = relationship(back_populates="connections")
    links: Mapped[list[EventLink]] = relationship(
        back_populates="connection", cascade="all, delete-orphan", passive_deletes=True
    )
    sync_runs: Mapped[list[SyncRun]] = relationship(
        back_populates="connection",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SyncRun.started_at",
    )

    @validates("account_email")
    def _lowercase_account_email(self, _key: str, value: str) -> str:
        return value.strip().lower()

    @property
    def scope_list(self) -> tuple[str, ...]:
        return tuple(self.scopes.split()) if self.scopes else ()

    @property
    def has_tokens(self) -> bool:
        return self.refresh_token_encrypted is not None

    def set_tokens(
        self,
        cipher: TokenCipher,
        *,
        refresh_token: str,
        access_token: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        """Store the tokens encrypted; only ciphertext reaches the columns."""
        for name, value in token_columns(cipher, refresh_token, access_token, expires_at).items():
            setattr(self, name, value)

    def store_authorization(self, cipher: TokenCipher, auth: Authorization) -> None:
        """Persist an `Authorization` a provider refreshed in place (tokens, expiry, scopes)."""
        for name, value in authorization_columns(cipher, auth).items():
            setattr(self, name, value)

    def clear_tokens(self) -> None:
        """Forget the grant (on disconnect): the ciphertext is removed, not just marked."""
        self.refresh_token_encrypted = None
        self.access_token_encrypted = None
        self.access_token_expires_at = None

    def authorization(self, cipher: TokenCipher) -> Authorization:
        """The decrypted tokens as the provider contract wants them (see `stored_authorization`)."""
        return stored_authorization(self, cipher)


def token_columns(
    cipher: TokenCipher, refresh_token: str, access_token: str | None, expires_at: datetime | None
) -> dict[str, Any]:
    """The token columns of a connection, as `CalendarConnection.set_tokens` writes them: ciphertext."""
    return {
        "refresh_token_encrypted": cipher.encrypt(refresh_token),
        "access_token_encrypted": cipher.encrypt(access_token) if access_token is not None else None,
        "access_token_expires_at": expires_at,
    }


def authorization_columns(cipher: TokenCipher, auth: Authorization) -> dict[str, Any]:
    """What storing a refreshed `Authorization` writes (tokens, expiry, and scopes when it has any),
    for an ORM object (`store_authorization`) or a Core UPDATE alike."""
    columns = token_columns(cipher, auth.refresh_token, auth.access_token, auth.expires_at)
    if auth.scopes:
        columns["scopes"] = " ".join(auth.scopes)
    if auth.tenant_id:
        columns["tenant_id"] = auth.tenant_id
    return columns


def stored_authorization(connection: CalendarConnection | AnyRow, cipher: TokenCipher) -> Authorization:
    """A connection's decrypted tokens as the provider contract wants them, from its ORM object or
    a Core row of `calendar_connections`.

    Raises `MissingTokenError` when there is no refresh token and
    `calsync.syncbackend.crypto.TokenDecryptError` when the key does not match.
    """
    if connection.refresh_token_encrypted is None:
        raise MissingTokenError(f"calendar connection {connection.id} has no stored refresh token")
    access = connection.access_token_encrypted
    return Authorization(
        refresh_token=cipher.decrypt(connection.refresh_token_encrypted),
        access_token=cipher.decrypt(access) if access is not None else None,
        expires_at=connection.access_token_expires_at,
        account_email=connection.account_email,
        scopes=tuple(connection.scopes.split()) if connection.scopes else (),
        tenant_id=getattr(connection, "tenant_id", None),
    )


class Appointment(Base):
    """An appointment booked in SalesPartner. Its id travels with the calendar event it becomes."""

    __tablename__ = "appointments"
    __table_args__ = (
        Index("ix_appointments_user_start", "user_id", "start"),
        one_of("status", AppointmentStatus),
        CheckConstraint('"end" >= start', name="end_not_before_start"),
    )
    __repr_fields__ = ("id", "user_id", "title", "start", "status")

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_appointment_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    start: Mapped[datetime]
    end: Mapped[datetime]
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    status: Mapped[AppointmentStatus] = mapped_column(String(16), default="booked")
    cancellation_reason: Mapped[str | None] = mapped_column(Text)  # e.g. "deleted in calendar"
    # Bumped by every change (booked, moved, edited, cancelled) on either side; links remember the
    # revision their calendar holds, so "needs a push" is `revision > link.pushed_revision`.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    booked_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="appointments")
    links: Mapped[list[EventLink]] = relationship(
        back_populates="appointment", cascade="all, delete-orphan", passive_deletes=True
    )


class EventLink(Base):
    """An appointment as one connection's calendar holds it: the event id and the sync state."""

    __tablename__ = "event_links"
    __table_args__ = (
        UniqueConstraint("appointment_id", "connection_id"),
        Index("ix_event_links_connection_event", "connection_id", "event_id"),
        one_of("state", LinkState),
    )
    __repr_fields__ = ("id", "appointment_id", "connection_id", "event_id", "state")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appointment_id: Mapped[str] = mapped_column(ForeignKey("appointments.id", ondelete="CASCADE"))
    connection_id: Mapped[int] = mapped_column(ForeignKey("calendar_connections.id", ondelete="CASCADE"))
    calendar_id: Mapped[str] = mapped_column(PROVIDER_ID)
    event_id: Mapped[str | None] = mapped_column(PROVIDER_ID)  # None until pushed
    state: Mapped[LinkState] = mapped_column(String(16), default="pending")
    last_pushed_at: Mapped[datetime | None]
    last_pulled_at: Mapped[datetime | None]
    provider_updated: Mapped[datetime | None]  # the event's "updated" time at the provider, last seen
    pushed_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set (and committed) before an insert is sent: a link with it and no event id may have an event
    # at the provider already (a crash or a lost answer), so the next push looks before inserting.
    insert_attempted_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)

    appointment: Mapped[Appointment] = relationship(back_populates="links")
    connection: Mapped[CalendarConnection] = relationship(back_populates="links")


class SyncRun(Base):
    """One push, pull or health check of one connection, with its outcome."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_connection_direction_started", "connection_id", "direction", "started_at"),
        # The fleet view (migration 0010): a connection's newest run in one probe, and the failed runs
        # of a week (a small share of all runs) without reading the others.
        Index(
            "ix_sync_runs_connection_started",
            "connection_id",
            "started_at",
            postgresql_include=["status", "error_code"],  # PostgreSQL: answered from the index alone
        ),
        Index(
            "ix_sync_runs_failed_started",
            "started_at",
            "connection_id",
            postgresql_where=text("status = 'error'"),
            sqlite_where=text("status = 'error'"),
        ),
        # Incident detection reads the failures of the last minutes only (migration 0009).
        Index(
            "ix_sync_runs_errors",
            "error_code",
            "started_at",
            postgresql_where=text("status = 'error'"),
            sqlite_where=text("status = 'error'"),
        ),
        one_of("direction", SyncDirection),
        one_of("status", SyncStatus),
    )
    __repr_fields__ = ("id", "connection_id", "direction", "status", "started_at", "error_code")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("calendar_connections.id", ondelete="CASCADE"))
    direction: Mapped[SyncDirection] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[SyncStatus] = mapped_column(String(16), default="running")
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # {"created": 1, "updated": 0, "deleted": 0, "pulled": 3}; in-place changes are tracked.
    counts: Mapped[dict[str, int]] = mapped_column(MutableDict.as_mutable(JSON()), default=dict)

    connection: Mapped[CalendarConnection] = relationship(back_populates="sync_runs")


class AuditEntry(Base):
    """Who did what to whom: every diagnosis of a user, reconnect link sent, ..."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_subject_at", "subject_user_id", "at"),
        # Resolution stats (migration 0010): a rep's reconnects after an answer.
        Index("ix_audit_log_action_subject_at", "action", "subject_user_id", "at"),
    )
    __repr_fields__ = ("id", "at", "actor", "action", "subject_user_id", "result")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(EMAIL)  # Slack user id, email, or "system"
    action: Mapped[str] = mapped_column(String(64))  # e.g. "diagnose"
    subject_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]] = mapped_column(MutableDict.as_mutable(JSON()), default=dict)
    result: Mapped[str] = mapped_column(String(200), default="")


class CancellationHold(Base):
    """Cancellations a sync cycle held back for a support agent instead of making them.

    When one read of a calendar shows more of a rep's upcoming appointments deleted than a small
    threshold allows, nothing is cancelled: the appointments stay booked, their ids are kept here and
    an agent decides — cancel them (the rep did delete them) or keep them (they go back on the
    calendar). `notified_at` is the claim of the message that asks, like a disconnection's DM."""

    __tablename__ = "cancellation_holds"
    __table_args__ = (
        Index("ix_cancellation_holds_connection_status", "connection_id", "status"),
        one_of("status", HoldStatus),
    )
    __repr_fields__ = ("id", "connection_id", "status", "detected_at", "decided_by")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("calendar_connections.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    appointment_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    upcoming: Mapped[int] = mapped_column(Integer, default=0)  # the rep's upcoming appointments then
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[HoldStatus] = mapped_column(String(16), default="open")
    notified_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(EMAIL)  # a Slack user id or a name given on the CLI
    decided_at: Mapped[datetime | None]
    # How it was found ("full read" or "incremental read") and where the agents were asked.
    detail: Mapped[dict[str, Any]] = mapped_column(MutableDict.as_mutable(JSON()), default=dict)

    connection: Mapped[CalendarConnection] = relationship()
    user: Mapped[User] = relationship()


class Incident(Base):
    """One shared cause: several reps of one organisation failing the same way (an admin removed
    SalesPartner's consent or revoked its access), or many reps seeing one provider fail (an outage).
    Opened, grown and ended by `calsync.syncbackend.incidents.detect`; at most one open incident per
    kind, provider and scope (a partial unique index), so two workers never open the same one.

    `version` grows with every change people should hear of (a rep joins or recovers, it ends);
    `posted_version` is the version the support channel's one message (`support_ts`) shows, and
    `support_claimed_by` / `support_claim_until` the claim of the worker posting or updating it."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index(
            "uq_incidents_open_scope",
            "kind",
            "provider",
            "scope",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        Index("ix_incidents_ended_at", "ended_at"),
        one_of("kind", IncidentKind),
        one_of("provider", ProviderName),
    )
    __repr_fields__ = ("id", "kind", "provider", "scope", "affected_count", "started_at", "ended_at")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[IncidentKind] = mapped_column(String(32))
    provider: Mapped[ProviderName] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(320))  # an account domain, or the provider for an outage
    cause_code: Mapped[str] = mapped_column(String(64))  # a GrantCause value or a sync run error code
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    affected_count: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    posted_version: Mapped[int] = mapped_column(Integer, default=0)
    support_ts: Mapped[str | None] = mapped_column(String(32))
    support_claimed_by: Mapped[str | None] = mapped_column(String(64))
    support_claim_until: Mapped[datetime | None]


class IncidentRep(Base):
    """A connection (and its rep) an incident affects; `recovered_at` once it is healthy again.

    The rep's own follow-ups in their disconnection DM's thread (migration 0011): `followup_sent_at`
    once a rep told "reconnect" before the incident was recognised has heard it cannot work yet,
    `access_back_sent_at` once a rep told "reconnecting won't help" has heard access is back; each
    claimed by one worker first (`notice_claimed_by` / `notice_claim_until`), as the support message is."""

    __tablename__ = "incident_reps"
    __table_args__ = (Index("ix_incident_reps_user_recovered", "user_id", "recovered_at"),)
    __repr_fields__ = ("incident_id", "connection_id", "user_id", "joined_at", "recovered_at")

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("calendar_connections.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    joined_at: Mapped[datetime]  # when this connection failed with the incident's cause
    recovered_at: Mapped[datetime | None]
    followup_sent_at: Mapped[datetime | None]
    access_back_sent_at: Mapped[datetime | None]
    notice_claimed_by: Mapped[str | None] = mapped_column(String(64))
    notice_claim_until: Mapped[datetime | None]


class OAuthSession(Base):
    """One sign-in started from a reconnect link: the OAuth `state`, and the single-use claim of the link.

    `link_nonce` is UNIQUE: inserting the row is what uses the link up, in every process sharing the
    database. `flow_encrypted` is Fernet ciphertext (see TokenCipher) of the flow's secrets (the PKCE
    verifier, msal's flow, where the link was given); it never appears in a `repr`.
    """

    __tablename__ = "oauth_sessions"
    __table_args__ = (
        UniqueConstraint("link_nonce"),
        Index("ix_oauth_sessions_user_created", "user_id", "created_at"),
        one_of("provider", ProviderName),
    )
    __repr_fields__ = ("user_id", "provider", "created_at", "completed_at", "outcome")

    state: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[ProviderName] = mapped_column(String(16))
    link_nonce: Mapped[str] = mapped_column(String(64))
    flow_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    # "connected", "switched", "denied", "provider_error", "wrong_account", "expired", ...
    outcome: Mapped[str | None] = mapped_column(String(32))


class ProcessedEvent(Base):
    """A Slack event already handled: inserting a second row with the same id is the dedupe."""

    __tablename__ = "processed_events"
    __repr_fields__ = ("event_id", "received_at")

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class QueuedQuestion(Base):
    """A rep's question, acked and waiting for its answer. Written in the transaction that claims the
    event, before Slack gets the ack, so an acked question survives any crash; `answered_at` is set
    once the answer is in Slack. `taken_by` is the queue job answering it (a job retried after its
    worker died keeps its id, so it may take the question again; any other job waits for the lease)."""

    __tablename__ = "queued_questions"
    __repr_fields__ = ("event_id", "team_id", "taken_by", "answered_at")

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    channel: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text, default="")
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    taken_by: Mapped[str | None] = mapped_column(String(64))
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    placeholder_ts: Mapped[str | None] = mapped_column(String(32))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class ReportView(Base):
    """A report link's one browser: its first opening inserts the row (keyed by a digest of the link's
    nonce), so a second browser's insert fails, in any process (see `calsync.store.reports`)."""

    __tablename__ = "report_views"
    __repr_fields__ = ("nonce_digest", "claimed_at")

    nonce_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuotaKey(Base):
    """One provider account's quota (`google:ann@acme.com`): the row every instance locks while it
    decides whether a call may start (see `calsync.syncbackend.quota.DatabaseLimiter`)."""

    __tablename__ = "quota_keys"
    __repr_fields__ = ("key", "touched_at")

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    touched_at: Mapped[float] = mapped_column(Float)  # epoch seconds of the last decision


class QuotaCall(Base):
    """One provider call that started: counted against its key's window while `started_at` is inside
    it, and against the concurrency bound until `busy_until` (cleared when the call ends)."""

    __tablename__ = "quota_calls"
    __table_args__ = (Index("ix_quota_calls_key_started", "key", "started_at"),)
    __repr_fields__ = ("id", "key", "started_at", "busy_until")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(400))
    started_at: Mapped[float] = mapped_column(Float)
    busy_until: Mapped[float | None] = mapped_column(Float)


class Feedback(Base):
    """A "did this help?" answer on an article or a diagnosis."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_diagnosis_id", "diagnosis_id"),)
    __repr_fields__ = ("id", "at", "user_id", "article_id", "diagnosis_id", "helpful")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    article_id: Mapped[str | None] = mapped_column(String(64))
    diagnosis_id: Mapped[str | None] = mapped_column(String(64))
    helpful: Mapped[bool] = mapped_column(Boolean)


# A later check within this long after an answer that finds the rep healthy counts it as fixed.
ANSWER_FIXED_WITHIN = timedelta(hours=24)


class AnswerRecord(Base):
    """One cause an answer gave a rep (or `none` when it found nothing wrong), with the article of its
    fix: what the resolution stats count. Written with the diagnosis's audit entry (`diagnosis_id` is
    that entry's id, as `Feedback.diagnosis_id` is); `fixed_at` is set when a later diagnosis of the
    same rep within 24 hours found nothing wrong, or — for a cause of the grant — the health sweep
    found the rep's connection working (migration 0010)."""

    __tablename__ = "answer_records"
    __table_args__ = (
        Index("ix_answer_records_user_at", "user_id", "at"),
        Index("ix_answer_records_at", "at"),
        Index("ix_answer_records_diagnosis_id", "diagnosis_id"),
    )
    __repr_fields__ = ("id", "at", "user_id", "cause", "article", "fixed_at")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    diagnosis_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "ask" (a question) or "diagnose"
    cause: Mapped[str] = mapped_column(String(64))  # a cause's root finding code, or "none"
    article: Mapped[str | None] = mapped_column(String(64))
    fixed_at: Mapped[datetime | None]


__all__ = [
    "ANSWER_FIXED_WITHIN",
    "NAMING_CONVENTION",
    "AnswerRecord",
    "Appointment",
    "AuditEntry",
    "Base",
    "CalendarConnection",
    "CancellationHold",
    "EventLink",
    "Feedback",
    "Incident",
    "IncidentRep",
    "MissingTokenError",
    "OAuthSession",
    "ProcessedEvent",
    "QuotaCall",
    "QuotaKey",
    "ReportView",
    "SyncRun",
    "User",
    "authorization_columns",
    "stored_authorization",
    "token_columns",
]
