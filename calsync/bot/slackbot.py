"""The Slack surface, put together: who is asking (`People`), the work after the ack (`Work`), the
flows the listeners call, and the one Web API client. Built once by the composition root
(`calsync.app.build_slack_bot`), registered on the Bolt app by `bot.listeners.register`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session, sessionmaker

from calsync.bot.people import People
from calsync.bot.queue import AnswerQueue
from calsync.bot.work import Work
from calsync.diagnostics.troubleshooter import Troubleshooter
from calsync.flows.answers import Answers
from calsync.flows.fixes import Fixes
from calsync.flows.fleet import FleetStatus
from calsync.flows.notices import Notices
from calsync.flows.reconnect_links import ReconnectLinks
from calsync.flows.support import Support


@dataclass(frozen=True)
class SlackBot:
    troubleshooter: Troubleshooter
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]
    people: People
    work: Work
    answers: Answers
    support: Support
    links: ReconnectLinks
    questions: AnswerQueue  # DMs and @mentions: recorded before the ack, answered by a worker
    client: AsyncWebClient | None = None  # None without a bot token
    notices: Notices | None = None  # what is said without being asked (None without a client)
    fixes: Fixes | None = None  # choose a calendar, turn a connection off, the duplicate clean-up
    fleet: FleetStatus | None = None  # `/calsync status` (None: not wired)
