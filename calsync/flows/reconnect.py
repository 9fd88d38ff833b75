"""Reconnect in one click: a signed link -> the provider's consent page -> the callback -> connected.

`ReconnectLinks` makes the links (kind "reconnect", bound to the rep, 30 minutes, single use).
`ReconnectService.begin(token, provider)` checks the link, has the store claim it together with a
random `state` and the encrypted PKCE verifier / msal flow, and answers the provider's authorize URL.
`ReconnectService.complete(provider, query_params)` has the store check and take the state, redeems
the code, checks the signed-in account is the rep's, has the store keep the tokens and the one
active connection (`calsync.syncbackend.reconnect.ReconnectStore`), runs the first sync, re-runs the
diagnosis and tells the rep in Slack. The words are `calsync.render.reconnect`'s.

Nothing in a failure path changes a connection.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from calsync.links import LinkExpired, LinkInvalid, LinkSigner
from calsync.render import reconnect as words
from calsync.render.labels import product
from calsync.syncbackend.crypto import TokenCipher
from calsync.syncbackend.oauth import OAuthError, OAuthFlow
from calsync.syncbackend.providers.base import Calendar, CalendarProvider, ProviderError
from calsync.syncbackend.reconnect import (
    MAX_STATE,
    PROVIDERS,
    SESSION_TTL,
    Connected,
    Failure,
    Pending,
    Problem,
    ReconnectStore,
)

if TYPE_CHECKING:
    from calsync.diagnostics.answer import Answer
    from calsync.syncbackend.engine import CycleResult

log = logging.getLogger(__name__)

LINK_KIND = "reconnect"
# How long the callback waits for the first sync cycle before the page says it is still running.
FIRST_SYNC_WAIT = 10.0
LINK_TTL = timedelta(minutes=30)


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


@dataclass(frozen=True)
class Begun:
    redirect_url: str


@dataclass(frozen=True)
class Outcome(Connected):
    """A reconnect that worked: what was stored, then the first sync and the fresh diagnosis."""

    answer: Answer | None = None  # the fresh diagnosis, after the first sync
    first_sync: CycleResult | None = None  # None: still running (or no engine here)

    @classmethod
    def of(cls, connected: Connected) -> Outcome:
        return cls(**{f.name: getattr(connected, f.name) for f in fields(Connected)})

    @property
    def product(self) -> str:
        return product(self.provider)

    @property
    def headline(self) -> str:
        return words.headline(self)

    @property
    def switch_note(self) -> str | None:
        return words.switch_note(self)

    @property
    def calendar_note(self) -> str | None:
        return words.calendar_note(self)


Notifier = Callable[[Outcome], Awaitable[None]]
Diagnose = Callable[[str], Awaitable["Answer"]]
FirstSync = Callable[[int], Awaitable["CycleResult"]]  # connection id -> one cycle, under its lease


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
        self.store = ReconnectStore(sessions, cipher, clock, session_ttl)
        self.signer = signer
        self.flows = flows
        self.providers = providers
        self.diagnose = diagnose
        self.notify = notify
        self.sync = sync
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
        found = await asyncio.to_thread(self.store.rep_and_hint, rep_email, provider, link.nonce)
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
        claimed = await asyncio.to_thread(self.store.claim, state, user_id, provider, link, flow_secrets)
        if not claimed:
            await self._audit_failure(rep_email, provider, Problem.LINK_USED)
            return Failure(Problem.LINK_USED, provider, rep_email, rep_name)
        return Begun(url)

    # -- complete --------------------------------------------------------------------------------

    async def complete(self, provider: str, query_params: Mapping[str, str]) -> Outcome | Failure:
        state = query_params.get("state") or ""
        if not state or len(state) > MAX_STATE:
            await self._audit_failure("", provider, Problem.UNKNOWN_STATE)
            return Failure(Problem.UNKNOWN_STATE, provider)
        pending = await asyncio.to_thread(self.store.take_state, state, provider)
        if isinstance(pending, Failure):
            await self._audit_failure(pending.rep_email or "", provider, pending.problem)
            return pending
        rep = pending.rep_email
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
        allowed = await asyncio.to_thread(
            self.store.account_allowed, pending.user_id, provider, account_email
        )
        if not allowed:
            return await self._fail(state, pending, provider, Problem.WRONG_ACCOUNT, account=account_email)
        calendars: list[Calendar] | None
        try:
            calendars = await self.providers[provider].list_calendars(auth)
        except (ProviderError, KeyError):
            log.warning("listing %s calendars after reconnecting %s failed", provider, rep)
            calendars = None
        reason = words.switched_reason(provider)

        def connect() -> Connected | Failure:
            return self.store.connect(
                state, pending, provider, account_email, auth, calendars, switched_reason=reason
            )

        try:
            connected = await asyncio.to_thread(connect)
        except IntegrityError:
            # The unique index on active connections stopped a double that the rep's row lock did not
            # keep out (a writer that does not take the lock): the other one is in place now, use it.
            log.warning("a concurrent connection for %s was created first; completing on it", rep)
            connected = await asyncio.to_thread(connect)
        if isinstance(connected, Failure):
            return connected
        outcome = await self._first_sync(Outcome.of(connected))
        if self.diagnose is not None:
            try:
                outcome = replace(outcome, answer=await self.diagnose(outcome.rep_email))
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
        if self.sync is None or outcome.connection_id is None:
            return outcome
        cycle = asyncio.ensure_future(self.sync(outcome.connection_id))
        try:
            result = await asyncio.wait_for(asyncio.shield(cycle), self.first_sync_wait)
        except TimeoutError:
            log.warning(
                "the first sync after reconnecting %s is still running after %.0f s; it goes on in the background",
                outcome.rep_email,
                self.first_sync_wait,
            )
            self._running.add(cycle)
            cycle.add_done_callback(self._running.discard)
            return outcome
        except Exception:
            log.exception("the first sync after reconnecting %s failed", outcome.rep_email)
            return outcome
        return replace(outcome, first_sync=result)

    async def _fail(
        self,
        state: str,
        pending: Pending,
        provider: str,
        problem: Problem,
        *,
        detail: str = "",
        account: str | None = None,
    ) -> Failure:
        await asyncio.to_thread(self.store.record_failure, state, pending, provider, problem, detail, account)
        return Failure(
            problem, provider, pending.rep_email, pending.rep_name, account_email=account, detail=detail
        )

    async def _audit_failure(
        self, rep_email: str, provider: str, problem: Problem, *, detail: str = ""
    ) -> None:
        try:
            await asyncio.to_thread(self.store.audit_failure, rep_email, provider, problem, detail)
        except Exception:  # auditing a refused link must not turn the refusal into an error page
            log.exception("auditing a failed reconnect failed")


__all__ = [
    "FIRST_SYNC_WAIT",
    "LINK_KIND",
    "LINK_TTL",
    "PROVIDERS",
    "Begun",
    "Failure",
    "Outcome",
    "Problem",
    "ReconnectLinks",
    "ReconnectService",
]
