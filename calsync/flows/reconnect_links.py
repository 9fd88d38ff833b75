"""Handing out reconnect links in Slack: `/calsync reconnect`, the owner's private link behind a
channel's Reconnect button (bound to its thread), and the link an agent sends a rep by DM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session, sessionmaker

from calsync.diagnostics.troubleshooter import ReconnectUrl
from calsync.flows import slack
from calsync.render import labels, replies
from calsync.render.kit import Message, reconnect_message
from calsync.render.notices import reconnect_link_message
from calsync.store import audit, people
from calsync.store.people import Person

ALL_PROVIDERS = ["google", "microsoft"]


class ReconnectLinks:
    def __init__(
        self,
        *,
        reconnect_url: ReconnectUrl,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        support_contact: str,
    ) -> None:
        self.reconnect_url = reconnect_url
        self.sessions = sessions
        self.clock = clock
        self.support_contact = support_contact

    async def for_person(self, person: Person) -> Message:
        """A link for each of the person's active connections (both providers when none)."""
        if person.email is None:
            return replies.not_a_user(self.support_contact)
        providers = await asyncio.to_thread(people.active_providers, self.sessions, person.email)
        return reconnect_message(
            {provider: self.reconnect_url(person.email, provider) for provider in providers or ALL_PROVIDERS}
        )

    def in_thread(
        self, clicker: Person, owner: Person | None, provider: str, channel: str | None, thread_ts: str | None
    ) -> Message:
        """A channel's Reconnect button carries no link: its owner gets theirs privately (bound to the
        thread, so the result is posted there); anyone else is told whose it is."""
        if owner is None or owner.email is None or provider not in labels.CALENDAR_PRODUCTS:
            return replies.whose_calendar_unknown()
        if owner.user_id != clicker.user_id:
            return replies.someone_elses_reconnect(owner.slack_user_id)
        url = self.reconnect_url(owner.email, provider, channel=channel, thread_ts=thread_ts)
        return reconnect_message({provider: url})

    async def send_to_rep(
        self, client: AsyncWebClient, agent: Person, rep_email: str, provider: str
    ) -> Message:
        """An agent's *Send reconnect link*: the rep gets the link by DM, the send is audited."""
        rep = await asyncio.to_thread(people.by_email, self.sessions, "", rep_email, "")
        slack_id = await asyncio.to_thread(people.slack_id_of, self.sessions, rep_email)
        if rep.email is None or provider not in labels.CALENDAR_PRODUCTS or slack_id is None:
            return replies.rep_unreachable()
        url = self.reconnect_url(rep.email, provider)
        channel = await slack.open_dm(client, slack_id)
        await slack.post(client, channel, reconnect_link_message(provider, url), None)
        await asyncio.to_thread(
            audit.record,
            self.sessions,
            self.clock(),
            actor=agent.slack_user_id,
            action="reconnect_link_sent",
            subject_user_id=rep.user_id,
            detail={"provider": provider},
            result="sent",
        )
        return replies.reconnect_link_sent(slack_id, provider)
