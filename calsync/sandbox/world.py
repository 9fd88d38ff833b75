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
from typing import Any, ClassVar, Literal, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    RowMapping,
    String,
    Table,
    Text,
    bindparam,
    delete,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
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


def lose_response(hits: list[FaultHit], status: int) -> int | None:
    """The status that replaces a successful answer when a `lost_response` fault applies, else None.

    Such a request has been carried out (an event inserted, say) but the client never hears so: what
    a crash or a dropped connection between the provider's write and our commit looks like."""
    if not 200 <= status < 300:
        return None
    lost = next((hit for hit in hits if hit.kind == "lost_response"), None)
    return int(lost.params.get("status", 503)) if lost is not None else None


def lost_response_wait(hits: list[FaultHit]) -> float:
    """Seconds a `lost_response` answer is held back (`after_seconds`): a worker can die meanwhile."""
    lost = next((hit for hit in hits if hit.kind == "lost_response"), None)
    return float(lost.params.get("after_seconds", 0.0)) if lost is not None else 0.0


_T = TypeVar("_T", bound=SandboxBase)


def _table(model: type[SandboxBase]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_ACCOUNTS = _table(SandboxAccount)
_GRANTS = _table(SandboxGrant)
_ACCESS_TOKENS = _table(SandboxAccessToken)
_FAULTS = _table(SandboxFault)
_REQUESTS = _table(SandboxRequest)

# The statements every emulated request runs, built once (building one and its cache key costs
# about as much as running it on SQLite).
_GRANT_BY_REFRESH_TOKEN = (
    select(_GRANTS, _ACCOUNTS)
    .join(_ACCOUNTS, _ACCOUNTS.c.id == _GRANTS.c.account_id)
    .where(_GRANTS.c.refresh_token == bindparam("refresh_token"))
)
_ACCOUNT_BY_ACCESS_TOKEN = (
    select(_ACCOUNTS, _GRANTS.c.status, _ACCESS_TOKENS.c.expires_at)
    .join(_GRANTS, _GRANTS.c.account_id == _ACCOUNTS.c.id)
    .join(_ACCESS_TOKENS, _ACCESS_TOKENS.c.grant_id == _GRANTS.c.id)
    .where(_ACCESS_TOKENS.c.token == bindparam("token"))
)
_INSERT_ACCESS_TOKEN = insert(_ACCESS_TOKENS)
_FAULTS_OF = (
    select(_FAULTS)
    .where(or_(_FAULTS.c.provider == bindparam("provider"), _FAULTS.c.provider == "*"))
    .order_by(_FAULTS.c.id)
)
_TAKE_FAULT = (
    update(_FAULTS)
    .where(_FAULTS.c.id == bindparam("fault_id"), _FAULTS.c.remaining > 0)
    .values(remaining=_FAULTS.c.remaining - 1)
)
_INSERT_REQUEST = insert(_REQUESTS)
_ROTATE_REFRESH_TOKEN = (
    update(_GRANTS)
    .where(_GRANTS.c.id == bindparam("grant_id"))
    .values(refresh_token=bindparam("new_refresh_token"))
)


def _loaded(model: type[_T], row: RowMapping) -> _T:
    """A `model` instance with its columns' values from a Core row (which may hold other tables'
    columns too): what a session would have loaded, without the session."""
    table = model.__table__
    return model(**{column.key: row[column] for column in table.c})


# What an API client may change on an event, and what its owner changes in the calendar app.
_API_EVENT_FIELDS = frozenset(
    {"title", "description", "start", "end", "time_zone", "status", "appointment_id"}
)
_OWNER_EVENT_FIELDS = frozenset({"title", "description", "start", "end", "status"})


class World:
    """Access to the sandbox world in one database. Thread-safe: every call uses its own session."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_session_factory(engine)

    def create_tables(self) -> None:
        SandboxBase.metadata.create_all(self.engine)
        self._ensure_counter()

    def reset(self) -> None:
        """Empty every sandbox table (the product tables are left alone). The change counter keeps
        counting, so a cursor from before the reset never matches a state after it."""
        with transaction(self.sessions) as session:
            for table in reversed(SandboxBase.metadata.sorted_tables):
                if table.name != SandboxCounter.__tablename__:
                    session.execute(table.delete())
        self._ensure_counter()

    def _ensure_counter(self) -> None:
        """The counter's one row exists from the moment the tables do, so concurrent first writes
        only ever update it (two inserting it at once would collide)."""
        try:
            with transaction(self.sessions) as session:
                if session.get(SandboxCounter, 1) is None:
                    session.add(SandboxCounter(id=1, value=0))
        except IntegrityError:
            pass  # another process made it in the same moment: there is one row, as wanted

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

    def issue_grant(
        self, account_id: int, scopes: str = "", refresh_token: str | None = None
    ) -> SandboxGrant:
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

    # The calls every emulated request makes (token lookups, faults, the request log) use SQLAlchemy
    # Core on a plain connection rather than an ORM session: about a third of the CPU, and the
    # emulators answer every request of a health sweep over thousands of connections.

    def grant_by_refresh_token(self, refresh_token: str) -> tuple[SandboxGrant, SandboxAccount] | None:
        with self.engine.connect() as connection:
            row = connection.execute(_GRANT_BY_REFRESH_TOKEN, {"refresh_token": refresh_token}).first()
        if row is None:
            return None
        return _loaded(SandboxGrant, row._mapping), _loaded(SandboxAccount, row._mapping)

    def issue_access_token(self, grant_id: int, now: datetime, lifetime: timedelta) -> SandboxAccessToken:
        token = SandboxAccessToken(
            token="at-" + secrets.token_urlsafe(24), grant_id=grant_id, expires_at=now + lifetime
        )
        with self.engine.begin() as connection:
            connection.execute(
                _INSERT_ACCESS_TOKEN,
                {"token": token.token, "grant_id": token.grant_id, "expires_at": token.expires_at},
            )
        return token

    def account_for_access_token(self, token: str, now: datetime) -> SandboxAccount | None:
        """The account behind a live access token of a still-valid grant, else None."""
        with self.engine.connect() as connection:
            row = connection.execute(_ACCOUNT_BY_ACCESS_TOKEN, {"token": token}).first()
        if row is None or row.status != "valid" or row.expires_at <= now:
            return None
        return _loaded(SandboxAccount, row._mapping)

    def create_auth_code(
        self,
        account_id: int,
        *,
        prefix: str,
        client_id: str,
        redirect_uri: str,
        scopes: str,
        code_challenge: str,
        code_challenge_method: str,
        expires_at: datetime,
    ) -> str:
        """An authorization code from a consent page, waiting for the token exchange. `prefix` gives
        it the provider's look ("4/" for Google, "M." for Microsoft)."""
        with transaction(self.sessions) as session:
            code = SandboxAuthCode(
                code=prefix + secrets.token_urlsafe(32),
                account_id=account_id,
                client_id=client_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                expires_at=expires_at,
            )
            session.add(code)
            return code.code

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
        """Bump and return the world's change counter inside the caller's transaction: one atomic
        UPDATE ... RETURNING, so concurrent writers each get their own value on SQLite and PostgreSQL."""
        value = session.execute(
            update(SandboxCounter)
            .where(SandboxCounter.id == 1)
            .values(value=SandboxCounter.value + 1)
            .returning(SandboxCounter.value)
        ).scalar_one()
        return int(value)

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
            session.execute(delete(SandboxFault))

    def take_faults(self, provider: str, endpoint: str, account_email: str | None) -> list[FaultHit]:
        """The faults that apply to one request, consuming one use of each counted fault (a
        conditional UPDATE, so two requests at once never both take a fault's last use)."""
        email = (account_email or "").lower()
        with self.engine.begin() as connection:
            rows = connection.execute(_FAULTS_OF, {"provider": provider}).all()
            hits: list[FaultHit] = []
            for fault in rows:
                if fault.endpoint not in ("*", endpoint):
                    continue
                if fault.account_email is not None and fault.account_email != email:
                    continue
                if fault.remaining is not None:
                    taken = connection.execute(_TAKE_FAULT, {"fault_id": fault.id})
                    if taken.rowcount != 1:
                        continue
                hits.append(FaultHit(kind=fault.kind, params=dict(fault.params or {})))
            return hits

    # -- request log -----------------------------------------------------------------------------

    def record_request(self, request: SandboxRequest) -> None:
        values = {key: value for key, value in inspect(request).dict.items() if key in _REQUESTS.c}
        with self.engine.begin() as connection:
            connection.execute(_INSERT_REQUEST, values)

    def requests(self, provider: str | None = None) -> list[SandboxRequest]:
        with self.sessions() as session:
            query = select(SandboxRequest).order_by(SandboxRequest.id)
            if provider:
                query = query.where(SandboxRequest.provider == provider)
            return list(session.scalars(query).all())

    # -- microsoft -------------------------------------------------------------------------------
    # Used by `microsoft_emulator.py` (identity platform + Graph). Calendars and events are always
    # reached through the account that sees them; a deleted event stays as a `cancelled` tombstone
    # with a new version, so that delta queries can report it as `@removed`.

    def ms_accounts(self) -> list[SandboxAccount]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SandboxAccount)
                    .where(SandboxAccount.provider == "microsoft")
                    .order_by(SandboxAccount.id)
                ).all()
            )

    def ms_take_auth_code(self, code: str) -> tuple[SandboxAuthCode, SandboxAccount] | None:
        """The code and its account, consumed (a code is single-use), or None if unknown or used."""
        with transaction(self.sessions) as session:
            row = session.execute(
                select(SandboxAuthCode, SandboxAccount)
                .join(SandboxAccount, SandboxAccount.id == SandboxAuthCode.account_id)
                .where(SandboxAuthCode.code == code)
            ).first()
            if row is None:
                return None
            session.delete(row[0])
            return row[0], row[1]

    def ms_rotate_refresh_token(self, grant_id: int) -> str:
        """Give the grant a new refresh token (the old one stops working) and return it."""
        refresh_token = "rt-" + secrets.token_urlsafe(24)
        with self.engine.begin() as connection:
            rotated = connection.execute(
                _ROTATE_REFRESH_TOKEN, {"grant_id": grant_id, "new_refresh_token": refresh_token}
            )
            if rotated.rowcount != 1:
                raise KeyError(grant_id)
        return refresh_token

    def ms_calendars(self, account_id: int) -> list[SandboxCalendar]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SandboxCalendar)
                    .where(SandboxCalendar.account_id == account_id)
                    .order_by(SandboxCalendar.pk)
                ).all()
            )

    def ms_calendar(self, account_id: int, calendar_id: str | None) -> SandboxCalendar | None:
        """One calendar of the account by id; `None` as id means the account's default calendar."""
        with self.sessions() as session:
            query = select(SandboxCalendar).where(SandboxCalendar.account_id == account_id)
            if calendar_id is None:
                query = query.order_by(SandboxCalendar.primary.desc(), SandboxCalendar.pk)
            else:
                query = query.where(SandboxCalendar.calendar_id == calendar_id)
            return session.scalars(query).first()

    def ms_events(
        self,
        calendar_pk: int,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        appointment_id: str | None = None,
        include_cancelled: bool = False,
        after_version: int | None = None,
        max_version: int | None = None,
    ) -> list[SandboxEvent]:
        """Events of one calendar overlapping [start, end), ordered by start (or by version for deltas)."""
        with self.sessions() as session:
            query = select(SandboxEvent).where(SandboxEvent.calendar_pk == calendar_pk)
            if start is not None:
                query = query.where(SandboxEvent.end > start)
            if end is not None:
                query = query.where(SandboxEvent.start < end)
            if appointment_id is not None:
                query = query.where(SandboxEvent.appointment_id == appointment_id)
            if not include_cancelled:
                query = query.where(SandboxEvent.status != "cancelled")
            if after_version is not None:
                query = query.where(SandboxEvent.version > after_version)
            if max_version is not None:
                query = query.where(SandboxEvent.version <= max_version)
            if after_version is not None or max_version is not None:
                query = query.order_by(SandboxEvent.version, SandboxEvent.pk)
            else:
                query = query.order_by(SandboxEvent.start, SandboxEvent.pk)
            return list(session.scalars(query).all())

    def ms_find_event(
        self, account_id: int, event_id: str, calendar_id: str | None = None
    ) -> tuple[SandboxCalendar, SandboxEvent] | None:
        """A live (not deleted) event among the account's calendars, optionally in one calendar."""
        with self.sessions() as session:
            query = (
                select(SandboxCalendar, SandboxEvent)
                .join(SandboxEvent, SandboxEvent.calendar_pk == SandboxCalendar.pk)
                .where(
                    SandboxCalendar.account_id == account_id,
                    SandboxEvent.event_id == event_id,
                    SandboxEvent.status != "cancelled",
                )
            )
            if calendar_id is not None:
                query = query.where(SandboxCalendar.calendar_id == calendar_id)
            row = session.execute(query).first()
            return (row[0], row[1]) if row else None

    def ms_insert_event(
        self,
        calendar_pk: int,
        *,
        title: str,
        description: str,
        start: datetime,
        end: datetime,
        now: datetime,
        time_zone: str = "UTC",
        appointment_id: str | None = None,
        transaction_id: str | None = None,
    ) -> tuple[SandboxEvent, bool]:
        """Create an event, or return the live one made earlier with this transaction id (created=False)."""
        with transaction(self.sessions) as session:
            if transaction_id:
                existing = session.scalars(
                    select(SandboxEvent).where(
                        SandboxEvent.calendar_pk == calendar_pk,
                        SandboxEvent.transaction_id == transaction_id,
                        SandboxEvent.status != "cancelled",
                    )
                ).first()
                if existing is not None:
                    return existing, False
            event = SandboxEvent(
                calendar_pk=calendar_pk,
                event_id="AAMkAGI2" + secrets.token_urlsafe(30),
                title=title,
                description=description,
                start=start,
                end=end,
                time_zone=time_zone,
                status="confirmed",
                appointment_id=appointment_id,
                ical_uid="040000008200E00074C5B7101A82E008" + secrets.token_hex(28).upper(),
                transaction_id=transaction_id,
                updated=now,
                version=self.next_version(session),
            )
            session.add(event)
            session.flush()
            return event, True

    def ms_update_event(self, event_pk: int, changes: dict[str, Any], now: datetime) -> SandboxEvent:
        """Apply column changes (title, description, start, end, time_zone, appointment_id)."""
        with transaction(self.sessions) as session:
            event = session.get(SandboxEvent, event_pk)
            if event is None:
                raise KeyError(event_pk)
            return self._change_event(session, event, changes, now, allowed=_API_EVENT_FIELDS - {"status"})

    def ms_delete_event(self, event_pk: int, now: datetime) -> None:
        """Delete an event: it disappears from every read but stays as a tombstone for delta queries."""
        with transaction(self.sessions) as session:
            event = session.get(SandboxEvent, event_pk)
            if event is None:
                raise KeyError(event_pk)
            event.status = "cancelled"
            event.updated = now
            event.version = self.next_version(session)

    # -- any provider: what a person does in their calendar app -----------------------------------

    def find_events(
        self,
        *,
        appointment_id: str | None = None,
        event_id: str | None = None,
        include_cancelled: bool = False,
    ) -> list[SandboxEvent]:
        """Events on any calendar, by our appointment id or the provider's event id."""
        with self.sessions() as session:
            query = select(SandboxEvent).order_by(SandboxEvent.pk)
            if appointment_id is not None:
                query = query.where(SandboxEvent.appointment_id == appointment_id)
            if event_id is not None:
                query = query.where(SandboxEvent.event_id == event_id)
            if not include_cancelled:
                query = query.where(SandboxEvent.status != "cancelled")
            return list(session.scalars(query).all())

    def edit_event(self, event_id: str, changes: dict[str, Any], now: datetime) -> SandboxEvent:
        """Change an event as its owner would in Google Calendar or Outlook (`status: cancelled` deletes
        it, as both providers report a deletion); incremental reads see the change."""
        with transaction(self.sessions) as session:
            event = session.scalars(select(SandboxEvent).where(SandboxEvent.event_id == event_id)).one()
            return self._change_event(session, event, changes, now, allowed=_OWNER_EVENT_FIELDS)

    def forget_event(self, event_id: str) -> None:
        """The provider keeps no trace of the event any more: a deletion older than its tombstones
        (a full read does not list it, a look-up answers 404). Nothing is counted as a change."""
        with transaction(self.sessions) as session:
            session.execute(delete(SandboxEvent).where(SandboxEvent.event_id == event_id))

    def delete_calendar(self, provider: Provider, account_email: str, calendar_id: str) -> None:
        """The owner deletes (or stops sharing) a whole calendar: it and its events are gone."""
        with transaction(self.sessions) as session:
            account = session.scalars(
                select(SandboxAccount).where(
                    SandboxAccount.provider == provider, SandboxAccount.email == account_email.lower()
                )
            ).one()
            session.execute(
                delete(SandboxCalendar).where(
                    SandboxCalendar.account_id == account.id, SandboxCalendar.calendar_id == calendar_id
                )
            )

    def _change_event(
        self,
        session: Session,
        event: SandboxEvent,
        changes: dict[str, Any],
        now: datetime,
        *,
        allowed: frozenset[str],
    ) -> SandboxEvent:
        """Set the event's columns, stamp it and bump the world version (incremental reads see it)."""
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"not a changeable event field: {sorted(unknown)}")
        for name, value in changes.items():
            setattr(event, name, value)
        event.updated = now
        event.version = self.next_version(session)
        session.flush()
        return event

    # -- google / calendar events ----------------------------------------------------------------
    # Used by `google_emulator.py` (and handy for scenario loading and tests). Every change bumps the
    # world version in the same transaction, so sync tokens built on it see the change.

    def google_accounts(self) -> list[SandboxAccount]:
        """The Google accounts the consent page offers, by email."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SandboxAccount)
                    .where(SandboxAccount.provider == "google")
                    .order_by(SandboxAccount.email)
                ).all()
            )

    def google_peek_auth_code(self, code: str) -> tuple[SandboxAuthCode, SandboxAccount] | None:
        """The code and its account, without using it up (to know whom a token request is for)."""
        with self.sessions() as session:
            row = session.execute(
                select(SandboxAuthCode, SandboxAccount)
                .join(SandboxAccount, SandboxAccount.id == SandboxAuthCode.account_id)
                .where(SandboxAuthCode.code == code)
            ).first()
            return (row[0], row[1]) if row else None

    def google_take_auth_code(self, code: str) -> SandboxAuthCode | None:
        """Use a code up: it is deleted whatever the exchange's outcome (codes are single-use)."""
        with transaction(self.sessions) as session:
            found = session.get(SandboxAuthCode, code)
            if found is not None:
                session.delete(found)
            return found

    def google_calendars(self, account_id: int) -> list[SandboxCalendar]:
        """One account's calendar list: the primary calendar first, then by name."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SandboxCalendar)
                    .where(SandboxCalendar.account_id == account_id)
                    .order_by(SandboxCalendar.primary.desc(), SandboxCalendar.name, SandboxCalendar.pk)
                ).all()
            )

    def google_calendar(self, account_id: int, calendar_id: str) -> SandboxCalendar | None:
        """One calendar of an account by its id; "primary" names the account's primary calendar."""
        with self.sessions() as session:
            query = select(SandboxCalendar).where(SandboxCalendar.account_id == account_id)
            if calendar_id == "primary":
                query = query.where(SandboxCalendar.primary.is_(True))
            else:
                query = query.where(SandboxCalendar.calendar_id == calendar_id)
            return session.scalars(query.order_by(SandboxCalendar.pk)).first()

    def google_events(
        self,
        calendar_pk: int,
        *,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        appointment_id: str | None = None,
        include_cancelled: bool = False,
        since_version: int | None = None,
        order_by_start: bool = False,
    ) -> list[SandboxEvent]:
        """Events of one calendar overlapping [time_min, time_max); `since_version`: changed after it."""
        with self.sessions() as session:
            query = select(SandboxEvent).where(SandboxEvent.calendar_pk == calendar_pk)
            if time_min is not None:
                query = query.where(SandboxEvent.end > time_min)
            if time_max is not None:
                query = query.where(SandboxEvent.start < time_max)
            if appointment_id is not None:
                query = query.where(SandboxEvent.appointment_id == appointment_id)
            if not include_cancelled:
                query = query.where(SandboxEvent.status != "cancelled")
            if since_version is not None:
                query = query.where(SandboxEvent.version > since_version).order_by(SandboxEvent.version)
            elif order_by_start:
                query = query.order_by(SandboxEvent.start, SandboxEvent.pk)
            else:
                query = query.order_by(SandboxEvent.pk)
            return list(session.scalars(query).all())

    def google_event(self, calendar_pk: int, event_id: str) -> SandboxEvent | None:
        with self.sessions() as session:
            return session.scalars(
                select(SandboxEvent).where(
                    SandboxEvent.calendar_pk == calendar_pk, SandboxEvent.event_id == event_id
                )
            ).first()

    def google_add_event(
        self,
        calendar_pk: int,
        *,
        title: str,
        start: datetime,
        end: datetime,
        now: datetime,
        description: str = "",
        time_zone: str = "UTC",
        appointment_id: str | None = None,
        event_id: str | None = None,
        status: str = "confirmed",
    ) -> SandboxEvent:
        """Create an event (the emulator's insert, or a test/scenario seeding a calendar)."""
        with transaction(self.sessions) as session:
            new_id = event_id or self.google_new_event_id()
            event = SandboxEvent(
                calendar_pk=calendar_pk,
                event_id=new_id,
                title=title,
                description=description,
                start=start,
                end=end,
                time_zone=time_zone,
                status=status,
                appointment_id=appointment_id,
                ical_uid=f"{new_id}@google.com",
                updated=now,
                version=self.next_version(session),
            )
            session.add(event)
            session.flush()
            return event

    def google_update_event(
        self, calendar_pk: int, event_id: str, changes: dict[str, Any], now: datetime
    ) -> SandboxEvent | None:
        """Set columns of one event (title, description, start, end, time_zone, status, appointment_id)."""
        with transaction(self.sessions) as session:
            event = session.scalars(
                select(SandboxEvent).where(
                    SandboxEvent.calendar_pk == calendar_pk, SandboxEvent.event_id == event_id
                )
            ).first()
            if event is None:
                return None
            return self._change_event(session, event, changes, now, allowed=_API_EVENT_FIELDS)

    def google_cancel_event(self, calendar_pk: int, event_id: str, now: datetime) -> SandboxEvent | None:
        """Delete as Google does: the event stays, cancelled, so incremental reads report it."""
        return self.google_update_event(calendar_pk, event_id, {"status": "cancelled"}, now)

    @staticmethod
    def google_new_event_id() -> str:
        """An id shaped like Google's: 26 characters of base32hex, lower case."""
        return "".join(secrets.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(26))

    # -- end google ------------------------------------------------------------------------------

    # -- slack -----------------------------------------------------------------------------------
    # Used by `slack_emulator.py` (the Slack Web API methods calsync calls, and response URLs) and by
    # tests asserting on what the bot said. Messages keep their current state (updates applied) and
    # a version count; every Web API call is logged in `sandbox_slack_calls` with the token redacted.

    def slack_add_user(
        self,
        id: str,
        email: str,
        name: str = "",
        is_bot: bool = False,
        deleted: bool = False,
        *,
        tz: str = "UTC",
    ) -> SandboxSlackUser:
        with transaction(self.sessions) as session:
            user = SandboxSlackUser(
                id=id, email=email.lower(), name=name, is_bot=is_bot, deleted=deleted, tz=tz
            )
            session.add(user)
            session.flush()
            return user

    def slack_add_usergroup(self, id: str, handle: str, members: list[str]) -> SandboxSlackUsergroup:
        with transaction(self.sessions) as session:
            group = SandboxSlackUsergroup(id=id, handle=handle, members=list(members))
            session.add(group)
            session.flush()
            return group

    def slack_add_channel(self, id: str, name: str, *, is_private: bool = False) -> SandboxSlackChannel:
        """A public or private channel the bot can post in (DMs come from `conversations.open`)."""
        with transaction(self.sessions) as session:
            channel = SandboxSlackChannel(id=id, name=name, is_private=is_private)
            session.add(channel)
            session.flush()
            return channel

    def slack_user(self, user_id: str) -> SandboxSlackUser | None:
        with self.sessions() as session:
            return session.get(SandboxSlackUser, user_id)

    def slack_user_by_email(self, email: str) -> SandboxSlackUser | None:
        with self.sessions() as session:
            return session.scalars(
                select(SandboxSlackUser)
                .where(SandboxSlackUser.email == email.strip().lower())
                .order_by(SandboxSlackUser.deleted, SandboxSlackUser.id)
            ).first()

    def slack_usergroup(self, group_id: str) -> SandboxSlackUsergroup | None:
        with self.sessions() as session:
            return session.get(SandboxSlackUsergroup, group_id)

    def slack_channel(self, channel_id: str) -> SandboxSlackChannel | None:
        with self.sessions() as session:
            return session.get(SandboxSlackChannel, channel_id)

    def slack_open_dm(self, user_id: str, now: datetime) -> tuple[str, bool]:
        """The stable DM channel id with a user, opening it if needed: (channel id, already open)."""
        with transaction(self.sessions) as session:
            found = session.get(SandboxSlackDm, user_id)
            if found is not None:
                return found.channel_id, True
            base = "D" + (user_id[1:] if user_id[:1] in ("U", "W") else user_id)
            channel_id, suffix = base, 1
            while session.scalars(
                select(SandboxSlackDm).where(SandboxSlackDm.channel_id == channel_id)
            ).first():
                suffix += 1
                channel_id = f"{base}{suffix}"
            session.add(SandboxSlackDm(user_id=user_id, channel_id=channel_id, opened_at=now))
            return channel_id, False

    def slack_dm_channel(self, user_id: str) -> str | None:
        """The DM channel id the bot has with a user, or None if it never opened one."""
        with self.sessions() as session:
            found = session.get(SandboxSlackDm, user_id)
            return found.channel_id if found else None

    def slack_dm_user(self, channel_id: str) -> str | None:
        """The user on the other side of a DM channel id, or None if it is not an open DM."""
        with self.sessions() as session:
            found = session.scalars(
                select(SandboxSlackDm).where(SandboxSlackDm.channel_id == channel_id)
            ).first()
            return found.user_id if found else None

    def slack_next_ts(self, session: Session, now: datetime) -> str:
        """A message timestamp ("1764000000.000100"): unique and increasing, near `now`."""
        # Write first: SQLite ignores FOR UPDATE, and a read before this transaction's first write may
        # be stale by the time it writes; the no-op UPDATE takes the write lock on every database.
        session.execute(
            update(SandboxSlackState)
            .where(SandboxSlackState.id == 1)
            .values(last_ts=SandboxSlackState.last_ts)
        )
        state = session.get(SandboxSlackState, 1, with_for_update=True, populate_existing=True)
        if state is None:
            state = SandboxSlackState(id=1, last_ts="0.000000")
            session.add(state)
        seconds, _, fraction = state.last_ts.partition(".")
        last = int(seconds) * 1_000_000 + int(fraction or 0)
        micros = max(int(now.timestamp()) * 1_000_000 + now.microsecond, last + 100)
        state.last_ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
        session.flush()
        return state.last_ts

    def slack_post_message(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        attachments: list[dict[str, Any]] | None,
        now: datetime,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        ephemeral_for: str | None = None,
    ) -> SandboxSlackMessage:
        with transaction(self.sessions) as session:
            message = SandboxSlackMessage(
                channel=channel,
                ts=self.slack_next_ts(session, now),
                thread_ts=thread_ts,
                user=user,
                text=text,
                blocks=blocks,
                attachments=attachments,
                ephemeral_for=ephemeral_for,
                reply_broadcast=reply_broadcast,
                created_at=now,
                updated_at=now,
                version=1,
            )
            session.add(message)
            session.flush()
            return message

    def slack_message(self, channel: str, ts: str) -> SandboxSlackMessage | None:
        """A live (not deleted) message by channel and ts, ephemeral ones included."""
        with self.sessions() as session:
            return session.scalars(
                select(SandboxSlackMessage).where(
                    SandboxSlackMessage.channel == channel,
                    SandboxSlackMessage.ts == ts,
                    SandboxSlackMessage.deleted.is_(False),
                )
            ).first()

    def slack_update_message(
        self,
        pk: int,
        now: datetime,
        *,
        text: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        delete: bool = False,
    ) -> SandboxSlackMessage:
        """Apply an update (fields left as None are kept, as chat.update does) or a deletion."""
        with transaction(self.sessions) as session:
            message = session.get(SandboxSlackMessage, pk)
            if message is None:
                raise KeyError(pk)
            if text is not None:
                message.text = text
            if blocks is not None:
                message.blocks = blocks
            if attachments is not None:
                message.attachments = attachments
            if delete:
                message.deleted = True
            message.updated_at = now
            message.version += 1
            session.flush()
            return message

    def slack_messages(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[SandboxSlackMessage]:
        """Live messages in posting order, updates applied (ephemeral ones have `ephemeral_for`).

        With `thread_ts`: that thread as `conversations.replies` shows it (the parent, then replies).
        """
        with self.sessions() as session:
            query = (
                select(SandboxSlackMessage)
                .where(SandboxSlackMessage.deleted.is_(False))
                .order_by(SandboxSlackMessage.pk)
            )
            if channel is not None:
                query = query.where(SandboxSlackMessage.channel == channel)
            if thread_ts is not None:
                query = query.where(
                    (SandboxSlackMessage.thread_ts == thread_ts) | (SandboxSlackMessage.ts == thread_ts)
                )
            return list(session.scalars(query).all())

    def slack_publish_home(
        self, user_id: str, view: dict[str, Any], now: datetime, *, expected_hash: str | None = None
    ) -> tuple[SandboxSlackHomeView | None, bool]:
        """Store a user's App Home view: (the stored view, True), or (None, False) on a hash conflict."""
        with transaction(self.sessions) as session:
            home = session.get(SandboxSlackHomeView, user_id, with_for_update=True)
            if home is not None and expected_hash is not None and expected_hash != home.hash:
                return None, False
            if home is None:
                home = SandboxSlackHomeView(
                    user_id=user_id, view_id="V" + secrets.token_hex(5).upper(), view=view, version=0
                )
                session.add(home)
            home.view = view
            home.version += 1
            home.hash = f"{int(now.timestamp())}.{secrets.token_hex(4)}"
            home.updated_at = now
            session.flush()
            return home, True

    def slack_home(self, user_id: str) -> dict[str, Any] | None:
        """The App Home view last published for a user (as the bot sent it), or None."""
        with self.sessions() as session:
            home = session.get(SandboxSlackHomeView, user_id)
            return dict(home.view) if home else None

    def slack_home_view(self, user_id: str) -> SandboxSlackHomeView | None:
        with self.sessions() as session:
            return session.get(SandboxSlackHomeView, user_id)

    def slack_response_url(
        self,
        base_url: str,
        *,
        channel: str = "",
        user_id: str = "",
        message_ts: str | None = None,
        issued_at: datetime | None = None,
    ) -> str:
        """Mint a response URL on the Slack emulator at `base_url`, as Slack puts in a command or action.

        `channel`/`user_id`: where the interaction happened and who did it (ephemeral answers go to
        them); `message_ts`: the message an action came from (what `replace_original` replaces).
        """
        token = secrets.token_urlsafe(18)
        with transaction(self.sessions) as session:
            session.add(
                SandboxSlackResponseUrl(
                    token=token,
                    channel=channel,
                    user_id=user_id,
                    message_ts=message_ts,
                    issued_at=issued_at,
                    uses=0,
                )
            )
        return f"{base_url.rstrip('/')}/response/{token}"

    def slack_take_response_url(self, token: str) -> SandboxSlackResponseUrl | None:
        """A response URL by token, counting one use (the emulator checks expiry and the use limit)."""
        with transaction(self.sessions) as session:
            found = session.get(SandboxSlackResponseUrl, token, with_for_update=True)
            if found is not None:
                found.uses += 1
                session.flush()
            return found

    def slack_record_call(
        self, method: str, params: dict[str, Any], *, ok: bool, error: str | None, at: datetime
    ) -> None:
        with transaction(self.sessions) as session:
            session.add(SandboxSlackCall(method=method, params=params, ok=ok, error=error, at=at))

    def slack_calls(self, method: str | None = None) -> list[SandboxSlackCall]:
        """Every Slack Web API call (and response-URL post) the emulator answered, in order."""
        with self.sessions() as session:
            query = select(SandboxSlackCall).order_by(SandboxSlackCall.id)
            if method is not None:
                query = query.where(SandboxSlackCall.method == method)
            return list(session.scalars(query).all())

    # -- end slack -------------------------------------------------------------------------------


# -- slack tables ---------------------------------------------------------------------------------


class SandboxSlackUser(SandboxBase):
    __tablename__ = "sandbox_slack_users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # U…/W…
    email: Mapped[str] = mapped_column(String(320), default="", index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    tz: Mapped[str] = mapped_column(String(64), default="UTC")


class SandboxSlackUsergroup(SandboxBase):
    __tablename__ = "sandbox_slack_usergroups"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # S…
    handle: Mapped[str] = mapped_column(String(200))
    members: Mapped[list[str]] = mapped_column(JSON, default=list)


class SandboxSlackChannel(SandboxBase):
    __tablename__ = "sandbox_slack_channels"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # C…/G…
    name: Mapped[str] = mapped_column(String(200))
    is_private: Mapped[bool] = mapped_column(Boolean, default=False)


class SandboxSlackDm(SandboxBase):
    __tablename__ = "sandbox_slack_dms"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), unique=True)  # D…
    opened_at: Mapped[datetime]


class SandboxSlackMessage(SandboxBase):
    """A message the bot posted (or an ephemeral one it showed someone), with updates applied."""

    __tablename__ = "sandbox_slack_messages"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), index=True)
    ts: Mapped[str] = mapped_column(String(32), unique=True)
    thread_ts: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    user: Mapped[str] = mapped_column(String(32))  # the bot's user id
    text: Mapped[str] = mapped_column(Text, default="")
    blocks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    ephemeral_for: Mapped[str | None] = mapped_column(String(32), nullable=True)  # user id, or None
    reply_broadcast: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)  # 1 when posted, +1 per update


class SandboxSlackHomeView(SandboxBase):
    __tablename__ = "sandbox_slack_home_views"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    view_id: Mapped[str] = mapped_column(String(32))
    view: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hash: Mapped[str] = mapped_column(String(64), default="")
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]


class SandboxSlackResponseUrl(SandboxBase):
    __tablename__ = "sandbox_slack_response_urls"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), default="")
    user_id: Mapped[str] = mapped_column(String(32), default="")
    message_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    issued_at: Mapped[datetime | None] = mapped_column(nullable=True)  # None: never expires
    uses: Mapped[int] = mapped_column(Integer, default=0)


class SandboxSlackState(SandboxBase):
    """Single row: the last message ts handed out, so every new one is larger."""

    __tablename__ = "sandbox_slack_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_ts: Mapped[str] = mapped_column(String(32), default="0.000000")


class SandboxSlackCall(SandboxBase):
    """One Slack Web API call the emulator answered (the token is never stored)."""

    __tablename__ = "sandbox_slack_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    method: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    error: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime]


# -- end slack tables -----------------------------------------------------------------------------
