"""Reconnect in one click: a signed link -> the provider's consent page -> the callback -> connected.

`ReconnectLinks` makes the links (kind "reconnect", bound to the rep, 30 minutes, single use).
`ReconnectService.begin(token, provider)` checks the link, claims it in the database (the UNIQUE
`oauth_sessions.link_nonce` makes "once" hold across processes), stores a random `state` with the
encrypted PKCE verifier / msal flow, and answers the provider's authorize URL.
`ReconnectService.complete(provider, query_params)` checks the state (known, unexpired, unused, same
provider), redeems the code, checks the signed-in account is the rep's, stores the tokens encrypted
(holding a lock on the rep's row, so two sign-ins finishing at once leave one connection; a partial
unique index keeps active connections one per rep, provider and account in any case),
marks the connection connected (keeping the selected calendar when it still exists, else the
primary one), switches provider when the link was for another one (the old connection deactivated
only after the new one is in place), audits, re-runs the diagnosis and tells the rep in Slack.

Nothing in a failure path changes a connection.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.links import LinkExpired, LinkInvalid, LinkSigner, SignedLink
from calsync.render.labels import product
from calsync.syncbackend.crypto import TokenCipher, TokenDecryptError
from calsync.syncbackend.models import AuditEntry, CalendarConnection, OAuthSession, User
from calsync.syncbackend.oauth import OAuthError, OAuthFlow
from calsync.syncbackend.providers.base import Authorization, Calendar, CalendarProvider, ProviderError

if TYPE_CHECKING:
    from calsync.diagnostics.answer import Answer
    from calsync.syncbackend.engine import CycleResult

log = logging.getLogger(__name__)

LINK_KIND = "reconnect"
# How long the callback waits for the first sync cycle before the page says it is still running.
FIRST_SYNC_WAIT = 10.0
LINK_TTL = timedelta(minutes=30)
SESSION_TTL = timedelta(minutes=20)  # from the redirect to the consent page until the callback
MAX_STATE = 128
PROVIDERS = ("google", "microsoft")


class ReconnectLinks:
    """`(rep email, provider, channel=None, thread_ts=None) -> URL`: what every Reconnect button carries."""

    def __init__(self, signer: LinkSigner, public_url: str, ttl: timedelta = LINK_TTL) -> None:
        self.signer = signer
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl

    def __call__(
        self, email: str, provider: str, channel: str | None = None, thread_ts: str | None = None
    ) -> str:
        subject: dict[str, Any] = {"rep": email.strip().lower(), "provider": provider}
        if channel:
            subject["channel"] = channel
        if thread_ts:
            subject["thread_ts"] = thread_ts
        return f"{self.public_url}/connect/{provider}?t={self.signer.make(LINK_KIND, subject, self.ttl)}"


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

    @property
    def product(self) -> str:
        return product(self.provider, "your calendar")


@dataclass(frozen=True)
class Begun:
    redirect_url: str


@dataclass(frozen=True)
class Outcome:
    """A reconnect that worked."""

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
    answer: Answer | None = None  # the fresh diagnosis, after the first sync
    connection_id: int | None = None
    first_sync: CycleResult | None = None  # None: still running (or no engine here)

    @property
    def product(self) -> str:
        return product(self.provider)

    @property
    def switched_from_product(self) -> str | None:
        return product(self.switched_from) if self.switched_from else None

    @property
    def headline(self) -> str:
        if self.switched_from:
            return f"{self.product} is connected — new appointments go there from now on."
        return f"Your {self.product} is connected again."

    @property
    def switch_note(self) -> str | None:
        """The help center's words on switching provider."""
        if not self.switched_from_product:
            return None
        return (
            f"Appointments already synced to {self.switched_from_product} stay where they were: switching "
            f"doesn't move them. New appointments will go to {self.product}."
        )

    @property
    def calendar_note(self) -> str | None:
        if not self.calendars_checked:
            return "I couldn't read your calendar list just now; the calendar you picked before is kept."
        if not self.calendar_changed:
            return None
        if self.previous_calendar_name:
            return (
                f'The calendar you picked before ("{self.previous_calendar_name}") no longer exists, so '
                f'appointments now go to your main calendar, "{self.calendar_name}".'
            )
        return f'Appointments go to your main calendar, "{self.calendar_name}".'


Notifier = Callable[[Outcome], Awaitable[None]]
Diagnose = Callable[[str], Awaitable["Answer"]]
FirstSync = Callable[[int], Awaitable["CycleResult"]]  # connection id -> one cycle, under its lease


@dataclass(frozen=True)
class _Pending:
    """What the callback needs from the stored session."""

    user_id: int
    rep_email: str
    rep_name: str
    secrets: dict[str, Any]


class ReconnectService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        cipher: TokenCipher,
        signer: LinkSigner,
        flows: Mapping[str, OAuthFlow],
        providers: Mapping[str, CalendarProvider],
        clock: Callable[[], datetime],
        diagnose: Diagnose | None = None,
        notify: Notifier | None = None,
        sync: FirstSync | None = None,
        session_ttl: timedelta = SESSION_TTL,
        first_sync_wait: float = FIRST_SYNC_WAIT,
    ) -> None:
        self.sessions = sessions
        self.cipher = cipher
        self.signer = signer
        self.flows = flows
        self.providers = providers
        self.clock = clock
        self.diagnose = diagnose
        self.notify = notify
        self.sync = sync
        self.session_ttl = session_ttl
        self.first_sync_wait = first_sync_wait
        self._running: set[asyncio.Task[Any]] = set()  # first syncs that outlived their wait

    # -- begin -----------------------------------------------------------------------------------

    async def begin(self, token: str, provider: str) -> Begun | Failure:
        """Check the link, claim it, and answer where to send the browser."""
        try:
            link = self.signer.read(token, LINK_KIND)
        except LinkExpired as expired:
            subject = expired.link.subject
            await self._audit_failure(str(subject.get("rep") or ""), provider, Problem.LINK_EXPIRED)
            return Failure(Problem.LINK_EXPIRED, provider, rep_email=str(subject.get("rep") or "") or None)
        except LinkInvalid as invalid:
            await self._audit_failure("", provider, Problem.LINK_INVALID, detail=str(invalid))
            return Failure(Problem.LINK_INVALID, provider)
        rep_email = link.subject.get("rep")
        if link.subject.get("provider") != provider or not isinstance(rep_email, str):
            await self._audit_failure("", provider, Problem.LINK_INVALID, detail="provider or rep mismatch")
            return Failure(Problem.LINK_INVALID, provider)
        flow = self.flows.get(provider)
        if flow is None:
            return Failure(Problem.NOT_CONFIGURED, provider, rep_email=rep_email)
        found = await asyncio.to_thread(self._rep_and_hint, rep_email, provider, link.nonce)
        if isinstance(found, Failure):
            await self._audit_failure(rep_email, provider, found.problem)
            return found
        user_id, rep_name, login_hint = found
        state = secrets.token_urlsafe(32)
        try:
            url, flow_secrets = await flow.authorize_url(state=state, login_hint=login_hint)
        except OAuthError as error:  # the link is not used up: the rep can try again
            await self._audit_failure(rep_email, provider, Problem.PROVIDER_ERROR, detail=error.message)
            return Failure(Problem.PROVIDER_ERROR, provider, rep_email, rep_name, detail=error.message)
        data = {**flow_secrets, **_where(link)}
        claimed = await asyncio.to_thread(self._claim, state, user_id, provider, link, data)
        if not claimed:
            await self._audit_failure(rep_email, provider, Problem.LINK_USED)
            return Failure(Problem.LINK_USED, provider, rep_email, rep_name)
        return Begun(url)

    def _rep_and_hint(self, email: str, provider: str, nonce: str) -> tuple[int, str, str] | Failure:
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

    def _claim(self, state: str, user_id: int, provider: str, link: SignedLink, data: dict[str, Any]) -> bool:
        """Insert the session: the UNIQUE link nonce makes this the single use, in every process."""
        now = self.clock()
        try:
            with transaction(self.sessions) as session:
                session.add(
                    OAuthSession(
                        state=state,
                        user_id=user_id,
                        provider=provider,
                        link_nonce=link.nonce[:64],
                        flow_encrypted=self.cipher.encrypt(json.dumps(data)),
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
                        detail={"provider": provider, **_where(link)},
                        result="started",
                    )
                )
        except IntegrityError:
            return False
        return True

    # -- complete --------------------------------------------------------------------------------

    async def complete(self, provider: str, query_params: Mapping[str, str]) -> Outcome | Failure:
        state = query_params.get("state") or ""
        if not state or len(state) > MAX_STATE:
            await self._audit_failure("", provider, Problem.UNKNOWN_STATE)
            return Failure(Problem.UNKNOWN_STATE, provider)
        pending = await asyncio.to_thread(self._take_state, state, provider)
        if isinstance(pending, Failure):
            await self._audit_failure(pending.rep_email or "", provider, pending.problem)
            return pending
        rep = (pending.rep_email, pending.rep_name)
        error = query_params.get("error")
        if error:
            problem = Problem.DENIED if error == "access_denied" else Problem.PROVIDER_ERROR
            detail = query_params.get("error_description") or error
            return await self._fail(state, pending, provider, problem, detail=detail[:300])
        flow = self.flows.get(provider)
        if flow is None:
            return await self._fail(state, pending, provider, Problem.NOT_CONFIGURED)
        try:
            auth, account_email = await flow.exchange(pending.secrets, query_params)
        except OAuthError as oauth_error:
            return await self._fail(
                state, pending, provider, Problem.PROVIDER_ERROR, detail=oauth_error.message
            )
        account_email = account_email.strip().lower()
        allowed = await asyncio.to_thread(self._account_allowed, pending.user_id, provider, account_email)
        if not allowed:
            return await self._fail(state, pending, provider, Problem.WRONG_ACCOUNT, account=account_email)
        calendars: list[Calendar] | None
        try:
            calendars = await self.providers[provider].list_calendars(auth)
        except (ProviderError, KeyError):
            log.warning("listing %s calendars after reconnecting %s failed", provider, rep[0])
            calendars = None

        def connect() -> Outcome | Failure:
            return self._connect(state, pending, provider, account_email, auth, calendars)

        try:
            outcome = await asyncio.to_thread(connect)
        except IntegrityError:
            # The unique index on active connections stopped a double that the rep's row lock did not
            # keep out (a writer that does not take the lock): the other one is in place now, use it.
            log.warning("a concurrent connection for %s was created first; completing on it", rep[0])
            outcome = await asyncio.to_thread(connect)
        if isinstance(outcome, Failure):
            return outcome
        outcome = await self._first_sync(outcome)
        if self.diagnose is not None:
            try:
                outcome = _with_answer(outcome, await self.diagnose(outcome.rep_email))
            except Exception:
                log.exception("the diagnosis after reconnecting %s failed", outcome.rep_email)
        if self.notify is not None:
            try:
                await self.notify(outcome)
            except Exception:
                log.exception("telling %s in Slack about the reconnect failed", outcome.rep_email)
        return outcome

    async def _first_sync(self, outcome: Outcome) -> Outcome:
        """Run the connection's first cycle now (through the engine and its lease), so what the rep
        sees next is the truth after the sync, not the error from before. A cycle that takes longer
        than `first_sync_wait` goes on in the background; the page then says it is running."""
        from dataclasses import replace

        if self.sync is None or outcome.connection_id is None:
            return outcome
        cycle = asyncio.ensure_future(self.sync(outcome.connection_id))
        try:
            result = await asyncio.wait_for(asyncio.shield(cycle), self.first_sync_wait)
        except TimeoutError:
            self._running.add(cycle)
            cycle.add_done_callback(self._running.discard)
            return outcome
        except Exception:
            log.exception("the first sync after reconnecting %s failed", outcome.rep_email)
            return outcome
        return replace(outcome, first_sync=result)

    def _take_state(self, state: str, provider: str) -> _Pending | Failure:
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
            return _Pending(row.user_id, rep_email, rep_name, data if isinstance(data, dict) else {})

    def _account_allowed(self, user_id: int, provider: str, account_email: str) -> bool:
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

    def _connect(
        self,
        state: str,
        pending: _Pending,
        provider: str,
        account_email: str,
        auth: Authorization,
        calendars: list[Calendar] | None,
    ) -> Outcome | Failure:
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
            label = product(provider)
            for other in user.connections:
                if other is target or not other.active or other.provider == provider:
                    continue
                other.active = False
                other.status = "disconnected"
                other.status_code = "switched"
                other.status_reason = f"switched to {label}"
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
            return Outcome(
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

    async def _fail(
        self,
        state: str,
        pending: _Pending,
        provider: str,
        problem: Problem,
        *,
        detail: str = "",
        account: str | None = None,
    ) -> Failure:
        await asyncio.to_thread(self._record_failure, state, pending, provider, problem, detail, account)
        return Failure(
            problem, provider, pending.rep_email, pending.rep_name, account_email=account, detail=detail
        )

    def _record_failure(
        self, state: str, pending: _Pending, provider: str, problem: Problem, detail: str, account: str | None
    ) -> None:
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

    async def _audit_failure(
        self, rep_email: str, provider: str, problem: Problem, *, detail: str = ""
    ) -> None:
        try:
            await asyncio.to_thread(self._audit_failure_sync, rep_email, provider, problem, detail)
        except Exception:  # auditing a refused link must not turn the refusal into an error page
            log.exception("auditing a failed reconnect failed")

    def _audit_failure_sync(self, rep_email: str, provider: str, problem: Problem, detail: str) -> None:
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


def _where(link: SignedLink) -> dict[str, str]:
    """Where the link was given (so the thread can be told), from the signed subject."""
    where: dict[str, str] = {}
    for key in ("channel", "thread_ts"):
        value = link.subject.get(key)
        if isinstance(value, str) and value and len(value) <= 64:
            where[key] = value
    return where


def _with_answer(outcome: Outcome, answer: Answer) -> Outcome:
    from dataclasses import replace

    return replace(outcome, answer=answer)


__all__ = [
    "LINK_KIND",
    "LINK_TTL",
    "Begun",
    "Failure",
    "Outcome",
    "Problem",
    "ReconnectLinks",
    "ReconnectService",
]
