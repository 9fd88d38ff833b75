"""An emulator of Google OAuth 2.0 and a Calendar API v3 subset, served from one base URL.

Point calsync at it with `GOOGLE_API_URL=<base>`, `GOOGLE_TOKEN_URL=<base>/token` and
`GOOGLE_AUTH_URL=<base>/o/oauth2/auth`. It reads and writes the sandbox world only through `World`,
answers with Google's JSON shapes (tokens, resources and errors), applies the world's faults and
logs every request (secrets redacted) for tests to assert on.

Routes:
- `GET /o/oauth2/auth`: a server-rendered consent page (no JavaScript), `POST /o/oauth2/auth/decision`
- `POST /token` (also `/o/oauth2/token`): authorization_code (+ PKCE S256) and refresh_token grants
- `GET /oauth2/v2/userinfo`, `GET /oauth2/v3/userinfo`
- `/calendar/v3/users/me/calendarList[/{calendarId}]`,
  `/calendar/v3/calendars/{calendarId}/events[/{eventId}]`

Fault endpoints: `token` (the token endpoint), `calendars` (calendar list), `events` (event reads and
writes), `changes` (an event list with a `syncToken`, i.e. an incremental read).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from calsync.sandbox.emulator_common import hang, record, short_list
from calsync.sandbox.world import (
    FaultHit,
    Provider,
    SandboxAccount,
    SandboxCalendar,
    SandboxEvent,
    World,
    lose_response,
    lost_response_wait,
)

logger = logging.getLogger(__name__)

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
_CLIENT_CLOSED = 499  # logged when the client gave up during an emulated hang


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


def _parse_time_param(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _bad_request(f"Bad Request: invalid {name}", "badRequest") from None
    if parsed.tzinfo is None:  # Google insists on an offset in timeMin/timeMax
        raise _bad_request(f"Bad Request: {name} needs a time zone offset", "badRequest")
    return parsed.astimezone(UTC)


def _parse_event_time(value: Any, which: str, default_zone: str) -> tuple[datetime, str]:
    """A start/end object -> (aware UTC datetime, time zone name)."""
    if not isinstance(value, dict):
        raise _bad_request(f"Missing {which} time.", "required")
    zone_name = value.get("timeZone") or default_zone
    if not isinstance(zone_name, str):
        raise _bad_request(f"Invalid {which} time zone.", "invalid")
    zone = _zone(zone_name)
    try:
        if isinstance(value.get("dateTime"), str):
            parsed = datetime.fromisoformat(value["dateTime"])
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=zone)
            return parsed.astimezone(UTC), zone_name
        if isinstance(value.get("date"), str):
            day = datetime.fromisoformat(value["date"]).replace(tzinfo=zone)
            return day.astimezone(UTC), zone_name
    except ValueError:
        raise _bad_request(f"Invalid {which} time.", "invalid") from None
    raise _bad_request(f"Missing {which} time.", "required")


def _calendar_entry(calendar: SandboxCalendar) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": "calendar#calendarListEntry",
        "etag": f'"{calendar.pk}"',
        "id": calendar.calendar_id,
        "summary": calendar.name,
        "timeZone": calendar.time_zone,
        "accessRole": calendar.access_role,
        "defaultReminders": [],
        "selected": True,
    }
    if calendar.primary:
        entry["primary"] = True
    if calendar.owner_email:
        entry["dataOwner"] = calendar.owner_email
    return entry


def _event_resource(event: SandboxEvent, calendar: SandboxCalendar, *, in_list: bool) -> dict[str, Any]:
    """An event as Google returns it; cancelled events in lists carry only what Google guarantees."""
    base: dict[str, Any] = {
        "kind": "calendar#event",
        "etag": f'"{event.version}"',
        "id": event.event_id,
        "status": event.status,
    }
    if event.status == "cancelled" and in_list:
        return base
    zone = _zone(event.time_zone)
    times = {
        "start": {"dateTime": event.start.astimezone(zone).isoformat(), "timeZone": event.time_zone},
        "end": {"dateTime": event.end.astimezone(zone).isoformat(), "timeZone": event.time_zone},
    }
    if calendar.access_role == "freeBusyReader":
        return {**base, **times, "updated": _rfc3339(event.updated)}
    resource: dict[str, Any] = {
        **base,
        "created": _rfc3339(event.updated),
        "updated": _rfc3339(event.updated),
        "summary": event.title,
        "creator": {"email": calendar.owner_email or calendar.calendar_id},
        "organizer": {"email": calendar.calendar_id, "self": True},
        **times,
        "iCalUID": event.ical_uid,
        "sequence": 0,
        "reminders": {"useDefault": True},
        "eventType": "default",
    }
    if event.description:
        resource["description"] = event.description
    if event.appointment_id:
        resource["extendedProperties"] = {"private": {APPOINTMENT_PROPERTY: event.appointment_id}}
    return resource


def _private_properties(body: dict[str, Any]) -> dict[str, Any] | None:
    """`extendedProperties.private` of a request body; None when the body does not mention it."""
    extended = body.get("extendedProperties")
    if not isinstance(extended, dict) or "private" not in extended:
        return None
    private = extended["private"]
    if private is None:
        return {}
    if not isinstance(private, dict):
        raise _bad_request("Invalid extendedProperties.private.", "invalid")
    return private


def _text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad_request(f"Invalid value for {name}.", "invalid")
    return value


def _pkce_s256(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii", "replace")).digest())


def _with_query(url: str, params: dict[str, str]) -> str:
    separator = "&" if urlsplit(url).query else "?"
    return url + separator + urlencode(params)


@dataclass(frozen=True)
class _Call:
    """One authenticated API request, as a handler sees it."""

    request: Request
    account: SandboxAccount
    body: dict[str, Any] | None


_Handler = Callable[[_Call], Response]


# -- the emulator ---------------------------------------------------------------------------------


class GoogleEmulator:
    def __init__(
        self, world: World, *, client_id: str, client_secret: str, clock: Callable[[], datetime]
    ) -> None:
        self.world = world
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock

    def routes(self) -> list[Route]:
        events = "/calendar/v3/calendars/{calendar_id}/events"
        return [
            Route("/o/oauth2/auth", self.consent_page, methods=["GET"]),
            Route("/o/oauth2/auth/decision", self.consent_decision, methods=["POST"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/o/oauth2/token", self.token, methods=["POST"]),
            Route("/oauth2/v2/userinfo", self.userinfo, methods=["GET"]),
            Route("/oauth2/v3/userinfo", self.userinfo, methods=["GET"]),
            Route("/calendar/v3/users/me/calendarList", self.calendar_list, methods=["GET"]),
            Route("/calendar/v3/users/me/calendarList/{calendar_id}", self.calendar_get, methods=["GET"]),
            Route(events, self.events_collection, methods=["GET", "POST"]),
            Route(events + "/{event_id}", self.event_item, methods=["GET", "PATCH", "PUT", "DELETE"]),
        ]

    # -- plumbing ---------------------------------------------------------------------------------

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
        """Sleep for latency/hang faults; the response of the first fault that answers, if any."""
        for hit in hits:
            if hit.kind == "latency":
                await asyncio.sleep(float(hit.params.get("seconds", 1.0)))
            elif hit.kind == "hang":
                if await hang(request, float(hit.params.get("seconds", 60.0))):
                    return Response(status_code=_CLIENT_CLOSED)
            else:
                response = self._fault_response(hit, endpoint)
                if response is not None:
                    return response
        return None

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
            return google_error(status, "Backend Error", "backendError")
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
                response = short_list(
                    hits, await run_in_threadpool(handler, _Call(request, account, body)), "items"
                )
                lost = lose_response(hits, response.status_code)
                if lost is not None:
                    await hang(request, lost_response_wait(hits))
                    response = google_error(lost, "Backend Error", "backendError")
        except _Reject as reject:
            response = reject.response
        except Exception:
            logger.exception("google emulator: %s %s failed", request.method, request.url.path)
            response = google_error(500, "Backend Error", "backendError")
        await self._record(request, response, account_email, started, body)
        return response

    # -- OAuth: consent -----------------------------------------------------------------------------

    async def consent_page(self, request: Request) -> Response:
        started = time.monotonic()
        params = request.query_params
        problem = self._authorize_problem(
            params.get("client_id", ""),
            params.get("redirect_uri", ""),
            params.get("response_type", ""),
            params.get("code_challenge_method", ""),
        )
        if problem:
            response: Response = _error_page(problem)
        else:
            accounts = await run_in_threadpool(self.world.google_accounts)
            response = HTMLResponse(_consent_html(dict(params), [a.email for a in accounts]))
        await self._record(request, response, params.get("login_hint") or None, started, None)
        return response

    def _authorize_problem(
        self, client_id: str, redirect_uri: str, response_type: str, challenge_method: str
    ) -> str | None:
        if client_id != self.client_id:
            return "Error 401: invalid_client. The OAuth client was not found."
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "Error 400: invalid_request. Missing or invalid redirect_uri."
        if response_type != "code":
            return "Error 400: unsupported_response_type. Only response_type=code is supported."
        if challenge_method not in ("", "S256"):
            return "Error 400: invalid_request. Only code_challenge_method=S256 is supported."
        return None

    async def consent_decision(self, request: Request) -> Response:
        started = time.monotonic()
        form = {key: str(value) for key, value in (await request.form()).items()}
        email = form.get("account", "").strip().lower()
        redirect_uri = form.get("redirect_uri", "")
        state = form.get("state")
        problem = self._authorize_problem(
            form.get("client_id", ""), redirect_uri, "code", form.get("code_challenge_method", "")
        )
        response: Response
        if problem:
            response = _error_page(problem)
        elif form.get("decision") != "allow":
            params = {"error": "access_denied"} | ({"state": state} if state is not None else {})
            response = RedirectResponse(_with_query(redirect_uri, params), status_code=302)
        else:
            account = await run_in_threadpool(self.world.account, PROVIDER, email) if email else None
            if account is None:
                response = _error_page("Choose one of the sandbox accounts.", status=400)
            else:
                code = await run_in_threadpool(
                    lambda: self.world.create_auth_code(
                        account.id,
                        prefix="4/",
                        client_id=form["client_id"],
                        redirect_uri=redirect_uri,
                        scopes=form.get("scope", ""),
                        code_challenge=form.get("code_challenge", ""),
                        code_challenge_method=form.get("code_challenge_method", ""),
                        expires_at=self.clock() + AUTH_CODE_LIFETIME,
                    )
                )
                params = {"code": code} | ({"state": state} if state is not None else {})
                params["scope"] = form.get("scope", "")
                response = RedirectResponse(_with_query(redirect_uri, params), status_code=302)
        await self._record(request, response, email or None, started, form)
        return response

    # -- OAuth: token endpoint ----------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        started = time.monotonic()
        form = {key: str(value) for key, value in (await request.form()).items()}
        account_email = await run_in_threadpool(self._token_account_email, form)
        hits = await run_in_threadpool(self.world.take_faults, PROVIDER, "token", account_email)
        response = await self._apply_faults(request, "token", hits)
        if response is None:
            try:
                response = await run_in_threadpool(self._token_grant, request, form)
            except Exception:
                logger.exception("google emulator: token endpoint failed")
                response = oauth_error(500, "internal_failure", "Backend Error")
        await self._record(request, response, account_email, started, form)
        return response

    def _token_account_email(self, form: dict[str, str]) -> str | None:
        """Whose token request this is (to apply that account's faults), without using anything up."""
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token"):
            found = self.world.grant_by_refresh_token(form["refresh_token"])
            return found[1].email if found else None
        if form.get("grant_type") == "authorization_code" and form.get("code"):
            peeked = self.world.google_peek_auth_code(form["code"])
            return peeked[1].email if peeked else None
        return None

    def _client_problem(self, request: Request, form: dict[str, str]) -> Response | None:
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and credentials:
            try:
                client_id, _, client_secret = base64.b64decode(credentials).decode().partition(":")
            except ValueError:
                return oauth_error(401, "invalid_client", "Unauthorized")
        if client_id != self.client_id:
            return oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if not hmac.compare_digest(client_secret.encode(), self.client_secret.encode()):
            return oauth_error(401, "invalid_client", "Unauthorized")
        return None

    def _token_grant(self, request: Request, form: dict[str, str]) -> Response:
        problem = self._client_problem(request, form)
        if problem is not None:
            return problem
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            return self._refresh(form)
        return oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _exchange_code(self, form: dict[str, str]) -> Response:
        code = self.world.google_take_auth_code(form.get("code", ""))
        now = self.clock()
        if code is None or code.expires_at <= now or code.client_id != self.client_id:
            return oauth_error(400, "invalid_grant", "Bad Request")
        if form.get("redirect_uri", "") != code.redirect_uri:
            return oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if code.code_challenge:
            verifier = form.get("code_verifier", "")
            if not verifier:
                return oauth_error(400, "invalid_grant", "Missing code verifier.")
            if not hmac.compare_digest(_pkce_s256(verifier), code.code_challenge):
                return oauth_error(400, "invalid_grant", "Invalid code verifier.")
        grant = self.world.issue_grant(code.account_id, scopes=code.scopes)
        found = self.world.grant_by_refresh_token(grant.refresh_token)
        assert found is not None
        return self._token_response(grant.id, found[1], grant.scopes, refresh_token=grant.refresh_token)

    def _refresh(self, form: dict[str, str]) -> Response:
        refresh_token = form.get("refresh_token", "")
        if not refresh_token:
            return oauth_error(400, "invalid_request", "Missing required parameter: refresh_token")
        found = self.world.grant_by_refresh_token(refresh_token)
        if found is None or found[1].provider != PROVIDER:
            return oauth_error(400, "invalid_grant", "Bad Request")
        grant, account = found
        if grant.status != "valid":
            return oauth_error(400, "invalid_grant", grant.error_description or DEFAULT_REVOKED_DESCRIPTION)
        return self._token_response(grant.id, account, grant.scopes)

    def _token_response(
        self, grant_id: int, account: SandboxAccount, scopes: str, *, refresh_token: str | None = None
    ) -> JSONResponse:
        now = self.clock()
        access = self.world.issue_access_token(grant_id, now, ACCESS_TOKEN_LIFETIME)
        body: dict[str, Any] = {
            "access_token": access.token,
            "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
            "scope": scopes,
            "token_type": "Bearer",
        }
        if refresh_token:
            body["refresh_token"] = refresh_token
        if {"openid", "email"} & set(scopes.split()):
            body["id_token"] = self._id_token(account, now)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _id_token(self, account: SandboxAccount, now: datetime) -> str:
        """A JWT like Google's (HS256 with the client secret here; Google signs with RS256)."""
        header = {"alg": "HS256", "typ": "JWT"}
        issued = int(now.timestamp())
        claims = {
            "iss": ID_TOKEN_ISSUER,
            "azp": self.client_id,
            "aud": self.client_id,
            "sub": str(account.id),
            "email": account.email,
            "email_verified": True,
            "iat": issued,
            "exp": issued + int(ACCESS_TOKEN_LIFETIME.total_seconds()),
        }
        signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        signature = hmac.new(self.client_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    async def userinfo(self, request: Request) -> Response:
        v3 = request.url.path.startswith("/oauth2/v3")

        def handler(call: _Call) -> Response:
            account = call.account
            if v3:
                return JSONResponse(
                    {
                        "sub": str(account.id),
                        "email": account.email,
                        "email_verified": True,
                        "name": account.display_name,
                    }
                )
            return JSONResponse(
                {
                    "id": str(account.id),
                    "email": account.email,
                    "verified_email": True,
                    "name": account.display_name,
                }
            )

        return await self._api(request, "userinfo", handler)

    # -- Calendar API: calendar list ----------------------------------------------------------------

    async def calendar_list(self, request: Request) -> Response:
        def handler(call: _Call) -> Response:
            calendars = self.world.google_calendars(call.account.id)
            offset, size = _paging(call.request, default=100, maximum=250)
            page = calendars[offset : offset + size]
            body: dict[str, Any] = {
                "kind": "calendar#calendarList",
                "etag": f'"{self.world.current_version()}"',
                "items": [_calendar_entry(calendar) for calendar in page],
            }
            if offset + size < len(calendars):
                body["nextPageToken"] = _encode_token(_PAGE_PREFIX, {"o": offset + size})
            else:
                body["nextSyncToken"] = _encode_token(_SYNC_PREFIX, {"cl": call.account.id})
            return JSONResponse(body)

        return await self._api(request, "calendars", handler)

    async def calendar_get(self, request: Request) -> Response:
        calendar_id = request.path_params["calendar_id"]

        def handler(call: _Call) -> Response:
            calendar = self.world.google_calendar(call.account.id, calendar_id)
            if calendar is None:
                raise _not_found()
            return JSONResponse(_calendar_entry(calendar))

        return await self._api(request, "calendars", handler)

    # -- Calendar API: events -----------------------------------------------------------------------

    def _calendar(self, call: _Call) -> SandboxCalendar:
        calendar = self.world.google_calendar(call.account.id, call.request.path_params["calendar_id"])
        if calendar is None:
            raise _not_found()
        return calendar

    @staticmethod
    def _require_writer(calendar: SandboxCalendar) -> None:
        if calendar.access_role not in WRITER_ROLES:
            raise _Reject(
                google_error(403, "You need to have writer access to this calendar.", "requiredAccessLevel")
            )

    async def events_collection(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._api(request, "events", self._insert_event)
        endpoint = "changes" if "syncToken" in request.query_params else "events"
        return await self._api(request, endpoint, self._list_events)

    async def event_item(self, request: Request) -> Response:
        handlers: dict[str, _Handler] = {
            "GET": self._get_event,
            "PATCH": self._patch_event,
            "PUT": self._put_event,
            "DELETE": self._delete_event,
        }
        return await self._api(request, "events", handlers[request.method])

    def _list_events(self, call: _Call) -> Response:
        calendar = self._calendar(call)
        query = call.request.query_params
        sync_token = query.get("syncToken")
        single_events = query.get("singleEvents") == "true"
        order_by = query.get("orderBy")
        if order_by not in (None, "startTime", "updated"):
            raise _bad_request("Invalid value for orderBy.")
        if order_by == "startTime" and not single_events:
            raise _bad_request("The requested ordering is not available for the particular query.")
        filters = ("timeMin", "timeMax", "orderBy", "privateExtendedProperty", "updatedMin", "q", "iCalUID")
        if sync_token is not None and any(name in query for name in filters):
            raise _bad_request("Sync token cannot be combined with these query parameters.")
        appointment_ids: set[str] = set()
        for pair in query.getlist("privateExtendedProperty"):
            key, sep, value = pair.partition("=")
            if not sep:
                raise _bad_request("Invalid value for privateExtendedProperty.")
            appointment_ids.add(value if key == APPOINTMENT_PROPERTY else "\0no-such-property")
        if len(appointment_ids) > 1:
            return JSONResponse(self._events_page(calendar, [], None, 0, 0, self.world.current_version()))
        offset, size = _paging(call.request, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        snapshot = self.world.current_version()
        if "pageToken" in query:
            page_state = _decode_token(_PAGE_PREFIX, query["pageToken"]) or {}
            snapshot = int(page_state.get("v", snapshot))
        since: int | None = None
        if sync_token is not None:
            state = _decode_token(_SYNC_PREFIX, sync_token)
            if (
                state is None
                or state.get("c") != calendar.pk
                or not isinstance(state.get("v"), int)
                or state["v"] > self.world.current_version()
            ):
                raise _Reject(self._sync_token_gone())
            since = int(state["v"])
        rows = self.world.google_events(
            calendar.pk,
            time_min=_parse_time_param("timeMin", query.get("timeMin")),
            time_max=_parse_time_param("timeMax", query.get("timeMax")),
            appointment_id=next(iter(appointment_ids)) if appointment_ids else None,
            include_cancelled=since is not None or query.get("showDeleted") == "true",
            since_version=since,
            order_by_start=order_by == "startTime",
        )
        if order_by == "updated":
            rows.sort(key=lambda row: (row.updated, row.pk))
        # A stable listing: what changed after the first page is left for the next incremental read.
        rows = [row for row in rows if row.version <= snapshot]
        return JSONResponse(self._events_page(calendar, rows, since, offset, size, snapshot))

    def _events_page(
        self,
        calendar: SandboxCalendar,
        rows: list[SandboxEvent],
        since: int | None,
        offset: int,
        size: int,
        snapshot: int,
    ) -> dict[str, Any]:
        page = rows[offset : offset + size]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{snapshot}"',
            "summary": calendar.name,
            "description": "",
            "updated": _rfc3339(max((row.updated for row in rows), default=self.clock())),
            "timeZone": calendar.time_zone,
            "accessRole": calendar.access_role,
            "defaultReminders": [],
            "items": [_event_resource(row, calendar, in_list=True) for row in page],
        }
        if offset + size < len(rows):
            body["nextPageToken"] = _encode_token(_PAGE_PREFIX, {"o": offset + size, "v": snapshot})
        else:
            body["nextSyncToken"] = _encode_token(_SYNC_PREFIX, {"c": calendar.pk, "v": snapshot})
        return body

    def _get_event(self, call: _Call) -> Response:
        calendar = self._calendar(call)
        event = self.world.google_event(calendar.pk, call.request.path_params["event_id"])
        if event is None:
            raise _not_found()
        return JSONResponse(_event_resource(event, calendar, in_list=False))

    def _insert_event(self, call: _Call) -> Response:
        calendar = self._calendar(call)
        self._require_writer(calendar)
        body = call.body or {}
        start, zone = _parse_event_time(body.get("start"), "start", calendar.time_zone)
        end, _ = _parse_event_time(body.get("end"), "end", calendar.time_zone)
        if end < start:
            raise _bad_request("The specified time range is empty.", "timeRangeEmpty")
        event_id = body.get("id")
        if event_id is not None:
            if (
                not isinstance(event_id, str)
                or not (5 <= len(event_id) <= 1024)
                or (set(event_id) - _EVENT_ID_ALPHABET)
            ):
                raise _bad_request("Invalid resource id value.", "invalid")
            if self.world.google_event(calendar.pk, event_id) is not None:
                raise _Reject(google_error(409, "The requested identifier already exists.", "duplicate"))
        private = _private_properties(body) or {}
        appointment_id = private.get(APPOINTMENT_PROPERTY)
        status = body.get("status", "confirmed")
        if status not in ("confirmed", "tentative"):
            raise _bad_request("Invalid value for status.")
        event = self.world.google_add_event(
            calendar.pk,
            title=_text_field(body, "summary"),
            description=_text_field(body, "description"),
            start=start,
            end=end,
            time_zone=zone,
            appointment_id=str(appointment_id) if appointment_id is not None else None,
            event_id=event_id,
            status=status,
            now=self.clock(),
        )
        return JSONResponse(_event_resource(event, calendar, in_list=False))

    def _event_changes(
        self, body: dict[str, Any], calendar: SandboxCalendar, *, replace: bool
    ) -> dict[str, Any]:
        """The world columns a PATCH (merge) or PUT (replace) body sets."""
        changes: dict[str, Any] = {}
        for field, column in (("summary", "title"), ("description", "description")):
            if replace or field in body:
                changes[column] = _text_field(body, field)
        if replace or "start" in body:
            changes["start"], changes["time_zone"] = _parse_event_time(
                body.get("start"), "start", calendar.time_zone
            )
        if replace or "end" in body:
            changes["end"], _ = _parse_event_time(body.get("end"), "end", calendar.time_zone)
        if "status" in body:
            if body["status"] not in ("confirmed", "tentative", "cancelled"):
                raise _bad_request("Invalid value for status.")
            changes["status"] = body["status"]
        private = _private_properties(body)
        if private is not None and (replace or APPOINTMENT_PROPERTY in private):
            value = private.get(APPOINTMENT_PROPERTY)
            changes["appointment_id"] = str(value) if value is not None else None
        elif replace:
            changes["appointment_id"] = None
        return changes

    def _write_event(self, call: _Call, *, replace: bool) -> Response:
        calendar = self._calendar(call)
        self._require_writer(calendar)
        event_id = call.request.path_params["event_id"]
        existing = self.world.google_event(calendar.pk, event_id)
        if existing is None:
            raise _not_found()
        changes = self._event_changes(call.body or {}, calendar, replace=replace)
        start, end = changes.get("start", existing.start), changes.get("end", existing.end)
        if end < start:
            raise _bad_request("The specified time range is empty.", "timeRangeEmpty")
        event = self.world.google_update_event(calendar.pk, event_id, changes, self.clock())
        if event is None:
            raise _not_found()
        return JSONResponse(_event_resource(event, calendar, in_list=False))

    def _patch_event(self, call: _Call) -> Response:
        return self._write_event(call, replace=False)

    def _put_event(self, call: _Call) -> Response:
        return self._write_event(call, replace=True)

    def _delete_event(self, call: _Call) -> Response:
        calendar = self._calendar(call)
        self._require_writer(calendar)
        event_id = call.request.path_params["event_id"]
        existing = self.world.google_event(calendar.pk, event_id)
        if existing is None:
            raise _not_found()
        if existing.status == "cancelled":
            raise _Reject(google_error(410, "Resource has been deleted", "deleted"))
        self.world.google_cancel_event(calendar.pk, event_id, self.clock())
        return Response(status_code=204)


def _paging(request: Request, *, default: int, maximum: int) -> tuple[int, int]:
    """(offset, page size) from `pageToken` and `maxResults`."""
    query = request.query_params
    try:
        size = int(query.get("maxResults", default))
    except ValueError:
        raise _bad_request("Invalid value for maxResults.") from None
    if size < 1:
        raise _bad_request("Invalid value for maxResults.")
    offset = 0
    if "pageToken" in query:
        state = _decode_token(_PAGE_PREFIX, query["pageToken"])
        if state is None or not isinstance(state.get("o"), int) or state["o"] < 0:
            raise _bad_request("Invalid page token value.", "invalid")
        offset = state["o"]
    return offset, min(size, maximum)


def _error_page(message: str, *, status: int = 400) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Error - Google Accounts (sandbox)</title>"
        f"</head><body><h1>Access blocked</h1><p class='error'>{html.escape(message)}</p></body></html>",
        status_code=status,
    )


_CONSENT_FIELDS = (
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "access_type",
    "prompt",
)


def _consent_html(params: dict[str, str], emails: list[str]) -> str:
    hint = params.get("login_hint", "").strip().lower()
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params[name], quote=True)}">'
        for name in _CONSENT_FIELDS
        if name in params
    )
    if emails:
        chosen = hint if hint in emails else emails[0]
        choices = "".join(
            "<li><label><input type='radio' name='account' "
            f"value='{html.escape(email, quote=True)}'{' checked' if email == chosen else ''}> "
            f"{html.escape(email)}</label></li>"
            for email in emails
        )
        accounts = f"<ul class='accounts'>{choices}</ul>"
    else:
        accounts = "<p>There are no Google accounts in the sandbox.</p>"
    scopes = "".join(f"<li>{html.escape(scope)}</li>" for scope in params.get("scope", "").split())
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Sign in - Google Accounts (sandbox)</title></head><body>"
        "<h1>Choose an account</h1>"
        f"<p>to continue to <b class='client'>{html.escape(params.get('client_id', ''))}</b></p>"
        "<form method='post' action='/o/oauth2/auth/decision'>"
        f"{hidden}{accounts}"
        f"<p>This will allow the app to:</p><ul class='scopes'>{scopes}</ul>"
        "<button type='submit' name='decision' value='allow'>Allow</button> "
        "<button type='submit' name='decision' value='deny'>Deny</button>"
        "</form></body></html>"
    )


def build_google_app(
    world: World, *, client_id: str, client_secret: str, clock: Callable[[], datetime]
) -> Starlette:
    """The emulator as an ASGI app (serve it with `BackgroundServer` or uvicorn)."""
    emulator = GoogleEmulator(world, client_id=client_id, client_secret=client_secret, clock=clock)
    return Starlette(routes=emulator.routes())


__all__ = ["GoogleEmulator", "build_google_app", "google_error", "oauth_error"]
