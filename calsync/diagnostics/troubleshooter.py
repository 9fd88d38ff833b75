"""`Troubleshooter.answer(email, question)`: diagnose the rep live, group the findings into causes,
and build the `Answer` — with the question deciding which help-center steps to add, never whether
we look.

- A greeting, a thank-you or an empty message gets a short reply and no diagnosis.
- Every other message from a known rep runs every check. The matcher picks the article to add; when
  it is not sure, the answer leads with what the diagnosis found (and "did you mean" choices).
- A message clearly about something else (the matcher's confident off-topic) is declined, but a rep
  whose calendar is broken still hears about it in one line, with its fix.

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

from sqlalchemy import Connection, bindparam, insert, update
from sqlalchemy.orm import Session, sessionmaker

from calsync.db import core_reading, core_transaction, table_of
from calsync.diagnostics.answer import Answer, compose
from calsync.diagnostics.check import Check, CheckContext
from calsync.diagnostics.findings import Severity, by_severity
from calsync.diagnostics.live import LiveView
from calsync.diagnostics.runner import DEFAULT_BUDGET, run_checks
from calsync.diagnostics.state import RepState, read_rep
from calsync.knowledge.loader import KnowledgeBase
from calsync.knowledge.smalltalk import SmallTalk, small_talk
from calsync.syncbackend.crypto import TokenCipher
from calsync.syncbackend.models import (
    ANSWER_FIXED_WITHIN,
    AnswerRecord,
    AuditEntry,
    CalendarConnection,
    MissingTokenError,
    authorization_columns,
    stored_authorization,
)
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
    @property
    def off_topic(self) -> bool: ...


@dataclass(frozen=True)
class _Chosen:
    """An article the rep chose themselves: no matching, no doubt."""

    article: str
    confidence: float = 1.0
    alternatives: tuple[tuple[str, float], ...] = ()
    ambiguous: bool = False
    off_topic: bool = False


# Findings that mean the question named one of the rep's appointments (the sync check traced it).
NAMED_APPOINTMENT_CODES = frozenset(
    {"sync.appointment_found", "sync.appointment_missing", "sync.appointment_cancelled"}
)
# The short replies to small talk; `{name}` is ", Ana" or "".
SMALL_TALK_REPLIES: dict[SmallTalk, str] = {
    "greeting": (
        "Hi{name}! Ask me anything about your calendar sync — for example “why isn't my 2pm with Acme on "
        "my calendar?” — and I'll check your connection live."
    ),
    "thanks": "Glad I could help! Ask me again any time.",
    "empty": (
        "Tell me what's going on with your calendar — for example “my 2pm with Acme isn't on my "
        "calendar” — and I'll check your connection live."
    ),
}


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
        now = self.clock()
        talk = small_talk(question) if question is not None and article is None else None
        snapshot = await asyncio.to_thread(self._read, email, now)
        rep = snapshot.rep
        if talk is not None:
            first = rep.name.split()[0] if rep.name.strip() else ""
            return Answer(
                user=rep.email,
                user_name=rep.name,
                question=question,
                article=None,
                headline=SMALL_TALK_REPLIES[talk].format(name=f", {first}" if first else ""),
                causes=(),
                findings=(),
                articles=(),
                actions=(),
                checked_at=now,
                kind="smalltalk",
            )
        match: _Match | None
        if article is not None:
            self.knowledge.get(article)  # KeyError for an id that is not an article
            match = _Chosen(article)
        else:
            match = self.matcher.match(question) if question is not None else None
        matched: list[str] = []
        if match is not None and match.article is not None:
            matched.append(match.article)
            if match.ambiguous:
                matched.extend(article for article, _ in match.alternatives if article not in matched)

        # Every message runs every check: they share one live view, so a full diagnosis costs about
        # two provider round trips, and the rep's real problem is found whatever the words were.
        checks = self.checks
        live = LiveView(self.providers, snapshot.authorizations, now)
        try:
            findings = by_severity(
                await run_checks(checks, CheckContext(rep, now, live, question), budget=self.budget)
            )
        finally:
            await live.close()
        declined = match is not None and match.off_topic
        if declined and any(f.code in NAMED_APPOINTMENT_CODES for f in findings):
            declined = False  # it names one of the rep's own appointments: that is ours to answer
        answer = compose(
            self.knowledge,
            user=rep.email,
            user_name=rep.name,
            question=question,
            findings=findings,
            checked_at=now,
            checks_run=tuple(check.name for check in checks),
            reconnect_url=lambda provider: self._reconnect_link(rep.email, provider, channel, thread_ts),
            article=match.article if match else None,
            matched=matched,
            declined=declined,
            confidence=match.confidence if match else None,
            alternatives=match.alternatives if match else (),
            ambiguous=bool(match and match.ambiguous),
        )
        diagnosis_id = await asyncio.to_thread(
            self._store, snapshot, answer, actor, time.perf_counter() - started
        )
        return replace(answer, diagnosis_id=diagnosis_id)

    def _read(self, email: str, now: datetime) -> _Snapshot:
        with core_reading(self.sessions) as database:
            found = read_rep(database, email, now)
        if found is None:
            raise UnknownUser(email)
        rep, connections = found
        authorizations = {}
        for connection in connections:
            try:
                authorizations[connection.id] = stored_authorization(connection, self.cipher)
            except MissingTokenError:
                continue
        return _Snapshot(rep, authorizations)

    def _store(self, snapshot: _Snapshot, answer: Answer, actor: str, seconds: float) -> str:
        """Keep tokens a provider refreshed (Microsoft rotates refresh tokens) and audit the diagnosis;
        the audit entry's id is the diagnosis id."""
        with core_transaction(self.sessions) as connection:
            for connection_id, auth in snapshot.authorizations.items():
                if auth.refreshed:
                    stored = authorization_columns(self.cipher, auth)
                    connection.execute(
                        _STORE_TOKENS,
                        {**stored, "last_refreshed_at": answer.checked_at, "connection_id": connection_id},
                    )
            entry = {
                "at": answer.checked_at,
                "actor": actor,
                "action": "ask" if answer.question is not None else "diagnose",
                "subject_user_id": snapshot.rep.user_id,
                "detail": {
                    "question": answer.question,
                    "article": answer.article,
                    "codes": [finding.code for finding in answer.findings],
                    "causes": [cause.code for cause in answer.causes],
                    "seconds": round(seconds, 3),
                },
                "result": "off_topic" if answer.off_topic else answer.worst.value,
            }
            diagnosis_id = str(connection.execute(_AUDIT, entry).scalar_one())
            _record_answer(connection, snapshot.rep.user_id, answer, diagnosis_id, str(entry["action"]))
            return diagnosis_id


def _record_answer(
    connection: Connection, user_id: int, answer: Answer, diagnosis_id: str, kind: str
) -> None:
    """What the resolution stats count: one row per cause the answer gave (its fix's article), or one
    `none` row when it found nothing to fix — and, when it found the rep healthy, the rep's answers of
    the last 24 hours marked fixed."""
    rows = [
        {"cause": cause.code, "article": cause.fix.article or answer.article} for cause in answer.problems
    ] or [{"cause": NO_CAUSE, "article": answer.article}]
    connection.execute(
        _ANSWER_RECORD,
        [
            {**row, "diagnosis_id": diagnosis_id, "at": answer.checked_at, "user_id": user_id, "kind": kind}
            for row in rows
        ],
    )
    if answer.worst in (Severity.OK, Severity.INFO):
        connection.execute(
            _MARK_FIXED,
            {
                "rep_id": user_id,
                "since": answer.checked_at - FIXED_WITHIN,
                "now": answer.checked_at,
                "this_diagnosis": diagnosis_id,
            },
        )


# What every answer writes, in SQLAlchemy Core (see `diagnostics/state.py` for why).
_CONNECTIONS = table_of(CalendarConnection)
_STORE_TOKENS = update(_CONNECTIONS).where(_CONNECTIONS.c.id == bindparam("connection_id"))  # SET: the keys
_AUDIT_LOG = table_of(AuditEntry)
_AUDIT = insert(_AUDIT_LOG).returning(_AUDIT_LOG.c.id)
NO_CAUSE = "none"  # an answer that found nothing to fix
FIXED_WITHIN = ANSWER_FIXED_WITHIN
_ANSWERS = table_of(AnswerRecord)
_ANSWER_RECORD = insert(_ANSWERS)
_MARK_FIXED = (
    update(_ANSWERS)
    .where(
        _ANSWERS.c.user_id == bindparam("rep_id"),
        _ANSWERS.c.at >= bindparam("since"),
        _ANSWERS.c.at <= bindparam("now"),
        _ANSWERS.c.fixed_at.is_(None),
        _ANSWERS.c.cause != NO_CAUSE,
        _ANSWERS.c.diagnosis_id != bindparam("this_diagnosis"),
    )
    .values(fixed_at=bindparam("now"))
)
