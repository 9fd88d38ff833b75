"""The fixes beyond Reconnect, as workflows across the provider, the store and the audit: choose the
selected calendar, turn the old connection off after a switch (and back on), and the agent's
duplicate clean-up with its dry run. Each returns an outcome (data; `render.fixes` has the words)
or a `Refusal` with a stable reason, and every one — refusals included — is in the audit log.

None of them cancels an appointment: see `calsync.syncbackend.fixes` for how.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from calsync.store.people import Person
from calsync.syncbackend.crypto import TokenCipher
from calsync.syncbackend.engine import CycleResult
from calsync.syncbackend.fixes import (
    CHOOSE_CALENDAR,
    CLEAN_DUPLICATES,
    TURN_OFF,
    TURN_ON,
    CleanupPlan,
    ConnectionFacts,
    Copy,
    FixStore,
    Refused,
)
from calsync.syncbackend.providers.base import (
    Authorization,
    Calendar,
    CalendarProvider,
    GrantError,
    NotFound,
    ProviderError,
)

SyncOne = Callable[[int], Awaitable[CycleResult]]  # connection id -> one cycle now


def calendar_key(calendar_id: str) -> str:
    """A short stand-in for a calendar id in a menu option (Slack allows 150 characters; a Microsoft
    calendar id alone is longer). The choice is looked up again among the listed calendars."""
    return hashlib.sha256(calendar_id.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Refusal:
    reason: str  # not_owner, gone, inactive, not_writable, only_one, already_off, not_an_agent, ...
    provider: str | None = None


@dataclass(frozen=True)
class CalendarChoice:
    key: str
    name: str
    primary: bool


@dataclass(frozen=True)
class CalendarMenu:
    connection_id: int
    provider: str
    account_email: str
    current_name: str | None
    choices: tuple[CalendarChoice, ...]
    diagnosis: str | None


@dataclass(frozen=True)
class CalendarChosen:
    connection_id: int
    provider: str
    name: str
    old_name: str | None
    undo_key: str | None  # the old calendar, when it can be chosen again
    undone: bool
    synced: CycleResult | None
    diagnosis: str | None


@dataclass(frozen=True)
class TurnedOff:
    connection_id: int
    provider: str
    account_email: str
    still_active: tuple[tuple[str, str], ...]  # (provider, account) of the connections left on
    diagnosis: str | None


@dataclass(frozen=True)
class TurnedOn:
    connection_id: int
    provider: str
    account_email: str
    synced: CycleResult | None


@dataclass(frozen=True)
class Cleanup:
    plan: CleanupPlan
    applied: bool
    removed: tuple[Copy, ...] = ()
    failed: tuple[tuple[Copy, str], ...] = ()


class Fixes:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        cipher: TokenCipher,
        providers: Mapping[str, CalendarProvider],
        clock: Callable[[], datetime],
        sync: SyncOne | None = None,
    ) -> None:
        self.store = FixStore(sessions, cipher, clock)
        self.providers = providers
        self.sync = sync

    # -- the audit of a refusal -----------------------------------------------------------------

    async def _refuse(
        self, actor: str, action: str, subject: int | None, reason: str, detail: dict[str, Any]
    ) -> Refusal:
        await asyncio.to_thread(
            self.store.audit,
            actor=actor,
            action=action,
            subject_user_id=subject,
            detail={**detail, "reason": reason},
            result=f"refused: {reason}",
        )
        return Refusal(reason, detail.get("provider"))

    async def not_the_owner(
        self, clicker: Person, owner: Person, action: str, value: dict[str, Any]
    ) -> Refusal:
        """A fix clicked on someone else's answer: nothing is done, and that is audited."""
        detail = {"clicked_by": clicker.email, "connection": value.get("connection")}
        return await self._refuse(clicker.slack_user_id, action, owner.user_id, "not_owner", detail)

    def _provider(self, facts: ConnectionFacts) -> CalendarProvider:
        provider = self.providers.get(facts.provider)
        if provider is None or facts.auth is None:
            raise Refused("provider_unreachable" if provider is None else "grant_invalid")
        return provider

    @contextlib.asynccontextmanager
    async def _calling(self, facts: ConnectionFacts) -> AsyncIterator[tuple[CalendarProvider, Authorization]]:
        """The connection's provider and grant for a live call: a dead grant or a provider in
        trouble refuses the fix (nothing changed), and refreshed tokens are kept either way."""
        provider = self._provider(facts)
        assert facts.auth is not None
        try:
            yield provider, facts.auth
        except GrantError:
            raise Refused("grant_invalid") from None
        except ProviderError:
            raise Refused("provider_unreachable") from None
        finally:
            await asyncio.to_thread(self.store.store_tokens, facts.id, facts.auth)

    async def _writable(self, facts: ConnectionFacts) -> list[Calendar]:
        """The calendars the provider lists as writable for this connection, now."""
        async with self._calling(facts) as (provider, auth):
            calendars = await provider.list_calendars(auth)
        return [calendar for calendar in calendars if calendar.writable]

    async def _sync(self, connection_id: int) -> CycleResult | None:
        return await self.sync(connection_id) if self.sync is not None else None

    # -- choose the selected calendar -------------------------------------------------------------

    async def calendar_menu(
        self, person: Person, connection: Any, diagnosis: str | None
    ) -> CalendarMenu | Refusal:
        """The writable calendars the rep may choose for the connection (the current one left out)."""
        assert person.user_id is not None
        try:
            facts = await asyncio.to_thread(self.store.connection, person.user_id, connection)
            if not facts.active or facts.status != "connected":
                raise Refused("inactive")
            writable = await self._writable(facts)
        except Refused as refused:
            detail = {"connection": connection, "step": "menu"}
            return await self._refuse(
                person.slack_user_id, CHOOSE_CALENDAR, person.user_id, refused.reason, detail
            )
        choices = tuple(
            CalendarChoice(calendar_key(c.id), c.name or c.id, c.primary)
            for c in sorted(writable, key=lambda c: (not c.primary, (c.name or c.id).casefold()))
            if c.id != facts.calendar_id
        )
        return CalendarMenu(
            facts.id, facts.provider, facts.account_email, facts.calendar_name, choices, diagnosis
        )

    async def choose_calendar(
        self, person: Person, connection: Any, key: Any, diagnosis: str | None, *, undo: bool = False
    ) -> CalendarChosen | Refusal:
        """Select the calendar `key` names, if the provider lists it as writable now; audit old → new
        (so it can be undone), and run a sync cycle now."""
        assert person.user_id is not None
        try:
            facts = await asyncio.to_thread(self.store.connection, person.user_id, connection)
            if not facts.active or facts.status != "connected":
                raise Refused("inactive")
            writable = await self._writable(facts)
            chosen = next((c for c in writable if calendar_key(c.id) == str(key)), None)
            if chosen is None:
                raise Refused("not_writable")
            old_id, old_name, _ = await asyncio.to_thread(
                self.store.choose_calendar,
                person.user_id,
                facts.id,
                chosen.id,
                chosen.name or chosen.id,
                actor=person.slack_user_id,
                undo=undo,
            )
        except Refused as refused:
            detail = {"connection": connection, "calendar": str(key)[:32], "undo": undo}
            return await self._refuse(
                person.slack_user_id, CHOOSE_CALENDAR, person.user_id, refused.reason, detail
            )
        undo_key = calendar_key(old_id) if old_id and any(c.id == old_id for c in writable) else None
        return CalendarChosen(
            facts.id,
            facts.provider,
            chosen.name or chosen.id,
            old_name or old_id,
            undo_key,
            undo,
            await self._sync(facts.id),
            diagnosis,
        )

    # -- turn the old connection off, and back on ------------------------------------------------

    async def turn_off(self, person: Person, connection: Any, diagnosis: str | None) -> TurnedOff | Refusal:
        """Turn off the connection the answer named (else the oldest active one): its events stay
        where they were synced, its grant is kept so it can be turned back on."""
        assert person.user_id is not None
        try:
            if connection is None:
                active = await asyncio.to_thread(self.store.active_connections, person.user_id)
                if len(active) < 2:
                    raise Refused("only_one")
                facts = active[0]
            else:
                facts = await asyncio.to_thread(self.store.connection, person.user_id, connection)
            off = await asyncio.to_thread(
                self.store.turn_off,
                person.user_id,
                facts.id,
                actor=person.slack_user_id,
                reason="turned off by the rep after a switch (calsync)",
            )
            left = await asyncio.to_thread(self.store.active_connections, person.user_id)
        except Refused as refused:
            detail = {"connection": connection}
            return await self._refuse(person.slack_user_id, TURN_OFF, person.user_id, refused.reason, detail)
        return TurnedOff(
            off.id,
            off.provider,
            off.account_email,
            tuple((c.provider, c.account_email) for c in left),
            diagnosis,
        )

    async def turn_on(self, person: Person, connection: Any, diagnosis: str | None) -> TurnedOn | Refusal:
        """Turn a connection the rep turned off back on, while its grant is still valid."""
        assert person.user_id is not None
        try:
            facts = await asyncio.to_thread(self.store.connection, person.user_id, connection)
            if facts.active:
                raise Refused("already_on")
            async with self._calling(facts) as (provider, auth):
                await provider.check_grant(auth)
            on = await asyncio.to_thread(
                self.store.turn_on, person.user_id, facts.id, actor=person.slack_user_id
            )
        except Refused as refused:
            detail = {"connection": connection}
            return await self._refuse(person.slack_user_id, TURN_ON, person.user_id, refused.reason, detail)
        return TurnedOn(on.id, on.provider, on.account_email, await self._sync(on.id))

    # -- the agent's duplicate clean-up ------------------------------------------------------------

    async def clean_duplicates(
        self, actor: str, email: str, *, apply: bool, is_agent: bool = True
    ) -> Cleanup | Refusal:
        """The dry run (`apply` False: what would be removed, audited) or the clean-up itself: the
        copies are marked removed by us first, then deleted at the provider, then audited."""
        store = self.store
        subject = await asyncio.to_thread(store.user_id_of, email)
        detail: dict[str, Any] = {"rep": email, "dry_run": not apply}
        if not is_agent:
            return await self._refuse(actor, CLEAN_DUPLICATES, subject, "not_an_agent", detail)
        plan = await asyncio.to_thread(store.cleanup_plan, email)
        if plan is None:
            return await self._refuse(actor, CLEAN_DUPLICATES, subject, "unknown_user", detail)
        if plan.empty:
            return await self._refuse(actor, CLEAN_DUPLICATES, subject, "nothing_to_clean", detail)
        if not apply:
            await asyncio.to_thread(
                store.audit,
                actor=actor,
                action=CLEAN_DUPLICATES,
                subject_user_id=plan.user_id,
                detail={**detail, "would_remove": [copy.as_dict() for copy in plan.copies]},
                result="dry_run",
            )
            return Cleanup(plan, applied=False)
        await asyncio.to_thread(store.mark_copies, plan, actor=actor)
        removed, failed = await self._remove(plan)
        await asyncio.to_thread(store.record_removed, plan, removed, failed, actor=actor)
        return Cleanup(plan, applied=True, removed=tuple(removed), failed=tuple(failed))

    async def _remove(self, plan: CleanupPlan) -> tuple[list[Copy], list[tuple[Copy, str]]]:
        """Delete each marked copy at its provider; an event already gone counts as removed."""
        extras = {facts.id: facts for facts in plan.extras}
        removed: list[Copy] = []
        failed: list[tuple[Copy, str]] = []
        for copy in plan.copies:
            facts = extras[copy.connection_id]
            provider = self.providers.get(facts.provider)
            if provider is None or facts.auth is None:
                failed.append((copy, "provider_unreachable"))
                continue
            try:
                with contextlib.suppress(NotFound):
                    await provider.delete_event(facts.auth, copy.calendar_id, copy.event_id)
                removed.append(copy)
            except GrantError:
                failed.append((copy, "grant_invalid"))
            except ProviderError:
                failed.append((copy, "provider_unreachable"))
        for facts in plan.extras:
            await asyncio.to_thread(self.store.store_tokens, facts.id, facts.auth)
        return removed, failed
