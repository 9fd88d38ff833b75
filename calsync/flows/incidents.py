"""The support channel's one message per incident: posted when the incident opens, updated in place
(`chat.update`) as reps join or recover and when it ends — never one per rep. The sync engine claims
each message in the database before calling `IncidentMessages.notify` and stores the ts it returns
(`syncbackend/engine/notify.py`), so a restart updates the same message and two workers never both
post it."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from calsync.flows import slack
from calsync.render.incidents import incident_message
from calsync.syncbackend.incidents import IncidentNotice

log = logging.getLogger(__name__)


class IncidentMessages:
    def __init__(self, client: AsyncWebClient, channel: str) -> None:
        self.client = client
        self.channel = channel

    async def notify(self, notice: IncidentNotice) -> str | None:
        """Post or update the incident's message; its ts, None when Slack refused."""
        message = incident_message(notice)
        if notice.support_ts is None:
            return await slack.post(self.client, self.channel, message, None)
        try:
            await self.client.chat_update(
                channel=self.channel, ts=notice.support_ts, text=message.text, blocks=message.blocks
            )
        except SlackApiError as error:
            log.warning(
                "chat.update of incident %s failed: %s", notice.incident.id, error.response.get("error")
            )
            return None
        return notice.support_ts
