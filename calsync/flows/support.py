"""Talk to support: the rep's fresh diagnosis posted to the support channel (in the thread of their
recent request, if any) and recorded; the rep is told it went."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session, sessionmaker

from calsync.diagnostics.troubleshooter import Troubleshooter
from calsync.flows import slack
from calsync.render import replies
from calsync.render.answers import answer_message
from calsync.render.kit import Message
from calsync.store import audit
from calsync.store.people import Person


class Support:
    def __init__(
        self,
        *,
        troubleshooter: Troubleshooter,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        channel: str | None = None,
        contact: str,
    ) -> None:
        self.troubleshooter = troubleshooter
        self.sessions = sessions
        self.clock = clock
        self.channel = channel
        self.contact = contact

    async def talk_to_support(self, client: AsyncWebClient, person: Person) -> Message:
        """Send the rep's case to the support channel; what to tell the rep."""
        assert person.email is not None
        if not self.channel:
            return replies.contact_support(self.contact)
        answer = await self.troubleshooter.diagnose(person.email, actor=person.slack_user_id)
        thread = await asyncio.to_thread(audit.support_thread, self.sessions, self.clock(), person.user_id)
        preface = replies.support_request_preface(person.slack_user_id, person.name or person.email)
        message = answer_message(answer, for_agent=True, preface=preface)
        ts = await slack.post(client, self.channel, message, thread)
        if ts is not None:
            await asyncio.to_thread(
                audit.record,
                self.sessions,
                self.clock(),
                actor=person.slack_user_id,
                action="support_request",
                subject_user_id=person.user_id,
                detail={"channel": self.channel, "thread_ts": thread or ts, "diagnosis": answer.diagnosis_id},
                result=answer.worst.value,
            )
        return replies.support_request_sent()
