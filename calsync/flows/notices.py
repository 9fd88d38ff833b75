"""What calsync says in Slack on its own: the DM to a rep whose calendar stopped syncing (and, in its
thread, what an incident of their organisation means for them once recognised and once access is
back), the support channel's question about held cancellations, and the note to a rep after a
reconnect.

Built once by the composition root, over the one Web API client, before the sync engine (which
takes `disconnected` and `hold` in its constructor) and the reconnect flow (`reconnected`).
"""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session, sessionmaker

from calsync.diagnostics.troubleshooter import ReconnectUrl
from calsync.flows import slack
from calsync.flows.reconnect import Outcome
from calsync.render.notices import (
    disconnected_message,
    hold_message,
    incident_follow_up_message,
    reconnected_messages,
)
from calsync.store import people
from calsync.syncbackend.engine import Disconnection, SentDM
from calsync.syncbackend.holds import Hold
from calsync.syncbackend.incidents import IncidentFollowUp

log = logging.getLogger(__name__)


class Notices:
    def __init__(
        self,
        *,
        client: AsyncWebClient,
        sessions: sessionmaker[Session],
        reconnect_url: ReconnectUrl,
        support_channel: str | None = None,
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.reconnect_url = reconnect_url
        self.support_channel = support_channel

    async def disconnected(self, disconnection: Disconnection) -> SentDM | None:
        """DM the rep that a calendar stopped syncing, with a Reconnect button (or what the incident
        it is part of means); where the DM went, None when it could not be sent."""
        slack_id = disconnection.slack_user_id
        if slack_id is None:
            try:
                found = await self.client.users_lookupByEmail(email=disconnection.user_email)
                slack_id = str((found.get("user") or {}).get("id") or "") or None
            except SlackApiError as error:
                log.info("no Slack user for a disconnected rep: %s", error.response.get("error"))
                return None
        if slack_id is None:
            return None
        channel = await slack.open_dm(self.client, slack_id)
        if not channel:
            return None
        url = self.reconnect_url(disconnection.user_email, disconnection.provider)
        ts = await slack.post(self.client, channel, disconnected_message(disconnection, url), None)
        return SentDM(channel, ts) if ts is not None else None

    async def incident_follow_up(self, follow_up: IncidentFollowUp) -> bool:
        """Follow the rep's disconnection DM up in its thread: the incident recognised since (reconnecting
        won't help yet), or access back (reconnect now, with the button); True once sent."""
        url = None
        if follow_up.kind == "access_back":
            url = self.reconnect_url(follow_up.user_email, follow_up.provider)
        message = incident_follow_up_message(follow_up, url)
        return await slack.post(self.client, follow_up.channel, message, follow_up.thread_ts) is not None

    async def hold(self, hold: Hold) -> bool:
        """Ask the support channel to decide on cancellations a sync held back; True once posted."""
        if not self.support_channel:
            return False
        return await slack.post(self.client, self.support_channel, hold_message(hold), None) is not None

    async def reconnected(self, outcome: Outcome) -> None:
        """Tell the rep their calendar is connected and what the first sync did (a DM), and the thread
        where the link was given, if any. A problem the fresh diagnosis still finds after that sync
        is added; an error from before the reconnect never is."""
        dm_message, thread_note = reconnected_messages(outcome, outcome.first_sync, outcome.answer)
        slack_id = await asyncio.to_thread(people.slack_id_of, self.sessions, outcome.rep_email)
        if slack_id is not None:
            try:
                dm = await slack.open_dm(self.client, slack_id)
            except SlackApiError as error:
                log.warning("conversations.open for %s failed: %s", slack_id, error.response.get("error"))
                dm = ""
            if dm:
                await slack.post(self.client, dm, dm_message, None)
        if outcome.channel and outcome.thread_ts:
            await slack.post(self.client, outcome.channel, thread_note, outcome.thread_ts)
