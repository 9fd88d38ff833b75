"""A button click (`block_actions`) as a typed `Click`: which button, what its value carried, where
the clicked message is, and whether only the clicker sees it. Parsed once per request by the
`parse_click` middleware; the answer's owner is looked up once, on first use, after the ack."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from calsync.flows.answers import Asked
from calsync.render.kit import base_action_id
from calsync.store.people import Person

OwnerLookup = Callable[[Any], Awaitable[Person | None]]  # a button's diagnosis -> the rep it was for


def is_private(channel: str | None) -> bool:
    """A DM (channel ids starting with D): only the rep sees what is posted there."""
    return bool(channel) and str(channel).startswith("D")


def _value(action: dict[str, Any]) -> dict[str, Any]:
    """The JSON value of the clicked button (or of the option picked in a menu); {} for anything
    malformed."""
    picked = action.get("selected_option")
    raw = picked.get("value") if isinstance(picked, dict) else action.get("value")
    try:
        parsed = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class Click:
    user_id: str
    action_id: str
    action: str | None  # the contract id (`ACTION_*`), without a `_N` suffix
    value: dict[str, Any]
    url: str | None  # a link button's url
    channel: str | None
    message_ts: str | None
    thread_ts: str | None  # the clicked message's thread (or the message itself)
    ephemeral: bool
    in_home: bool  # clicked in the App Home tab
    find_owner: OwnerLookup = field(repr=False)
    _owner: tuple[Person | None] | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, body: dict[str, Any], find_owner: OwnerLookup) -> Click:
        actions = body.get("actions")
        action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
        container, message = _object(body.get("container")), _object(body.get("message"))
        action_id = str(action.get("action_id") or "")
        return cls(
            user_id=str(_object(body.get("user")).get("id") or ""),
            action_id=action_id,
            action=base_action_id(action_id),
            value=_value(action),
            url=action.get("url") or None,
            channel=container.get("channel_id") or _object(body.get("channel")).get("id"),
            message_ts=container.get("message_ts"),
            thread_ts=message.get("thread_ts") or container.get("message_ts"),
            ephemeral=bool(container.get("is_ephemeral")),
            in_home=_object(body.get("view")).get("type") == "home",
            find_owner=find_owner,
        )

    @property
    def private(self) -> bool:
        """Whether the clicked message is one only the clicker sees (ephemeral, or in their DM)."""
        return self.ephemeral or is_private(self.channel)

    @property
    def asked(self) -> Asked:
        return Asked(question=_text(self.value.get("question")), article=_text(self.value.get("article")))

    @property
    def diagnosis(self) -> str | None:
        """The diagnosis the clicked answer came from, as stored with feedback."""
        return str(self.value.get("diagnosis") or "")[:64] or None

    @property
    def provider(self) -> str:
        return str(self.value.get("provider") or "")

    async def owner(self) -> Person | None:
        """The rep the clicked answer was made for (None when the button names none we know)."""
        if self._owner is None:
            self._owner = (await self.find_owner(self.value.get("diagnosis")),)
        return self._owner[0]


def _object(value: Any) -> dict[str, Any]:
    """A payload field Slack sends as an object, or {} when a forged payload sent something else."""
    return value if isinstance(value, dict) else {}
