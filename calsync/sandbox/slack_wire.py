"""The Slack emulator's wire format: errors, request parameters, Block Kit validation, users and messages."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.sandbox.emulator_common import REDACTED, redact_mapping
from calsync.sandbox.world import SandboxSlackMessage, SandboxSlackUser

PROVIDER = "slack"
MAX_TEXT = 40_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
RESPONSE_URL_LIFETIME = timedelta(minutes=30)
RESPONSE_URL_MAX_USES = 5
TEAM_NAME = "Calsync Sandbox"
_JSON_FIELDS = ("blocks", "attachments", "view")
_TS = re.compile(r"^\d{1,12}\.\d{1,6}$")
# Block types Slack accepts in messages and views, and per-type limits worth checking.
_BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "video",
        "call",
    }
)
_TEXT_TYPES = ("plain_text", "mrkdwn")


class SlackError(Exception):
    """A Web API error: `{"ok": false, "error": code, **extra}` with `status` (200 like Slack)."""

    def __init__(self, code: str, *, status: int = 200, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.extra = extra


@dataclass(frozen=True)
class _Call:
    method: str
    params: dict[str, Any]
    base_url: str  # "http://127.0.0.1:1234/"


_Handler = Callable[[_Call], dict[str, Any]]


# -- parameters -------------------------------------------------------------------------------------


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes")


def _string(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _decode_json_fields(params: dict[str, Any]) -> dict[str, Any]:
    """`blocks`, `attachments`, `view` given as JSON strings (form bodies) decoded where they parse."""
    decoded = dict(params)
    for name in _JSON_FIELDS:
        value = decoded.get(name)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # left as given: validation answers with the error
                decoded[name] = json.loads(value)
    return decoded


def _redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params for the logs: the token dropped, other credentials redacted."""
    return redact_mapping({key: value for key, value in params.items() if key.lower() != "token"})


def _redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(key, REDACTED if key.lower() == "token" else value) for key, value in pairs])


# -- validation -------------------------------------------------------------------------------------


def _invalid_blocks(message: str) -> SlackError:
    return SlackError(
        "invalid_blocks", errors=[message], response_metadata={"messages": [f"[ERROR] {message}"]}
    )


def _check_text_object(value: Any, where: str, *, limit: int, plain_only: bool = False) -> None:
    if not isinstance(value, dict) or value.get("type") not in _TEXT_TYPES:
        raise _invalid_blocks(f"{where} must be a text object [json-pointer:{where}]")
    if plain_only and value["type"] != "plain_text":
        raise _invalid_blocks(f"{where} must be plain_text [json-pointer:{where}/type]")
    text = value.get("text")
    if not isinstance(text, str) or not text:
        raise _invalid_blocks(f"{where}/text must be a non-empty string [json-pointer:{where}/text]")
    if len(text) > limit:
        raise _invalid_blocks(f"{where}/text must be at most {limit} characters [json-pointer:{where}/text]")


def _check_element(element: Any, where: str) -> None:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        raise _invalid_blocks(f"{where} must be an object with a type [json-pointer:{where}]")
    if element["type"] == "button":
        _check_text_object(element.get("text"), f"{where}/text", limit=75, plain_only=True)
        url = element.get("url")
        if url is not None and (not isinstance(url, str) or len(url) > 3000):
            raise _invalid_blocks(f"{where}/url must be a string of at most 3000 characters")
        value = element.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > 2000):
            raise _invalid_blocks(f"{where}/value must be a string of at most 2000 characters")


def validate_blocks(value: Any, *, max_blocks: int = MAX_MESSAGE_BLOCKS) -> list[dict[str, Any]] | None:
    """Blocks as Slack would accept them (None when absent), else `invalid_blocks`/`too_many_blocks`.

    Checks the shape (a list of objects with a known `type`), unique `block_id`s and the common
    limits (section text 3000, header 150 plain text, button text 75, 25 actions, 10 context items).
    """
    value = _json_value(value, _invalid_blocks("blocks must be a JSON array"))
    if value is None:
        return None
    if not isinstance(value, list):
        raise _invalid_blocks("blocks must be an array")
    if len(value) > max_blocks:
        raise SlackError("too_many_blocks")
    block_ids: set[str] = set()
    for index, block in enumerate(value):
        where = f"/blocks/{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid_blocks(f"{where} must be an object with a type [json-pointer:{where}]")
        kind = block["type"]
        if kind not in _BLOCK_TYPES:
            raise _invalid_blocks(f"unknown block type {kind!r} [json-pointer:{where}/type]")
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id or len(block_id) > 255:
                raise _invalid_blocks(f"invalid block_id [json-pointer:{where}/block_id]")
            if block_id in block_ids:
                raise _invalid_blocks(f"duplicate block_id {block_id!r} [json-pointer:{where}/block_id]")
            block_ids.add(block_id)
        if kind == "section":
            if "text" not in block and "fields" not in block:
                raise _invalid_blocks(f"a section needs text or fields [json-pointer:{where}]")
            if "text" in block:
                _check_text_object(block["text"], f"{where}/text", limit=3000)
            fields = block.get("fields")
            if fields is not None:
                if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                    raise _invalid_blocks(f"{where}/fields must hold 1 to 10 items")
                for number, field in enumerate(fields):
                    _check_text_object(field, f"{where}/fields/{number}", limit=2000)
            if "accessory" in block:
                _check_element(block["accessory"], f"{where}/accessory")
        elif kind == "header":
            _check_text_object(block.get("text"), f"{where}/text", limit=150, plain_only=True)
        elif kind in ("actions", "context"):
            elements = block.get("elements")
            limit = 25 if kind == "actions" else 10
            if not isinstance(elements, list) or not 1 <= len(elements) <= limit:
                raise _invalid_blocks(f"{where}/elements must hold 1 to {limit} items")
            for number, element in enumerate(elements):
                _check_element(element, f"{where}/elements/{number}")
    return value


def _check_text(text: str) -> None:
    if len(text) > MAX_TEXT:
        raise SlackError("msg_too_long")


def _json_value(value: Any, error: SlackError) -> Any:
    """A form field may carry JSON as a string (Slack accepts both); `error` when it does not parse."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise error from None


def _attachments(value: Any) -> list[dict[str, Any]] | None:
    value = _json_value(value, SlackError("invalid_attachments"))
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise SlackError("invalid_attachments")
    return value


# -- wire shapes --------------------------------------------------------------------------------------


def _handle(user: SandboxSlackUser) -> str:
    """The user's `name` field (a handle): the email's local part, else the name, lower case."""
    if user.email:
        return user.email.split("@", 1)[0]
    return re.sub(r"\W+", ".", user.name.strip().lower()) or user.id.lower()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def user_json(user: SandboxSlackUser, *, team_id: str, now: datetime) -> dict[str, Any]:
    """A user object as `users.info` returns it."""
    zone = _zone(user.tz)
    offset = now.astimezone(zone).utcoffset() or timedelta()
    profile: dict[str, Any] = {
        "real_name": user.name,
        "real_name_normalized": user.name,
        "display_name": user.name,
        "display_name_normalized": user.name,
        "team": team_id,
    }
    if user.email:
        profile["email"] = user.email
    return {
        "id": user.id,
        "team_id": team_id,
        "name": _handle(user),
        "real_name": user.name,
        "deleted": user.deleted,
        "is_bot": user.is_bot,
        "is_app_user": False,
        "is_admin": False,
        "is_owner": False,
        "tz": user.tz,
        "tz_label": user.tz,
        "tz_offset": int(offset.total_seconds()),
        "profile": profile,
        "updated": int(now.timestamp()),
    }


def message_json(message: SandboxSlackMessage, *, bot_id: str, team_id: str) -> dict[str, Any]:
    """A message as `chat.postMessage`/`chat.update` return it."""
    body: dict[str, Any] = {
        "type": "message",
        "user": message.user,
        "bot_id": bot_id,
        "team": team_id,
        "text": message.text,
        "ts": message.ts,
    }
    if message.blocks is not None:
        body["blocks"] = message.blocks
    if message.attachments is not None:
        body["attachments"] = message.attachments
    if message.thread_ts is not None:
        body["thread_ts"] = message.thread_ts
        if message.reply_broadcast:
            body["subtype"] = "thread_broadcast"
    if message.version > 1:
        body["edited"] = {"user": message.user, "ts": f"{int(message.updated_at.timestamp())}.000000"}
    return body
