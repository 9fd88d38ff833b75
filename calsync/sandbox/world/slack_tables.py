"""The Slack emulator's tables (`sandbox_slack_*`): users, channels, DMs, messages, App Home views,
response URLs and the Web API call log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from calsync.sandbox.world.tables import SandboxBase


class SandboxSlackUser(SandboxBase):
    __tablename__ = "sandbox_slack_users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # U…/W…
    email: Mapped[str] = mapped_column(String(320), default="", index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    tz: Mapped[str] = mapped_column(String(64), default="UTC")


class SandboxSlackUsergroup(SandboxBase):
    __tablename__ = "sandbox_slack_usergroups"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # S…
    handle: Mapped[str] = mapped_column(String(200))
    members: Mapped[list[str]] = mapped_column(JSON, default=list)


class SandboxSlackChannel(SandboxBase):
    __tablename__ = "sandbox_slack_channels"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # C…/G…
    name: Mapped[str] = mapped_column(String(200))
    is_private: Mapped[bool] = mapped_column(Boolean, default=False)


class SandboxSlackDm(SandboxBase):
    __tablename__ = "sandbox_slack_dms"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), unique=True)  # D…
    opened_at: Mapped[datetime]


class SandboxSlackMessage(SandboxBase):
    """A message the bot posted (or an ephemeral one it showed someone), with updates applied."""

    __tablename__ = "sandbox_slack_messages"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), index=True)
    ts: Mapped[str] = mapped_column(String(32), unique=True)
    thread_ts: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    user: Mapped[str] = mapped_column(String(32))  # the bot's user id
    text: Mapped[str] = mapped_column(Text, default="")
    blocks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    ephemeral_for: Mapped[str | None] = mapped_column(String(32), nullable=True)  # user id, or None
    reply_broadcast: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)  # 1 when posted, +1 per update


class SandboxSlackHomeView(SandboxBase):
    __tablename__ = "sandbox_slack_home_views"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    view_id: Mapped[str] = mapped_column(String(32))
    view: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    hash: Mapped[str] = mapped_column(String(64), default="")
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]


class SandboxSlackResponseUrl(SandboxBase):
    __tablename__ = "sandbox_slack_response_urls"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), default="")
    user_id: Mapped[str] = mapped_column(String(32), default="")
    message_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    issued_at: Mapped[datetime | None] = mapped_column(nullable=True)  # None: never expires
    uses: Mapped[int] = mapped_column(Integer, default=0)


class SandboxSlackState(SandboxBase):
    """Single row: the last message ts handed out, so every new one is larger."""

    __tablename__ = "sandbox_slack_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_ts: Mapped[str] = mapped_column(String(32), default="0.000000")


class SandboxSlackCall(SandboxBase):
    """One Slack Web API call the emulator answered (the token is never stored)."""

    __tablename__ = "sandbox_slack_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    method: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    error: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime]
