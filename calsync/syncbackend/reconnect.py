"""The reconnect's storage: OAuth sessions, the tokens a sign-in brought, one active connection.

`ReconnectStore` is what the reconnect workflow (`calsync.flows.reconnect`) asks of the database:
`claim` records a link's single use (the UNIQUE `oauth_sessions.link_nonce` makes "once" hold across
processes) together with a random `state` and the encrypted PKCE verifier / msal flow; `take_state`
checks the state (known, unexpired, unused, same provider) and marks it used; `connect` stores the
tokens encrypted (holding a lock on the rep's row, so two sign-ins finishing at once leave one
connection; a partial unique index keeps active connections one per rep, provider and account in
any case), marks the connection connected (keeping the selected calendar when it still exists, else
the primary one) and switches provider when the sign-in was for another one (the old connection
deactivated only after the new one is in place). Every step is audited.

It stores codes, not words: the reason an old connection was switched off is handed in.
Nothing in a failure path changes a connection.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.links import SignedLink
from calsync.syncbackend.crypto import TokenCipher, TokenDecryptError
from calsync.syncbackend.models import AuditEntry, CalendarConnection, OAuthSession, User
from calsync.syncbackend.providers.base import Authorization, Calendar

SESSION_TTL = timedelta(minutes=20)  # from the redirect to the consent page until the callback
MAX_STATE = 128
PROVIDERS = ("google", "microsoft")


class Problem(enum.StrEnum):
    LINK_INVALID = "link_invalid"  # tampered, garbage, another kind, another provider's link
    LINK_EXPIRED = "link_expired"
    LINK_USED = "link_used"
    UNKNOWN_USER = "unknown_user"
    UNKNOWN_STATE = "unknown_state"
    STATE_EXPIRED = "state_expired"
    STATE_USED = "state_used"
    PROVIDER_MISMATCH = "provider_mismatch"
    DENIED = "denied"
    PROVIDER_ERROR = "provider_error"
    WRONG_ACCOUNT = "wrong_account"
    NOT_CONFIGURED = "not_configured"


PROBLEM_STATUS: dict[Problem, int] = {
    Problem.LINK_INVALID: 400,
    Problem.LINK_EXPIRED: 410,
    Problem.LINK_USED: 410,
    Problem.UNKNOWN_USER: 403,
    Problem.UNKNOWN_STATE: 400,
    Problem.STATE_EXPIRED: 410,
    Problem.STATE_USED: 410,
    Problem.PROVIDER_MISMATCH: 400,
    Problem.DENIED: 403,
    Problem.PROVIDER_ERROR: 502,
    Problem.WRONG_ACCOUNT: 403,
    Problem.NOT_CONFIGURED: 404,
}


@dataclass(frozen=True)
class Failure:
    """Why a reconnect did not happen; nothing was changed."""

    problem: Problem
    provider: str | None = None
    rep_email: str | None = None
    rep_name: str = ""
    account_email: str | None = None  # who signed in at the provider (wrong account)
    detail: str = ""  # what the provider said, fit for people

    @property
    def status_code(self) -> int:
        return PROBLEM_STATUS[self.problem]


@dataclass(frozen=True)
class Connected:
    """What `ReconnectStore.connect` stored: the connection is connected (again)."""

    provider: str
    rep_email: str
    rep_name: str
    account_email: str
    calendar_id: str | None
    calendar_name: str | None
    calendar_changed: bool = False  # the selected calendar was gone (or none was selected)
    previous_calendar_name: str | None = None
    calendars_checked: bool = True  # False: the calendar list could not be read just now
    switched_from: str | None = None  # the provider deactivated by this switch
    channel: str | None = None
    thread_ts: str | None = None
    connection_id: int | None = None


@dataclass(frozen=True)
class Pending:
    """What the callback needs from the stored session."""

    user_id: int
    rep_email: str
    rep_name: str
    secrets: dict[str, Any]


class ReconnectStore:
    """The reconnect's rows: `oauth_sessions`, the rep's `calendar_connections`, the audit log."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        cipher: TokenCipher,
        clock: Callable[[], datetime],
        session_ttl: timedelta = SESSION_TTL,
    ) -> None:
        self.sessions = sessions
        self.cipher = cipher
        self.clock = clock
        self.session_ttl = session_ttl

    # -- begin -----------------------------------------------------------------------------------

    def rep_and_hint(self, email: str, provider: str, nonce: str) -> tuple[int, str, str] | Failure:
        """The rep's id and name, and the account to suggest at the consent page."""
        with self.sessions() as session:
            user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
            if user is None:
                return Failure(Problem.UNKNOWN_USER, provider, rep_email=email)
            used = session.scalars(select(OAuthSession.state).where(OAuthSession.link_nonce == nonce)).first()
            if used is not None:
                return Failure(Problem.LINK_USED, provider, user.email, user.name)
            same = [c for c in user.connections if c.provider == provider]
            active = [c for c in same if c.active]
            hint = (active or same)[-1].account_email if (active or same) else user.email
            return user.id, user.name, hint

    def claim(
        self, state: str, user_id: int, provider: str, link: SignedLink, flow_secrets: dict[str, Any]
    ) -> bool:
        """Insert the session: the UNIQUE link nonce makes this the single use, in every process."""
        now = self.clock()
        where = link_where(link)
        try:
            with transaction(self.sessions) as session:
                session.add(
                    OAuthSession(
                        state=state,
                        user_id=user_id,
                        provider=provider,
                        link_nonce=link.nonce[:64],
                        flow_encrypted=self.cipher.encrypt(json.dumps({**flow_secrets, **where})),
                        created_at=now,
                        expires_at=now + self.session_ttl,
                    )
                )
                session.add(
                    AuditEntry(
                        at=now,
                        actor=str(link.subject.get("rep")),
                        action="reconnect_started",
                        subject_user_id=user_id,
                        detail={"provider": provider, **where},
                        result="started",
                    )
                )
        except IntegrityError:
            return False
        return True

    # -- complete --------------------------------------------------------------------------------

    def take_state(self, state: str, provider: str) -> Pending | Failure:
        """Check the state and mark it used (atomically: a second callback with it finds it taken)."""
        now = self.clock()
        with transaction(self.sessions) as session:
            row = session.get(OAuthSession, state)
            if row is None:
                return Failure(Problem.UNKNOWN_STATE, provider)
            user = session.get(User, row.user_id)
            rep_email, rep_name = (user.email, user.name) if user else ("", "")
            if row.provider != provider:
                return Failure(Problem.PROVIDER_MISMATCH, provider, rep_email, rep_name)
            if row.completed_at is not None:
                return Failure(Problem.STATE_USED, provider, rep_email, rep_name)
            taken = session.execute(
                update(OAuthSession)
                .where(OAuthSession.state == state, OAuthSession.completed_at.is_(None))
                .values(
                    completed_at=now,
                    outcome="expired" if row.expires_at <= now else "pending",
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(taken, "rowcount", 0) != 1:
                return Failure(Problem.STATE_USED, provider, rep_email, rep_name)
            if row.expires_at <= now:
                return Failure(Problem.STATE_EXPIRED, provider, rep_email, rep_name)
            try:
                data = json.loads(self.cipher.decrypt(row.flow_encrypted))
            except (TokenDecryptError, ValueError):
                return Failure(Problem.UNKNOWN_STATE, provider, rep_email, rep_name)
            return Pending(row.user_id, rep_email, rep_name, data if isinstance(data, dict) else {})

    def account_allowed(self, user_id: int, provider: str, account_email: str) -> bool:
        """Reconnecting: the same account as the connection. A new provider: the rep's own email, or an
        account the rep already connected."""
        with self.sessions() as session:
            user = session.get(User, user_id)
            if user is None:
                return False
            active_here = [c for c in user.connections if c.provider == provider and c.active]
            if active_here:
                return any(c.account_email == account_email for c in active_here)
            return account_email == user.email or any(
                c.account_email == account_email for c in user.connections
            )

    def connect(
        self,
        state: str,
        pending: Pending,
        provider: str,
        account_email: str,
        auth: Authorization,
        calendars: list[Calendar] | None,
        *,
        switched_reason: str,
    ) -> Connected | Failure:
        """Store the sign-in; `switched_reason` is the status reason of a connection it switches off."""
        now = self.clock()
        with transaction(self.sessions) as session:
            # Two sign-ins completing at once must not both add a connection: the rep's row is locked
            # until this transaction ends, so the second one waits and then finds the first's.
            user = lock_user(session, pending.user_id)
            if user is None:
                return Failure(Problem.UNKNOWN_USER, provider, pending.rep_email, pending.rep_name)
            same = [
                c for c in user.connections if c.provider == provider and c.account_email == account_email
            ]
            target = next((c for c in same if c.active), None) or (same[-1] if same else None)
            if target is None:
                target = CalendarConnection(
                    user_id=user.id, provider=provider, account_email=account_email, created_at=now, scopes=""
                )
                session.add(target)
                user.connections.append(target)
            previous_id, previous_name = target.selected_calendar_id, target.selected_calendar_name
            chosen_id, chosen_name, changed = previous_id, previous_name, False
            if calendars is not None:
                kept = next((c for c in calendars if previous_id and c.id == previous_id), None)
                if kept is not None:
                    chosen_name = kept.name or previous_name
                else:
                    primary = next((c for c in calendars if c.primary), None) or next(
                        (c for c in calendars if c.writable), None
                    )
                    chosen_id = primary.id if primary else None
                    chosen_name = primary.name if primary else None
                    changed = True
            target.store_authorization(self.cipher, auth)
            target.account_email = account_email
            target.status = "connected"
            target.status_reason = None
            target.status_code = None
            target.authorized_at = now
            target.last_refreshed_at = now
            target.disconnected_at = None
            target.active = True
            if chosen_id != previous_id:
                target.sync_cursor = None  # the cursor belonged to the old calendar
            target.selected_calendar_id = chosen_id
            target.selected_calendar_name = chosen_name
            session.flush()  # the new connection is in place before anything is switched off
            switched_from: str | None = None
            for other in user.connections:
                if other is target or not other.active or other.provider == provider:
                    continue
                other.active = False
                other.status = "disconnected"
                other.status_code = "switched"
                other.status_reason = switched_reason
                other.disconnected_at = now
                other.clear_tokens()
                switched_from = other.provider
            session.execute(
                update(OAuthSession)
                .where(OAuthSession.state == state)
                .values(outcome="switched" if switched_from else "connected")
                .execution_options(synchronize_session=False)
            )
            session.add(
                AuditEntry(
                    at=now,
                    actor=user.email,
                    action="reconnect_completed",
                    subject_user_id=user.id,
                    detail={
                        "provider": provider,
                        "account": account_email,
                        "connection": target.id,
                        "calendar_changed": changed,
                        "switched_from": switched_from,
                    },
                    result="switched" if switched_from else "connected",
                )
            )
            where = pending.secrets
            return Connected(
                provider=provider,
                rep_email=user.email,
                rep_name=user.name,
                account_email=account_email,
                calendar_id=chosen_id,
                calendar_name=chosen_name,
                calendar_changed=changed,
                previous_calendar_name=(previous_name or previous_id) if changed and previous_id else None,
                calendars_checked=calendars is not None,
                switched_from=switched_from,
                channel=where.get("channel") if isinstance(where.get("channel"), str) else None,
                thread_ts=where.get("thread_ts") if isinstance(where.get("thread_ts"), str) else None,
                connection_id=target.id,
            )

    # -- failures --------------------------------------------------------------------------------

    def record_failure(
        self, state: str, pending: Pending, provider: str, problem: Problem, detail: str, account: str | None
    ) -> None:
        """A callback that got a state but failed after: the session's outcome, and the audit."""
        with transaction(self.sessions) as session:
            session.execute(
                update(OAuthSession)
                .where(OAuthSession.state == state)
                .values(outcome=problem.value[:32])
                .execution_options(synchronize_session=False)
            )
            session.add(
                AuditEntry(
                    at=self.clock(),
                    actor=pending.rep_email or "web",
                    action="reconnect_failed",
                    subject_user_id=pending.user_id,
                    detail={
                        "provider": provider,
                        "reason": problem.value,
                        "detail": detail,
                        "account": account,
                    },
                    result=problem.value,
                )
            )

    def audit_failure(self, rep_email: str, provider: str, problem: Problem, detail: str) -> None:
        """A refusal before any session was taken (a bad link or state): the audit only."""
        with transaction(self.sessions) as session:
            user_id = (
                session.scalars(select(User.id).where(User.email == rep_email.strip().lower())).first()
                if rep_email
                else None
            )
            session.add(
                AuditEntry(
                    at=self.clock(),
                    actor=rep_email or "web",
                    action="reconnect_failed",
                    subject_user_id=user_id,
                    detail={"provider": provider[:16], "reason": problem.value, "detail": detail[:300]},
                    result=problem.value,
                )
            )


def lock_user(session: Session, user_id: int) -> User | None:
    """The user, row-locked until the session's transaction ends: `SELECT … FOR UPDATE` on
    PostgreSQL. SQLite has no row locks; a write as the transaction's first statement takes the
    database's write lock (waiting out the busy timeout), which serializes the same way."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(User)
            .where(User.id == user_id)
            .values(id=User.id)
            .execution_options(synchronize_session=False)
        )
    return session.scalars(
        select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
    ).first()


def link_where(link: SignedLink) -> dict[str, str]:
    """Where the link was given (so the thread can be told), from the signed subject."""
    where: dict[str, str] = {}
    for key in ("channel", "thread_ts"):
        value = link.subject.get(key)
        if isinstance(value, str) and value and len(value) <= 64:
            where[key] = value
    return where


__all__ = [
    "MAX_STATE",
    "PROBLEM_STATUS",
    "PROVIDERS",
    "SESSION_TTL",
    "Connected",
    "Failure",
    "Pending",
    "Problem",
    "ReconnectStore",
    "link_where",
    "lock_user",
]
