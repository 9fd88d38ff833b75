"""The Slack Web API methods the emulator answers (`auth.test`, `chat.postMessage`, ...), and what a
post to a response URL does. The HTTP side (parameters, tokens, faults, the call log) is `slack_emulator.py`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from calsync.sandbox.slack_socket_mode import SocketModeHub
from calsync.sandbox.slack_wire import (
    _TS,
    MAX_VIEW_BLOCKS,
    TEAM_NAME,
    SlackError,
    _attachments,
    _Call,
    _check_text,
    _flag,
    _Handler,
    _string,
    message_json,
    user_json,
    validate_blocks,
)
from calsync.sandbox.world import SandboxSlackMessage, SandboxSlackUser, World


class SlackMethods:
    """The Web API methods, each a synchronous handler of one call on the world (run in a worker thread)."""

    def __init__(
        self,
        world: World,
        *,
        bot_token: str,
        clock: Callable[[], datetime],
        bot_user_id: str = "U0CALSYNC",
        team_id: str = "T0SANDBOX",
        bot_id: str = "B0CALSYNC",
        app_token: str | None = None,
        app_id: str = "A0CALSYNC",
    ) -> None:
        self.world = world
        self.bot_token = bot_token
        # The app-level token (`xapp-…`) that may open Socket Mode connections; None: Socket Mode is off.
        self.socket_mode = SocketModeHub(app_token=app_token, app_id=app_id) if app_token else None
        self.clock = clock
        self.bot_user_id = bot_user_id
        self.team_id = team_id
        self.bot_id = bot_id
        # Handlers run in worker threads; one at a time keeps message timestamps unique on SQLite.
        self._lock = threading.Lock()
        self.methods: dict[str, _Handler] = {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroups_users_list,
            "apps.connections.open": self._apps_connections_open,
        }

    # -- helpers ----------------------------------------------------------------------------------

    def _user(self, user_id: str) -> SandboxSlackUser | None:
        found = self.world.slack_user(user_id)
        if found is None and user_id == self.bot_user_id:
            return SandboxSlackUser(
                id=self.bot_user_id, email="", name="calsync", is_bot=True, deleted=False, tz="UTC"
            )
        return found

    def _channel(self, channel: str) -> str:
        """A channel the bot can post in: a channel, an open DM, or a user id (opens the DM)."""
        if not channel:
            raise SlackError("channel_not_found")
        if channel[0] == "D":
            if self.world.slack_dm_user(channel) is None:
                raise SlackError("channel_not_found")
            return channel
        if channel[0] in ("U", "W"):
            user = self._user(channel)
            if user is None or user.deleted:
                raise SlackError("channel_not_found")
            if user.is_bot:
                raise SlackError("cannot_dm_bot")
            return self.world.slack_open_dm(user.id, self.clock())[0]
        if self.world.slack_channel(channel) is None:
            raise SlackError("channel_not_found")
        return channel

    def _content(
        self, params: Mapping[str, Any], *, required: bool = True
    ) -> tuple[str | None, list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
        text = params.get("text")
        if text is not None and not isinstance(text, str):
            text = str(text)
        blocks = validate_blocks(params.get("blocks"))
        attachments = _attachments(params.get("attachments"))
        if required and not text and not blocks and not attachments:
            raise SlackError("no_text")
        if text is not None:
            _check_text(text)
        return text, blocks, attachments

    @staticmethod
    def _thread_ts(params: Mapping[str, Any]) -> str | None:
        thread_ts = _string(params, "thread_ts") or None
        if thread_ts is not None and not _TS.match(thread_ts):
            raise SlackError("invalid_thread_ts")
        return thread_ts

    def _message(self, message: SandboxSlackMessage) -> dict[str, Any]:
        return message_json(message, bot_id=self.bot_id, team_id=self.team_id)

    # -- methods ------------------------------------------------------------------------------------

    def _apps_connections_open(self, call: _Call) -> dict[str, Any]:
        """A WebSocket URL for Socket Mode (the caller's app-level token was checked already)."""
        if self.socket_mode is None:
            raise SlackError("invalid_auth")
        return {"url": self.socket_mode.open_url(call.base_url)}

    def _auth_test(self, call: _Call) -> dict[str, Any]:
        return {
            "url": call.base_url,
            "team": TEAM_NAME,
            "user": "calsync",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _users_info(self, call: _Call) -> dict[str, Any]:
        user = self._user(_string(call.params, "user"))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user_json(user, team_id=self.team_id, now=self.clock())}

    def _users_lookup_by_email(self, call: _Call) -> dict[str, Any]:
        email = _string(call.params, "email").strip()
        if not email:
            raise SlackError("invalid_arguments")
        user = self.world.slack_user_by_email(email)
        if user is None or user.deleted:
            raise SlackError("users_not_found")
        return {"user": user_json(user, team_id=self.team_id, now=self.clock())}

    def _conversations_open(self, call: _Call) -> dict[str, Any]:
        channel = _string(call.params, "channel")
        if channel:
            user_id = self.world.slack_dm_user(channel)
            if user_id is None:
                raise SlackError("channel_not_found")
            return {
                "no_op": True,
                "already_open": True,
                "channel": {"id": channel, "is_im": True, "user": user_id},
            }
        users = [part.strip() for part in _string(call.params, "users").split(",") if part.strip()]
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) > 1:
            raise SlackError("not_supported", detail="the sandbox opens one-to-one DMs only")
        user = self._user(users[0])
        if user is None:
            raise SlackError("user_not_found")
        if user.deleted:
            raise SlackError("user_disabled")
        if user.is_bot:
            raise SlackError("cannot_dm_bot")
        channel_id, already = self.world.slack_open_dm(user.id, self.clock())
        return {
            "no_op": already,
            "already_open": already,
            "channel": {"id": channel_id, "is_im": True, "user": user.id},
        }

    def _page(self, call: _Call, messages: list[SandboxSlackMessage]) -> dict[str, Any]:
        try:
            limit = min(max(int(call.params.get("limit", 100)), 1), 999)
        except (TypeError, ValueError):
            raise SlackError("invalid_limit") from None
        return {"messages": [self._message(m) for m in messages[:limit]], "has_more": len(messages) > limit}

    def _conversations_history(self, call: _Call) -> dict[str, Any]:
        """The channel's messages, newest first, without thread replies (but those also sent to it)."""
        channel = self._channel(_string(call.params, "channel"))
        shown = [
            m
            for m in self.world.slack_messages(channel)
            if m.ephemeral_for is None and (m.thread_ts in (None, m.ts) or m.reply_broadcast)
        ]
        return self._page(call, shown[::-1])

    def _conversations_replies(self, call: _Call) -> dict[str, Any]:
        """A thread: its parent, then the replies, oldest first. (People's own messages are not in
        the sandbox, so a thread under a rep's question shows only the replies.)"""
        channel = self._channel(_string(call.params, "channel"))
        ts = _string(call.params, "ts")
        thread = (
            [m for m in self.world.slack_messages(channel, thread_ts=ts) if m.ephemeral_for is None]
            if ts
            else []
        )
        if not thread:
            raise SlackError("thread_not_found")
        return self._page(call, thread)

    def _chat_post_message(self, call: _Call) -> dict[str, Any]:
        channel = self._channel(_string(call.params, "channel"))
        thread_ts = self._thread_ts(call.params)
        message = self._post_as_bot(
            call,
            channel,
            reply_broadcast=thread_ts is not None and _flag(call.params.get("reply_broadcast", False)),
        )
        return {"channel": channel, "ts": message.ts, "message": self._message(message)}

    def _post_as_bot(
        self, call: _Call, channel: str, *, reply_broadcast: bool = False, ephemeral_for: str | None = None
    ) -> SandboxSlackMessage:
        text, blocks, attachments = self._content(call.params)
        return self.world.slack_post_message(
            channel=channel,
            user=self.bot_user_id,
            text=text or "",
            blocks=blocks,
            attachments=attachments,
            now=self.clock(),
            thread_ts=self._thread_ts(call.params),
            reply_broadcast=reply_broadcast,
            ephemeral_for=ephemeral_for,
        )

    def _chat_update(self, call: _Call) -> dict[str, Any]:
        channel = self._channel(_string(call.params, "channel"))
        ts = _string(call.params, "ts")
        found = self.world.slack_message(channel, ts) if ts else None
        if found is None or found.ephemeral_for is not None:
            raise SlackError("message_not_found")
        text, blocks, attachments = self._content(call.params, required=False)
        if text is None and blocks is None and attachments is None:
            raise SlackError("no_text")
        message = self.world.slack_update_message(
            found.pk, self.clock(), text=text, blocks=blocks, attachments=attachments
        )
        return {"channel": channel, "ts": message.ts, "text": message.text, "message": self._message(message)}

    def _chat_post_ephemeral(self, call: _Call) -> dict[str, Any]:
        user = self._user(_string(call.params, "user"))
        if user is None or user.deleted:
            raise SlackError("user_not_found")
        channel = self._channel(_string(call.params, "channel"))
        message = self._post_as_bot(call, channel, ephemeral_for=user.id)
        return {"message_ts": message.ts}

    def _chat_get_permalink(self, call: _Call) -> dict[str, Any]:
        channel = self._channel(_string(call.params, "channel"))
        ts = _string(call.params, "message_ts")
        message = self.world.slack_message(channel, ts) if ts else None
        if message is None or message.ephemeral_for is not None:
            raise SlackError("message_not_found")
        permalink = f"{call.base_url}archives/{channel}/p{ts.replace('.', '')}"
        if message.thread_ts and message.thread_ts != message.ts:
            permalink += "?" + urlencode({"thread_ts": message.thread_ts, "cid": channel})
        return {"channel": channel, "permalink": permalink}

    def _views_publish(self, call: _Call) -> dict[str, Any]:
        user = self._user(_string(call.params, "user_id"))
        if user is None or user.deleted or user.is_bot:
            raise SlackError("user_not_found")
        view = call.params.get("view")
        if not isinstance(view, dict):
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] view must be an object"]}
            )
        if view.get("type") != "home":
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] view.type must be 'home'"]}
            )
        blocks = validate_blocks(view.get("blocks"), max_blocks=MAX_VIEW_BLOCKS)
        if blocks is None:
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] view.blocks is required"]}
            )
        expected_hash = _string(call.params, "hash") or None
        home, stored = self.world.slack_publish_home(
            user.id, dict(view), self.clock(), expected_hash=expected_hash
        )
        if not stored or home is None:
            raise SlackError("hash_conflict")
        return {
            "view": {
                "id": home.view_id,
                "team_id": self.team_id,
                "type": "home",
                "blocks": blocks,
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view.get("callback_id", ""),
                "external_id": view.get("external_id", ""),
                "state": {"values": {}},
                "hash": home.hash,
                "clear_on_close": False,
                "notify_on_close": False,
                "root_view_id": home.view_id,
                "previous_view_id": None,
                "app_id": "A0CALSYNC",
                "app_installed_team_id": self.team_id,
                "bot_id": self.bot_id,
            }
        }

    def _usergroups_users_list(self, call: _Call) -> dict[str, Any]:
        group = self.world.slack_usergroup(_string(call.params, "usergroup"))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group.members)}

    def _respond(
        self, body: Mapping[str, Any], channel: str, user_id: str, message_ts: str | None
    ) -> dict[str, Any]:
        now = self.clock()
        original = self.world.slack_message(channel, message_ts) if message_ts else None
        if _flag(body.get("delete_original", False)):
            if original is None:
                raise SlackError("message_not_found", status=404)
            self.world.slack_update_message(original.pk, now, delete=True)
            return {}
        response_type = _string(body, "response_type") or "ephemeral"
        if response_type not in ("ephemeral", "in_channel"):
            raise SlackError("invalid_response_type", status=400)
        try:
            text, blocks, attachments = self._content(body)
        except SlackError as error:
            error.status = 400
            raise
        if _flag(body.get("replace_original", False)):
            if original is None:
                raise SlackError("message_not_found", status=404)
            self.world.slack_update_message(
                original.pk, now, text=text or "", blocks=blocks or [], attachments=attachments
            )
            return {}
        self.world.slack_post_message(
            channel=channel,
            user=self.bot_user_id,
            text=text or "",
            blocks=blocks,
            attachments=attachments,
            now=now,
            thread_ts=self._thread_ts(body),
            ephemeral_for=(user_id or None) if response_type == "ephemeral" else None,
        )
        return {}
