"""The Google emulator's wire format (resources, errors, page and sync tokens) and its request plumbing:
authenticating a call, applying the world's faults, recording it. See `google_emulator.py`."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from calsync.sandbox.emulator_common import OAuthEmulator, record
from calsync.sandbox.faults import apply_faults, lose_answer, short_list
from calsync.sandbox.world import FaultHit, Provider, SandboxAccount

# The emulator's log records keep the name they have always had, whichever part writes them.
logger = logging.getLogger("calsync.sandbox.google_emulator")

PROVIDER: Provider = "google"
APPOINTMENT_PROPERTY = "calsyncAppointmentId"
ACCESS_TOKEN_LIFETIME = timedelta(seconds=3599)
AUTH_CODE_LIFETIME = timedelta(minutes=10)
DEFAULT_REVOKED_DESCRIPTION = "Token has been expired or revoked."
ID_TOKEN_ISSUER = "https://accounts.google.com"
WRITER_ROLES = ("owner", "writer")
DEFAULT_PAGE_SIZE = 250
MAX_PAGE_SIZE = 2500

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    410: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_EVENT_ID_ALPHABET = set("0123456789abcdefghijklmnopqrstuv")

# -- wire helpers ---------------------------------------------------------------------------------


def google_error(
    code: int,
    message: str,
    reason: str,
    *,
    domain: str = "global",
    headers: dict[str, str] | None = None,
    detail: dict[str, str] | None = None,
) -> JSONResponse:
    """An error in Google's JSON API shape."""
    error: dict[str, Any] = {"domain": domain, "reason": reason, "message": message, **(detail or {})}
    body = {
        "error": {
            "code": code,
            "message": message,
            "errors": [error],
            "status": _STATUS_NAMES.get(code, "UNKNOWN"),
        }
    }
    return JSONResponse(body, status_code=code, headers=headers)


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the token endpoint's shape."""
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


class _Reject(Exception):
    """Raised by a handler to answer with `response` (an error) instead."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _not_found() -> _Reject:
    return _Reject(google_error(404, "Not Found", "notFound"))


def _bad_request(message: str, reason: str = "invalid") -> _Reject:
    return _Reject(google_error(400, message, reason))


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _encode_token(prefix: str, payload: dict[str, Any]) -> str:
    return prefix + _b64(json.dumps(payload, separators=(",", ":")).encode())


def _decode_token(prefix: str, token: str) -> dict[str, Any] | None:
    if not token.startswith(prefix):
        return None
    try:
        payload = json.loads(_unb64(token[len(prefix) :]))
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


_SYNC_PREFIX = "gsync1."
_PAGE_PREFIX = "gpage1."


@dataclass(frozen=True)
class _Call:
    """One authenticated API request, as a handler sees it."""

    request: Request
    account: SandboxAccount
    body: dict[str, Any] | None


_Handler = Callable[[_Call], Response]


def _backend_error(status: int) -> JSONResponse:
    return google_error(status, "Backend Error", "backendError")


class GoogleBase(OAuthEmulator):
    """What every Google route shares: the world, the client, the clock, faults and the request log."""

    async def _record(
        self,
        request: Request,
        response: Response,
        account_email: str | None,
        started: float,
        body: dict[str, Any] | None,
    ) -> None:
        await record(
            self.world,
            provider=PROVIDER,
            request=request,
            status=response.status_code,
            account_email=account_email,
            clock=self.clock,
            started=started,
            body=body,
        )

    async def _apply_faults(self, request: Request, endpoint: str, hits: list[FaultHit]) -> Response | None:
        """Carry out the faults (`calsync.sandbox.faults`), answering in Google's wire format."""
        return await apply_faults(request, hits, lambda hit: self._fault_response(hit, endpoint))

    def _fault_response(self, hit: FaultHit, endpoint: str) -> Response | None:
        params = hit.params
        token_endpoint = endpoint == "token"
        if hit.kind == "rate_limit":
            status = int(params.get("status", 429))
            headers = {"Retry-After": str(params["retry_after"])} if "retry_after" in params else None
            if token_endpoint:
                return oauth_error(status, "rate_limit_exceeded", "Rate Limit Exceeded", headers)
            reason = str(params.get("reason", "rateLimitExceeded"))
            return google_error(status, "Rate Limit Exceeded", reason, domain="usageLimits", headers=headers)
        if hit.kind == "unavailable":
            status = int(params.get("status", 503))
            if token_endpoint:
                return oauth_error(status, "internal_failure", "Backend Error")
            return _backend_error(status)
        if hit.kind == "malformed":
            style = params.get("style", "html")
            if style == "truncated":
                return Response(
                    '{"kind": "calendar#events", "items": [{"id": "', media_type="application/json"
                )
            if style == "shape":
                return JSONResponse({"unexpected": True, "items": 7, "token_type": 3})
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>")
        if hit.kind == "invalid_grant" and token_endpoint:
            description = str(params.get("description") or DEFAULT_REVOKED_DESCRIPTION)
            return oauth_error(400, "invalid_grant", description)
        if hit.kind == "sync_token_expired" and endpoint == "changes":
            return self._sync_token_gone()
        return None  # a fault for another kind of request

    @staticmethod
    def _sync_token_gone() -> JSONResponse:
        return google_error(
            410, "Sync token is no longer valid, a full sync is required.", "fullSyncRequired"
        )

    def _account_for(self, request: Request) -> SandboxAccount | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        account = self.world.account_for_access_token(token.strip(), self.clock())
        return account if account is not None and account.provider == PROVIDER else None

    async def _api(self, request: Request, endpoint: str, handler: _Handler) -> Response:
        """Authenticate, apply faults, run the (synchronous, database) handler off the loop, record."""
        started = time.monotonic()
        account_email: str | None = None
        body: dict[str, Any] | None = None
        try:
            raw = await request.body()
            if raw:
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    raise _bad_request("Parse Error", "parseError") from None
                if not isinstance(parsed, dict):
                    raise _bad_request("Parse Error", "parseError")
                body = parsed
            account = await run_in_threadpool(self._account_for, request)
            account_email = account.email if account else None
            hits = await run_in_threadpool(self.world.take_faults, PROVIDER, endpoint, account_email)
            response = await self._apply_faults(request, endpoint, hits)
            if response is None:
                if account is None:
                    raise _Reject(
                        google_error(
                            401,
                            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                            "login cookie or other valid authentication credential.",
                            "authError",
                            detail={"location": "Authorization", "locationType": "header"},
                        )
                    )
                answered = await run_in_threadpool(handler, _Call(request, account, body))
                response = await lose_answer(
                    request, hits, short_list(hits, answered, "items"), _backend_error
                )
        except _Reject as reject:
            response = reject.response
        except Exception:
            logger.exception("google emulator: %s %s failed", request.method, request.url.path)
            response = _backend_error(500)
        await self._record(request, response, account_email, started, body)
        return response
