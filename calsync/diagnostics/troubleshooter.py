"""`Troubleshooter.answer(email, question)`: match the question to an article, run the checks that
article needs (all of them for a diagnosis), and build the `Answer`.

Database work runs in worker threads (one short transaction to read the snapshot, one to store
refreshed tokens and the audit entry) so the event loop only ever waits on the network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from calsync.db import transaction
from calsync.diagnostics.answer import (
    Answer,
    actions_for,
    articles_for,
    verdict_for,
)
from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import by_severity
from calsync.diagnostics.live import LiveView
from calsync.diagnostics.runner import DEFAULT_BUDGET, run_checks
from calsync.diagnostics.state import RepState, find_user, load_rep_state
from calsync.knowledge.loader import KnowledgeBase
from calsync.syncbackend.crypto import TokenCipher
from calsync.syncbackend.models import AuditEntry, CalendarConnection, MissingTokenError
from calsync.syncbackend.providers.base import Authorization, CalendarProvider


class UnknownUser(LookupError):
    """No SalesPartner user has this email."""


class QuestionMatcher(Protocol):
    def match(self, question: str) -> _Match: ...


class _Match(Protocol):
    @property
    def article(self) -> str | None: ...
    @property
    def confidence(self) -> float: ...
    @property
    def alternatives(self) -> tuple[tuple[str, float], ...]: ...
    @property
    def ambiguous(self) -> bool: ...


@dataclass(frozen=True)
class _Chosen:
    """An article the rep chose themselves: no matching, no doubt."""

    article: str
    confidence: float = 1.0
    alternatives: tuple[tuple[str, float], ...] = ()
    ambiguous: bool = False


# (rep email, provider) -> link; called with channel= and thread_ts= keywords too when the answer is
# given in a Slack thread (so the link can say where to report back).
ReconnectUrl = Callable[..., str | None]


@dataclass(frozen=True)
class _Snapshot:
    rep: RepState
    authorizations: dict[int, Authorization]


class Troubleshooter:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        providers: Mapping[str, CalendarProvider],
        cipher: TokenCipher,
        knowledge: KnowledgeBase,
        matcher: QuestionMatcher,
        checks: Sequence[Check],
        clock: Callable[[], datetime],
        reconnect_url: ReconnectUrl,
        budget: float = DEFAULT_BUDGET,
    ) -> None:
        self.sessions = sessions
        self.providers = providers
        self.cipher = cipher
        self.knowledge = knowledge
        self.matcher = matcher
        self.checks = tuple(checks)
        self.clock = clock
        self.reconnect_url = reconnect_url
        self.budget = budget

    async def diagnose(self, email: str, *, actor: str = "system") -> Answer:
        return await self.answer(email, None, actor=actor)

    def _reconnect_link(
        self, email: str, provider: str, channel: str | None, thread_ts: str | None
    ) -> str | None:
        if channel is None and thread_ts is None:
            return self.reconnect_url(email, provider)
        return self.reconnect_url(email, provider, channel=channel, thread_ts=thread_ts)

    async def answer(
        self,
        email: str,
        question: str | None = None,
        *,
        actor: str = "system",
        article: str | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
    ) -> Answer:
        """The whole answer for `email`; raises `UnknownUser` when there is no such user.

        `article` skips the matcher (the rep picked it from "Did you mean …?"). `channel`/`thread_ts`:
        where the answer is given, carried by its reconnect links."""
        started = time.perf_counter()
        match: _Match | None
        if article is not None:
            self.knowledge.get(article)  # KeyError for an id that is not an article
            match = _Chosen(article)
        else:
            match = self.matcher.match(question) if question is not None else None
        now = self.clock()
        snapshot = await asyncio.to_thread(self._read, email, now)
        rep = snapshot.rep
        if match is not None and match.article is None:
            answer = Answer(
                user=rep.email,
                user_name=rep.name,
                question=question,
                article=None,
                findings=(),
                articles=(),
                actions=(),
                verdict=(
                    "I'm not sure which calendar problem this is."
                    if match.ambiguous
                    else "That's not something I can help with — I answer questions about calendar sync."
                ),
                checked_at=now,
                confidence=match.confidence,
                alternatives=match.alternatives if match.ambiguous else (),
                ambiguous=match.ambiguous,
                off_topic=True,
            )
            diagnosis_id = await asyncio.to_thread(
                self._store, snapshot, answer, actor, time.perf_counter() - started
            )
            return replace(answer, diagnosis_id=diagnosis_id)

        matched: list[str] = []
        if match is not None and match.article is not None:
            matched.append(match.article)
            if match.ambiguous:
                matched.extend(article for article, _ in match.alternatives if article not in matched)
        # Every on-topic question runs every check: they share one live view, so the extra checks
        # cost no extra round trip, and a rep asking "why isn't my appointment showing" whose real
        # problem is a provider switch or a deleted event hears about it. The article decides
        # which steps are shown and which `ok` findings are worth showing.
        checks = self.checks
        live = LiveView(self.providers, snapshot.authorizations, now)
        try:
            findings = by_severity(
                await run_checks(checks, CheckContext(rep, now, live, question), budget=self.budget)
            )
        finally:
            await live.close()
        checks_run = tuple(check.name for check in checks)
        answer = Answer(
            user=rep.email,
            user_name=rep.name,
            question=question,
            article=match.article if match else None,
            findings=tuple(findings),
            articles=articles_for(self.knowledge, matched, findings, checks_run),
            actions=actions_for(
                findings, lambda provider: self._reconnect_link(rep.email, provider, channel, thread_ts)
            ),
            verdict=verdict_for(findings),
            checked_at=now,
            confidence=match.confidence if match else None,
            alternatives=match.alternatives if match else (),
            ambiguous=bool(match and match.ambiguous),
            checks_run=checks_run,
        )
        diagnosis_id = await asyncio.to_thread(
            self._store, snapshot, answer, actor, time.perf_counter() - started
        )
        return replace(answer, diagnosis_id=diagnosis_id)

    def _read(self, email: str, now: datetime) -> _Snapshot:
        with self.sessions() as session:
            user = find_user(session, email)
            if user is None:
                raise UnknownUser(email)
            rep = load_rep_state(session, user, now)
            authorizations = {}
            for connection in session.query(CalendarConnection).filter_by(user_id=user.id):
                try:
                    authorizations[connection.id] = connection.authorization(self.cipher)
                except MissingTokenError:
                    continue
            return _Snapshot(rep, authorizations)

    def _store(self, snapshot: _Snapshot, answer: Answer, actor: str, seconds: float) -> str:
        """Keep tokens a provider refreshed (Microsoft rotates refresh tokens) and audit the diagnosis;
        the audit entry's id is the diagnosis id."""
        with transaction(self.sessions) as session:
            for connection_id, auth in snapshot.authorizations.items():
                if not auth.refreshed:
                    continue
                connection = session.get(CalendarConnection, connection_id)
                if connection is not None:
                    connection.store_authorization(self.cipher, auth)
                    connection.last_refreshed_at = answer.checked_at
            entry = AuditEntry(
                at=answer.checked_at,
                actor=actor,
                action="ask" if answer.question is not None else "diagnose",
                subject_user_id=snapshot.rep.user_id,
                detail={
                    "question": answer.question,
                    "article": answer.article,
                    "codes": [finding.code for finding in answer.findings],
                    "seconds": round(seconds, 3),
                },
                result=answer.worst.value if not answer.off_topic else "off_topic",
            )
            session.add(entry)
            session.flush()
            return str(entry.id)
