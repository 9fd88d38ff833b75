"""The Slack emulator's state: users, channels, DMs, messages, App Home views and response URLs."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from calsync.db import transaction
from calsync.sandbox.world.base import WorldBase
from calsync.sandbox.world.slack_tables import (
    SandboxSlackCall,
    SandboxSlackChannel,
    SandboxSlackDm,
    SandboxSlackHomeView,
    SandboxSlackMessage,
    SandboxSlackResponseUrl,
    SandboxSlackState,
    SandboxSlackUser,
    SandboxSlackUsergroup,
)


class SlackMixin(WorldBase):
    """The Slack emulator's state: users, channels, DMs, messages, App Home views, response URLs."""

    # -- slack -----------------------------------------------------------------------------------
    # Used by `slack_emulator.py` (the Slack Web API methods calsync calls, and response URLs) and by
    # tests asserting on what the bot said. Messages keep their current state (updates applied) and
    # a version count; every Web API call is logged in `sandbox_slack_calls` with the token redacted.

    def slack_add_user(
        self,
        id: str,
        email: str,
        name: str = "",
        is_bot: bool = False,
        deleted: bool = False,
        *,
        tz: str = "UTC",
    ) -> SandboxSlackUser:
        with transaction(self.sessions) as session:
            user = SandboxSlackUser(
                id=id, email=email.lower(), name=name, is_bot=is_bot, deleted=deleted, tz=tz
            )
            session.add(user)
            session.flush()
            return user

    def slack_add_usergroup(self, id: str, handle: str, members: list[str]) -> SandboxSlackUsergroup:
        with transaction(self.sessions) as session:
            group = SandboxSlackUsergroup(id=id, handle=handle, members=list(members))
            session.add(group)
            session.flush()
            return group

    def slack_add_channel(self, id: str, name: str, *, is_private: bool = False) -> SandboxSlackChannel:
        """A public or private channel the bot can post in (DMs come from `conversations.open`)."""
        with transaction(self.sessions) as session:
            channel = SandboxSlackChannel(id=id, name=name, is_private=is_private)
            session.add(channel)
            session.flush()
            return channel

    def slack_user(self, user_id: str) -> SandboxSlackUser | None:
        with self.sessions() as session:
            return session.get(SandboxSlackUser, user_id)

    def slack_user_by_email(self, email: str) -> SandboxSlackUser | None:
        with self.sessions() as session:
            return session.scalars(
                select(SandboxSlackUser)
                .where(SandboxSlackUser.email == email.strip().lower())
                .order_by(SandboxSlackUser.deleted, SandboxSlackUser.id)
            ).first()

    def slack_usergroup(self, group_id: str) -> SandboxSlackUsergroup | None:
        with self.sessions() as session:
            return session.get(SandboxSlackUsergroup, group_id)

    def slack_channel(self, channel_id: str) -> SandboxSlackChannel | None:
        with self.sessions() as session:
            return session.get(SandboxSlackChannel, channel_id)

    def slack_open_dm(self, user_id: str, now: datetime) -> tuple[str, bool]:
        """The stable DM channel id with a user, opening it if needed: (channel id, already open).
        Two processes opening the same DM at once get the same channel (the loser reads the winner's)."""
        try:
            return self._slack_open_dm(user_id, now)
        except IntegrityError:
            found = self.slack_dm_channel(user_id)
            if found is None:
                raise
            return found, True

    def _slack_open_dm(self, user_id: str, now: datetime) -> tuple[str, bool]:
        with transaction(self.sessions) as session:
            found = session.get(SandboxSlackDm, user_id)
            if found is not None:
                return found.channel_id, True
            base = "D" + (user_id[1:] if user_id[:1] in ("U", "W") else user_id)
            channel_id, suffix = base, 1
            while session.scalars(
                select(SandboxSlackDm).where(SandboxSlackDm.channel_id == channel_id)
            ).first():
                suffix += 1
                channel_id = f"{base}{suffix}"
            session.add(SandboxSlackDm(user_id=user_id, channel_id=channel_id, opened_at=now))
            return channel_id, False

    def slack_dm_channel(self, user_id: str) -> str | None:
        """The DM channel id the bot has with a user, or None if it never opened one."""
        with self.sessions() as session:
            found = session.get(SandboxSlackDm, user_id)
            return found.channel_id if found else None

    def slack_dm_user(self, channel_id: str) -> str | None:
        """The user on the other side of a DM channel id, or None if it is not an open DM."""
        with self.sessions() as session:
            found = session.scalars(
                select(SandboxSlackDm).where(SandboxSlackDm.channel_id == channel_id)
            ).first()
            return found.user_id if found else None

    def slack_next_ts(self, session: Session, now: datetime) -> str:
        """A message timestamp ("1764000000.000100"): unique and increasing, near `now`."""
        # Write first: SQLite ignores FOR UPDATE, and a read before this transaction's first write may
        # be stale by the time it writes; the no-op UPDATE takes the write lock on every database.
        session.execute(
            update(SandboxSlackState)
            .where(SandboxSlackState.id == 1)
            .values(last_ts=SandboxSlackState.last_ts)
        )
        state = session.get(SandboxSlackState, 1, with_for_update=True, populate_existing=True)
        if state is None:
            state = SandboxSlackState(id=1, last_ts="0.000000")
            session.add(state)
        seconds, _, fraction = state.last_ts.partition(".")
        last = int(seconds) * 1_000_000 + int(fraction or 0)
        micros = max(int(now.timestamp()) * 1_000_000 + now.microsecond, last + 100)
        state.last_ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
        session.flush()
        return state.last_ts

    def slack_post_message(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        attachments: list[dict[str, Any]] | None,
        now: datetime,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        ephemeral_for: str | None = None,
    ) -> SandboxSlackMessage:
        with transaction(self.sessions) as session:
            message = SandboxSlackMessage(
                channel=channel,
                ts=self.slack_next_ts(session, now),
                thread_ts=thread_ts,
                user=user,
                text=text,
                blocks=blocks,
                attachments=attachments,
                ephemeral_for=ephemeral_for,
                reply_broadcast=reply_broadcast,
                created_at=now,
                updated_at=now,
                version=1,
            )
            session.add(message)
            session.flush()
            return message

    def slack_message(self, channel: str, ts: str) -> SandboxSlackMessage | None:
        """A live (not deleted) message by channel and ts, ephemeral ones included."""
        with self.sessions() as session:
            return session.scalars(
                select(SandboxSlackMessage).where(
                    SandboxSlackMessage.channel == channel,
                    SandboxSlackMessage.ts == ts,
                    SandboxSlackMessage.deleted.is_(False),
                )
            ).first()

    def slack_update_message(
        self,
        pk: int,
        now: datetime,
        *,
        text: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        delete: bool = False,
    ) -> SandboxSlackMessage:
        """Apply an update (fields left as None are kept, as chat.update does) or a deletion."""
        with transaction(self.sessions) as session:
            message = session.get(SandboxSlackMessage, pk)
            if message is None:
                raise KeyError(pk)
            if text is not None:
                message.text = text
            if blocks is not None:
                message.blocks = blocks
            if attachments is not None:
                message.attachments = attachments
            if delete:
                message.deleted = True
            message.updated_at = now
            message.version += 1
            session.flush()
            return message

    def slack_messages(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[SandboxSlackMessage]:
        """Live messages in posting order, updates applied (ephemeral ones have `ephemeral_for`).

        With `thread_ts`: that thread as `conversations.replies` shows it (the parent, then replies).
        """
        with self.sessions() as session:
            query = (
                select(SandboxSlackMessage)
                .where(SandboxSlackMessage.deleted.is_(False))
                .order_by(SandboxSlackMessage.pk)
            )
            if channel is not None:
                query = query.where(SandboxSlackMessage.channel == channel)
            if thread_ts is not None:
                query = query.where(
                    (SandboxSlackMessage.thread_ts == thread_ts) | (SandboxSlackMessage.ts == thread_ts)
                )
            return list(session.scalars(query).all())

    def slack_publish_home(
        self, user_id: str, view: dict[str, Any], now: datetime, *, expected_hash: str | None = None
    ) -> tuple[SandboxSlackHomeView | None, bool]:
        """Store a user's App Home view: (the stored view, True), or (None, False) on a hash conflict."""
        with transaction(self.sessions) as session:
            home = session.get(SandboxSlackHomeView, user_id, with_for_update=True)
            if home is not None and expected_hash is not None and expected_hash != home.hash:
                return None, False
            if home is None:
                home = SandboxSlackHomeView(
                    user_id=user_id, view_id="V" + secrets.token_hex(5).upper(), view=view, version=0
                )
                session.add(home)
            home.view = view
            home.version += 1
            home.hash = f"{int(now.timestamp())}.{secrets.token_hex(4)}"
            home.updated_at = now
            session.flush()
            return home, True

    def slack_home(self, user_id: str) -> dict[str, Any] | None:
        """The App Home view last published for a user (as the bot sent it), or None."""
        with self.sessions() as session:
            home = session.get(SandboxSlackHomeView, user_id)
            return dict(home.view) if home else None

    def slack_home_view(self, user_id: str) -> SandboxSlackHomeView | None:
        with self.sessions() as session:
            return session.get(SandboxSlackHomeView, user_id)

    def slack_response_url(
        self,
        base_url: str,
        *,
        channel: str = "",
        user_id: str = "",
        message_ts: str | None = None,
        issued_at: datetime | None = None,
    ) -> str:
        """Mint a response URL on the Slack emulator at `base_url`, as Slack puts in a command or action.

        `channel`/`user_id`: where the interaction happened and who did it (ephemeral answers go to
        them); `message_ts`: the message an action came from (what `replace_original` replaces).
        """
        token = secrets.token_urlsafe(18)
        with transaction(self.sessions) as session:
            session.add(
                SandboxSlackResponseUrl(
                    token=token,
                    channel=channel,
                    user_id=user_id,
                    message_ts=message_ts,
                    issued_at=issued_at,
                    uses=0,
                )
            )
        return f"{base_url.rstrip('/')}/response/{token}"

    def slack_take_response_url(self, token: str) -> SandboxSlackResponseUrl | None:
        """A response URL by token, counting one use (the emulator checks expiry and the use limit)."""
        with transaction(self.sessions) as session:
            found = session.get(SandboxSlackResponseUrl, token, with_for_update=True)
            if found is not None:
                found.uses += 1
                session.flush()
            return found

    def slack_record_call(
        self, method: str, params: dict[str, Any], *, ok: bool, error: str | None, at: datetime
    ) -> None:
        with transaction(self.sessions) as session:
            session.add(SandboxSlackCall(method=method, params=params, ok=ok, error=error, at=at))

    def slack_calls(self, method: str | None = None) -> list[SandboxSlackCall]:
        """Every Slack Web API call (and response-URL post) the emulator answered, in order."""
        with self.sessions() as session:
            query = select(SandboxSlackCall).order_by(SandboxSlackCall.id)
            if method is not None:
                query = query.where(SandboxSlackCall.method == method)
            return list(session.scalars(query).all())
