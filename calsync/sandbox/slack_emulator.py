"""An emulator of the Slack Web API methods calsync calls, plus response URLs, recording every call.

Point `slack_sdk`'s `AsyncWebClient(token=..., base_url=f"{url}/api/")` at it (calsync reads
`SLACK_API_URL`). It answers as Slack does: HTTP 200 with `{"ok": true, ...}` or
`{"ok": false, "error": "<code>"}`, and 429 with `Retry-After` under a `rate_limit` fault. Request
parameters are read from the query string, a form body or a JSON body alike; `blocks`,
`attachments` and `view` may be JSON strings inside a form body.

Routes:
- `GET|POST /api/{method}`: `auth.test`, `users.info`, `users.lookupByEmail`, `conversations.open`,
  `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `chat.getPermalink`, `views.publish`,
  `usergroups.users.list`; with an app-level token, `apps.connections.open` (only with that token;
  the bot token gets `not_allowed_token_type` there, and the app token everywhere else)
- `WS /link/?ticket=…` (with an app-level token): Socket Mode, `slack_socket_mode.py`
- `POST /response/{token}`: a response URL minted by `World.slack_response_url` (JSON body with
  `text`, `blocks`, `response_type`, `replace_original`, `delete_original`, `thread_ts`)

State lives in the world's `sandbox_slack_*` tables. Every call is logged in `sandbox_slack_calls`
(method, params with the token removed, ok, error) and in the common request log (provider
`slack`); the token and the Authorization header are never stored. Faults with provider `slack`
apply; their `endpoint` is `*` or a method name (`response_url` for response URLs), and their
`account` is matched against the email of the Slack user a call is about (`user`, `user_id`,
`users`, `email`), when there is one.

The emulator is in three parts: `slack_wire.py` (errors, parameters, Block Kit validation, user and
message shapes), `slack_methods.py` (the Web API methods and response-URL posts on the world) and this
module (the HTTP side: parameters, tokens, faults via `calsync.sandbox.faults`, the call log).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from calsync.sandbox.emulator_common import REDACTED
from calsync.sandbox.faults import apply_faults
from calsync.sandbox.slack_methods import SlackMethods
from calsync.sandbox.slack_wire import (
    PROVIDER,
    RESPONSE_URL_LIFETIME,
    RESPONSE_URL_MAX_USES,
    SlackError,
    _Call,
    _decode_json_fields,
    _Handler,
    _redact,
    _redact_query,
    message_json,
    user_json,
    validate_blocks,
)
from calsync.sandbox.world import FaultHit, SandboxRequest, World

# Web API methods that take the app-level token (`xapp-…`) instead of the bot token.
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})

# -- the emulator -------------------------------------------------------------------------------------


class SlackEmulator(SlackMethods):
    """The Slack emulator's HTTP side: `/api/{method}` and response URLs, with faults and the call log."""

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/api/{method}", self.api, methods=["GET", "POST"]),
            Route("/response/{token}", self.response_url, methods=["POST"]),
        ]
        if self.socket_mode is not None:
            routes.append(WebSocketRoute("/link/", self.socket_mode.serve))
        return routes

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
        """Carry out the faults (`calsync.sandbox.faults`), answering in Slack's wire format."""
        hits = await run_in_threadpool(self.world.take_faults, PROVIDER, endpoint, email)
        return await apply_faults(request, hits, self._fault_response, still_there=self._still_there)

    async def _still_there(self, fault_id: int) -> bool:
        return bool(await run_in_threadpool(self.world.has_fault, fault_id))

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

    def _check_token(self, method: str, token: str) -> None:
        """Socket Mode's method takes the app-level token and nothing else does, as at Slack."""
        app_token = self.socket_mode.app_token if self.socket_mode is not None else None
        wants_app_token = method in APP_TOKEN_METHODS
        if token == (app_token if wants_app_token else self.bot_token):
            return
        if token in (self.bot_token, app_token):
            raise SlackError("not_allowed_token_type")
        raise SlackError("invalid_auth")

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
            self._check_token(method, token)
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


def build_slack_app(
    world: World,
    *,
    bot_token: str,
    clock: Callable[[], datetime],
    bot_user_id: str = "U0CALSYNC",
    team_id: str = "T0SANDBOX",
    bot_id: str = "B0CALSYNC",
    app_token: str | None = None,
) -> Starlette:
    """The Slack emulator as an ASGI app (serve it with `BackgroundServer` or uvicorn). With
    `app_token`, Socket Mode too: the app's `state.socket_mode` is the `SocketModeHub` to push through."""
    emulator = SlackEmulator(
        world,
        bot_token=bot_token,
        clock=clock,
        bot_user_id=bot_user_id,
        team_id=team_id,
        bot_id=bot_id,
        app_token=app_token,
    )
    app = Starlette(routes=emulator.routes())
    app.state.socket_mode = emulator.socket_mode
    return app


__all__ = ["SlackEmulator", "SlackError", "build_slack_app", "message_json", "user_json", "validate_blocks"]
