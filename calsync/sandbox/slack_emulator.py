"""An emulator of the Slack Web API methods calsync calls, plus response URLs, recording every call.

Point `slack_sdk`'s `AsyncWebClient(token=..., base_url=f"{url}/api/")` at it (calsync reads
`SLACK_API_URL`). It answers as Slack does: HTTP 200 with `{"ok": true, ...}` or
`{"ok": false, "error": "<code>"}`, and 429 with `Retry-After` under a `rate_limit` fault. Request
parameters are read from the query string, a form body or a JSON body alike; `blocks`,
`attachments` and `view` may be JSON strings inside a form body.

Routes:
- `GET|POST /api/{method}`: `auth.test`, `users.info`, `users.lookupByEmail`, `conversations.open`,
  `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `chat.getPermalink`, `views.publish`,
  `usergroups.users.list`
- `POST /response/{token}`: a response URL minted by `World.slack_response_url` (JSON body with
  `text`, `blocks`, `response_type`, `replace_original`, `delete_original`, `thread_ts`)

State lives in the world's `sandbox_slack_*` tables. Every call is logged in `sandbox_slack_calls`
(method, params with the token removed, ok, error) and in the common request log (provider
`slack`); the token and the Authorization header are never stored. Faults with provider `slack`
apply; their `endpoint` is `*` or a method name (`response_url` for response URLs), and their
`account` is matched against the email of the Slack user a call is about (`user`, `user_id`,
`users`, `email`), when there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from calsync.sandbox.emulator_common import REDACTED, hang, redact_mapping
from calsync.sandbox.world import (
    FaultHit,
    SandboxRequest,
    SandboxSlackMessage,
    SandboxSlackUser,
    World,
)

PROVIDER = "slack"
MAX_TEXT = 40_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
RESPONSE_URL_LIFETIME = timedelta(minutes=30)
RESPONSE_URL_MAX_USES = 5
TEAM_NAME = "Calsync Sandbox"
_CLIENT_CLOSED = 499  # logged when the client gave up during an emulated hang
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
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _invalid_blocks("blocks must be a JSON array") from None
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


def _attachments(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_attachments") from None
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


# -- the emulator -------------------------------------------------------------------------------------


class SlackEmulator:
    def __init__(
        self,
        world: World,
        *,
        bot_token: str,
        clock: Callable[[], datetime],
        bot_user_id: str = "U0CALSYNC",
        team_id: str = "T0SANDBOX",
        bot_id: str = "B0CALSYNC",
    ) -> None:
        self.world = world
        self.bot_token = bot_token
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
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroups_users_list,
        }

    def routes(self) -> list[Route]:
        return [
            Route("/api/{method}", self.api, methods=["GET", "POST"]),
            Route("/response/{token}", self.response_url, methods=["POST"]),
        ]

    # -- plumbing ---------------------------------------------------------------------------------

    async def _params(self, request: Request) -> dict[str, Any]:
        """Query string, then form or JSON body (the body wins), JSON-string fields decoded."""
        params: dict[str, Any] = dict(request.query_params)
        raw = await request.body()
        if raw:
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type == "application/json":
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise SlackError("invalid_json") from None
                if not isinstance(body, dict):
                    raise SlackError("invalid_json")
                params.update(body)
            elif content_type == "multipart/form-data":
                form = await request.form()
                params.update({key: value for key, value in form.items() if isinstance(value, str)})
            else:
                try:
                    params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
                except UnicodeDecodeError:
                    raise SlackError("invalid_form_data") from None
        return _decode_json_fields(params)

    @staticmethod
    def _token(request: Request, params: Mapping[str, Any]) -> str | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        token = params.get("token")
        return token if isinstance(token, str) and token else None

    def _target_email(self, params: Mapping[str, Any]) -> str | None:
        """The email of the Slack user a call is about, for faults aimed at one person."""
        if isinstance(params.get("email"), str):
            return str(params["email"]).lower()
        for name in ("user", "user_id", "users"):
            value = params.get(name)
            if isinstance(value, str) and value:
                found = self.world.slack_user(value.split(",")[0].strip())
                return found.email if found and found.email else None
        return None

    async def _apply_faults(self, request: Request, endpoint: str, email: str | None) -> Response | None:
        hits = await run_in_threadpool(self.world.take_faults, PROVIDER, endpoint, email)
        for hit in hits:
            if hit.kind == "latency":
                await asyncio.sleep(float(hit.params.get("seconds", 1.0)))
            elif hit.kind == "hang":
                if await hang(request, float(hit.params.get("seconds", 60.0))):
                    return Response(status_code=_CLIENT_CLOSED)
            else:
                response = self._fault_response(hit)
                if response is not None:
                    return response
        return None

    @staticmethod
    def _fault_response(hit: FaultHit) -> Response | None:
        params = hit.params
        if hit.kind == "rate_limit":
            return JSONResponse(
                {"ok": False, "error": "ratelimited"},
                status_code=int(params.get("status", 429)),
                headers={"Retry-After": str(params.get("retry_after", 1))},
            )
        if hit.kind == "unavailable":
            return JSONResponse(
                {"ok": False, "error": "service_unavailable"}, status_code=int(params.get("status", 503))
            )
        if hit.kind == "malformed":
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>")
        if hit.kind == "invalid_grant":  # Slack's way of saying the token stopped working
            return JSONResponse({"ok": False, "error": str(params.get("error", "token_revoked"))})
        return None  # a kind that means nothing to Slack

    async def _log(
        self,
        request: Request,
        *,
        method: str,
        path: str,
        params: dict[str, Any],
        response: Response,
        started: float,
        email: str | None,
    ) -> None:
        ok, error = True, None
        if isinstance(response, JSONResponse):
            try:
                answered = json.loads(bytes(response.body))
            except ValueError:
                answered = {}
            ok = bool(answered.get("ok", False))
            error = answered.get("error")
        else:
            ok, error = False, f"http_{response.status_code}"
        logged = _redact(params)
        at = self.clock()
        await run_in_threadpool(self.world.slack_record_call, method, logged, ok=ok, error=error, at=at)
        entry = SandboxRequest(
            provider=PROVIDER,
            method=request.method,
            path=path,
            query=_redact_query(request.url.query),
            body=logged,
            status=response.status_code,
            account_email=email,
            at=at,
            duration_ms=(time.monotonic() - started) * 1000.0,
        )
        await run_in_threadpool(self.world.record_request, entry)

    def _run(self, handler: _Handler, call: _Call) -> dict[str, Any]:
        with self._lock:
            return handler(call)

    async def api(self, request: Request) -> Response:
        started = time.monotonic()
        method = request.path_params["method"]
        params: dict[str, Any] = {}
        email: str | None = None
        response: Response
        try:
            params = await self._params(request)
            handler = self.methods.get(method)
            if handler is None:
                raise SlackError("unknown_method", status=404, req_method=method)
            token = self._token(request, params)
            if token is None:
                raise SlackError("not_authed")
            if token != self.bot_token:
                raise SlackError("invalid_auth")
            params.pop("token", None)
            email = await run_in_threadpool(self._target_email, params)
            fault = await self._apply_faults(request, method, email)
            if fault is not None:
                response = fault
            else:
                call = _Call(method=method, params=params, base_url=str(request.base_url))
                result = await run_in_threadpool(self._run, handler, call)
                response = JSONResponse({"ok": True, **result})
        except SlackError as error:
            response = JSONResponse(
                {"ok": False, "error": error.code, **error.extra}, status_code=error.status
            )
        await self._log(
            request,
            method=method,
            path=request.url.path,
            params=params,
            response=response,
            started=started,
            email=email,
        )
        return response

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

    def _chat_post_message(self, call: _Call) -> dict[str, Any]:
        channel = self._channel(_string(call.params, "channel"))
        text, blocks, attachments = self._content(call.params)
        thread_ts = self._thread_ts(call.params)
        message = self.world.slack_post_message(
            channel=channel,
            user=self.bot_user_id,
            text=text or "",
            blocks=blocks,
            attachments=attachments,
            now=self.clock(),
            thread_ts=thread_ts,
            reply_broadcast=thread_ts is not None and _flag(call.params.get("reply_broadcast", False)),
        )
        return {"channel": channel, "ts": message.ts, "message": self._message(message)}

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
        text, blocks, attachments = self._content(call.params)
        message = self.world.slack_post_message(
            channel=channel,
            user=self.bot_user_id,
            text=text or "",
            blocks=blocks,
            attachments=attachments,
            now=self.clock(),
            thread_ts=self._thread_ts(call.params),
            ephemeral_for=user.id,
        )
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

    # -- response URLs ----------------------------------------------------------------------------

    async def response_url(self, request: Request) -> Response:
        started = time.monotonic()
        token = request.path_params["token"]
        body: dict[str, Any] = {}
        email: str | None = None
        response: Response
        try:
            raw = await request.body()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise SlackError("invalid_payload", status=400)
            body = _decode_json_fields(parsed)
            url = await run_in_threadpool(self.world.slack_take_response_url, token)
            if url is None:
                raise SlackError("not_found", status=404)
            if url.issued_at is not None and self.clock() - url.issued_at > RESPONSE_URL_LIFETIME:
                raise SlackError("expired_url", status=404)
            if url.uses > RESPONSE_URL_MAX_USES:
                raise SlackError("used_url", status=404)
            user = await run_in_threadpool(self.world.slack_user, url.user_id) if url.user_id else None
            email = user.email if user and user.email else None
            fault = await self._apply_faults(request, "response_url", email)
            if fault is not None:
                response = fault
            else:
                await run_in_threadpool(
                    self._run,
                    lambda _call: self._respond(body, url.channel, url.user_id, url.message_ts),
                    _Call(method="response_url", params=body, base_url=str(request.base_url)),
                )
                response = JSONResponse({"ok": True})
        except SlackError as error:
            response = JSONResponse(
                {"ok": False, "error": error.code, **error.extra}, status_code=error.status
            )
        await self._log(
            request,
            method="response_url",
            path="/response/" + REDACTED,
            params=body,
            response=response,
            started=started,
            email=email,
        )
        return response

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


def build_slack_app(
    world: World,
    *,
    bot_token: str,
    clock: Callable[[], datetime],
    bot_user_id: str = "U0CALSYNC",
    team_id: str = "T0SANDBOX",
    bot_id: str = "B0CALSYNC",
) -> Starlette:
    """The Slack emulator as an ASGI app (serve it with `BackgroundServer` or uvicorn)."""
    emulator = SlackEmulator(
        world, bot_token=bot_token, clock=clock, bot_user_id=bot_user_id, team_id=team_id, bot_id=bot_id
    )
    return Starlette(routes=emulator.routes())


__all__ = ["SlackEmulator", "SlackError", "build_slack_app", "message_json", "user_json", "validate_blocks"]
