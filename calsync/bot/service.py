"""What the bot does, behind the Slack listeners: resolve who is asking, dedupe Slack's retries, run
the troubleshooter, render, and send. Listeners only ack and call one method here.

Every database call runs in a worker thread: a blocking call on the event loop would delay the next
request's ack. Nothing here lets an exception reach Slack as a stack trace: people get one clear
sentence and the details go to the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from calsync.bot.commands import Diagnose, Help, Reconnect, Unknown, parse_command
from calsync.db import transaction
from calsync.diagnostics.answer import Answer
from calsync.diagnostics.troubleshooter import Troubleshooter, UnknownUser
from calsync.flows.reconnect import Outcome
from calsync.knowledge.matcher import MAX_QUESTION_CHARS
from calsync.knowledge.smalltalk import small_talk
from calsync.render import blocks, labels
from calsync.render.words import cycle_summary, first_sync_note
from calsync.syncbackend.engine import CycleResult, Disconnection
from calsync.syncbackend.holds import Decision, Hold, Holds, UnknownHold
from calsync.syncbackend.models import AuditEntry, Feedback, ProcessedEvent, User

log = logging.getLogger(__name__)

Respond = Callable[..., Awaitable[Any]]

PROFILE_CACHE_SECONDS = 600.0  # a Slack profile's email rarely changes
GROUP_CACHE_SECONDS = 300.0
SUPPORT_THREAD_DAYS = 7
# How many pieces of after-the-ack work (a question, a command, a click) run at once; the rest wait
# their turn. Unbounded, a burst of questions fills the event loop with diagnoses and the acks of the
# next requests wait behind them (benchmarks/ack_bench.py); each piece already runs its checks in
# parallel, so a few at a time keep the machine busy.
MAX_CONCURRENT_WORK = 8
# A disconnected grant's cause (`GrantCause`) in the rep's words: "... stopped syncing: {words}".
DISCONNECT_CAUSES = {
    "revoked": "its access was revoked",
    "password_changed": "the account's password was changed",
    "expired": "its sign-in expired",
    "inactive": "it wasn't used for a long time, so the sign-in expired",
    "consent_removed": "calsync's permission was removed (often by your IT team)",
    "mfa_required": "your organisation needs you to sign in again (multi-factor authentication)",
    "interaction_required": "you need to sign in again",
    "account_deleted": "the account no longer exists",
}
SOMETHING_WENT_WRONG = (
    "Something went wrong on our side and I couldn't check just now. Please try again in a minute."
)


@dataclass(frozen=True)
class Person:
    """A Slack user as far as calsync is concerned."""

    slack_user_id: str
    email: str | None  # their SalesPartner email, None when they have no SalesPartner account
    name: str = ""
    role: str = "rep"
    user_id: int | None = None


def _value(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON value of the clicked button; {} for anything malformed."""
    try:
        action = body["actions"][0]
        parsed = json.loads(action.get("value") or "{}")
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def is_private(channel: str | None) -> bool:
    """A DM (channel ids starting with D): only the rep sees what is posted there."""
    return bool(channel) and str(channel).startswith("D")


def _clicked_privately(body: dict[str, Any]) -> bool:
    """Whether the clicked message is one only the clicker sees (ephemeral, or in their DM)."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    return bool(container.get("is_ephemeral")) or is_private(channel)


def strip_mentions(text: str) -> str:
    """The question without the bot's @mention (and any other user mention markup)."""
    import re

    return re.sub(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>", " ", text).strip()


class SlackBot:
    def __init__(
        self,
        *,
        troubleshooter: Troubleshooter,
        sessions: sessionmaker[Session],
        clock: Callable[[], datetime],
        agent_ids: frozenset[str] = frozenset(),
        agent_usergroup: str | None = None,
        support_channel: str | None = None,
        support_contact: str = "SalesPartner support",
        report_url: Callable[[str, str], str | None] | None = None,
        max_concurrent_work: int = MAX_CONCURRENT_WORK,
        sync_now: Callable[[str], Awaitable[list[CycleResult]]] | None = None,
    ) -> None:
        self.troubleshooter = troubleshooter
        self.sessions = sessions
        self.clock = clock
        self.agent_ids = agent_ids
        self.agent_usergroup = agent_usergroup
        self.support_channel = support_channel
        self.support_contact = support_contact
        self.report_url = report_url  # (agent slack id, rep email) -> a signed report link, when pages exist
        self.sync_now_for = sync_now  # rep email -> one sync cycle of each active connection, now
        self._profiles: dict[str, tuple[float, str | None, str]] = {}
        self._group: tuple[float, frozenset[str]] | None = None
        self.max_concurrent_work = max(1, max_concurrent_work)
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    # -- after the ack ---------------------------------------------------------------------------

    async def in_turn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` once one of `max_concurrent_work` slots is free (first come, first served).
        Listeners pass every piece of after-the-ack work through here; nothing inside calls it again."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_concurrent_work))
        try:
            async with self._slots[1]:
                await work
        finally:
            work.close()  # a no-op once it ran; cancelled while waiting, it never started

    # -- who is asking ---------------------------------------------------------------------------

    async def person(self, client: AsyncWebClient, slack_user_id: str) -> Person:
        """Map a Slack user to a SalesPartner user: a stored Slack id first, else their profile email.
        Only Slack's answer (the profile) is cached; the database is asked every time."""
        found = await asyncio.to_thread(self._user_by_slack_id, slack_user_id)
        if found is not None:
            return found
        profile_email, name = await self._profile(client, slack_user_id)
        return await asyncio.to_thread(self._user_by_email, slack_user_id, profile_email, name)

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

    def _user_by_slack_id(self, slack_user_id: str) -> Person | None:
        with self.sessions() as session:
            user = session.scalars(select(User).where(User.slack_user_id == slack_user_id)).first()
            return Person(slack_user_id, user.email, user.name, user.role, user.id) if user else None

    def _user_by_email(self, slack_user_id: str, email: str | None, name: str) -> Person:
        if not email:
            return Person(slack_user_id, None, name)
        with self.sessions() as session:
            user = session.scalars(select(User).where(User.email == email.strip().lower())).first()
            if user is None:
                return Person(slack_user_id, None, name)
            return Person(slack_user_id, user.email, user.name, user.role, user.id)

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

    # -- Slack retries ---------------------------------------------------------------------------

    async def claim(self, event_id: str | None) -> bool:
        """True the first time an event id is seen, in any process sharing the database."""
        if not event_id:
            return True
        return await asyncio.to_thread(self._claim, event_id[:255])

    def _claim(self, event_id: str) -> bool:
        try:
            with transaction(self.sessions) as session:
                session.add(ProcessedEvent(event_id=event_id, received_at=self.clock()))
        except IntegrityError:
            return False
        return True

    # -- a rep's question ------------------------------------------------------------------------

    async def answer_question(
        self,
        client: AsyncWebClient,
        *,
        slack_user_id: str,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        event_id: str | None = None,
    ) -> None:
        """Post "Checking…" at once, then replace it with the answer (in the thread, if one is given)."""
        try:
            if not await self.claim(event_id):
                return
            person = await self.person(client, slack_user_id)
        except SQLAlchemyError:
            log.exception("database unavailable while answering %s", event_id)
            await self._post(client, channel, blocks.error_message(SOMETHING_WENT_WRONG), thread_ts)
            return
        if person.email is None:
            await self._post(client, channel, self._not_a_user(), thread_ts)
            return
        question = strip_mentions(text)[:MAX_QUESTION_CHARS]
        # A greeting or a thank-you is answered at once; anything else is diagnosed (a few seconds).
        placeholder = None
        if small_talk(question) is None:
            placeholder = await self._post(client, channel, blocks.checking_message(), thread_ts)
        message = await self._answer_message(
            person,
            question,
            actor=slack_user_id,
            channel=channel,
            thread_ts=thread_ts,
            private=is_private(channel),
        )
        await self._replace(client, channel, placeholder, message, thread_ts)

    async def _answer_message(
        self,
        person: Person,
        question: str | None,
        *,
        actor: str,
        article: str | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
        private: bool = True,
    ) -> blocks.Message:
        assert person.email is not None
        try:
            answer = await self.troubleshooter.answer(
                person.email, question, actor=actor, article=article, channel=channel, thread_ts=thread_ts
            )
        except UnknownUser:
            return self._not_a_user()
        except Exception:
            log.exception("answering %s failed", person.slack_user_id)
            return blocks.error_message(SOMETHING_WENT_WRONG)
        return blocks.answer_message(answer, private=private)

    def _not_a_user(self) -> blocks.Message:
        return blocks.error_message(
            "I couldn't find a SalesPartner account for your Slack profile's email, so I can't check a "
            f"calendar for you. If you use SalesPartner, ask {self.support_contact} to link your account."
        )

    async def _post(
        self, client: AsyncWebClient, channel: str, message: blocks.Message, thread_ts: str | None
    ) -> str | None:
        try:
            response = await client.chat_postMessage(
                channel=channel, text=message.text, blocks=message.blocks, thread_ts=thread_ts
            )
        except SlackApiError as error:
            log.warning("chat.postMessage to %s failed: %s", channel, error.response.get("error"))
            return None
        return str(response.get("ts"))

    async def _replace(
        self,
        client: AsyncWebClient,
        channel: str,
        ts: str | None,
        message: blocks.Message,
        thread_ts: str | None,
    ) -> None:
        if ts is None:  # the placeholder could not be posted: try the answer as a new message
            await self._post(client, channel, message, thread_ts)
            return
        try:
            await client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)
        except SlackApiError as error:
            log.warning("chat.update in %s failed: %s", channel, error.response.get("error"))

    # -- /calsync --------------------------------------------------------------------------------

    async def command(
        self, client: AsyncWebClient, respond: Respond, *, slack_user_id: str, text: str | None
    ) -> None:
        """Handle `/calsync …`; every reply is ephemeral (only the person who typed it sees it)."""
        parsed = parse_command(text)
        try:
            person = await self.person(client, slack_user_id)
            if isinstance(parsed, Unknown):
                await self._respond(respond, blocks.error_message(parsed.reason))
            elif isinstance(parsed, Help):
                await self._respond(respond, blocks.help_message(await self.is_agent(client, person)))
            elif isinstance(parsed, Reconnect):
                await self._respond(respond, await self._reconnect_message(person))
            elif isinstance(parsed, Diagnose):
                await self._diagnose_command(client, respond, person, parsed)
        except SQLAlchemyError:
            log.exception("database unavailable for /calsync")
            await self._respond(respond, blocks.error_message(SOMETHING_WENT_WRONG))

    async def _diagnose_command(
        self, client: AsyncWebClient, respond: Respond, agent: Person, command: Diagnose
    ) -> None:
        if (
            command.slack_user_id is None and command.email is None
        ) or command.slack_user_id == agent.slack_user_id:
            if agent.email is None:
                await self._respond(respond, self._not_a_user())
                return
            await self._respond(respond, blocks.checking_message())
            await self._respond(respond, await self._answer_message(agent, None, actor=agent.slack_user_id))
            return
        if not await self.is_agent(client, agent):
            await asyncio.to_thread(self._audit_refusal, agent, command)
            await self._respond(
                respond,
                blocks.error_message(
                    "Only support agents can diagnose someone else. Try `/calsync diagnose`."
                ),
            )
            return
        if command.slack_user_id is not None:
            target = await self.person(client, command.slack_user_id)
            who = f"<@{command.slack_user_id}>"
        else:
            target = await asyncio.to_thread(self._user_by_email, "", command.email, "")
            who = command.email or ""
        if target.email is None:
            await self._respond(
                respond,
                blocks.markup_message(
                    f"{who} isn't a SalesPartner user, so there is nothing to diagnose.",
                    fallback="That person isn't a SalesPartner user.",
                ),
            )
            return
        await self._respond(respond, blocks.checking_message())
        try:
            answer = await self.troubleshooter.diagnose(target.email, actor=agent.slack_user_id)
        except UnknownUser:
            await self._respond(
                respond,
                blocks.markup_message(
                    f"{who} isn't a SalesPartner user.", fallback="Not a SalesPartner user."
                ),
            )
            return
        report = self.report_url(agent.slack_user_id, target.email) if self.report_url else None
        await self._respond(respond, blocks.answer_message(answer, for_agent=True, report_url=report))

    def _audit_refusal(self, person: Person, command: Diagnose) -> None:
        with transaction(self.sessions) as session:
            subject = None
            if command.slack_user_id:
                subject = session.scalars(
                    select(User.id).where(User.slack_user_id == command.slack_user_id)
                ).first()
            elif command.email:
                subject = session.scalars(select(User.id).where(User.email == command.email)).first()
            session.add(
                AuditEntry(
                    at=self.clock(),
                    actor=person.slack_user_id,
                    action="diagnose",
                    subject_user_id=subject,
                    detail={"target": command.slack_user_id or command.email},
                    result="refused: not an agent",
                )
            )

    async def _reconnect_message(self, person: Person) -> blocks.Message:
        if person.email is None:
            return self._not_a_user()
        providers = await asyncio.to_thread(self._providers_of, person.email)
        if not providers:
            providers = ["google", "microsoft"]
        return blocks.reconnect_message(
            {provider: self.troubleshooter.reconnect_url(person.email, provider) for provider in providers}
        )

    def _providers_of(self, email: str) -> list[str]:
        with self.sessions() as session:
            user = session.scalars(select(User).where(User.email == email)).first()
            if user is None:
                return []
            return sorted({connection.provider for connection in user.connections if connection.active})

    async def _respond(self, respond: Respond, message: blocks.Message, **extra: Any) -> None:
        try:
            await respond(text=message.text, blocks=message.blocks, response_type="ephemeral", **extra)
        except Exception:  # the response_url expired, or Slack refused the blocks
            log.exception("responding failed")

    # -- buttons ---------------------------------------------------------------------------------

    async def _owners_click(
        self, client: AsyncWebClient, respond: Respond, body: dict[str, Any]
    ) -> tuple[Person, dict[str, Any]] | None:
        """The clicker and the button's value, when the clicker is the one the answer was made for.
        Anyone else is answered privately (`_someone_elses`) and None comes back: a click never acts
        on, or edits, another rep's answer."""
        value = _value(body)
        person = await self.person(client, body["user"]["id"])
        if person.email is None:
            await self._respond(respond, self._not_a_user(), replace_original=False)
            return None
        owner = await asyncio.to_thread(self._owner_of, value.get("diagnosis"))
        if owner is not None and owner.user_id != person.user_id:
            await self._someone_elses(client, respond, person, owner, value)
            return None
        return person, value

    def _owner_of(self, diagnosis: Any) -> Person | None:
        """The rep an answer was made for: the subject of its diagnosis (the audit entry)."""
        try:
            entry_id = int(str(diagnosis))
        except ValueError:
            return None
        with self.sessions() as session:
            entry = session.get(AuditEntry, entry_id)
            user = session.get(User, entry.subject_user_id) if entry and entry.subject_user_id else None
            if user is None:
                return None
            return Person(user.slack_user_id or "", user.email, user.name, user.role, user.id)

    async def _someone_elses(
        self, client: AsyncWebClient, respond: Respond, clicker: Person, owner: Person, value: dict[str, Any]
    ) -> None:
        """A click on another rep's answer: an agent gets the agent view of that rep, anyone else
        their own answer — both privately; the clicked message stays as it was."""
        assert clicker.email is not None and owner.email is not None
        whose = f"<@{owner.slack_user_id}>" if owner.slack_user_id else "someone else"
        if await self.is_agent(client, clicker):
            answer = await self.troubleshooter.diagnose(owner.email, actor=clicker.slack_user_id)
            report = self.report_url(clicker.slack_user_id, owner.email) if self.report_url else None
            message = blocks.answer_message(answer, for_agent=True, report_url=report)
        else:
            question = value.get("question") if isinstance(value.get("question"), str) else None
            article = (
                value.get("article") if value.get("article") in self.troubleshooter.knowledge.ids else None
            )
            answer = await self.troubleshooter.answer(
                clicker.email, question, actor=clicker.slack_user_id, article=article
            )
            preface = f"That answer is for {whose}, so I left it alone. Here is what I found for you:"
            message = blocks.answer_message(answer, preface=preface)
        await self._respond(respond, message, replace_original=False)

    async def check_again(self, client: AsyncWebClient, respond: Respond, body: dict[str, Any]) -> None:
        clicked = await self._owners_click(client, respond, body)
        if clicked is None:
            return
        person, value = clicked
        question = value.get("question") if isinstance(value.get("question"), str) else None
        article = value.get("article") if isinstance(value.get("article"), str) else None
        message = await self._answer_message(
            person, question, actor=person.slack_user_id, article=article, private=_clicked_privately(body)
        )
        await self._update_clicked(client, respond, body, message)

    async def sync_now(self, client: AsyncWebClient, respond: Respond, body: dict[str, Any]) -> None:
        """Run a sync cycle for the rep now, then answer again with what it did on top."""
        clicked = await self._owners_click(client, respond, body)
        if clicked is None:
            return
        person, value = clicked
        assert person.email is not None
        if self.sync_now_for is None:
            await self._respond(respond, blocks.error_message("Syncing on request isn't available here."))
            return
        results = await self.sync_now_for(person.email)
        preface = "\n".join(f"⚡ {blocks.escape_mrkdwn(cycle_summary(result))}" for result in results) or (
            "⚡ You have no calendar connected, so there is nothing to sync."
        )
        question = value.get("question") if isinstance(value.get("question"), str) else None
        article = value.get("article") if isinstance(value.get("article"), str) else None
        answer = await self.troubleshooter.answer(
            person.email, question, actor=person.slack_user_id, article=article
        )
        message = blocks.answer_message(answer, preface=preface, private=_clicked_privately(body))
        await self._update_clicked(client, respond, body, message)

    async def details(self, client: AsyncWebClient, respond: Respond, body: dict[str, Any]) -> None:
        """Every finding behind the answer, for the rep who clicked (ephemeral: the answer stays)."""
        clicked = await self._owners_click(client, respond, body)
        if clicked is None:
            return
        person, value = clicked
        assert person.email is not None
        question = value.get("question") if isinstance(value.get("question"), str) else None
        article = value.get("article") if isinstance(value.get("article"), str) else None
        if article not in self.troubleshooter.knowledge.ids:
            article = None
        try:
            answer = await self.troubleshooter.answer(
                person.email, question, actor=person.slack_user_id, article=article
            )
        except UnknownUser:
            await self._respond(respond, self._not_a_user())
            return
        await self._respond(respond, blocks.details_message(answer), replace_original=False)

    async def did_you_mean(self, client: AsyncWebClient, respond: Respond, body: dict[str, Any]) -> None:
        clicked = await self._owners_click(client, respond, body)
        if clicked is None:
            return
        person, value = clicked
        article = value.get("article") if isinstance(value.get("article"), str) else None
        question = value.get("question") if isinstance(value.get("question"), str) else None
        if article not in self.troubleshooter.knowledge.ids:
            article = None
        message = await self._answer_message(
            person, question, actor=person.slack_user_id, article=article, private=_clicked_privately(body)
        )
        await self._update_clicked(client, respond, body, message)

    async def reconnect_in_channel(
        self, client: AsyncWebClient, respond: Respond, body: dict[str, Any]
    ) -> None:
        """A Reconnect button in a channel carries no link: its owner gets theirs privately (bound to
        the thread, so the result is posted there); anyone else is told whose it is."""
        value = _value(body)
        person = await self.person(client, body["user"]["id"])
        owner = await asyncio.to_thread(self._owner_of, value.get("diagnosis"))
        provider = str(value.get("provider") or "")
        if owner is None or owner.email is None or provider not in labels.CALENDAR_PRODUCTS:
            await self._respond(
                respond, blocks.error_message("I can't tell whose calendar that was."), replace_original=False
            )
            return
        if owner.user_id != person.user_id:
            whose = f"<@{owner.slack_user_id}>" if owner.slack_user_id else "another rep"
            note = blocks.markup_message(
                f"This Reconnect button is for {whose}'s calendar. Ask me about yours in a DM.",
                fallback="This Reconnect button is for another rep's calendar.",
            )
            await self._respond(respond, note, replace_original=False)
            return
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        thread_ts = (body.get("message") or {}).get("thread_ts") or container.get("message_ts")
        url = self.troubleshooter.reconnect_url(owner.email, provider, channel=channel, thread_ts=thread_ts)
        await self._respond(respond, blocks.reconnect_message({provider: url}), replace_original=False)

    async def _update_clicked(
        self, client: AsyncWebClient, respond: Respond, body: dict[str, Any], message: blocks.Message
    ) -> None:
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        ts = container.get("message_ts")
        if container.get("is_ephemeral") or not (channel and ts):
            await self._respond(respond, message, replace_original=True)
            return
        await self._replace(client, channel, ts, message, None)

    async def feedback(
        self, client: AsyncWebClient, respond: Respond, body: dict[str, Any], *, helpful: bool
    ) -> None:
        clicked = await self._owners_click(client, respond, body)
        if clicked is None:
            return
        _, value = clicked
        diagnosis = str(value.get("diagnosis") or "")[:64] or None
        article = value.get("article") if isinstance(value.get("article"), str) else None
        if diagnosis is not None:  # a malformed click records nothing (the person is still thanked)
            await asyncio.to_thread(self._store_feedback, body["user"]["id"], diagnosis, article, helpful)
        thanks = (
            "Thanks — glad that helped."
            if helpful
            else "Thanks for telling me. Use Talk to support if you need a person."
        )
        await self._respond(respond, blocks.notice_message(thanks), replace_original=False)

    def _store_feedback(
        self, slack_user_id: str, diagnosis: str | None, article: str | None, helpful: bool
    ) -> None:
        with transaction(self.sessions) as session:
            user_id = session.scalars(select(User.id).where(User.slack_user_id == slack_user_id)).first()
            session.add(
                Feedback(
                    at=self.clock(),
                    user_id=user_id,
                    article_id=article,
                    diagnosis_id=diagnosis,
                    helpful=helpful,
                )
            )

    async def talk_to_support(self, client: AsyncWebClient, respond: Respond, body: dict[str, Any]) -> None:
        clicked = await self._owners_click(client, respond, body)
        if clicked is None:
            return
        person, _ = clicked
        assert person.email is not None
        if not self.support_channel:
            await self._respond(
                respond,
                blocks.error_message(
                    f"Please contact {self.support_contact}; mention that calsync checked your calendar."
                ),
            )
            return
        answer = await self.troubleshooter.diagnose(person.email, actor=person.slack_user_id)
        thread = await asyncio.to_thread(self._support_thread, person)
        who = blocks.escape_mrkdwn(person.name or person.email)
        message = blocks.answer_message(
            answer, for_agent=True, preface=f"🙋 Support request from <@{person.slack_user_id}> ({who})."
        )
        ts = await self._post(client, self.support_channel, message, thread)
        if ts is not None:
            await asyncio.to_thread(self._record_support, person, answer, thread or ts)
        said = (
            "I've sent this to the support team with what I found; they'll follow up with you here in Slack."
        )
        await self._respond(respond, blocks.notice_message(said), replace_original=False)

    def _support_thread(self, person: Person) -> str | None:
        """The support thread of this rep's recent request, so follow-ups land in one place."""
        since = self.clock() - timedelta(days=SUPPORT_THREAD_DAYS)
        with self.sessions() as session:
            entry = session.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.action == "support_request",
                    AuditEntry.subject_user_id == person.user_id,
                    AuditEntry.at >= since,
                )
                .order_by(AuditEntry.at.desc())
            ).first()
            return str(entry.detail.get("thread_ts")) if entry and entry.detail.get("thread_ts") else None

    def _record_support(self, person: Person, answer: Answer, thread_ts: str) -> None:
        with transaction(self.sessions) as session:
            session.add(
                AuditEntry(
                    at=self.clock(),
                    actor=person.slack_user_id,
                    action="support_request",
                    subject_user_id=person.user_id,
                    detail={
                        "channel": self.support_channel,
                        "thread_ts": thread_ts,
                        "diagnosis": answer.diagnosis_id,
                    },
                    result=answer.worst.value,
                )
            )

    async def send_reconnect_link(
        self, client: AsyncWebClient, respond: Respond, body: dict[str, Any]
    ) -> None:
        value = _value(body)
        agent = await self.person(client, body["user"]["id"])
        if not await self.is_agent(client, agent):
            await self._respond(
                respond, blocks.error_message("Only support agents can send someone a reconnect link.")
            )
            return
        rep_email = str(value.get("rep") or "")
        provider = str(value.get("provider") or "")
        rep = await asyncio.to_thread(self._user_by_email, "", rep_email, "")
        slack_id = await asyncio.to_thread(self._slack_id_of, rep_email)
        if rep.email is None or provider not in labels.CALENDAR_PRODUCTS or slack_id is None:
            await self._respond(
                respond, blocks.error_message("I can't reach that rep in Slack to send the link.")
            )
            return
        product = labels.product(provider)
        url = self.troubleshooter.reconnect_url(rep.email, provider)
        opened = await client.conversations_open(users=slack_id)
        channel = (opened.get("channel") or {}).get("id")
        intro = f"Support sent you a link to reconnect {product}. It opens in your browser."
        link = blocks.reconnect_message({provider: url})
        dm = blocks.Message(text=intro, blocks=[*blocks.notice_message(intro).blocks, *link.blocks])
        await self._post(client, str(channel), dm, None)
        await asyncio.to_thread(self._audit_link, agent, rep, provider)
        sent = blocks.markup_message(
            f"Sent <@{slack_id}> a link to reconnect {product}.",
            fallback=f"Sent a link to reconnect {product}.",
        )
        await self._respond(respond, sent, replace_original=False)

    def _slack_id_of(self, email: str) -> str | None:
        with self.sessions() as session:
            return session.scalars(
                select(User.slack_user_id).where(User.email == email.strip().lower())
            ).first()

    def _audit_link(self, agent: Person, rep: Person, provider: str) -> None:
        with transaction(self.sessions) as session:
            session.add(
                AuditEntry(
                    at=self.clock(),
                    actor=agent.slack_user_id,
                    action="reconnect_link_sent",
                    subject_user_id=rep.user_id,
                    detail={"provider": provider},
                    result="sent",
                )
            )

    # -- after a reconnect -------------------------------------------------------------------------

    async def notify_reconnected(
        self,
        client: AsyncWebClient,
        rep_email: str,
        outcome: Outcome,
        answer: Answer | None,
        channel: str | None = None,
        thread_ts: str | None = None,
    ) -> None:
        """Tell the rep their calendar is connected and what the first sync did (a DM), and the thread
        where the link was given, if any. A problem the fresh diagnosis still finds after that sync
        is added; an error from before the reconnect never is."""
        sync_note = first_sync_note(outcome.first_sync)
        lines = [f"✅ {blocks.escape_mrkdwn(outcome.headline)}", blocks.escape_mrkdwn(sync_note)]
        for extra in (outcome.calendar_note, outcome.switch_note):
            if extra:
                lines.append(blocks.escape_mrkdwn(extra))
        preface = "\n".join(lines)
        fallback = f"{outcome.headline} {sync_note}"
        still = answer if answer is not None and outcome.first_sync is not None and answer.problems else None
        slack_id = await asyncio.to_thread(self._slack_id_of, rep_email)
        if slack_id is not None:
            try:
                opened = await client.conversations_open(users=slack_id)
                dm = str((opened.get("channel") or {}).get("id") or "")
            except SlackApiError as error:
                log.warning("conversations.open for %s failed: %s", slack_id, error.response.get("error"))
                dm = ""
            if dm:
                message = (
                    blocks.answer_message(still, preface=preface)
                    if still is not None
                    else blocks.markup_message(preface, fallback=fallback)
                )
                await self._post(client, dm, message, None)
        if channel and thread_ts:
            in_thread = blocks.markup_message(preface, fallback=fallback)
            await self._post(client, channel, in_thread, thread_ts)

    async def notify_disconnected(self, client: AsyncWebClient, disconnection: Disconnection) -> bool:
        """DM the rep that a calendar stopped syncing, with a Reconnect button; True once sent."""
        slack_id = disconnection.slack_user_id
        if slack_id is None:
            try:
                found = await client.users_lookupByEmail(email=disconnection.user_email)
                slack_id = str((found.get("user") or {}).get("id") or "") or None
            except SlackApiError as error:
                log.info("no Slack user for a disconnected rep: %s", error.response.get("error"))
                return False
        if slack_id is None:
            return False
        product = labels.product(disconnection.provider)
        opened = await client.conversations_open(users=slack_id)
        channel = str((opened.get("channel") or {}).get("id") or "")
        if not channel:
            return False
        why = DISCONNECT_CAUSES.get(disconnection.cause, "its authorization stopped working")
        intro = (
            f"Your {product} ({disconnection.account_email}) stopped syncing: {why}. New and changed "
            "appointments won't reach your calendar until you reconnect — it takes a minute."
        )
        url = self.troubleshooter.reconnect_url(disconnection.user_email, disconnection.provider)
        link = blocks.reconnect_message({disconnection.provider: url})
        dm = blocks.Message(text=intro, blocks=[*blocks.notice_message(intro).blocks, *link.blocks])
        await self._post(client, channel, dm, None)
        return True

    # -- held cancellations ------------------------------------------------------------------------

    async def notify_hold(self, client: AsyncWebClient, hold: Hold) -> bool:
        """Ask the support channel to decide on cancellations a sync held back; True once posted."""
        if not self.support_channel:
            return False
        return await self._post(client, self.support_channel, blocks.hold_message(hold), None) is not None

    async def decide_hold(
        self, client: AsyncWebClient, respond: Respond, body: dict[str, Any], decision: Decision
    ) -> None:
        """An agent's click on a hold's message: decide once, then show the decision in its place."""
        agent = await self.person(client, body["user"]["id"])
        if not await self.is_agent(client, agent):
            await self._respond(
                respond,
                blocks.error_message("Only support agents can decide on held cancellations."),
                replace_original=False,
            )
            return
        try:
            hold_id = int(_value(body).get("hold"))  # type: ignore[arg-type]
            decided = await asyncio.to_thread(
                Holds(self.sessions, self.clock).decide, hold_id, decision, actor=agent.slack_user_id
            )
        except (TypeError, ValueError, UnknownHold):
            await self._respond(
                respond, blocks.error_message("I can't find that hold any more."), replace_original=False
            )
            return
        message = blocks.hold_decided_message(decided, f"<@{agent.slack_user_id}>")
        await self._update_clicked(client, respond, body, message)

    # -- App Home --------------------------------------------------------------------------------

    async def publish_home(self, client: AsyncWebClient, slack_user_id: str) -> None:
        person = await self.person(client, slack_user_id)
        if person.email is None:
            view = blocks.home_view(None, not_a_user=True)
        else:
            try:
                answer: Answer | None = await self.troubleshooter.diagnose(person.email, actor=slack_user_id)
            except Exception:
                log.exception("home diagnosis for %s failed", slack_user_id)
                answer = None
            view = blocks.home_view(answer, name=person.name)
        try:
            await client.views_publish(user_id=slack_user_id, view=view)
        except SlackApiError as error:
            log.warning("views.publish failed: %s", error.response.get("error"))
