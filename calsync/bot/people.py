"""Who is asking: a Slack user as a SalesPartner `Person` (a stored Slack id first, else their Slack
profile's email) and whether they are a support agent (by setting, by role, or in the agents' user
group). Only Slack's answers (profiles, the group) are cached; the database is asked every time.

`Asker` is one request's asker: resolved at most once, on first use, after the ack.
"""

from __future__ import annotations

import asyncio
import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session, sessionmaker

from calsync.store import people
from calsync.store.people import Person

__all__ = ["Asker", "People", "Person"]

log = logging.getLogger(__name__)

PROFILE_CACHE_SECONDS = 600.0  # a Slack profile's email rarely changes
GROUP_CACHE_SECONDS = 300.0


class People:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        agent_ids: frozenset[str] = frozenset(),
        agent_usergroup: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.agent_ids = agent_ids
        self.agent_usergroup = agent_usergroup
        self._profiles: dict[str, tuple[float, str | None, str]] = {}
        self._group: tuple[float, frozenset[str]] | None = None

    async def person(self, client: AsyncWebClient, slack_user_id: str) -> Person:
        found = await asyncio.to_thread(people.by_slack_id, self.sessions, slack_user_id)
        if found is not None:
            return found
        profile_email, name = await self._profile(client, slack_user_id)
        return await asyncio.to_thread(people.by_email, self.sessions, slack_user_id, profile_email, name)

    async def by_email(self, email: str | None) -> Person:
        return await asyncio.to_thread(people.by_email, self.sessions, "", email, "")

    async def _profile(self, client: AsyncWebClient, slack_user_id: str) -> tuple[str | None, str]:
        cached = self._profiles.get(slack_user_id)
        if cached and cached[0] > time.monotonic():
            return cached[1], cached[2]
        try:
            response = await client.users_info(user=slack_user_id)
        except SlackApiError as error:
            log.warning("users.info for %s failed: %s", slack_user_id, error.response.get("error"))
            return None, ""
        user = response.get("user") or {}
        profile = user.get("profile") or {}
        email = None if user.get("deleted") or user.get("is_bot") else (profile.get("email") or None)
        name = user.get("real_name") or profile.get("real_name") or ""
        if len(self._profiles) > 10_000:
            self._profiles.clear()
        self._profiles[slack_user_id] = (time.monotonic() + PROFILE_CACHE_SECONDS, email, name)
        return email, name

    async def is_agent(self, client: AsyncWebClient, person: Person) -> bool:
        if person.slack_user_id in self.agent_ids or person.role == "agent":
            return True
        if not self.agent_usergroup:
            return False
        if self._group is None or self._group[0] < time.monotonic():
            try:
                response = await client.usergroups_users_list(usergroup=self.agent_usergroup)
                members = frozenset(response.get("users") or [])
            except SlackApiError as error:
                log.warning("usergroups.users.list failed: %s", error.response.get("error"))
                members = frozenset()
            self._group = (time.monotonic() + GROUP_CACHE_SECONDS, members)
        return person.slack_user_id in self._group[1]


class Asker:
    """The person behind one request, looked up once (on first use, so never before the ack)."""

    def __init__(self, people: People, client: AsyncWebClient, slack_user_id: str) -> None:
        self.people = people
        self.client = client
        self.slack_user_id = slack_user_id
        self._person: Person | None = None
        self._agent: bool | None = None

    async def person(self) -> Person:
        if self._person is None:
            self._person = await self.people.person(self.client, self.slack_user_id)
        return self._person

    async def is_agent(self) -> bool:
        if self._agent is None:
            self._agent = await self.people.is_agent(self.client, await self.person())
        return self._agent
