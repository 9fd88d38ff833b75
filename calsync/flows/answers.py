"""Answering a rep in Slack: a question, Check again, Did you mean, Details, Sync now, a click on
someone else's answer, and the agent's view of a rep. Each returns the message to show; sending it
is the surface's job.

Nothing here lets an exception from the diagnosis reach a rep as a stack trace where the bot
promised one clear sentence (`answer`); the details go to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from calsync.diagnostics.troubleshooter import Troubleshooter, UnknownUser
from calsync.render import replies
from calsync.render.answers import answer_message, details_message
from calsync.render.kit import Message
from calsync.store.people import Person
from calsync.syncbackend.engine import CycleResult

log = logging.getLogger(__name__)

SyncNow = Callable[[str], Awaitable[list[CycleResult]]]  # rep email -> one cycle of each connection
ReportUrl = Callable[[str, str], str | None]  # (agent slack id, rep email) -> a signed report link


@dataclass(frozen=True)
class Asked:
    """What a button asked about: the rep's question and the article it was answered with."""

    question: str | None = None
    article: str | None = None


class Answers:
    def __init__(
        self,
        *,
        troubleshooter: Troubleshooter,
        support_contact: str,
        report_url: ReportUrl | None = None,
        sync_now: SyncNow | None = None,
    ) -> None:
        self.troubleshooter = troubleshooter
        self.support_contact = support_contact
        self.report_url = report_url
        self.sync_now_for = sync_now

    def not_a_user(self) -> Message:
        return replies.not_a_user(self.support_contact)

    def known_article(self, article: str | None) -> str | None:
        """`article` when it is one of ours (a button's value is not trusted)."""
        return article if article in self.troubleshooter.knowledge.ids else None

    async def answer(
        self,
        person: Person,
        question: str | None,
        *,
        article: str | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
        private: bool = True,
    ) -> Message:
        """The rep's answer; one clear sentence instead when it cannot be made."""
        assert person.email is not None
        try:
            answer = await self.troubleshooter.answer(
                person.email,
                question,
                actor=person.slack_user_id,
                article=article,
                channel=channel,
                thread_ts=thread_ts,
            )
        except UnknownUser:
            return self.not_a_user()
        except Exception:
            log.exception("answering %s failed", person.slack_user_id)
            return replies.something_went_wrong()
        return answer_message(answer, private=private)

    async def check_again(self, person: Person, asked: Asked, *, private: bool) -> Message:
        return await self.answer(person, asked.question, article=asked.article, private=private)

    async def did_you_mean(self, person: Person, asked: Asked, *, private: bool) -> Message:
        article = self.known_article(asked.article)
        return await self.answer(person, asked.question, article=article, private=private)

    async def details(self, person: Person, asked: Asked) -> Message | None:
        """Every finding behind the answer; None when the person is no SalesPartner user."""
        assert person.email is not None
        try:
            answer = await self.troubleshooter.answer(
                person.email,
                asked.question,
                actor=person.slack_user_id,
                article=self.known_article(asked.article),
            )
        except UnknownUser:
            return None
        return details_message(answer)

    @property
    def can_sync(self) -> bool:
        return self.sync_now_for is not None

    async def sync_now(self, person: Person, asked: Asked, *, private: bool) -> Message:
        """Run a sync cycle for the rep now, then answer again with what it did on top."""
        assert person.email is not None and self.sync_now_for is not None
        results = await self.sync_now_for(person.email)
        answer = await self.troubleshooter.answer(
            person.email, asked.question, actor=person.slack_user_id, article=asked.article
        )
        return answer_message(answer, preface=replies.synced_preface(results), private=private)

    async def for_agent(self, agent: Person, rep_email: str) -> Message | None:
        """The agent's view of a rep, with the report link; None when the rep is no user."""
        try:
            return await self._agent_view(agent, rep_email)
        except UnknownUser:
            return None

    async def _agent_view(self, agent: Person, rep_email: str) -> Message:
        answer = await self.troubleshooter.diagnose(rep_email, actor=agent.slack_user_id)
        report = self.report_url(agent.slack_user_id, rep_email) if self.report_url else None
        return answer_message(answer, for_agent=True, report_url=report)

    async def someone_elses(self, clicker: Person, is_agent: bool, owner: Person, asked: Asked) -> Message:
        """A click on another rep's answer: an agent gets the agent view of that rep, anyone else
        their own answer (with a word on whose the clicked one was)."""
        assert clicker.email is not None and owner.email is not None
        if is_agent:
            return await self._agent_view(clicker, owner.email)
        answer = await self.troubleshooter.answer(
            clicker.email,
            asked.question,
            actor=clicker.slack_user_id,
            article=self.known_article(asked.article),
        )
        return answer_message(answer, preface=replies.someone_elses_answer(owner.slack_user_id))
